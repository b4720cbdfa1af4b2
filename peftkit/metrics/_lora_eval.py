"""WebNLG / DART scores as the evaluation behind the LoRA and AdaMix NLG numbers computes them.

The authors' pipeline (microsoft/LoRA ``examples/NLG``; AdaMix's NLG code is a copy):

1. ``src/gpt2_decode.py --ref_type webnlg|dart --ref_num 6 --tokenize --lower`` writes the outputs and
   references: every text lower-cased, then split around every non-word character
   (``re.split(r"(\\W)")``, whitespace collapsed) and stripped (:func:`lora_postprocess`); each source gets
   exactly 6 reference files' worth of references: the first 6, or all of them padded with the first
   (:func:`cap_references`; WebNLG 2017 test loses 3 references to the cap, DART test 576).
   ``--filter seen|unseen`` keeps the WebNLG sources of the 10 training categories or the 5 others.
2. ``eval/eval.py -nr 6 -m bleu,meteor,ter`` (WebNLG GenerationEval's script, as LoRA ships it):

   - BLEU: ``multi-bleu-detok.perl`` (mteval-v13a tokenisation, case-sensitive, closest reference length with
     ties to the shorter, no smoothing: 0 when an n-gram order has no match) on those files; printed x100 with
     2 decimals. Here: sacrebleu ``BLEU(tokenize="13a", smooth_method="none", force=True)``, which computes the same.
   - METEOR: ``meteor-1.5.jar hyp refs -l en -norm -r 6`` on NLTK ``word_tokenize``d text, corpus score. Here:
     the same jar (pycocoevalcap's) on the same tokens (``word_tokenize(..., preserve_line=True)``: on text
     already split at every non-word character, punkt's sentence split changes no token).
   - TER: pyter (``pyter3``) on the NLTK tokens, the minimum over the 6 references per output, averaged over
     outputs. Here: :func:`pyter_ter`, the same greedy algorithm re-implemented (best block shift by
     edit-distance gain, ties to the lexicographically largest shifted sentence, until no shift gains;
     (shifts + Levenshtein distance) / reference length).

Not reproduced (docs/fidelity.md, "Known bugs"): ``eval.py`` splits files on ``"\\n"``, so the trailing newline
that ``gpt2_decode.py`` writes adds an empty output with empty references; METEOR then fails on mismatched line
counts and reports -1, and TER averages in an extra 1.0 over N + 1 outputs.
"""
from __future__ import annotations

import re

REF_NUM = 6
_NON_WORD = re.compile(r"(\W)")


def lora_postprocess(text: str, lower: bool = True, tokenize: bool = True) -> str:
    """``gpt2_decode.py``'s ``post_process``: lower-case, then split around every non-word character."""
    text = text.strip()
    if lower:
        text = text.lower()
    if tokenize:
        text = " ".join(" ".join(_NON_WORD.split(text)).split())
    return text


def cap_references(references: list[str], ref_num: int = REF_NUM) -> list[str]:
    """Exactly *ref_num* references: the first *ref_num*, or all padded with the first one."""
    if ref_num < 1:
        raise ValueError(f"ref_num must be >= 1, got {ref_num}")
    return [references[k] if k < len(references) else references[0] for k in range(ref_num)]


def nltk_tokens(text: str) -> list[str]:
    """NLTK ``word_tokenize`` tokens, as ``eval.py`` feeds METEOR and TER (no punkt data needed)."""
    from nltk.tokenize import word_tokenize

    return word_tokenize(text, preserve_line=True)


