"""04 NLG: E2E, WebNLG and DART with LoRA, adapters and AdaMix beside AdaMix's GPT-2 medium tables."""
from __future__ import annotations

import itertools
from typing import Iterable

import pandas as pd

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.names import method_name, method_order, metric_name, task_name
from .grids import build
from .reports import Report, keys_in_order, start

NAME = "nlg"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "methods")
NLG_NOT_RUN = {"dart": "the data directory has DART's dev and test sets but no train file, and an "
                       "evaluation-only run would score an untrained model"}
#: AdaMix's NLG settings (GPT-2 medium): LoRA r=4, alpha=32, dropout 0.1 on q,v; M=8 LoRA-A with a shared B; the
#: AdaMix adapter with bottleneck 8, M=8, a shared up-projection (the adamix-nlg protocol's method defaults,
#: peftkit.protocols, spelled out so run names show them; DART's LoRA dropout 0 is the protocol's per-task option).
NLG_OPTIONS = {"lora": {"r": 4, "alpha": 32, "dropout": 0.1},
               "adamix-lora": {"r": 4, "alpha": 32, "dropout": 0.1, "num_modules": 8, "share": "up"},
               "adamix-adapter": {"bottleneck": 8, "num_modules": 8, "share": "up"}}
NLG_OPTIONS_BY_TASK = {"dart": {"lora": {"dropout": 0.0}, "adamix-lora": {"dropout": 0.0}}}
#: tasks a profile's grid leaves out, and why (the notebook's TASKS parameter still trains them)
NLG_NOT_IN_GRID = {"cpu": {"webnlg": "its 4 runs (batches padded to 131 tokens, 25 epochs) are estimated at 92 minutes "
                                     "and would take the cpu profile past its 12-hour budget (docs/protocols.md); "
                                     "TASKS=[\"webnlg\"] trains them"}}
LABELS = ("lora", "pfeiffer", "adamix-lora", "adamix-adapter")
# smoke: decoding 2 test sources
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("e2e",), methods=("lora",), seeds=(42,),
                  budget=dict(max_steps=2, eval_steps=2, max_train=16, max_eval=2)),
    # cpu: E2E only (NLG_NOT_IN_GRID says why WebNLG is left out); the paper profile keeps both
    "cpu": dict(tasks=("e2e",), methods=LABELS, seeds=(42,)),
    "paper": dict(tasks=("e2e", "webnlg"), methods=LABELS, seeds=(42,)),
}


def points(p: dict) -> Iterable[dict]:
    """Every task x method x seed, with the method's NLG options (and the task's)."""
    for task, label, seed in itertools.product(p["tasks"], p["methods"], p["seeds"]):
        options = {**NLG_OPTIONS.get(label, {}), **NLG_OPTIONS_BY_TASK.get(task.lower(), {}).get(label, {})}
        yield dict(task=task, label=label, seed=seed, options=options)


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


NLG_METRICS = ("bleu", "nist", "meteor", "rouge_l", "cider", "ter")
#: the long-format CSV: one row per method x dataset x metric
NUMBERS_CSV = ["method", "method_label", "task", "metric", "n", "mean", "std", "ci_lo", "ci_hi", "paper", "delta",
               "runs", "collapsed", "collapsed_reason", "paper_row", "note"]
#: WebNLG columns as LoRA's and AdaMix's tables print them: each metric on the seen (S), unseen (U), all (A) sources
WEBNLG_METRICS = tuple(m + s for m in ("bleu", "meteor", "ter") for s in ("_seen", "_unseen", ""))


#: WebNLG's all-categories columns print as "A" beside the seen (S) and unseen (U) ones
WEBNLG_HEADERS = {m: f"{metric_name(m)} A" for m in ("bleu", "meteor", "ter")}


