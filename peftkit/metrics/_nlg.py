"""NLG corpus scorers: E2E (official-script metrics) and WebNLG / DART (the authors' pipeline, or sacrebleu)."""

from __future__ import annotations

E2E_KEYS = ("bleu", "nist", "meteor", "rouge_l", "cider")


def check_corpus(predictions, references) -> tuple[list[str], list[list[str]]]:
    """Validate ``predictions: list[str]`` against ``references: list[list[str]]``.

    Raises ValueError naming both lengths when they differ, and when an entry of
    *references* is not a non-empty list of strings.
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"Mismatch in the number of predictions ({len(predictions)}) and "
            f"references ({len(references)}); references must hold one list of all "
            f"human references per prediction")
    if not predictions:
        raise ValueError("predictions and references are empty")
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise ValueError(f"predictions[{i}] must be a string, got {type(pred).__name__}")
        if isinstance(refs, str) or len(refs) == 0 or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{i}] must be a non-empty list of strings")
    return predictions, [list(r) for r in references]


def group_references(sources, references) -> tuple[list[str], list[list[str]]]:
    """Group references by identical source (MR), as the E2E scorer does.

    ``sources[i]`` is the MR of ``references[i]`` (one row per human reference, as in the E2E
    CSVs). Returns ``(unique_sources, grouped_references)`` in order of first appearance;
    score one prediction per unique source against ``grouped_references``.
    """
    sources, references = list(sources), list(references)
    if len(sources) != len(references):
        raise ValueError(
            f"Mismatch in the number of sources ({len(sources)}) and "
            f"references ({len(references)})")
    groups: dict[str, list[str]] = {}
    for src, ref in zip(sources, references):
        groups.setdefault(src, []).append(ref)
    return list(groups), list(groups.values())


def e2e_scores(predictions, references, mteval: str = "python",
               java_metrics: bool = True) -> dict:
    """E2E metrics for one prediction per MR and all its references.

    Returns ``bleu`` (fraction), ``nist`` (raw), ``meteor``, ``rouge_l`` (fractions) and
    ``cider`` (raw, CIDEr-D x10 scale). *mteval* picks the BLEU/NIST back end ("python" is
    ``measure_scores.py -p`` as used by LoRA/AdaMix, "perl" its default mteval-v13a-sig.pl).
    ``java_metrics=False`` skips METEOR, ROUGE-L and CIDEr (they need Java).
    """
    from peftkit.metrics import _mteval

    predictions, references = check_corpus(predictions, references)
    if java_metrics:
        from peftkit.metrics import _coco

        _coco.require_java()
    out = _mteval.bleu_nist(predictions, references, flavour=mteval)
    if java_metrics:
        out.update(_coco.coco_scores(predictions, references))
    return out


def pad_reference_streams(references: list[list[str]]) -> list[list]:
    """Transpose per-source reference lists into sacrebleu reference streams.

    Sources with fewer references than the maximum are padded with ``None``, which sacrebleu
    (2.x) drops from that segment; an empty string would instead count as a zero-length
    reference.
    """
    width = max(len(r) for r in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def sacrebleu_scores(predictions, references, tokenize: str = "13a", lowercase: bool = False,
                     ter_case_sensitive: bool = False, ter_variant: str = "corpus",
                     return_signature: bool = False) -> dict:
    """Corpus BLEU and TER with sacrebleu, both as fractions.

    ``bleu``: ``sacrebleu.corpus_bleu`` score / 100 (default tokenize "13a", case-sensitive,
    exp smoothing, closest reference length), multi-reference.
    ``ter``: sacrebleu TER / 100; with ``ter_variant="corpus"`` (default) total edits over the
    total average reference length, each output scored against its best reference. With
    ``ter_variant="sentence_min"``: mean over outputs of the minimum sentence TER over its
    references (the WebNLG GenerationEval averaging the LoRA/AdaMix numbers use; it runs pyter
    on NLTK-tokenised text, this uses sacrebleu's TER on whitespace tokens).
    """
    from sacrebleu.metrics import BLEU, TER

    predictions, references = check_corpus(predictions, references)
    if ter_variant not in ("corpus", "sentence_min"):
        raise ValueError(f"unknown ter_variant {ter_variant!r}; expected 'corpus' or 'sentence_min'")
    streams = pad_reference_streams(references)
    bleu = BLEU(tokenize=tokenize, lowercase=lowercase)
    ter = TER(case_sensitive=ter_case_sensitive)
    out = {"bleu": bleu.corpus_score(predictions, streams).score / 100.0}
    if ter_variant == "corpus":
        out["ter"] = ter.corpus_score(predictions, streams).score / 100.0
    else:
        per_sentence = []
        for pred, refs in zip(predictions, references):
            per_sentence.append(min(
                ter.sentence_score(pred, [r]).score / 100.0 if r.strip() else 1.0
                for r in refs))
        out["ter"] = sum(per_sentence) / len(per_sentence)
    if return_signature:
        out["bleu_signature"] = str(bleu.get_signature())
        if ter_variant == "corpus":
            out["ter_signature"] = str(ter.get_signature())
    return out


#: WebNLG / DART scoring variants: "lora" = gpt2_decode.py --tokenize --lower --ref_num 6 + eval.py (BLEU,
#: METEOR, TER; the LoRA/AdaMix numbers), "sacrebleu" = raw-text sacrebleu BLEU and TER.
SCORINGS = ("lora", "sacrebleu")
_SACREBLEU_DEFAULTS = {"tokenize": "13a", "lowercase": False, "ter_case_sensitive": False,
                       "ter_variant": "corpus", "return_signature": False}


def webnlg_dart_scores(predictions, references, scoring: str = "lora", seen=None, ref_num: int = 6,
                       java_metrics: bool = True, **sacrebleu_options) -> dict:
    """WebNLG / DART corpus scores under *scoring* ("lora" default, or "sacrebleu"; see :data:`SCORINGS`).

    "lora": ``bleu``, ``meteor``, ``ter`` (fractions) as :func:`peftkit.metrics._lora_eval.lora_scores`;
    ``ref_num`` is the reference cap, ``java_metrics=False`` skips METEOR. "sacrebleu": ``bleu`` and ``ter`` of
    :func:`sacrebleu_scores`, which takes the keyword options ``tokenize``, ``lowercase``,
    ``ter_case_sensitive``, ``ter_variant`` and ``return_signature`` (ValueError with "lora").
    *seen*: one bool per prediction (WebNLG: source category seen in training); adds every key again with the
    suffixes ``_seen`` and ``_unseen``, each scored on that part alone (as ``gpt2_decode.py --filter``).
    """
    from peftkit.metrics._lora_eval import lora_scores

    predictions, references = check_corpus(predictions, references)
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; expected one of {list(SCORINGS)}")
    unknown = sorted(set(sacrebleu_options) - set(_SACREBLEU_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; sacrebleu options are {list(_SACREBLEU_DEFAULTS)}")
    changed = sorted(k for k, v in sacrebleu_options.items() if v != _SACREBLEU_DEFAULTS[k])
    if scoring == "lora" and changed:
        raise ValueError(f"option(s) {changed} apply to scoring='sacrebleu' only, not scoring='lora'")

    def one(preds, refs) -> dict:
        if scoring == "lora":
            return lora_scores(preds, refs, ref_num=ref_num, java_metrics=java_metrics)
        return sacrebleu_scores(preds, refs, **sacrebleu_options)

    out = one(predictions, references)
    if seen is not None:
        seen = list(seen)
        if len(seen) != len(predictions) or not all(isinstance(s, bool) for s in seen):
            raise ValueError(f"seen must hold one bool per prediction ({len(predictions)}), got {len(seen)} values")
        for part, flag in (("seen", True), ("unseen", False)):
            idx = [i for i, s in enumerate(seen) if s is flag]
            if idx:
                scores = one([predictions[i] for i in idx], [references[i] for i in idx])
                out.update({f"{k}_{part}": v for k, v in scores.items()})
    return out
