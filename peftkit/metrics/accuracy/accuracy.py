"""Accuracy: fraction of predictions equal to the reference label (0-1)."""

import datasets
import evaluate

from peftkit.metrics._classification import accuracy


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy: fraction of predictions equal to the reference label (0-1).",
            citation="",
            inputs_description="predictions, references: 1-D sequences of the same length.",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"accuracy": accuracy(predictions, references)}
