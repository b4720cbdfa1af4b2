"""07 UniPELT gates: UniPELT's mean gate values per layer, task and K (heat map and table)."""
from __future__ import annotations

import pandas as pd

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.findings import gate_sentences
from ..reporting.frame import run_status, status_text
from ..reporting.names import method_name, metric_name, task_name
from .common import GLUE_TASKS, LOWRES_SEEDS, SMOKE
from .grids import build, k_points
from .reports import Report, keys_in_order, start

NAME = "unipelt_gates"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "methods", "k", "data_seeds")
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("rte",), methods=("unipelt-APL",), k=(100,), data_seeds=(111,), seeds=(42,), budget=SMOKE),
    "cpu": dict(tasks=("sst2", "cola"), methods=("unipelt-APL",), k=(100, 500, 1000), data_seeds=(111, 222),
                seeds=(42,)),
    "paper": dict(tasks=GLUE_TASKS, methods=("unipelt-APL",), k=(100, 500, 1000, "full"), data_seeds=LOWRES_SEEDS,
                  seeds=(42,)),
}
points = k_points


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


def _k_label(k) -> str:
    return "full" if k is None or pd.isna(k) else str(int(k))


def _status(rows: pd.DataFrame) -> str:
    return status_text(run_status(rows))


def report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """UniPELT's mean gate values per layer, task and K (heatmap), and their averages over layers (table)."""
    from ..reporting.figures import GATE_COMPONENTS, gate_matrix
    r = start(NAME, profile, reports_dir, results, grid)
    g = gate_matrix(results)
    tasks = keys_in_order(g["task"], GLUE_TASKS)
    g["K"] = g["k"].map(_k_label)
    g["method"] = g["method_label"].map(method_name)
    t = g.pivot_table(index=["task", "K", "method"], columns="component", values="gate", aggfunc="mean")
    t = t[[c for c in GATE_COMPONENTS if c in t.columns]].apply(lambda col: col.map("{:.3f}".format))  # 0.520
    t.columns = [GATE_COMPONENTS[c].replace("\n", " ") for c in t.columns]
    t["runs"] = g.groupby(["task", "K", "method"])[["seed", "data_seed"]].apply(lambda d: len(d.drop_duplicates()))
    frame = rep.runs_frame(results)
    gated = {x["run_id"] for x in results if x.get("gates")}
    scores = frame[frame["run_id"].isin(gated) & (frame["metric"] != "predicted_classes")].assign(
        K=lambda d: d["k"].map(_k_label), method=lambda d: d["method_label"].map(method_name))
    by = scores.groupby(["task", "K", "method"])
    t["score"] = by.apply(lambda d: f"{metric_name(d['metric'].iloc[0])} {d['value'].mean():.2f}")  # scaled already
    t["status"] = by.apply(_status)
    t.index = t.index.set_levels([task_name(x) for x in t.index.levels[0]], level=0)
    order = {"full": 10**9}  # K in numeric order (100, 500, 1000, full), not as strings
    t = t.sort_index(level="K", key=lambda ks: ks.map(lambda k: order.get(k) or int(k))).sort_index(
        level="task", sort_remaining=False)
    r.table("means", t, "UniPELT mean gate values (over layers, the GLUE dev set and runs)", "UniPELT gate means "
            "per task, K and component", frame=frame, paper_backbone="bert-base",
            notes=["Gate values in (0, 1), averaged over the reported set, then layers; within an example over the "
                   "positions the run's `gate_average` names (all: every position, padding included, as the "
                   "authors' code; masked: the non-padding ones).",
                   "score: the runs' mean on the reported set; status: how many runs collapsed (one label for every "
                   "example) or are at chance (not significantly above the majority class, see the notes of the "
                   "score tables). Their gates are what those runs ended with, but say nothing about which "
                   "component helps."])
    r.headlines = gate_sentences(results)
    r.figure("heatmap", rep.gate_heatmap, "UniPELT gate values per layer and component, per task and K", results,
             tasks=tasks)
    return r
