"""Matthews correlation (scikit-learn); 0.0 when either side has a single class."""

import datasets
import evaluate

from peftkit.metrics._classification import matthews_correlation


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Matthews correlation (scikit-learn); 0.0 when either side has a single class.",
            citation="",
            inputs_description="predictions, references: 1-D sequences of the same length.",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"matthews_correlation": matthews_correlation(predictions, references)}
