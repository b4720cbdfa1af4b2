"""Reports of notebooks 03-08 (few-shot, NLG, the two AdaMix ablations, UniPELT gates, efficiency); see
:mod:`peftkit.studies_reports` for the shared :class:`Report` and notebooks 01-02."""
from __future__ import annotations

import pandas as pd

from . import reporting as rep
from .reporting.names import method_name, method_order, metric_name, task_name
from .reporting.tables import MISSING, format_ours
from .studies_reports import Report, _adamix_metric, _kit_metric, _metric_note, _present, _start, ours_table


def _paper_glue(where: dict, task: str) -> float | None:
    """AdaMix's BERT-base GLUE cell of a method (the ablations' b=48 / base settings only)."""
    label = where.get("method_label")
    if where.get("bottleneck") not in (None, 48) or where.get("variant") not in (None, "base"):
        return None
    return rep.paper_value("adamix", "glue", label, task, backbone="bert-base", metric=_adamix_metric(task))


# ---- 03 few-shot ----------------------------------------------------------------------------------------------

def head_note(prompt_runs: list[dict]) -> str:
    """What the result files say about the masked-LM head (field new_head_weights), naming the backbones."""
    new = sorted({str(x.get("model")) for x in prompt_runs if x.get("new_head_weights")})
    n_new = sum(bool(x.get("new_head_weights")) for x in prompt_runs)
    text = (f"Prompt-based runs: the masked-LM head transform is newly initialised in {n_new} of {len(prompt_runs)} "
            "runs (result field new_head_weights)")
    if not n_new:
        return text + ": every backbone used shipped its pretrained masked-LM head."
    why = "MiniLM ships its encoder only" if new == ["minilm"] else \
        f"the checkpoint of {', '.join(new)} ships no masked-LM head transform"
    return text + f": {why}, so the head's dense + LayerNorm start from random weights and train with the method."


def fewshot_report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """LM-BFF few-shot (K=16 per class, five splits): AdaMix vs single-module PEFT vs full FT, prompt vs
    classification head."""
    r = _start("fewshot", profile, reports_dir, results)
    frame = rep.runs_frame(results)
    tasks = _present(frame["task"])
    rows = []
    for head in ("prompt", "classifier"):
        for m in method_order(frame.loc[frame["head"] == head, "method_label"]):
            rows.append((method_name(m) + (", classification head" if head == "classifier" else ""),
                         {"method_label": m, "head": head}))
    prompt_runs = [x for x in results if x.get("head") == "prompt"]
    r.notes = [head_note(prompt_runs),
               "No paper column: the AdaMix paper's few-shot numbers are not transcribed in shared/reference."]
    t = ours_table(frame, rows, tasks, _kit_metric)
    r.table("results", t, "Few-shot (K = 16 per class, LM-BFF splits), test sets", "Few-shot results per method "
            "and head", frame=frame, notes=[_metric_note(tasks, _kit_metric)] + r.notes)
    prompt = rep.select(frame, head="prompt")
    labels = set(prompt["method_label"])
    checks = [rep.claim_check(prompt, f"adamix-{b}", b, _kit_metric, tasks, pair_on=("task", "seed", "data_seed"))
              for b in ("pfeiffer", "lora") if {b, f"adamix-{b}"} <= labels]
    if {"prompt", "classifier"} <= set(rep.select(frame, method_label="lora")["head"]):
        checks.append(rep.claim_check(frame, {"method_label": "lora", "head": "prompt"},
                                      {"method_label": "lora", "head": "classifier"}, _kit_metric, tasks,
                                      claim="LoRA with the prompt (MLM) head > LoRA with a classification head"))
    r.claim_file(checks, "Few-shot claims")
    return r


# ---- 04 NLG ---------------------------------------------------------------------------------------------------

