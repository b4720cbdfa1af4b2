"""F1 (scikit-learn f1_score, binary with positive class 1 by default; 0-1)."""

import datasets
import evaluate

from peftkit.metrics._classification import f1


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 (scikit-learn f1_score, binary with positive class 1 by default; 0-1).",
            citation="",
            inputs_description="predictions, references: 1-D sequences of the same length.",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="binary", pos_label=1):
        return {"f1": f1(predictions, references, average=average, pos_label=pos_label)}
