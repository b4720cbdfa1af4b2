"""DART metrics as the LoRA/AdaMix evaluation computed them, or raw-text sacrebleu.

Inputs: ``predictions`` (list[str], raw generated text) and ``references`` (list[list[str]], all references of
each source, raw). Default ``scoring="lora"``: the authors' pipeline (``gpt2_decode.py --tokenize --lower
--ref_num 6`` then ``eval.py``; details in peftkit/metrics/_lora_eval.py): ``bleu`` (multi-bleu-detok, as a
fraction: papers print it x100, e.g. 55.37), ``meteor`` (METEOR 1.5 ``-norm``, fraction, needs Java unless
``java_metrics=False``) and ``ter`` (pyter, per-output minimum over references, averaged; papers print the
fraction, e.g. 0.39). ``ref_num`` (6) caps / pads the references. (``seen`` is for WebNLG; DART has no seen/unseen
split.) ``scoring="sacrebleu"``: sacrebleu BLEU and TER on the raw text (``tokenize``,
``lowercase``, ``ter_case_sensitive``, ``ter_variant`` "corpus" | "sentence_min", ``return_signature``).
"""

import datasets
import evaluate

from peftkit.metrics._nlg import webnlg_dart_scores


class Dart(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="DART: BLEU, METEOR, TER as the LoRA/AdaMix evaluation computed them.",
            citation="",
            inputs_description="predictions: list of str; references: list of list of str.",
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, scoring="lora", seen=None, ref_num=6, java_metrics=True,
                 **sacrebleu_options):
        return webnlg_dart_scores(predictions, references, scoring=scoring, seen=seen, ref_num=ref_num,
                                  java_metrics=java_metrics, **sacrebleu_options)
