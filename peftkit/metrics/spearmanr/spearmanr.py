"""Spearman rank correlation (scipy); nan when either side is constant."""

import datasets
import evaluate

from peftkit.metrics._classification import spearman


class Spearmanr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Spearman rank correlation (scipy); nan when either side is constant.",
            citation="",
            inputs_description="predictions, references: 1-D sequences of the same length.",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references, return_pvalue=False):
        r, p = spearman(predictions, references, return_pvalue=True)
        return {"spearmanr": r, "spearmanr_pvalue": p} if return_pvalue else {"spearmanr": r}
