"""01 GLUE main: every method on the GLUE tasks, beside AdaMix's BERT-base GLUE table and UniPELT's Table 3."""
from __future__ import annotations

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.names import method_name, method_order, task_name
from .common import ALL_GLUE_METHODS, CPU_DRAWS, FULL_DATA, GLUE_NOT_RUN, GLUE_TASKS, SEEDS3, SMOKE
from .grids import build, k_points
from .reports import Report, adamix_metric, keys_in_order, start, unipelt_metric

NAME = "glue_main"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "methods", "k", "data_seeds")
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("rte",), methods=("lora", "adamix-adapter"), **FULL_DATA, seeds=(42,), budget=SMOKE),
    "cpu": dict(tasks=("sst2",), methods=ALL_GLUE_METHODS, **CPU_DRAWS),
    "paper": dict(tasks=GLUE_TASKS, methods=ALL_GLUE_METHODS, **FULL_DATA, seeds=SEEDS3),
}
points = k_points


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


def report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """Full-data runs (the paper profile): ours beside AdaMix's BERT-base GLUE table and UniPELT's full-data table
    (Table 3). Low-resource runs (the cpu profile, K examples per data seed): ours beside UniPELT's Table 1 at the
    same K, cell by cell; AdaMix published no number at any K, so its rows are read against the baselines of the same
    table."""
    r = start(NAME, profile, reports_dir, results, grid)
    frame = rep.runs_frame(results)
    tasks, methods = keys_in_order(frame["task"], GLUE_TASKS), method_order(frame["method_label"])
    r.notes = [f"{task_name(t)}: not run, {why}." for t, why in GLUE_NOT_RUN.items()]
    full = frame[frame["k"].isna()]
    if len(full):
        for name, paper, table, bb, metric_for, source in (
                ("vs_adamix", "adamix", "glue", "bert-base", adamix_metric, "AdaMix's BERT-base GLUE table"),
                ("vs_unipelt", "unipelt", "full", None, unipelt_metric, "UniPELT Table 3 (full data)")):
            t = rep.comparison_table(full, paper=paper, table=table, tasks=tasks, methods=methods,
                                     metric_for=metric_for, backbone=bb)
            r.table(name, t, f"GLUE dev, ours vs {source}", f"GLUE main table beside {source}", notes=r.notes,
                    frame=full)
    adamix = [m for m in methods if m.startswith("adamix")]
    for k in sorted(int(k) for k in frame["k"].dropna().unique()):
        at_k = frame[frame["k"].eq(k).fillna(False)]
        t = rep.comparison_table(at_k, paper="unipelt", table="low-resource", tasks=tasks, methods=methods, k=k,
                                 metric_for=unipelt_metric)
        notes = r.notes + ([f"{', '.join(method_name(m) for m in adamix)}: AdaMix published no number at K = {k} "
                            "(its GLUE tables use the full training sets), so these rows have no paper cell; read "
                            "them against the baselines of the same table, trained on the same K examples per data "
                            "seed."] if adamix else [])
        r.table(f"vs_unipelt_k{k}", t, f"GLUE dev, K = {k}, ours vs UniPELT Table 1",
                f"GLUE main table at K = {k} training examples beside UniPELT Table 1 (the same K)", notes=notes,
                frame=at_k)
    return r
