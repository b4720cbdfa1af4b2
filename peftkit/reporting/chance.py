"""At chance: is a run's score distinguishable from what a model that learned nothing scores on the same
evaluation set? A one-sided test at level :data:`ALPHA` (5%) of the score against that reference, per metric:

- **accuracy**: the exact binomial test of the number of correct predictions (accuracy × n, n the evaluation set's
  rows) against the majority-class rate p0 of that set: at chance when P(X ≥ correct | n, p0) ≥ 5%, i.e. the
  score is not significantly above always predicting the majority class. On SST-2's 872 dev sentences (p0 =
  50.92%) a run needs about 53.8% to be above chance; on RTE's 277 pairs (p0 = 52.71%) about 58.1%.
- **F1** (MRPC, QQP): those tasks also report accuracy, and the F1 of a run is judged by the accuracy of the same
  evaluation (the binomial test above). Its reference line is the F1 of the majority-class predictor: 2q / (1 + q)
  when the positive class (label 1, q its rate) is the majority, else 0.
- **Matthews correlation** (CoLA): a model that learned nothing scores 0 whatever it predicts. Under independence
  of predictions and labels √n · MCC is approximately standard normal (MCC is the φ coefficient and n · φ² the
  χ² statistic of the 2 × 2 table), so a run is at chance when √n · MCC < z(0.95) = 1.645: on CoLA's 1,043 dev
  sentences an MCC below 5.09 (in the papers' percent units).
- **Pearson / Spearman** (STS-B): the reference is 0; at chance when Fisher's z, atanh(r) · √(n − 3), is below
  1.645 (the usual normal approximation of a correlation's null distribution).
- Generation metrics (BLEU, ...) have no such reference: the collapse rule (:func:`.frame.collapse_reason`)
  flags generators that ignore their input.

The majority-class rate needs the evaluation set's label counts, which a result file does not hold: they ship in
``eval_sets.csv`` (measured from the shared data by :func:`measure_eval_sets`; a test checks the file against the
data), keyed by task, split and row count, and checked against the result's ``content_sha256`` when it has one. An
evaluation set that is not in the file (a subset cut by ``max_eval``, a task the shared data lacks) leaves
accuracy and F1 unjudged (None), never "at chance" by guess. Matthews and correlations need only n, which every
result holds (``data.eval.rows``).
"""
from __future__ import annotations

import functools
import io
import math
from importlib import resources

import pandas as pd

from .names import task_key

ALPHA = 0.05
Z_095 = 1.6448536269514722  # the standard normal's 95% quantile (one-sided 5%)
EVAL_SETS_FILE = "eval_sets.csv"
EVAL_SET_COLUMNS = ["task", "split", "rows", "label_counts", "content_sha256"]
#: the evaluation sets eval_sets.csv holds: GLUE dev sets (the GLUE and low-resource protocols score on them) and
#: the LM-BFF test sets (few-shot), as (kind, task, split)
MEASURED = [("glue", t, "dev") for t in ("cola", "sst2", "mrpc", "qnli", "rte")] + [
    ("fewshot", t, "test") for t in ("sst-2", "sst-5", "mr", "cr", "mpqa", "subj", "trec", "cola", "mrpc", "qnli",
                                     "rte")]
CORRELATIONS = ("pearson", "spearmanr")


@functools.cache
def eval_sets() -> pd.DataFrame:
    """The shipped label counts (``eval_sets.csv``): task (canonical key), split, rows, label_counts ("428 444":
    the count of label 0, 1, ... in order), content_sha256 (of the set, see :func:`peftkit.data.split_identity`)."""
    text = resources.files(__package__).joinpath(EVAL_SETS_FILE).read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text), dtype={"label_counts": str, "content_sha256": str})


def eval_set(task, split, rows, content_sha256: str | None = None) -> dict | None:
    """{"n", "counts", "majority" (the majority-class rate), "positive" (label 1's rate)} of an evaluation set, or
    None when ``eval_sets.csv`` does not hold it (or holds other content under the same task, split and size)."""
    if task is None or rows is None:
        return None
    t = eval_sets()
    hit = t[(t["task"] == task_key(task)) & (t["split"] == str(split)) & (t["rows"] == int(rows))]
    if hit.empty:
        return None
    row = hit.iloc[0]
    if content_sha256 and row["content_sha256"] != content_sha256:
        return None
    counts = [int(c) for c in str(row["label_counts"]).split()]
    n = sum(counts)
    return {"n": n, "counts": counts, "majority": max(counts) / n, "positive": counts[1] / n if len(counts) > 1
            else float("nan")}


