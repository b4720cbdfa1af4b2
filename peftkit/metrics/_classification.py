"""Classification and correlation metrics shared by the ``glue`` and standalone modules.

All values are plain Python floats, fractions in [0, 1] (correlations in [-1, 1]).
Degenerate inputs: Matthews correlation is 0.0 when either side has a single class
(scikit-learn's convention); Pearson / Spearman are ``nan`` when either side is constant
(the correlation is undefined; scipy's ConstantInputWarning is silenced). F1 is 0.0 when
there are no positive predictions and no positive labels.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from peftkit.metrics._glue_tasks import glue_metric_names, normalize_task


def _pair(predictions, references, dtype=None):
    p = np.asarray(predictions, dtype=dtype)
    r = np.asarray(references, dtype=dtype)
    if p.ndim != 1 or r.ndim != 1:
        raise ValueError("predictions and references must be 1-D sequences")
    if len(p) != len(r):
        raise ValueError(
            f"Mismatch in the number of predictions ({len(p)}) and references ({len(r)})")
    if len(p) == 0:
        raise ValueError("predictions and references are empty")
    return p, r


def accuracy(predictions, references) -> float:
    """Fraction of exact matches."""
    p, r = _pair(predictions, references)
    return float(np.mean(p == r))


def f1(predictions, references, average: str = "binary", pos_label=1) -> float:
    """F1 as scikit-learn computes it (binary, positive class 1, by default)."""
    from sklearn.metrics import f1_score

    p, r = _pair(predictions, references)
    return float(f1_score(r, p, average=average, pos_label=pos_label, zero_division=0))


def matthews_correlation(predictions, references) -> float:
    """Matthews correlation coefficient (0.0 when either side has one class)."""
    from sklearn.metrics import matthews_corrcoef

    p, r = _pair(predictions, references)
    with warnings.catch_warnings():  # "A single label was found": the value is still 0.0
        warnings.simplefilter("ignore", UserWarning)
        return float(matthews_corrcoef(r, p))


def _corr(fn, predictions, references):
    p, r = _pair(predictions, references, dtype=np.float64)
    if len(p) < 2 or np.all(p == p[0]) or np.all(r == r[0]):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fn(p, r)
    return float(res[0]), float(res[1])


def pearson(predictions, references, return_pvalue: bool = False):
    """Pearson r (``nan`` for constant input); with *return_pvalue* a (r, p) tuple."""
    from scipy.stats import pearsonr

    value, pval = _corr(pearsonr, predictions, references)
    return (value, pval) if return_pvalue else value


def spearman(predictions, references, return_pvalue: bool = False):
    """Spearman rho (``nan`` for constant input); with *return_pvalue* a (rho, p) tuple."""
    from scipy.stats import spearmanr

    value, pval = _corr(spearmanr, predictions, references)
    return (value, pval) if return_pvalue else value


_FUNCS = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearman,
}


def glue_scores(task: str, predictions, references) -> dict:
    """Every metric of :func:`glue_metric_names` for *task*, as ``{name: float}``."""
    task = normalize_task(task)
    return {name: _FUNCS[name](predictions, references) for name in glue_metric_names(task)}
