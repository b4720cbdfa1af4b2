"""05 bottleneck ablation: adapter vs AdaMix-adapter over the bottleneck dimension (table and curve)."""
from __future__ import annotations

import itertools
from typing import Iterable

import pandas as pd

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.names import method_name, method_order
from ..reporting.tables import MISSING
from .common import CPU_DRAWS, FULL_DATA, GLUE_TASKS, SEEDS3, SMOKE
from .grids import build, draws
from .reports import (Report, adamix_metric, keys_in_order, metric_note, no_paper_at_k, ours_table, paper_glue,
                      start)

NAME = "ablation_bottleneck"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "methods", "bottlenecks", "k", "data_seeds")
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("rte",), methods=("pfeiffer", "adamix-adapter"), bottlenecks=(48,), **FULL_DATA,
                  seeds=(42,), budget=SMOKE),
    "cpu": dict(tasks=("sst2",), methods=("pfeiffer", "adamix-adapter"), bottlenecks=(8, 16, 32, 48, 64),
                **CPU_DRAWS),
    "paper": dict(tasks=("sst2", "mrpc", "rte"), methods=("pfeiffer", "adamix-adapter"),
                  bottlenecks=(8, 16, 32, 48, 64), **FULL_DATA, seeds=SEEDS3),
}


def points(p: dict) -> Iterable[dict]:
    """Every task x method x bottleneck x (K, data seed, seed)."""
    for task, label, b in itertools.product(p["tasks"], p["methods"], p["bottlenecks"]):
        for d in draws(p):
            yield dict(task=task, label=label, options={"bottleneck": int(b)}, **d)


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


def report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """Adapter vs AdaMix-adapter over the bottleneck dimension: table and curve."""
    r = start(NAME, profile, reports_dir, results, grid)
    frame = rep.runs_frame(results)
    tasks, methods = keys_in_order(frame["task"], GLUE_TASKS), method_order(frame["method_label"])
    rows = [(f"{method_name(m)}, b={int(b)}", {"method_label": m, "bottleneck": int(b)})
            for m in methods for b in sorted(frame.loc[frame["method_label"] == m, "bottleneck"].dropna().unique())]
    at_k = no_paper_at_k(frame)
    t = ours_table(frame, rows, tasks, adamix_metric, paper=None if at_k else paper_glue,
                   index_name="method, bottleneck")
    params = {name: frame.loc[rep.select(frame, **w).index, "inference_params"].max() for name, w in rows}
    t.insert(0, "inference params", [MISSING if pd.isna(v) else f"{int(v):,}" for v in params.values()])
    notes = [metric_note(tasks, adamix_metric), at_k or "paper: AdaMix's BERT-base GLUE table, which uses b=48 only.",
             "Inference params: after merging (AdaMix averages its M adapters into one of the same size)."]
    r.table("results", t, "Bottleneck dimension ablation, GLUE dev", "Adapter and AdaMix-adapter over the "
            "bottleneck dimension", frame=frame, paper_backbone="bert-base", notes=notes)
    r.figure("curve", rep.bottleneck_curve, "Adapter vs AdaMix-adapter over the bottleneck dimension (mean, 95% CI)",
             frame, tasks=tasks, metric=adamix_metric, methods=methods)
    return r