NLG_METRICS = ("bleu", "nist", "meteor", "rouge_l", "cider", "ter")
#: WebNLG columns as LoRA's and AdaMix's tables print them: each metric on the seen (S), unseen (U), all (A) sources
WEBNLG_METRICS = tuple(m + s for m in ("bleu", "meteor", "ter") for s in ("_seen", "_unseen", ""))


def _nlg_header(task: str, metric: str) -> str:
    if task == "webnlg" and metric in ("bleu", "meteor", "ter"):
        return f"{task_name(task)} {metric_name(metric)} A"
    return f"{task_name(task)} {metric_name(metric)}"


def nlg_report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """E2E, WebNLG (S / U / A) and DART beside AdaMix's GPT-2 medium tables, the nlg_bars figure and a few
    generated samples; the notes say how each task was scored (result field ``scoring``)."""
    from .studies import NLG_NOT_RUN

    r = _start("nlg", profile, reports_dir, results)
    frame = rep.runs_frame(results)
    tasks, methods = _present(frame["task"], ("e2e", "webnlg", "dart")), method_order(frame["method_label"])
    cols = [(t, m) for t in tasks for m in (WEBNLG_METRICS if t == "webnlg" else NLG_METRICS)
            if ((frame["task"] == t) & (frame["metric"] == m)).any()]
    index, body = [], []
    for label in methods:
        ours, paper, delta = [], [], []
        for t, m in cols:
            n = rep.comparison_numbers(frame, paper="adamix", table="nlg", tasks=[t], methods=[label],
                                       metric_for=lambda _t, m=m: m).iloc[0]
            ours.append(format_ours(n["n"], n["mean"], n["std"], n["ci_lo"], n["ci_hi"], m))
            paper.append(MISSING if pd.isna(n["paper"]) else f"{n['paper']:g}")
            delta.append(MISSING if pd.isna(n["delta"]) else f"{n['delta']:+.3f}" if m in ("ter", "cider", "nist")
                         else f"{n['delta']:+.2f}")
        index += [(method_name(label), row) for row in ("ours", "paper", "Δ")]
        body += [ours, paper, delta]
    table = pd.DataFrame(body, index=pd.MultiIndex.from_tuples(index, names=["method", "row"]),
                         columns=[_nlg_header(t, m) for t, m in cols])
    budgets = {(x.get("data") or {}).get("eval", {}).get("rows") for x in results}
    backbones = sorted({rep.backbone_name(x.get("model")) for x in results})
    r.notes = [f"{task_name(t)}: skipped, {why}." for t, why in NLG_NOT_RUN.items()]
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
                       "BLEU and TER), so the other paper cells are empty.")
    empty = sorted({f"{method_name(x['method_label'])} on {task_name(x['task'])}" for x in results
                    if x.get("samples") and not any(str(s.get("prediction", "")).strip() for s in x["samples"])})
    if empty:
        r.notes.append("Empty generations (every stored sample is an empty string, so the scores are 0): "
                       + "; ".join(empty) + ". The run collapsed to ending at once within this budget.")
    r.table("results", table, "NLG test sets, ours vs AdaMix's tables", "E2E / WebNLG / DART results beside AdaMix's "
            "GPT-2 medium tables", frame=frame, paper_backbone="gpt2-medium", notes=r.notes)
    samples = [{"task": task_name(x["task"]), "method": method_name(x["method_label"]), "seed": x["seeds"]["seed"],
                **s} for x in results for s in (x.get("samples") or [])[:2]]
    if samples:
        r.table("samples", pd.DataFrame(samples), "Generated samples (first two test sources)", "Generated texts "
                "beside their first reference", frame=frame, paper_backbone="gpt2-medium")
    r.figure("bars", rep.nlg_bars, "NLG metrics, ours (mean, 95% CI) beside the paper's", frame, tasks=tasks,
             methods=methods, metrics=NLG_METRICS)
    return r


# ---- 05 bottleneck ablation -----------------------------------------------------------------------------------

