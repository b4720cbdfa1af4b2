"""WebNLG (2017 challenge) metrics: corpus BLEU and TER with sacrebleu, both as fractions (0-1).

Inputs: ``predictions`` (list[str]) and ``references`` (list[list[str]], a variable
number of references per source; missing ones are padded with None, which sacrebleu drops).
Outputs: ``bleu`` = sacrebleu corpus BLEU / 100 (13a tokenisation, case-sensitive; papers
print it x100, e.g. 55.37) and ``ter`` = sacrebleu TER / 100 (papers print the fraction,
e.g. 0.39). Options: ``ter_variant="sentence_min"`` averages the per-output minimum TER over
references (the GenerationEval averaging behind the LoRA/AdaMix numbers); ``tokenize``,
``lowercase`` (BLEU), ``ter_case_sensitive``; ``return_signature=True`` adds sacrebleu
signature strings.
"""

import datasets
import evaluate

from peftkit.metrics._nlg import sacrebleu_scores


class WebNLG(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="WebNLG (2017 challenge): sacrebleu BLEU and TER as fractions.",
            citation="",
            inputs_description="predictions: list of str; references: list of list of str.",
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, tokenize="13a", lowercase=False,
                 ter_case_sensitive=False, ter_variant="corpus", return_signature=False):
        return sacrebleu_scores(
            predictions, references, tokenize=tokenize, lowercase=lowercase,
            ter_case_sensitive=ter_case_sensitive, ter_variant=ter_variant,
            return_signature=return_signature)
