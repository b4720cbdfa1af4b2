"""E2E NLG Challenge metrics, as the official scorer (tuetschek/e2e-metrics) computes them.

Inputs: ``predictions`` (list[str], one output per unique meaning representation) and
``references`` (list[list[str]], all human references of that MR; build them with
``peftkit.metrics.group_references``). Outputs, on the official script's scales:

- ``bleu``: corpus BLEU-4 as a fraction (the script prints e.g. 0.6619; papers show 66.19);
- ``nist``: corpus NIST-5, raw (e.g. 8.61);
- ``meteor``: METEOR 1.5 corpus score, fraction (e.g. 0.46);
- ``rouge_l``: mean ROUGE-L F (beta 1.2), fraction (e.g. 0.70);
- ``cider``: CIDEr-D, raw (e.g. 2.3), document frequencies from the references given.

BLEU/NIST: mteval-v13a tokenisation and case-insensitive matching; ``mteval="python"``
(default) reproduces ``measure_scores.py -p`` (metrics/pymteval.py, used for the LoRA and
AdaMix numbers), ``mteval="perl"`` the script's default mteval-v13a-sig.pl. METEOR, ROUGE-L
and CIDEr run pycocoevalcap after the Java PTB tokenizer (lower-cased, punctuation dropped),
as COCOEvalCap does; they need Java (RuntimeError if missing) unless ``java_metrics=False``,
which returns only bleu and nist. Details and known deviations: peftkit/metrics/_mteval.py
and peftkit/metrics/_coco.py.
"""

import datasets
import evaluate

from peftkit.metrics._nlg import e2e_scores

_KWARGS = """
Args:
    predictions: list of str, one per MR.
    references: list of list of str, all references of each MR.
    mteval: "python" (default, measure_scores.py -p) or "perl" (mteval-v13a-sig.pl).
    java_metrics: False to skip meteor, rouge_l and cider (no Java needed).
Returns:
    dict with bleu, nist, meteor, rouge_l, cider (floats).
"""


class E2E(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Official E2E NLG metrics: BLEU, NIST, METEOR, ROUGE-L, CIDEr.",
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, mteval="python", java_metrics=True):
        return e2e_scores(predictions, references, mteval=mteval, java_metrics=java_metrics)