def ablation_bottleneck_report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """Adapter vs AdaMix-adapter over the bottleneck dimension: table and curve."""
    from .studies import GLUE_TASKS

    r = _start("ablation_bottleneck", profile, reports_dir, results)
    frame = rep.runs_frame(results)
    tasks, methods = _present(frame["task"], GLUE_TASKS), method_order(frame["method_label"])
    rows = [(f"{method_name(m)}, b={int(b)}", {"method_label": m, "bottleneck": int(b)})
            for m in methods for b in sorted(frame.loc[frame["method_label"] == m, "bottleneck"].dropna().unique())]
    t = ours_table(frame, rows, tasks, _adamix_metric, paper=_paper_glue, index_name="method, bottleneck")
    params = {name: frame.loc[rep.select(frame, **w).index, "inference_params"].max() for name, w in rows}
    t.insert(0, "inference params", [MISSING if pd.isna(v) else f"{int(v):,}" for v in params.values()])
    notes = [_metric_note(tasks, _adamix_metric), "paper: AdaMix's BERT-base GLUE table, which uses b=48 only.",
             "Inference params: after merging (AdaMix averages its M adapters into one of the same size)."]
    r.table("results", t, "Bottleneck dimension ablation, GLUE dev", "Adapter and AdaMix-adapter over the "
            "bottleneck dimension", frame=frame, paper_backbone="bert-base", notes=notes)
    r.figure("curve", rep.bottleneck_curve, "Adapter vs AdaMix-adapter over the bottleneck dimension (mean, 95% CI)",
             frame, tasks=tasks, metric=_adamix_metric, methods=methods)
    return r


# ---- 06 AdaMix ablations --------------------------------------------------------------------------------------

def _variant(result: dict) -> str:
    """'base' (AdaMix adapter, M=4, shared up-projection, the protocol's consistency weight), else what differs from
    it; AdaMix-LoRA runs: 'LoRA, <expert_init> experts'; other methods: their label."""
    from .experiment import default_consistency

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


