"""08 efficiency: UniPELT Table 4's measures on this machine (trainable %, training and inference time relative to
full fine-tuning)."""
from __future__ import annotations

import pandas as pd

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.names import method_name, method_order
from ..reporting.tables import MISSING
from .common import ALL_GLUE_METHODS, SEEDS3, SMOKE
from .grids import build, seed_points
from .reports import Report, start

NAME = "efficiency"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "methods")
# Compared with UniPELT's Table 4: every method (AdaMix included) under UniPELT's protocol, so that all rows train
# at the same batch size. Only this study scores the final weights (eval_steps=0), since it measures time, not
# accuracy.
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("rte",), methods=("full", "lora"), seeds=(42,), budget=dict(protocol="unipelt-glue", **SMOKE)),
    "cpu": dict(tasks=("sst2",), methods=ALL_GLUE_METHODS, seeds=SEEDS3,
                budget=dict(max_train=1000, epochs=1, protocol="unipelt-glue", eval_steps=0)),
    "paper": dict(tasks=("sst2",), methods=ALL_GLUE_METHODS, seeds=(42,),
                  budget=dict(epochs=1, protocol="unipelt-glue")),
}
points = seed_points


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


def report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """UniPELT Table 4's measures on this machine: trainable %, training and inference time relative to full FT."""
    r = start(NAME, profile, reports_dir, results, grid)
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
