"""Seed statistics: mean, standard deviation and a Student-t 95% confidence interval of the mean.

At the seed counts the reports have (n = 3 to 5), a percentile bootstrap of the mean is little more than the
min-max range and far too narrow; the t interval, mean ± t(0.975, n - 1) · s / sqrt(n), is the honest one for a
few roughly normal values. One value gives no interval (NaN bounds). :func:`bootstrap_ci` stays available.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

N_RESAMPLES = 10_000
LEVEL = 0.95
SEED = 20220501  # fixed, so that a report rebuilt from the same result files prints the same intervals


def bootstrap_ci(values: Sequence[float], *, n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``.

    ``n_resamples`` resamples (with replacement, same size) drawn by ``numpy.random.default_rng(seed)``; the
    interval is the (1 - level)/2 and (1 + level)/2 quantiles of their means. One value (or identical values)
    gives the degenerate interval [value, value]; no values gives (nan, nan).
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(int(n_resamples), x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def t_interval(values: Sequence[float], *, level: float = LEVEL) -> tuple[float, float]:
    """Student-t confidence interval of the mean: mean ± t((1 + level) / 2, n - 1) · s / sqrt(n) (s: ddof = 1).
    Fewer than two values give (nan, nan): one run has no interval."""
    from scipy import stats

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    half = float(stats.t.ppf((1.0 + level) / 2.0, x.size - 1)) * float(x.std(ddof=1)) / float(np.sqrt(x.size))
    return float(x.mean() - half), float(x.mean() + half)


def describe_values(values: Sequence[float], *, level: float = LEVEL) -> dict:
    """n, mean, std (ddof=1; NaN for n = 1), ci_lo, ci_hi (Student-t, :func:`t_interval`; NaN for n = 1) and
    ``single`` (True when n = 1: no interval)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = int(x.size)
    lo, hi = t_interval(x, level=level)
    return {"n": n, "mean": float(x.mean()) if n else float("nan"),
            "std": float(x.std(ddof=1)) if n > 1 else float("nan"), "ci_lo": lo, "ci_hi": hi, "single": n == 1}


def summarise(frame: pd.DataFrame, by: Sequence[str] = ("task", "k", "method_label", "metric"),
              value: str = "value", *, level: float = LEVEL) -> pd.DataFrame:
    """Per group of ``by``: n, mean, std (ddof=1, NaN for n = 1), the Student-t 95% CI of the mean (ci_lo, ci_hi;
    NaN for n = 1) and ``single`` (n = 1: no interval).

    Missing keys (e.g. ``k`` of full-data runs) form their own group instead of being dropped.
    """
    by = list(by)
    missing = [c for c in by + [value] if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the frame; it has {list(frame.columns)}")
    rows = []
    for keys, group in frame.groupby(by, dropna=False, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        rows.append({**dict(zip(by, keys)), **describe_values(group[value].to_numpy(dtype=float), level=level)})
    out = pd.DataFrame(rows, columns=by + ["n", "mean", "std", "ci_lo", "ci_hi", "single"])
    return out


def paired_differences(a: pd.DataFrame, b: pd.DataFrame, keys: Sequence[str], value: str = "value") -> pd.DataFrame:
    """Rows of ``a`` and ``b`` matched on ``keys`` (each side averaged over duplicates): columns keys, a, b, diff."""
    keys = list(keys)

    def side(df, name):
        flat = df[keys + [value]].copy()
        for k in keys:  # a missing key (k of full-data runs, data_seed) still matches a missing key
            flat[k] = flat[k].astype(object).where(flat[k].notna(), "<none>")
        return flat.groupby(keys, sort=True)[value].mean().rename(name)

    joined = pd.concat([side(a, "a"), side(b, "b")], axis=1, join="inner").reset_index()
    joined["diff"] = joined["a"] - joined["b"]
    return joined