def results_tables(frame: pd.DataFrame, tasks, methods) -> dict[str, pd.DataFrame]:
    """{dataset: table}: one row per method; per metric ours, and paper | Δ where AdaMix's table prints it
    (:func:`peftkit.reporting.metrics_table`; collapsed runs flagged, no Δ)."""
    out = {}
    for t in tasks:
        metrics = [m for m in (WEBNLG_METRICS if t == "webnlg" else NLG_METRICS)
                   if ((frame["task"] == t) & (frame["metric"] == m)).any()]
        out[task_name(t)] = rep.metrics_table(frame, paper="adamix", table="nlg", task=t, metrics=metrics,
                                              methods=methods, headers=WEBNLG_HEADERS if t == "webnlg" else None)
    return out


def report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """E2E, WebNLG (S / U / A) and DART beside AdaMix's GPT-2 medium tables (one table per dataset, one row per
    method; the CSV holds the numbers in long format), the nlg_bars figure and a few generated samples; the notes
    say how each task was scored (result field ``scoring``)."""
    r = start(NAME, profile, reports_dir, results, grid)
    frame = rep.runs_frame(results)
    tasks, methods = keys_in_order(frame["task"], ("e2e", "webnlg", "dart")), method_order(frame["method_label"])
    tables = results_tables(frame, tasks, methods)
    merged = rep.merged_attrs(tables)  # the tables' notes (how to read the cells, which runs collapsed), numbers
    budgets = {(x.get("data") or {}).get("eval", {}).get("rows") for x in results}
    backbones = sorted({rep.backbone_name(x.get("model")) for x in results})
    r.notes = [*merged.get("notes", []),
               *(f"{task_name(t)}: skipped, {why}." for t, why in NLG_NOT_RUN.items()),
               *(f"{task_name(t)}: not in the {profile} grid, {why}." for t, why in
                 NLG_NOT_IN_GRID.get(profile, {}).items() if t not in tasks)]
    if any(b != "GPT-2 medium" for b in backbones):
        r.notes.append(f"Backbone: {', '.join(backbones)} stands in for the paper's GPT-2 medium (offline: MiniLM's "
                       "encoder is used as a causal decoder, its LM head transform newly initialised), so the "
                       "scores are far below the paper's; the paper profile runs GPT-2 medium.")
    r.notes.append(f"Scored on the first {', '.join(str(b) for b in sorted(x for x in budgets if x))} test "
                   "sources (the full test sets under the paper profile); BLEU, METEOR, ROUGE-L in %, NIST and "
                   "CIDEr raw, TER a fraction (lower is better).")
    for t in tasks:
        how = sorted({str(x.get("scoring") or "not recorded (result file predates the field)") for x in results
                      if x.get("task") == t})
        r.notes.append(f"{task_name(t)} scoring: {'; '.join(how)}.")
    if "webnlg" in tasks:
        r.notes.append("WebNLG S / U / A: the sources of the 10 categories seen in training, the 5 unseen ones, all "
                       "(each scored on that part alone). AdaMix's table prints only A's BLEU and TER (and DART's "
                       "BLEU and TER), so only those have paper and Δ columns.")
    numbers = merged.get("numbers")
    r.table("results", tables, "NLG test sets, ours vs AdaMix's tables", "E2E / WebNLG / DART results beside AdaMix's "
            "GPT-2 medium tables (one table per dataset; CSV: the numbers in long format)", frame=frame,
            paper_backbone="gpt2-medium", notes=r.notes, csv=None if numbers is None else numbers[NUMBERS_CSV].round(4))
    samples = [{"task": task_name(x["task"]), "method": method_name(x["method_label"]), "seed": x["seeds"]["seed"],
                **s} for x in results for s in (x.get("samples") or [])[:2]]
    if samples:
        r.table("samples", pd.DataFrame(samples), "Generated samples (first two test sources)", "Generated texts "
                "beside their first reference", frame=frame, paper_backbone="gpt2-medium")
    r.figure("bars", rep.nlg_bars, "NLG metrics, ours (mean, 95% CI) beside the paper's", frame, tasks=tasks,
             methods=methods, metrics=NLG_METRICS)
    return r
