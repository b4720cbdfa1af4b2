"""02 low resource: UniPELT and its components at K training examples (UniPELT Table 1), the "upper bound"
comparison and the claim that UniPELT (APL) at K=100 is at least its best component."""
from __future__ import annotations

import pandas as pd

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.frame import flagged
from ..reporting.names import decimals, method_name, method_order, task_name
from ..reporting.tables import MISSING, delta_cell, format_ours, ours_note, single_runs, status_notes, status_of
from .common import GLUE_TASKS, LOWRES_SEEDS, SMOKE
from .grids import build, k_points
from .reports import Report, keys_in_order, metric_note, start, unipelt_metric

NAME = "low_resource"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "methods", "k", "data_seeds")
LABELS = ("full", "bitfit", "pfeiffer", "prefix", "lora", "unipelt-AP", "unipelt-APL")
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("rte",), methods=("lora", "unipelt-APL"), k=(100,), data_seeds=(111,), seeds=(42,),
                  budget=SMOKE),
    "cpu": dict(tasks=("sst2",), methods=LABELS, k=(100,), data_seeds=LOWRES_SEEDS, seeds=(42,)),
    "paper": dict(tasks=GLUE_TASKS, methods=LABELS, k=(100, 500, 1000), data_seeds=LOWRES_SEEDS, seeds=(42,)),
}
points = k_points


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


COMPONENTS = ("pfeiffer", "prefix", "lora")


def _upper_bound(frame: pd.DataFrame, tasks, ks) -> tuple[pd.DataFrame, list[str]]:
    """Per K and task one row per method (Adapter, Prefix-tuning, LoRA, UniPELT (AP), UniPELT (APL)): ours | paper |
    Δ as in the K tables, then each against the best single component: ours − best (ours), paper − best (paper), so
    the best component's own row reads +0.00, and a status column (runs collapsed or at chance). A cell with such
    runs is neither a candidate for the best nor compared with it. Returns the table and notes naming the best
    components."""
    labels = list(COMPONENTS) + ["unipelt-AP", "unipelt-APL"]
    if not ks:
        return pd.DataFrame(), []
    nums = pd.concat([rep.comparison_numbers(frame, paper="unipelt", table="low-resource", tasks=tasks, k=k,
                                             methods=labels, metric_for=unipelt_metric).assign(K=k) for k in ks],
                     ignore_index=True)
    single = single_runs(nums["n"])
    body, index, best_notes = [], [], []
    for (k, task), n in nums.groupby(["K", "task"], sort=False):
        n = n.set_index("method_label")
        comp = n.loc[list(COMPONENTS)]
        ours = comp[(comp["n"] > 0) & (comp["collapsed"] == 0) & (comp["at_chance"] == 0)]["mean"]
        papers = comp["paper"].dropna()
        best, pbest = (ours.idxmax() if len(ours) else None), (papers.idxmax() if len(papers) else None)
        best_notes.append(f"K = {k}, {task_name(task)}: ours {method_name(best) if best else MISSING}, paper "
                          f"{method_name(pbest) if pbest else MISSING}")
        for m in labels:
            x = n.loc[m]
            d, status = decimals(x["metric"]), status_of(x)
            index.append((k, task_name(task), method_name(m)))
            body.append({
                "ours": format_ours(x["n"], x["mean"], x["std"], x["ci_lo"], x["ci_hi"], x["metric"], single=single),
                "paper": MISSING if pd.isna(x["paper"]) else f"{x['paper']:.{d}f}",
                "Δ": delta_cell(x["delta"], x["paper"], x["metric"], status),
                "ours − best component": (delta_cell(x["mean"] - ours[best], ours[best], x["metric"], status)
                                          if x["n"] and best else MISSING),
                "paper − best component": (delta_cell(x["paper"] - papers[pbest], papers[pbest], x["metric"])
                                           if pbest else MISSING),
                "status": x["status"]})
    out = pd.DataFrame(body, index=pd.MultiIndex.from_tuples(index, names=["K", "task", "method"]))
    statuses = [status_of(x) for _, x in nums.iterrows()]
    if not any(flagged(x) for x in statuses):  # the status column only where some cell's runs learned nothing
        out = out.drop(columns="status")
    notes = [f"{ours_note(single)}; Δ = ours mean − paper; – = no run or no paper cell.",
             "Best component: the highest mean of " + ", ".join(method_name(c) for c in COMPONENTS)
             + " whose runs all learned (a component with a run that collapsed or is at chance is not a candidate, "
             "as its cell gets no Δ; the claim check pairs every run, these included): " + "; ".join(best_notes)
             + ".",
             *status_notes(statuses)]
    return out, notes


def report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """UniPELT Table 1 per K, the "upper bound" comparison and the claim UniPELT (APL) at K=100 ≥ its components."""
    r = start(NAME, profile, reports_dir, results, grid)
    frame = rep.runs_frame(results)
    tasks, methods = keys_in_order(frame["task"], GLUE_TASKS), method_order(frame["method_label"])
    ks = sorted(int(k) for k in frame["k"].dropna().unique())
    for k in ks:
        t = rep.comparison_table(frame, paper="unipelt", table="low-resource", tasks=tasks, methods=methods, k=k,
                                 metric_for=unipelt_metric)
        r.table(f"k{k}", t, f"UniPELT Table 1, K = {k}, GLUE dev", f"Low-resource results at K={k} beside UniPELT "
                f"Table 1", frame=frame[frame["k"].eq(k).fillna(False)])
    ub, ub_notes = _upper_bound(frame, tasks, ks)
    ub_frame = rep.select(frame, method_label=list(COMPONENTS) + ["unipelt-AP", "unipelt-APL"])
    r.table("upper_bound", ub, "UniPELT vs the best single component per task", "UniPELT and its components beside "
            "the best of adapter, prefix-tuning and LoRA per task and K, ours and the paper's", frame=ub_frame,
            paper_backbone="bert-base", notes=[*ub_notes, metric_note(tasks, unipelt_metric)])
    present = [c for c in COMPONENTS if c in methods]
    checks = []
    if 100 in ks and "unipelt-APL" in methods and present:
        checks.append(rep.claim_check(rep.select(frame, k=100), "unipelt-APL", present, unipelt_metric, tasks,
                                      at_least=True, claim="UniPELT (APL) at K=100 ≥ best of its components ("
                                      + ", ".join(method_name(c) for c in present) + ")"))
    else:
        r.notes.append("Claim not checked: it needs K=100 runs of UniPELT (APL) and of at least one component.")
    r.claim_file(checks, "UniPELT low-resource claims")
    return r
