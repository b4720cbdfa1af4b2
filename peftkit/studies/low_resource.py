"""02 low resource: UniPELT and its components at K training examples (UniPELT Table 1), the "upper bound"
comparison and the claim that UniPELT (APL) at K=100 is at least its best component."""
from __future__ import annotations

import pandas as pd

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.names import method_name, method_order, task_key, task_name
from ..reporting.tables import MISSING
from .common import CPU_EPOCH_FRACTION, GLUE_TASKS, LOWRES_SEEDS, SMOKE
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
    "cpu": dict(tasks=("sst2",), methods=LABELS, k=(100,), data_seeds=LOWRES_SEEDS, seeds=(42,),
                budget=dict(epoch_fraction=CPU_EPOCH_FRACTION)),
    "paper": dict(tasks=GLUE_TASKS, methods=LABELS, k=(100, 500, 1000), data_seeds=LOWRES_SEEDS, seeds=(42,)),
}
points = k_points


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


COMPONENTS = ("pfeiffer", "prefix", "lora")


def _upper_bound(frame: pd.DataFrame, tasks, ks) -> pd.DataFrame:
    """Per task and K: the best single component (adapter, prefix, LoRA) beside UniPELT, ours and the paper's."""
    rows = []
    for k in ks:
        nums = rep.comparison_numbers(frame, paper="unipelt", table="low-resource", tasks=tasks, k=k,
                                      methods=list(COMPONENTS) + ["unipelt-AP", "unipelt-APL"],
                                      metric_for=unipelt_metric)
        for t in tasks:
            n = nums[nums["task"] == task_key(t)].set_index("method_label")
            comp = n.loc[list(COMPONENTS)]
            ours = comp[comp["n"] > 0]["mean"]
            papers = comp["paper"].dropna()
            best, pbest = (ours.idxmax() if len(ours) else None), (papers.idxmax() if len(papers) else None)
            row = {"K": k, "task": task_name(t),
                   "best component (ours)": f"{method_name(best)} {ours[best]:.2f}" if best else MISSING,
                   "best component (paper)": f"{method_name(pbest)} {papers[pbest]:.2f}" if pbest else MISSING}
            for u in ("unipelt-AP", "unipelt-APL"):
                x = n.loc[u]
                row[f"{method_name(u)} (ours)"] = f"{x['mean']:.2f}" if x["n"] else MISSING
                row[f"{method_name(u)} − best (ours)"] = (f"{x['mean'] - ours[best]:+.2f}" if x["n"] and best
                                                          else MISSING)
                row[f"{method_name(u)} (paper)"] = MISSING if pd.isna(x["paper"]) else f"{x['paper']:.2f}"
                row[f"{method_name(u)} − best (paper)"] = (f"{x['paper'] - papers[pbest]:+.2f}"
                                                           if pbest and not pd.isna(x["paper"]) else MISSING)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["K", "task"]) if rows else pd.DataFrame()


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
    ub = _upper_bound(frame, tasks, ks)
    ub_frame = rep.select(frame, method_label=list(COMPONENTS) + ["unipelt-AP", "unipelt-APL"])
    r.table("upper_bound", ub, "UniPELT vs the best single component per task", "UniPELT against the best of "
            "adapter, prefix-tuning and LoRA per task and K, ours and the paper's", frame=ub_frame,
            paper_backbone="bert-base", notes=[metric_note(tasks, unipelt_metric),
                                               "Best component: the highest mean of Adapter, Prefix-tuning, LoRA."])
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
