"""06 AdaMix ablations: inference modes of the same trained models, sharing, consistency, the number of modules
(M=1: a single adapter of the same inference size), AdaMix-LoRA's expert initialisation, and AdaMix over
prefix-tuning (peftkit's extension, docs/adamix_prefix.md) against prefix-tuning under the same protocol."""
from __future__ import annotations

import itertools
from typing import Iterable

import pandas as pd

from .. import reporting as rep
from ..experiment import RunSpec
from ..methods.adamix_prefix import DEFAULT_MERGE
from ..reporting.names import method_name, method_order
from ..reporting.tables import MISSING
from .common import CPU_DRAWS, CPU_DRAWS5, FULL_DATA, GLUE_TASKS, SEEDS3, SMOKE
from .grids import build, draws
from .reports import (Report, adamix_metric, keys_in_order, metric_note, no_paper_at_k, ours_table, paper_glue,
                      start)

NAME = "ablation_adamix"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "num_modules", "share", "consistency", "lora_expert_init", "adapter_baseline", "prefix_rows",
              "k", "data_seeds", "table_data_seeds")
# AdaMix (adapter) variants; M=1 is the single adapter of the same inference size the claim compares with.
# consistency: None = the protocol's weight (0 on BERT-family classifiers), 1.0 = the RoBERTa setting.
# lora_expert_init: AdaMix-LoRA runs with identical (the NLG code's) or independent starting modules.
# table_data_seeds: the data seeds of the cells that only a table reads (M=2, M=8, the AdaMix-LoRA inits, the
# adapter baseline); the cells a claim reads (base, M=1, sharing none, consistency, AdaMix-prefix and prefix-tuning)
# train on every data seed of data_seeds, since a claim needs 5 pairs (None: data_seeds for every cell).
# prefix_rows: AdaMix-prefix (M=4, shared MLP, with inference modes and both merge options) and prefix-tuning, both
# under adamix-glue on the same training sets (the rate of both: prefix-tuning's, protocols.ADAMIX_EXTENSION_BASES).
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("rte",), **FULL_DATA, seeds=(42,), num_modules=(1, 4), share=("up",), consistency=(None,),
                  lora_expert_init=(), adapter_baseline=False, prefix_rows=False, table_data_seeds=None,
                  budget=SMOKE),
    # five data seeds where a claim is checked (a verdict needs 5 pairs per task, reporting.claims.MIN_PAIRS), three
    # for the cells only a table reads; K = 500, not the other GLUE tables' 1,000: at K = 1,000 its 42 runs of
    # AdaMix's 40 epochs would take about 3.5 hours on 2 cores (peftkit.cpucost), over the 2.5-hour budget of one
    # notebook's rebuild; the protocol stays whole (docs/protocols.md)
    "cpu": dict(tasks=("sst2",), **{**CPU_DRAWS5, "k": (500,)}, num_modules=(1, 2, 4, 8), share=("up", "none"),
                consistency=(None, 1.0), lora_expert_init=("identical", "independent"), adapter_baseline=False,
                prefix_rows=True, table_data_seeds=CPU_DRAWS["data_seeds"]),
    "paper": dict(tasks=("sst2", "mrpc", "rte"), **FULL_DATA, seeds=SEEDS3, num_modules=(1, 2, 4, 8),
                  share=("up", "none"), consistency=(None, 1.0), lora_expert_init=("identical", "independent"),
                  adapter_baseline=False, prefix_rows=True, table_data_seeds=None),
}
PREFIX_LABEL = "adamix-prefix"