def result_eval_set(result: dict) -> tuple[int | None, dict | None]:
    """(n, :func:`eval_set`) of the set a result's ``best_metrics`` were scored on (``data.eval``)."""
    split = ((result.get("data") or {}).get("eval") or {})
    n = split.get("rows")
    info = eval_set(split.get("task") or result.get("task"), split.get("split"), n, split.get("content_sha256"))
    return (None if n is None else int(n)), info


def chance_score(metric: str, info: dict | None) -> float | None:
    """The score of a model that learned nothing, in the papers' units (percent): accuracy: the majority-class
    rate; F1: the majority-class predictor's F1; Matthews, Pearson, Spearman: 0. None where there is none (or the
    evaluation set's label counts are unknown)."""
    if metric in ("matthews_correlation", *CORRELATIONS):
        return 0.0
    if info is None:
        return None
    if metric == "accuracy":
        return 100.0 * info["majority"]
    if metric == "f1" and len(info["counts"]) == 2:
        q = info["positive"]
        return 100.0 * 2 * q / (1 + q) if info["counts"][1] >= info["counts"][0] else 0.0
    return None


def _normal_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def chance_p_value(metric: str, metrics: dict, n: int | None, info: dict | None) -> float | None:
    """The one-sided p-value of the score (``metrics``: one evaluation's metrics as fractions, as a result file
    holds them) against the chance reference of :func:`chance_score`; None where the rule does not apply."""
    value = metrics.get(metric)
    if value is None or not n:
        return None
    if metric == "matthews_correlation":
        return _normal_tail(float(value) * math.sqrt(n))
    if metric in CORRELATIONS:
        r = min(max(float(value), -0.999999), 0.999999)
        return _normal_tail(math.atanh(r) * math.sqrt(max(n - 3, 1)))
    if metric == "f1":
        return chance_p_value("accuracy", metrics, n, info) if "accuracy" in metrics else None
    if metric == "accuracy" and info is not None and info["n"] == n:
        from scipy.stats import binomtest

        correct = int(round(float(value) * n))
        return float(binomtest(correct, n, info["majority"], alternative="greater").pvalue)
    return None


def at_chance(metric: str, metrics: dict, n: int | None, info: dict | None) -> bool | None:
    """True when the score is not significantly above chance (p ≥ :data:`ALPHA`), False when it is, None where no
    rule applies (see the module docstring)."""
    p = chance_p_value(metric, metrics, n, info)
    return None if p is None else bool(p >= ALPHA)


CHANCE_NOTE = ("at chance: a run whose score is not significantly above that of a model that learned nothing, "
               "one-sided at 5% on the evaluation set's n examples (accuracy, and F1 by the same evaluation's "
               "accuracy: exact binomial test against the majority-class rate; Matthews corr.: √n · MCC below 1.645; "
               "Pearson / Spearman: Fisher's z below 1.645; see peftkit.reporting.chance)")


def measure_eval_sets(data_dir=None) -> pd.DataFrame:
    """The rows of ``eval_sets.csv``, measured from the data (``$PEFTKIT_DATA_DIR`` or ``data_dir``) through
    peftkit's data layer: every set of :data:`MEASURED` that the data holds."""
    from collections import Counter

    from ..data import DataError, load_glue, load_kshot, split_identity

    rows = []
    for kind, task, split in MEASURED:
        try:
            ds = load_glue(task, split, data_dir) if kind == "glue" else \
                load_kshot(task, split, k=16, seed=13, data_dir=data_dir)
        except (DataError, FileNotFoundError):
            continue
        counts = Counter(int(x) for x in ds["label"])
        rows.append({"task": task_key(task), "split": split, "rows": len(ds),
                     "label_counts": " ".join(str(counts.get(i, 0)) for i in range(max(counts) + 1)),
                     "content_sha256": split_identity(ds, task, split)["content_sha256"]})
    return pd.DataFrame(rows, columns=EVAL_SET_COLUMNS)


def chance_label(metric: str) -> str:
    """How a figure's legend names the reference line of :func:`chance_score`."""
    if metric == "accuracy":
        return "majority class (chance)"
    if metric == "f1":
        return "majority-class predictor's F1 (chance)"
    return "no skill (0, chance)"