def ablation_adamix_report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """Inference modes of the same trained models (merged / random / fixed / ensemble), sharing, consistency,
    the number of modules (M=1: a single adapter of the same inference size), AdaMix-LoRA's expert init."""
    from .studies import GLUE_TASKS

    r = _start("ablation_adamix", profile, reports_dir, results)
    frame = rep.runs_frame(results, include_modes=True)
    frame["variant"] = frame["run_id"].map({x["run_id"]: _variant(x) for x in results})
    tasks = _present(frame["task"], GLUE_TASKS)
    label = "adamix-adapter"
    base = rep.select(frame, method_label=label, variant="base")
    modes = _present(base.loc[base["mode"] != "reported", "mode"], ("merged", "random"))
    checks = []
    if modes:
        rows = [(m, {"method_label": label, "variant": "base", "mode": m}) for m in modes]
        t = ours_table(base, rows, tasks, _adamix_metric, index_name="inference mode")
        r.table("modes", t, "AdaMix (adapter) inference modes of the same trained models, GLUE dev", "AdaMix "
                "inference modes: merged, random routing, fixed module, ensemble", frame=base,
                paper_backbone="bert-base", notes=[_metric_note(tasks, _adamix_metric)])
        r.figure("modes", rep.strip_by_mode, "AdaMix inference modes of the same trained models, one point per seed",
                 base, tasks=tasks, metric=_adamix_metric, method=label)
        if "random" in modes:
            checks.append(rep.claim_check(base, {"method_label": label, "mode": "merged"},
                                          {"method_label": label, "mode": "random"}, _adamix_metric,
                                          tasks, at_least=True, claim="merging ≥ random routing (AdaMix adapter)"))
    reported = frame[frame["mode"] == "reported"]
    adapter_variants = [v for v in reported.loc[reported["method_label"] == label, "variant"].unique()]
    variants = _present(pd.Series(adapter_variants), ("base", "sharing none", "no consistency", "consistency 1",
                                                      "M=1", "M=2", "M=8"))
    names = {"base": "AdaMix (adapter): M=4, shared up-projection, the protocol's consistency weight (base)",
             "M=1": "AdaMix (adapter), M=1: a single adapter of the same inference size"}
    rows = [(names.get(v, f"AdaMix (adapter): {v}"), {"method_label": label, "variant": v}) for v in variants]
    rows += [(method_name(m), {"method_label": m}) for m in method_order(reported["method_label"])
             if m not in (label, "adamix-lora")]
    t = ours_table(reported, rows, tasks, _adamix_metric, paper=lambda w, task: _paper_glue(
        {**w, "method_label": {"base": label, "M=1": "pfeiffer"}.get(w.get("variant"), w["method_label"]),
         "variant": None if w.get("variant") in ("base", "M=1", None) else w["variant"]}, task),
        index_name="AdaMix (adapter) variant")
    t.insert(0, "inference params", [f"{int(v):,}" if not pd.isna(v) else MISSING for v in
                                     (rep.select(reported, **w)["inference_params"].max() for _, w in rows)])
    r.table("variants", t, "AdaMix (adapter) ablations: sharing, consistency, number of modules, GLUE dev",
            "AdaMix ablation variants; M=1 is a single adapter of the same inference size", frame=reported,
            paper_backbone="bert-base",
            notes=[_metric_note(tasks, _adamix_metric), "paper: AdaMix's BERT-base GLUE table (AdaMix adapter for the "
                   "base; its Pfeiffer adapter row, quoted from UniPELT, beside M=1)."])
    lora = [v for v in ("LoRA, identical experts", "LoRA, independent experts")
            if v in set(reported.loc[reported["method_label"] == "adamix-lora", "variant"])]
    if lora:
        t = ours_table(reported, [(f"AdaMix (LoRA), {v.split(', ')[1]}", {"method_label": "adamix-lora",
                                                                          "variant": v}) for v in lora],
                       tasks, _adamix_metric, index_name="AdaMix (LoRA) expert init")
        r.table("expert_init", t, "AdaMix (LoRA): identical (the authors' NLG code) vs independent starting modules",
                "AdaMix-LoRA expert initialisation: identical copies vs independent draws", frame=reported,
                paper_backbone="bert-base", notes=[_metric_note(tasks, _adamix_metric),
                                                   "Weight averaging (merged inference) averages modules that "
                                                   "started equal (identical) or as independent draws."])
    b = {"method_label": label, "variant": "base"}
    if "M=1" in variants and "base" in variants:
        checks.append(rep.claim_check(reported, b, {"method_label": label, "variant": "M=1"}, _adamix_metric, tasks,
                                      claim="AdaMix-adapter > a single adapter of the same inference size (M=1)"))
    if "sharing none" in variants and "base" in variants:
        checks.append(rep.claim_check(reported, b, {"method_label": label, "variant": "sharing none"},
                                      _adamix_metric, tasks, claim="sharing the up-projection > no sharing"))
    on = next((v for v in variants if v.startswith("consistency ")), None)
    if "base" in variants and (on or "no consistency" in variants):
        better, worse = ({"method_label": label, "variant": on}, b) if on else \
            (b, {"method_label": label, "variant": "no consistency"})
        checks.append(rep.claim_check(reported, better, worse, _adamix_metric, tasks,
                                      claim="consistency regularisation > none"))
    r.claim_file(checks, "AdaMix ablation claims")
    return r


# ---- 07 UniPELT gates -----------------------------------------------------------------------------------------