def points(p: dict) -> Iterable[dict]:
    """The base (M=4, shared up-projection, the protocol's consistency; with inference modes), each variant that
    differs from it, the AdaMix-LoRA expert inits, (adapter_baseline) a Pfeiffer adapter and (prefix_rows)
    AdaMix-prefix with inference modes beside prefix-tuning under the same protocol, per task and training set (K,
    data seed, seed)."""
    table_only = {**p, "data_seeds": p["table_data_seeds"] or p["data_seeds"]}  # cells no claim reads
    variants = [(dict(inference_modes=True), p)]  # the base: M=4, shared up-projection, default consistency
    variants += [(dict(options={"num_modules": int(m)}), p if int(m) == 1 else table_only)
                 for m in p["num_modules"] if int(m) != 4]
    variants += [(dict(options={"share": s}), p) for s in p["share"] if s != "up"]
    variants += [(dict(consistency=float(c)), p) for c in p["consistency"] if c is not None]
    for task, (v, cell) in itertools.product(p["tasks"], variants):
        for d in draws(cell):
            yield dict(task=task, label="adamix-adapter", **d, **v)
    for task, e in itertools.product(p["tasks"], p["lora_expert_init"] or ()):
        for d in draws(table_only):
            yield dict(task=task, label="adamix-lora", options={"expert_init": e}, **d)
    if p["adapter_baseline"]:
        for task in p["tasks"]:
            for d in draws(table_only):
                yield dict(task=task, label="pfeiffer", **d)
    if p["prefix_rows"]:
        for task in p["tasks"]:
            for d in draws(p):
                yield dict(task=task, label=PREFIX_LABEL, inference_modes=True, **d)
                yield dict(task=task, label="prefix", protocol="adamix-glue", **d)  # not UniPELT's: the same protocol


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


def _variant(result: dict) -> str:
    """'base' (AdaMix adapter, M=4, shared up-projection, the protocol's consistency weight), else what differs from
    it; AdaMix-LoRA runs: 'LoRA, <expert_init> experts'; other methods: their label."""
    from ..experiment import default_consistency

    if result["method"] != "adamix":
        return result["method_label"]
    cfg, training = result["method_config"], result["training"]
    if cfg["base"] == "lora":
        return f"LoRA, {cfg.get('expert_init') or 'identical'} experts"
    parts = [f"M={cfg['num_modules']}"] if cfg["num_modules"] != 4 else []
    parts += [f"sharing {cfg['share']}"] if cfg["share"] != "up" else []
    default = default_consistency(training.get("protocol") or "adamix-glue", result["model"], result["task_kind"],
                                  result["task"])
    if training["consistency"] != default:
        parts.append("no consistency" if not training["consistency"] else f"consistency {training['consistency']:g}")
    return ", ".join(parts) or "base"


