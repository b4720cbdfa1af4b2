"""GLUE (and LM-BFF few-shot) metrics, config name = task.

Outputs, as fractions: cola -> matthews_correlation; stsb -> pearson, spearmanr;
mrpc, qqp -> accuracy, f1 (binary, positive class 1); sst2, mnli, mnli_matched,
mnli_mismatched, qnli, rte, wnli, sst5, mr, cr, mpqa, subj, trec, snli -> accuracy.
Predictions and references are int labels (stsb: float scores). Constant stsb input
gives nan correlations; a single class gives matthews_correlation 0.0.
"""

import datasets
import evaluate

from peftkit.metrics._classification import glue_scores
from peftkit.metrics._glue_tasks import TASKS, normalize_task

_DESCRIPTION = "GLUE dev-set metrics as AdaMix and UniPELT report them (fractions, not percent)."
_KWARGS = """
Args:
    predictions: predicted labels (int), or scores (float) for stsb.
    references: gold labels (int), or scores (float) for stsb.
Returns:
    dict of floats; keys depend on the task (see peftkit.metrics.glue_metric_names).
"""


class Glue(evaluate.Metric):
    def _info(self):
        try:
            task = normalize_task(self.config_name)
        except ValueError:
            raise ValueError(
                f"glue config_name must be a task, one of {list(TASKS)}; got {self.config_name!r}"
            ) from None
        dtype = "float64" if task == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}
            ),
        )

    def _compute(self, predictions, references):
        return glue_scores(normalize_task(self.config_name), predictions, references)
