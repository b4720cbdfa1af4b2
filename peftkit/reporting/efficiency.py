"""Efficiency rows (UniPELT Table 4's measures) from our runs and inference timing, beside the paper's."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .frame import RUN_KEYS
from .names import method_key, method_name, method_order
from .paper import paper_value

MEASURES = ("trainable_pct", "train_time_vs_ft", "inference_time_vs_ft")
COLUMNS = ["method_label", "source", "trainable_pct", "train_time_vs_ft", "train_time_vs_ft_lo", "train_time_vs_ft_hi",
           "train_n", "train_spread_flag", "inference_time_vs_ft", "inference_time_vs_ft_lo",
           "inference_time_vs_ft_hi", "inference_within_aa", "n_runs"]


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run (the frame has one per metric)."""
    runs = frame[frame["mode"] == "reported"] if "mode" in frame.columns else frame
    runs = runs.drop_duplicates("run_id" if runs["run_id"].notna().all() else "path")
    keys = runs[RUN_KEYS].astype(object)
    return runs.assign(_key=keys.where(keys.notna(), "<none>").astype(str).agg("|".join, axis=1))


def _train_ratios(mine: pd.DataFrame, ref: pd.Series) -> np.ndarray:
    """Per matched run (same task, K, seeds, backbone, profile; ``_key``): the reference's training throughput
    (``ref``, by ``_key``) over the run's, i.e. training time per example relative to the reference."""
    matched = mine.merge(ref.rename("_ref"), left_on="_key", right_index=True, how="inner")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (matched["_ref"] / matched["train_examples_per_s"]).replace(np.inf, np.nan)
    return r.dropna().to_numpy(float)


def efficiency_rows(frame: pd.DataFrame, *, methods: Sequence[str] | None = None, reference: str = "full",
                    paper: bool = True, timing: dict | None = None) -> pd.DataFrame:
    """Per method (``source`` "ours"): inference parameters % (inference-form parameters over the backbone's),
    training time relative to ``reference`` (full FT) from the runs' throughput, per matched run (same task, K,
    seed, backbone, profile): the median over them (``train_time_vs_ft``), their range (``_lo`` / ``_hi``), their
    number (``train_n``) and ``train_spread_flag`` (n ≥ 2 and the range is at least the median's distance from 1:
    the seeds do not resolve the difference); and, from ``timing`` (:func:`peftkit.studies.efficiency.
    time_inference`), inference time relative to full FT: the median per-round ratio with its quartiles
    (``inference_time_vs_ft``, ``_lo`` / ``_hi``) and ``inference_within_aa`` (inside the A/A band); NaN without
    ``timing``. ``timing``'s A/A control is one more row (``source`` "aa", method_label ``reference``). With
    ``paper``, the rows of UniPELT Table 4 for the same methods (``source`` "paper")."""
    runs = _runs(frame)
    labels = method_order(runs["method_label"]) if methods is None else [method_key(m) for m in methods]
    ref = runs[runs["method_label"] == reference].groupby("_key")["train_examples_per_s"].mean()
    timed = {x["method_label"]: x for x in (timing or {}).get("rows", []) if not x.get("aa")}
    rows = []
    for label in labels:
        mine = runs[runs["method_label"] == label]
        if mine.empty:
            continue
        train = _train_ratios(mine, ref)
        t = timed.get(label)
        flag = bool(len(train) >= 2 and label != reference
                    and train.max() - train.min() >= abs(float(np.median(train)) - 1.0))
        rows.append({"method_label": label, "source": "ours", "trainable_pct": mine["inference_pct"].mean(),
                     "train_time_vs_ft": float(np.median(train)) if len(train) else np.nan,
                     "train_time_vs_ft_lo": train.min() if len(train) else np.nan,
                     "train_time_vs_ft_hi": train.max() if len(train) else np.nan, "train_n": len(train),
                     "train_spread_flag": flag,
                     "inference_time_vs_ft": t["ratio"] if t else np.nan,
                     "inference_time_vs_ft_lo": t["q1"] if t else np.nan,
                     "inference_time_vs_ft_hi": t["q3"] if t else np.nan,
                     "inference_within_aa": t.get("within_aa") if t else None, "n_runs": len(mine)})
    aa = [x for x in (timing or {}).get("rows", []) if x.get("aa")]
    if aa:
        rows.append({"method_label": reference, "source": "aa", "inference_time_vs_ft": aa[0]["ratio"],
                     "inference_time_vs_ft_lo": aa[0]["q1"], "inference_time_vs_ft_hi": aa[0]["q3"], "n_runs": 1})
    if paper:
        for label in labels:
            values = {m: paper_value("unipelt", "efficiency", label, m) for m in MEASURES}
            if any(v is not None for v in values.values()):
                rows.append({"method_label": label, "source": "paper",
                             **{m: np.nan if v is None else v for m, v in values.items()}, "n_runs": np.nan})
    return pd.DataFrame(rows, columns=COLUMNS)


def training_spread(rows: pd.DataFrame) -> tuple[bool, str | None]:
    """Whether our training-time column resolves anything: (False, why) when every method measured on ≥ 2 seeds
    has ``train_spread_flag`` (its range across seeds is at least its difference from full FT); else (True, None)."""
    ours = rows[(rows["source"] == "ours") & (rows["method_label"] != "full") & (rows["train_n"] >= 2)]
    if len(ours) and ours["train_spread_flag"].astype(bool).all():
        return False, (f"for every method ({len(ours)}) the range of its per-seed ratios (max − min) is at least "
                       "its median's distance from 1, so the spread across seeds exceeds the differences the column "
                       "would report")
    return True, None


def efficiency_headlines(rows: pd.DataFrame) -> list[str]:
    """The closing finding's numbers of :func:`efficiency_rows` (ours): the range of each measure over the methods
    with the method at each end, and how many inference ratios lie within the A/A band."""
    ours = rows[(rows["source"] == "ours") & (rows["method_label"] != "full")].set_index("method_label")
    parts = []
    for col, what, fmt in (("trainable_pct", "inference parameters", "{:.3f}% of the backbone"),
                           ("train_time_vs_ft", "training time per example", "{:.2f}× full FT"),
                           ("inference_time_vs_ft", "inference time per batch", "{:.2f}× full FT")):
        x = ours[col].dropna()
        if x.empty:
            continue
        lo, hi = x.idxmin(), x.idxmax()
        text = (f"{what} {fmt.format(x[lo])} ({method_name(lo)})" if lo == hi else
                f"{what} from {fmt.format(x[lo])} ({method_name(lo)}) to {fmt.format(x[hi])} ({method_name(hi)})")
        if col == "inference_time_vs_ft" and ours["inference_within_aa"].notna().any():
            within = ours.loc[x.index, "inference_within_aa"].fillna(False).astype(bool)
            text += f", {int(within.sum())} of {len(x)} within the A/A noise band"
        parts.append(text)
    n = f"{len(ours)} method" + ("" if len(ours) == 1 else "s")
    return [f"*Efficiency (ours, {n} besides full FT)*: " + "; ".join(parts) + "."] if parts else []