def report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """Inference modes of the same trained models (merged / random / fixed / ensemble), sharing, consistency,
    the number of modules (M=1: a single adapter of the same inference size), AdaMix-LoRA's expert init."""
    r = start(NAME, profile, reports_dir, results, grid)
    frame = rep.runs_frame(results, include_modes=True)
    frame["variant"] = frame["run_id"].map({x["run_id"]: _variant(x) for x in results})
    tasks = keys_in_order(frame["task"], GLUE_TASKS)
    label = "adamix-adapter"
    base = rep.select(frame, method_label=label, variant="base")
    modes = keys_in_order(base.loc[base["mode"] != "reported", "mode"], ("merged", "random"))
    checks = []
    if modes:
        rows = [(m, {"method_label": label, "variant": "base", "mode": m}) for m in modes]
        t = ours_table(base, rows, tasks, adamix_metric, index_name="inference mode")
        r.table("modes", t, "AdaMix (adapter) inference modes of the same trained models, GLUE dev", "AdaMix "
                "inference modes: merged, random routing, fixed module, ensemble", frame=base,
                paper_backbone="bert-base", notes=[metric_note(tasks, adamix_metric)])
        r.figure("modes", rep.strip_by_mode, "AdaMix inference modes of the same trained models, one point per seed",
                 base, tasks=tasks, metric=adamix_metric, method=label)
        if "random" in modes:
            checks.append(rep.claim_check(base, {"method_label": label, "mode": "merged"},
                                          {"method_label": label, "mode": "random"}, adamix_metric,
                                          tasks, at_least=True, claim="merging ≥ random routing (AdaMix adapter)"))
    reported = frame[frame["mode"] == "reported"]
    adapter_variants = [v for v in reported.loc[reported["method_label"] == label, "variant"].unique()]
    variants = keys_in_order(pd.Series(adapter_variants), ("base", "sharing none", "no consistency", "consistency 1",
                                                      "M=1", "M=2", "M=8"))
    names = {"base": "AdaMix (adapter): M=4, shared up-projection, the protocol's consistency weight (base)",
             "M=1": "AdaMix (adapter), M=1: a single adapter of the same inference size"}
    rows = [(names.get(v, f"AdaMix (adapter): {v}"), {"method_label": label, "variant": v}) for v in variants]
    rows += [(method_name(m), {"method_label": m}) for m in method_order(reported["method_label"])
             if m not in (label, "adamix-lora", PREFIX_LABEL, "prefix")]
    at_k = no_paper_at_k(reported)
    t = ours_table(reported, rows, tasks, adamix_metric, paper=None if at_k else lambda w, task: paper_glue(
        {**w, "method_label": {"base": label, "M=1": "pfeiffer"}.get(w.get("variant"), w["method_label"]),
         "variant": None if w.get("variant") in ("base", "M=1", None) else w["variant"]}, task),
        index_name="AdaMix (adapter) variant")
    t.insert(0, "inference params", [f"{int(v):,}" if not pd.isna(v) else MISSING for v in
                                     (rep.select(reported, **w)["inference_params"].max() for _, w in rows)])
    r.table("variants", t, "AdaMix (adapter) ablations: sharing, consistency, number of modules, GLUE dev",
            "AdaMix ablation variants; M=1 is a single adapter of the same inference size", frame=reported,
            paper_backbone="bert-base",
            notes=[metric_note(tasks, adamix_metric), at_k or "paper: AdaMix's BERT-base GLUE table (AdaMix adapter "
                   "for the base; its Pfeiffer adapter row, quoted from UniPELT, beside M=1)."])
    lora = [v for v in ("LoRA, identical experts", "LoRA, independent experts")
            if v in set(reported.loc[reported["method_label"] == "adamix-lora", "variant"])]
    if lora:
        t = ours_table(reported, [(f"AdaMix (LoRA), {v.split(', ')[1]}", {"method_label": "adamix-lora",
                                                                          "variant": v}) for v in lora],
                       tasks, adamix_metric, index_name="AdaMix (LoRA) expert init")
        r.table("expert_init", t, "AdaMix (LoRA): identical (the authors' NLG code) vs independent starting modules",
                "AdaMix-LoRA expert initialisation: identical copies vs independent draws", frame=reported,
                paper_backbone="bert-base", notes=[metric_note(tasks, adamix_metric),
                                                   "Weight averaging (merged inference) averages modules that "
                                                   "started equal (identical) or as independent draws."])
    b = {"method_label": label, "variant": "base"}
    if "M=1" in variants and "base" in variants:
        checks.append(rep.claim_check(reported, b, {"method_label": label, "variant": "M=1"}, adamix_metric, tasks,
                                      claim="AdaMix-adapter > a single adapter of the same inference size (M=1)"))
    if "sharing none" in variants and "base" in variants:
        checks.append(rep.claim_check(reported, b, {"method_label": label, "variant": "sharing none"},
                                      adamix_metric, tasks, claim="sharing the up-projection > no sharing"))
    on = next((v for v in variants if v.startswith("consistency ")), None)
    if "base" in variants and (on or "no consistency" in variants):
        better, worse = ({"method_label": label, "variant": on}, b) if on else \
            (b, {"method_label": label, "variant": "no consistency"})
        checks.append(rep.claim_check(reported, better, worse, adamix_metric, tasks,
                                      claim="consistency regularisation > none"))
    checks += _prefix_section(r, frame, tasks, _own_merge(results))
    r.claim_file(checks, "AdaMix ablation claims")
    return r


def _own_merge(results: list[dict]) -> str | None:
    """The merge option AdaMix-prefix's runs were trained with (what their ``merged`` mode scored), when they all
    share one."""
    hows = {(x.get("method_config") or {}).get("merge") or DEFAULT_MERGE for x in results
            if x.get("method") == "adamix" and (x.get("method_config") or {}).get("base") == "prefix"}
    return hows.pop() if len(hows) == 1 else None


