"""Reporting: tables, claim checks and figures as functions of the runs' ``result.json`` files only.

    from peftkit import reporting as rep
    frame = rep.runs_frame("runs/")                        # one row per run x metric, papers' units
    rep.summarise(frame, by=["task", "method_label", "metric"])
    t = rep.comparison_table(frame, paper="unipelt", table="low-resource", k=100, tasks=["sst2", "rte"],
                             methods=["pfeiffer", "unipelt-APL"], metric_for=lambda t: rep.paper_metric(t, "unipelt"))
    rep.write_table(t, "reports/tables/unipelt_k100", "UniPELT Table 1 (K=100), GLUE dev")
    rep.register_artifact("reports", "tables/unipelt_k100.md", "UniPELT Table 1 at K=100", "make reports")

The papers' numbers ship with the package (``paper_numbers.csv``); nothing here reads outside it at run time.
Figures need matplotlib and seaborn (the ``reports`` extra) and are imported on first use.
"""
from __future__ import annotations

from ..metrics._glue_tasks import paper_metric
from .claims import claim_check, claims_markdown
from .efficiency import efficiency_rows
from .frame import runs_frame, select
from .index import read_findings, read_index, register_artifact, register_finding, write_index
from .names import METHOD_LABELS, backbone_name, method_name, task_name
from .paper import method_rows, paper_cell, paper_numbers, paper_row, paper_value
from .stats import bootstrap_ci, summarise
from .tables import (comparison_numbers, comparison_table, merged_attrs, metrics_table, table_title, to_markdown,
                     write_table)

_FIGURES = ("bottleneck_curve", "strip_by_mode", "gate_heatmap", "efficiency_bars", "nlg_bars")


def __getattr__(name):  # figures import matplotlib/seaborn only when a figure is asked for
    if name in _FIGURES:
        from . import figures

        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["runs_frame", "select", "summarise", "bootstrap_ci", "paper_value", "paper_cell", "paper_row",
           "method_rows", "paper_numbers", "paper_metric", "comparison_numbers", "comparison_table", "write_table",
           "table_title", "to_markdown", "claim_check", "claims_markdown", "efficiency_rows", "register_artifact",
           "register_finding", "read_findings", "metrics_table", "merged_attrs",
           "write_index", "read_index", "METHOD_LABELS", "method_name", "task_name", "backbone_name", *_FIGURES]