def unipelt_gates_report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """UniPELT's mean gate values per layer, task and K (heatmap), and their averages over layers (table)."""
    from .reporting.figures import GATE_COMPONENTS, gate_matrix
    from .studies import GLUE_TASKS

    r = _start("unipelt_gates", profile, reports_dir, results)
    g = gate_matrix(results)
    tasks = _present(g["task"], GLUE_TASKS)
    g["K"] = g["k"].map(lambda k: "full" if k is None or pd.isna(k) else str(int(k)))
    g["method"] = g["method_label"].map(method_name)
    t = g.pivot_table(index=["task", "K", "method"], columns="component", values="gate", aggfunc="mean")
    t = t[[c for c in GATE_COMPONENTS if c in t.columns]].round(3)
    t.columns = [GATE_COMPONENTS[c].replace("\n", " ") for c in t.columns]
    t["runs"] = g.groupby(["task", "K", "method"])[["seed", "data_seed"]].apply(lambda d: len(d.drop_duplicates()))
    t.index = t.index.set_levels([task_name(x) for x in t.index.levels[0]], level=0)
    order = {"full": 10**9}  # K in numeric order (100, 500, 1000, full), not as strings
    t = t.sort_index(level="K", key=lambda ks: ks.map(lambda k: order.get(k) or int(k))).sort_index(
        level="task", sort_remaining=False)
    r.table("means", t, "UniPELT mean gate values (over layers, the GLUE dev set and runs)", "UniPELT gate means "
            "per task, K and component", frame=rep.runs_frame(results), paper_backbone="bert-base",
            notes=["Gate values in (0, 1), averaged over the reported set, then layers; within an example over the "
                   "positions the run's `gate_average` names (all: every position, padding included, as the "
                   "authors' code; masked: the non-padding ones)."])
    r.figure("heatmap", rep.gate_heatmap, "UniPELT gate values per layer and component, per task and K", results,
             tasks=tasks)
    return r


# ---- 08 efficiency --------------------------------------------------------------------------------------------

def efficiency_report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """UniPELT Table 4's measures on this machine: trainable %, training and inference time relative to full FT."""
    r = _start("efficiency", profile, reports_dir, results)
    frame = rep.runs_frame(results)
    rows = rep.efficiency_rows(frame, methods=method_order(frame["method_label"]))
    wide = rows.pivot_table(index="method_label", columns="source", values=["trainable_pct", "train_time_vs_ft",
                                                                             "inference_time_vs_ft"], aggfunc="first")
    out = pd.DataFrame(index=[method_name(m) for m in method_order(rows["method_label"])])
    out.index.name = "method"
    for measure, name, d in (("trainable_pct", "inference params %", 3), ("train_time_vs_ft", "training time × FT", 2),
                             ("inference_time_vs_ft", "inference time × FT", 2)):
        for src in ("ours", "paper"):
            col = (measure, src)
            vals = [wide[col].get(m) if col in wide.columns else None for m in method_order(rows["method_label"])]
            out[f"{name} ({src})"] = [MISSING if v is None or pd.isna(v) else f"{v:.{d}f}" for v in vals]
    n = rows[rows["source"] == "ours"].set_index("method_label")["n_runs"]
    out["runs"] = [int(n[m]) if m in n.index else 0 for m in method_order(rows["method_label"])]
    devices = sorted({str(x.get("device")) for x in results})
    notes = [f"Measured on {', '.join(devices)} from the result files: times per example relative to full "
             "fine-tuning on the same task, seed, backbone and profile (1 / the ratio of train_examples_per_s and "
             "of eval_examples_per_s).",
             "Training throughput is the trainer's (in-training evaluation and checkpointing, where the budget has "
             "them, count as training time); other jobs sharing the machine's cores add noise.",
             "inference params %: parameters the method adds to the inference form (AdaMix merged) over the "
             "backbone's; paper: UniPELT Table 4's trainable % (BERT-base).",
             "Figure: the time ratios carry their 95% Student-t interval over the matched runs."]
    r.table("results", out, "Efficiency relative to full fine-tuning", "Trainable parameters, training and "
            "inference time relative to full fine-tuning, ours beside UniPELT Table 4", frame=frame,
            paper_backbone="bert-base", notes=notes)
    if len(rows):
        r.figure("bars", rep.efficiency_bars, "Efficiency relative to full fine-tuning, ours beside UniPELT Table 4",
                 rows, caption_from=frame)
    return r
