"""Pearson correlation (scipy); nan when either side is constant."""

import datasets
import evaluate

from peftkit.metrics._classification import pearson


class Pearsonr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Pearson correlation (scipy); nan when either side is constant.",
            citation="",
            inputs_description="predictions, references: 1-D sequences of the same length.",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references, return_pvalue=False):
        r, p = pearson(predictions, references, return_pvalue=True)
        return {"pearsonr": r, "p-value": p} if return_pvalue else {"pearsonr": r}
