"""Corpus BLEU-4 and NIST-5 as the official E2E scorer computes them (mteval-v13a definitions).

The E2E scorer (tuetschek/e2e-metrics ``measure_scores.py``) has two back ends:

* ``flavour="python"`` (default): its Python port ``metrics/pymteval.py``, used with ``-p``.
  This is what the LoRA / AdaMix E2E numbers come from (their README runs
  ``measure_scores.py ... -p``).
* ``flavour="perl"``: its default, the Perl ``mteval-v13a-sig.pl``.

Shared by both: mteval-v13a "basic" tokenisation (SGML entities decoded, punctuation split off,
``.`` and ``,`` split unless next to a digit, ``-`` split after a digit), case-insensitive
matching, n-gram hits clipped by the maximum count in any one reference, BLEU brevity penalty on
the closest reference length (ties: the shorter), NIST information weights
``info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn))`` from the n-gram counts of all references
of the corpus (for unigrams the count of all reference words), NIST brevity penalty
``exp(-beta * ln(ratio)^2)`` with ``beta = -ln(0.5) / ln(1.5)^2`` when the output is shorter than
the average reference.

Where the two back ends differ (this module reproduces each):

* lower-casing: Python ``str.lower`` (Unicode) vs Perl ``tr/A-Z/a-z/`` (ASCII only);
* an empty output is one empty token in the Python port, zero tokens in Perl;
* n-gram totals per sentence: ``len - n + 1`` in the Python port (negative for outputs shorter
  than n), ``max(0, len - n + 1)`` in Perl;
* BLEU with a zero n-gram match count: the Python port floors the count at 1e-15 (BLEU ~ 0),
  Perl smooths it to ``1 / (2^k * total)`` (k-th zero order);
* NIST average reference length: Python sums per-MR averages; Perl divides all reference words
  by the mean number of references per MR (they differ when MRs have different numbers of refs).

Not reproduced: the SGML file round trip of the Perl path (raw ``<``/``&`` in text).
All totals use ``max(total, 1)`` for the NIST division, as Perl does.

sacrebleu (``tokenize="13a", lowercase=True``) computes the same corpus BLEU as the Python
flavour unless an n-gram order has no match (sacrebleu's default "exp" smoothing is the Perl
rule) or an output is shorter than 4 tokens (sacrebleu counts ``max(0, len - n + 1)``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

FLAVOURS = ("python", "perl")
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2
_BLEU_N = 4
_NIST_N = 5

_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
# mteval-v13a "tokenize punctuation" class: { | } ~  [ \ ] ^ _ `  space ! " # $ % &
# ( ) * +  : ; < = > ? @  and /
_PUNCT = re.compile(r"([{-~\[-`\x20-&(-+:-@/])")
_PERIOD_COMMA_AFTER_NONDIGIT = re.compile(r"([^0-9])([.,])")
_PERIOD_COMMA_BEFORE_NONDIGIT = re.compile(r"([.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")
_SPACES = re.compile(r"\s+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _check_flavour(flavour: str) -> str:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown mteval flavour {flavour!r}; expected one of {list(FLAVOURS)}")
    return flavour


def tokenize(text: str, flavour: str = "python", case_sensitive: bool = False) -> list[str]:
    """mteval-v13a basic tokenisation of one segment (lower-cased unless *case_sensitive*)."""
    _check_flavour(flavour)
    s = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in _ENTITIES:
        s = s.replace(entity, char)
    s = f" {s} "
    if not case_sensitive:
        s = s.lower() if flavour == "python" else s.translate(_ASCII_LOWER)
    s = _PUNCT.sub(r" \1 ", s)
    s = _PERIOD_COMMA_AFTER_NONDIGIT.sub(r"\1 \2 ", s)
    s = _PERIOD_COMMA_BEFORE_NONDIGIT.sub(r" \1 \2", s)
    s = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", s)
    s = _SPACES.sub(" ", s).strip()
    if flavour == "python":
        return s.split(" ")  # '' -> [''] as in pymteval
    return s.split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _max_ref_counts(refs: list[list[str]], n: int) -> Counter:
    merged: Counter = Counter()
    for ref in refs:
        for gram, cnt in _ngrams(ref, n).items():
            if cnt > merged[gram]:
                merged[gram] = cnt
    return merged


def _n_total(length: int, n: int, flavour: str) -> int:
    return length - n + 1 if flavour == "python" else max(0, length - n + 1)


def _closest_ref_len(hyp_len: int, ref_lens: list[int], flavour: str) -> int:
    if flavour == "python":
        return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))
    best = ref_lens[0]  # Perl: start from the first reference, skip empty ones after it
    for r in ref_lens[1:]:
        if r and (abs(hyp_len - r) < abs(hyp_len - best)
                  or (abs(hyp_len - r) == abs(hyp_len - best) and r < best)):
            best = r
    return best


def _tokenize_corpus(predictions, references, flavour, case_sensitive):
    if len(predictions) != len(references):
        raise ValueError(
            f"Mismatch in the number of predictions ({len(predictions)}) and "
            f"references ({len(references)})")
    if not predictions:
        raise ValueError("predictions and references are empty")
    hyps, refs = [], []
    for i, (pred, ref_list) in enumerate(zip(predictions, references)):
        if isinstance(ref_list, str) or len(ref_list) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of strings")
        hyps.append(tokenize(pred, flavour, case_sensitive))
        refs.append([tokenize(r, flavour, case_sensitive) for r in ref_list])
    return hyps, refs


def bleu_details(predictions, references, flavour: str = "python",
                 case_sensitive: bool = False) -> dict:
    """Corpus BLEU-4 with its parts.

    Returns ``bleu`` (fraction, 0-1), ``precisions`` (n = 1..4), ``hits`` and ``totals`` per
    order, ``brevity_penalty``, ``hyp_len`` and ``ref_len`` (sum of closest reference lengths).
    """
    flavour = _check_flavour(flavour)
    hyps, refs = _tokenize_corpus(predictions, references, flavour, case_sensitive)
    return _bleu_from_tokens(hyps, refs, flavour)


def _bleu_from_tokens(hyps, refs, flavour):
    hits = [0] * _BLEU_N
    totals = [0] * _BLEU_N
    ref_len = 0
    for hyp, ref_list in zip(hyps, refs):
        for i in range(_BLEU_N):
            n = i + 1
            merged = _max_ref_counts(ref_list, n)
            hits[i] += sum(min(c, merged[g]) for g, c in _ngrams(hyp, n).items())
            totals[i] += _n_total(len(hyp), n, flavour)
        ref_len += _closest_ref_len(len(hyp), [len(r) for r in ref_list], flavour)
    hyp_len = totals[0]
    if flavour == "python":
        bp = 1.0
        if hyp_len <= ref_len:
            bp = math.exp(1.0 - ref_len / (float(hyp_len) if hyp_len else 1e-5))
        log_sum = sum(math.log(max(h, 1e-15) / max(t, 1e-9)) for h, t in zip(hits, totals))
        precisions = [max(h, 1e-15) / max(t, 1e-9) for h, t in zip(hits, totals)]
    else:
        bp = math.exp(min(0.0, 1.0 - ref_len / hyp_len)) if hyp_len > 0 else 0.0
        log_sum, smooth, precisions = 0.0, 1.0, []
        for h, t in zip(hits, totals):
            if t == 0:
                p = 1.0
            elif h == 0:
                smooth *= 2.0
                p = 1.0 / (smooth * t)
            else:
                p = h / t
            precisions.append(p)
            log_sum += math.log(p)
    bleu = bp * math.exp(log_sum / _BLEU_N)
    return {"bleu": bleu, "precisions": precisions, "hits": hits, "totals": totals,
            "brevity_penalty": bp, "hyp_len": hyp_len, "ref_len": ref_len}


def nist_details(predictions, references, flavour: str = "python",
                 case_sensitive: bool = False) -> dict:
    """Corpus NIST-5 with its parts.

    Returns ``nist`` (raw score), ``info`` (matched information per order n = 1..5),
    ``totals`` (output n-grams per order), ``length_penalty``, ``hyp_len`` and
    ``avg_ref_len`` (the reference length the penalty compares against).
    """
    flavour = _check_flavour(flavour)
    hyps, refs = _tokenize_corpus(predictions, references, flavour, case_sensitive)
    return _nist_from_tokens(hyps, refs, flavour)


def _nist_from_tokens(hyps, refs, flavour):
    counts: Counter = Counter()  # all reference n-grams, n = 1..5, every occurrence
    total_ref_words = 0
    for ref_list in refs:
        for ref in ref_list:
            total_ref_words += len(ref)
            for n in range(1, _NIST_N + 1):
                counts.update(_ngrams(ref, n))

    def info(gram):
        prefix = counts[gram[:-1]] if len(gram) > 1 else total_ref_words
        return math.log2(prefix / counts[gram])

    info_sum = [0.0] * _NIST_N
    totals = [0] * _NIST_N
    hyp_len = 0
    avg_ref_len = 0.0
    n_refs = 0
    for hyp, ref_list in zip(hyps, refs):
        hyp_len += len(hyp)
        for i in range(_NIST_N):
            n = i + 1
            merged = _max_ref_counts(ref_list, n)
            for gram, c in _ngrams(hyp, n).items():
                hit = min(c, merged[gram])
                if hit:
                    info_sum[i] += info(gram) * hit
            totals[i] += _n_total(len(hyp), n, flavour)
        avg_ref_len += sum(len(r) for r in ref_list) / len(ref_list)
        n_refs += sum(1 for r in ref_list if r)  # Perl counts non-empty references
    if flavour == "perl":
        avg_ref_len = total_ref_words / (max(n_refs, 1) / len(hyps))
    score = sum(s / max(t, 1) for s, t in zip(info_sum, totals))
    ratio = hyp_len / avg_ref_len if avg_ref_len > 0 else 1.0
    if ratio >= 1:
        penalty = 1.0
    elif ratio <= 0:
        penalty = 0.0
    else:
        penalty = math.exp(-NIST_BETA * math.log(ratio) ** 2)
    return {"nist": penalty * score, "info": info_sum, "totals": totals,
            "length_penalty": penalty, "hyp_len": hyp_len, "avg_ref_len": avg_ref_len}


def bleu_nist(predictions, references, flavour: str = "python",
              case_sensitive: bool = False) -> dict:
    """``{"bleu": fraction, "nist": raw}`` for a corpus (tokenises once)."""
    flavour = _check_flavour(flavour)
    hyps, refs = _tokenize_corpus(predictions, references, flavour, case_sensitive)
    return {"bleu": _bleu_from_tokens(hyps, refs, flavour)["bleu"],
            "nist": _nist_from_tokens(hyps, refs, flavour)["nist"]}