def _prefix_section(r: Report, frame: pd.DataFrame, tasks: list, own: str | None = DEFAULT_MERGE) -> list:
    """AdaMix over prefix-tuning (peftkit's extension): its inference modes and merge options of the same trained
    models, AdaMix-prefix (merged) beside prefix-tuning under the same protocol, and the claims on both. ``own``:
    the runs' merge option, whose ``merged-<own>`` mode is their ``merged`` one (the table shows it once)."""
    base = rep.select(frame, method_label=PREFIX_LABEL, variant="base")
    reported = frame[frame["mode"] == "reported"]
    checks = []
    duplicate = f"merged-{own}" if own else None
    if duplicate and not (base["mode"] == duplicate).any():  # a record without the copy: its merged mode is it
        base = pd.concat([base, base[base["mode"] == "merged"].assign(mode=duplicate)])
    modes = keys_in_order(base.loc[base["mode"] != "reported", "mode"], ("merged", "merged-kv", "merged-weights",
                                                                          "random"))
    shown = [m for m in modes if m != duplicate]
    extension = ("AdaMix over prefix-tuning is peftkit's extension (the AdaMix paper's future work; "
                 "docs/adamix_prefix.md), not a paper's method: no paper column.")
    if shown:
        merged = f"merged (merge={own}, the runs' option)" if duplicate else "merged"
        rows = [(merged if m == "merged" else m, {"method_label": PREFIX_LABEL, "variant": "base", "mode": m})
                for m in shown]
        t = ours_table(base, rows, tasks, adamix_metric, index_name="inference mode")
        same = f" ({own}: their {duplicate} mode is the same evaluation, shown once)" if duplicate else ""
        merge_note = (f"merged is the runs' merge option{same}. merged-kv averages the modules' key/values (the "
                      "default), merged-weights their embeddings and MLP weights: the measurement that confirms or "
                      "overturns the default.")
        r.table("prefix_modes", t, "AdaMix-prefix inference modes and merge options of the same trained models, GLUE "
                "dev", "AdaMix-prefix inference modes (merged, the other merge option, random, fixed, ensemble)",
                frame=base, notes=[metric_note(tasks, adamix_metric), extension, merge_note])
        r.figure("prefix_modes", rep.strip_by_mode, "AdaMix-prefix inference modes of the same trained models, one "
                 "point per seed", base, tasks=tasks, metric=adamix_metric, method=PREFIX_LABEL, modes=shown)
        if "random" in modes:
            checks.append(rep.claim_check(base, {"method_label": PREFIX_LABEL, "mode": "merged"},
                                          {"method_label": PREFIX_LABEL, "mode": "random"}, adamix_metric, tasks,
                                          at_least=True, claim="merging ≥ random routing (AdaMix-prefix)"))
        if {"merged-kv", "merged-weights"} <= set(modes):
            checks.append(rep.claim_check(base, {"method_label": PREFIX_LABEL, "mode": "merged-kv"},
                                          {"method_label": PREFIX_LABEL, "mode": "merged-weights"}, adamix_metric,
                                          tasks, at_least=True,
                                          claim="merge=kv ≥ merge=weights (AdaMix-prefix: the default's measurement)"))
    sides = [(f"{method_name(PREFIX_LABEL)}, merged (M=4, shared MLP)", {"method_label": PREFIX_LABEL,
                                                                      "variant": "base"}),
             (method_name("prefix"), {"method_label": "prefix"})]
    present = [(n, w) for n, w in sides if len(rep.select(reported, **w))]
    if present:
        t = ours_table(reported, present, tasks, adamix_metric, index_name="method (adamix-glue protocol)")
        t.insert(0, "inference params", [f"{int(v):,}" if not pd.isna(v) else MISSING for v in
                                         (rep.select(reported, **w)["inference_params"].max() for _, w in present)])
        r.table("prefix", t, "AdaMix over prefix-tuning vs prefix-tuning, same protocol and training sets, GLUE dev",
                "AdaMix-prefix (merged) beside prefix-tuning under the same protocol", frame=reported,
                notes=[metric_note(tasks, adamix_metric), extension, "Both under adamix-glue at prefix-tuning's "
                       "learning rate (2e-4 at BERT-base; AdaMix-prefix takes its base method's rate), with the "
                       "task head trained; merged AdaMix-prefix runs one prefix of the same length."])
    if len(present) == 2:
        checks.append(rep.claim_check(reported, sides[0][1], sides[1][1], adamix_metric, tasks,
                                      claim="AdaMix-prefix (merged) > prefix-tuning"))
    return checks