class _Levenshtein:
    """Edit distance of token lists to one fixed reference, bit-parallel (Myers 1999 / Hyyro 2003): one pass of a
    few integer operations per hypothesis token. States after each prefix can be resumed from."""

    def __init__(self, ref: list[str]):
        self.m = len(ref)
        self.full = (1 << self.m) - 1
        self.top = 1 << (self.m - 1)
        self.peq: dict[str, int] = {}
        for j, word in enumerate(ref):
            self.peq[word] = self.peq.get(word, 0) | (1 << j)
        self.start = (self.full, 0, self.m)  # VP, VN, D[0][m]

    def states(self, hyp: list[str], state: tuple[int, int, int]) -> list[tuple[int, int, int]]:
        """*state* followed by the state after each further token of *hyp*; ``[-1][2]`` is the distance."""
        vp, vn, score = state
        full, top, peq = self.full, self.top, self.peq
        out = [state]
        for word in hyp:
            eq = peq.get(word, 0)
            xv = eq | vn
            xh = (((eq & vp) + vp) ^ vp) | eq
            hp = vn | (~(xh | vp) & full)
            hn = vp & xh
            if hp & top:
                score += 1
            elif hn & top:
                score -= 1
            hp = ((hp << 1) | 1) & full
            hn = (hn << 1) & full
            vp = hn | (~(xv | hp) & full)
            vn = hp & xv
            out.append((vp, vn, score))
        return out


def pyter_ter(hyp: list[str], ref: list[str]) -> float:
    """TER of token lists as pyter computes it (greedy shifts, then edits, over the reference length).

    Each round tries every block of the hypothesis that starts where hyp[i] == ref[j] (i != j), extended while
    the following tokens keep matching, moved so that it starts at index j of the hypothesis without the block;
    the move with the largest drop in edit distance is kept (ties: the largest shifted token list), while the
    drop is positive. Empty *ref*: ValueError (the official script scores such a pair 1.0 before calling it).
    """
    if not ref:
        raise ValueError("pyter_ter needs a non-empty reference")
    lev = _Levenshtein(ref)
    hyp = list(hyp)
    shifts = 0
    while True:
        states = lev.states(hyp, lev.start)
        current = states[-1][2]
        best = None
        for i in range(len(hyp)):
            for j in range(len(ref)):
                if i == j or hyp[i] != ref[j]:
                    continue
                length = 1
                while i + length < len(hyp) and j + length < len(ref) and hyp[i + length] == ref[j + length]:
                    length += 1
                shifted = hyp[:i] + hyp[i + length:]
                shifted[j:j] = hyp[i:i + length]
                keep = min(i, j)  # shifted[:keep] == hyp[:keep]: resume from that prefix's state
                gain = current - lev.states(shifted[keep:], states[keep])[-1][2]
                if best is None or (gain, shifted) > best:
                    best = (gain, shifted)
        if best is None or best[0] <= 0:
            return (shifts + current) / len(ref)
        shifts += 1
        hyp = best[1]


def sentence_min_ter(predictions: list[list[str]], references: list[list[list[str]]]) -> float:
    """Mean over outputs of the minimum :func:`pyter_ter` over that output's references (empty one: 1.0)."""
    total = 0.0
    for hyp, refs in zip(predictions, references):
        total += min(pyter_ter(hyp, r) if r else 1.0 for r in {tuple(r): r for r in refs}.values())
    return total / len(predictions)


def lora_scores(predictions: list[str], references: list[list[str]], ref_num: int = REF_NUM,
                java_metrics: bool = True) -> dict:
    """``bleu`` (fraction), ``meteor`` and ``ter`` as ``gpt2_decode.py --tokenize --lower`` + ``eval.py`` give them.

    *predictions* and *references* are raw texts (one prediction and all its references per source).
    ``java_metrics=False`` skips METEOR (it needs Java).
    """
    from sacrebleu.metrics import BLEU

    hyps = [lora_postprocess(p) for p in predictions]
    refs = [[lora_postprocess(r) for r in cap_references(rs, ref_num)] for rs in references]
    streams = [[rs[k] for rs in refs] for k in range(ref_num)]
    out = {"bleu": BLEU(tokenize="13a", smooth_method="none", force=True).corpus_score(hyps, streams).score / 100.0}
    # eval.py joins the NLTK tokens with spaces; TER splits them again on whitespace
    hyp_tok = [" ".join(nltk_tokens(h)).split() for h in hyps]
    ref_tok = [[" ".join(nltk_tokens(r)).split() for r in rs] for rs in refs]
    if java_metrics:
        from peftkit.metrics import _coco

        gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(ref_tok)}
        res = {i: [" ".join(h)] for i, h in enumerate(hyp_tok)}
        out["meteor"] = _coco.meteor(gts, res)
    out["ter"] = sentence_min_ter(hyp_tok, ref_tok)
    return out
