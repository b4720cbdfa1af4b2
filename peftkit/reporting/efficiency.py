"""Efficiency rows (UniPELT Table 4's measures) from our runs, beside the paper's."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .frame import RUN_KEYS
from .names import method_key, method_order
from .paper import paper_value
from .stats import t_interval

MEASURES = ("trainable_pct", "train_time_vs_ft", "inference_time_vs_ft")
INTERVALS = [f"{m}_{side}" for m in MEASURES[1:] for side in ("lo", "hi")]
COLUMNS = ["method_label", "source", *MEASURES, "n_runs", *INTERVALS]


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run (the frame has one per metric)."""
    runs = frame[frame["mode"] == "reported"] if "mode" in frame.columns else frame
    runs = runs.drop_duplicates("run_id" if runs["run_id"].notna().all() else "path")
    keys = runs[RUN_KEYS].astype(object)
    return runs.assign(_key=keys.where(keys.notna(), "<none>").astype(str).agg("|".join, axis=1))


def efficiency_rows(frame: pd.DataFrame, *, methods: Sequence[str] | None = None, reference: str = "full",
                    paper: bool = True) -> pd.DataFrame:
    """Per method: trainable % (inference-form parameters over the backbone's), and training / inference time
    per example relative to ``reference`` (full FT) on the same task, K, seeds, backbone and profile (1 / the ratio
    of ``train_examples_per_s`` and ``eval_examples_per_s``), averaged over such matched runs; with ``paper``
    the rows of UniPELT Table 4 for the same methods. Columns: method_label, source, trainable_pct,
    train_time_vs_ft, inference_time_vs_ft, n_runs, and the 95% Student-t interval of each time ratio over the
    matched runs (``train_time_vs_ft_lo`` / ``_hi``, ``inference_time_vs_ft_lo`` / ``_hi``; NaN below 2 runs)."""
    runs = _runs(frame)
    labels = method_order(runs["method_label"]) if methods is None else [method_key(m) for m in methods]
    ref = runs[runs["method_label"] == reference].groupby("_key")[["train_examples_per_s",
                                                                    "eval_examples_per_s"]].mean()
    rows = []
    for label in labels:
        mine = runs[runs["method_label"] == label]
        if mine.empty:
            continue
        matched = mine.merge(ref.add_suffix("_ref"), left_on="_key", right_index=True, how="inner")
        with np.errstate(divide="ignore", invalid="ignore"):
            train = (matched["train_examples_per_s_ref"] / matched["train_examples_per_s"]).replace(np.inf, np.nan)
            infer = (matched["eval_examples_per_s_ref"] / matched["eval_examples_per_s"]).replace(np.inf, np.nan)
        (t_lo, t_hi), (i_lo, i_hi) = t_interval(train.to_numpy(float)), t_interval(infer.to_numpy(float))
        rows.append({"method_label": label, "source": "ours", "trainable_pct": mine["inference_pct"].mean(),
                     "train_time_vs_ft": train.mean() if len(train) else np.nan,
                     "inference_time_vs_ft": infer.mean() if len(infer) else np.nan, "n_runs": len(mine),
                     "train_time_vs_ft_lo": t_lo, "train_time_vs_ft_hi": t_hi, "inference_time_vs_ft_lo": i_lo,
                     "inference_time_vs_ft_hi": i_hi})
    if paper:
        for label in labels:
            values = {m: paper_value("unipelt", "efficiency", label, m) for m in MEASURES}
            if any(v is not None for v in values.values()):
                rows.append({"method_label": label, "source": "paper",
                             **{m: np.nan if v is None else v for m, v in values.items()}, "n_runs": np.nan})
    return pd.DataFrame(rows, columns=COLUMNS)
