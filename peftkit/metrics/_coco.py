"""METEOR, ROUGE-L and CIDEr as the E2E scorer gets them from the MS-COCO caption code.

``measure_scores.py`` runs ``COCOEvalCap``: every prediction and reference is first tokenised
by the Stanford PTB tokenizer (Java; ``-preserveLines -lowerCase``, punctuation tokens
dropped), then scored by ``pycocoevalcap``'s Meteor (meteor-1.5.jar, ``-l en -norm``, corpus
score from aggregated statistics), Rouge (LCS F-measure with beta = 1.2, best precision and
best recall over the references, mean over MRs) and Cider (CIDEr-D: n = 1..4, sigma = 6,
document frequencies from the references passed in, so the score depends on the corpus).

This module runs the same jars and scorers. Differences from ``COCOEvalCap``: the PTB
tokenizer's temporary file goes to the system temp dir instead of the package folder (works
on read-only installs), its output line count is checked, SPICE/BLEU are not run, and the
METEOR JVM is started once per process and reused (:func:`close_meteor` stops it).

Java is required for all three (tokenizer and METEOR): without a ``java`` on PATH a
RuntimeError says how to install one; nothing returns a silent zero.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading

JAVA_HELP = (
    "{what} needs Java (a `java` executable on PATH) to run the Stanford PTB tokenizer "
    "and meteor-1.5.jar shipped with pycocoevalcap. Install a JRE, e.g. "
    "`apt-get install default-jre-headless` (Debian/Ubuntu), `conda install -c conda-forge "
    "openjdk`, or `brew install openjdk`, then check `java -version`."
)

_METEOR = None
_METEOR_LOCK = threading.Lock()


def require_java(what: str = "METEOR / ROUGE-L / CIDEr (E2E)") -> str:
    """Path of the ``java`` executable; RuntimeError with install hints when missing."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(JAVA_HELP.format(what=what))
    return java


def ptb_tokenize(sentences: list[str]) -> list[str]:
    """Lower-cased PTB tokens joined by spaces, COCO punctuation removed, one per input."""
    from pycocoevalcap.tokenizer import ptbtokenizer as ptb

    java = require_java()
    if not sentences:
        return []
    jar = os.path.join(os.path.dirname(os.path.abspath(ptb.__file__)),
                       ptb.STANFORD_CORENLP_3_4_1_JAR)
    text = "\n".join(s.replace("\n", " ").replace("\r", " ") for s in sentences)
    fd, path = tempfile.mkstemp(prefix="peftkit-ptb-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
        proc = subprocess.run(
            [java, "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer",
             "-preserveLines", "-lowerCase", path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    finally:
        os.remove(path)
    if proc.returncode != 0:
        raise RuntimeError("PTB tokenizer failed: " + proc.stderr.decode("utf-8", "replace"))
    lines = proc.stdout.decode("utf-8").split("\n")
    if len(lines) < len(sentences):
        raise RuntimeError(
            f"PTB tokenizer returned {len(lines)} lines for {len(sentences)} sentences")
    punct = set(ptb.PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in punct)
            for line in lines[:len(sentences)]]


def _get_meteor():
    global _METEOR
    if _METEOR is not None and _METEOR.meteor_p.poll() is not None:
        _METEOR = None  # the JVM died: start a new one
    if _METEOR is None:
        from pycocoevalcap.meteor.meteor import Meteor

        _METEOR = Meteor()
    return _METEOR


def close_meteor() -> None:
    """Stop the cached METEOR JVM (a later call starts a new one)."""
    global _METEOR
    with _METEOR_LOCK:
        if _METEOR is not None:
            try:
                _METEOR.meteor_p.stdin.close()
                _METEOR.meteor_p.kill()
                _METEOR.meteor_p.wait()
            finally:
                _METEOR = None


atexit.register(close_meteor)


def meteor(gts: dict, res: dict) -> float:
    """Corpus METEOR 1.5 (fraction) for ``{id: [refs]}`` / ``{id: [hyp]}`` (PTB-tokenised)."""
    require_java("METEOR")
    with _METEOR_LOCK:
        scorer = _get_meteor()
        try:
            score, _ = scorer.compute_score(gts, res)
        except (ValueError, BrokenPipeError, OSError) as exc:
            err = b""
            if scorer.meteor_p.poll() is not None and scorer.meteor_p.stderr is not None:
                err = scorer.meteor_p.stderr.read() or b""
            raise RuntimeError("meteor-1.5.jar failed: " + err.decode("utf-8", "replace")
                               ) from exc
    return float(score)


def rouge_l(gts: dict, res: dict) -> float:
    """Mean ROUGE-L F (beta = 1.2) over ids (pycocoevalcap Rouge)."""
    from pycocoevalcap.rouge.rouge import Rouge

    score, _ = Rouge().compute_score(gts, res)
    return float(score)


def cider(gts: dict, res: dict) -> float:
    """CIDEr-D (x10 scale, document frequencies from *gts*) (pycocoevalcap Cider)."""
    from pycocoevalcap.cider.cider import Cider

    score, _ = Cider().compute_score(gts, res)
    return float(score)


def coco_scores(predictions: list[str], references: list[list[str]]) -> dict:
    """``{"meteor", "rouge_l", "cider"}`` after PTB tokenisation, as COCOEvalCap computes them."""
    require_java()
    flat = list(predictions) + [r for refs in references for r in refs]
    toks = ptb_tokenize(flat)
    n = len(predictions)
    res = {f"inst-{i}": [toks[i]] for i in range(n)}
    gts, pos = {}, n
    for i, refs in enumerate(references):
        gts[f"inst-{i}"] = toks[pos:pos + len(refs)]
        pos += len(refs)
    return {"meteor": meteor(gts, res), "rouge_l": rouge_l(gts, res), "cider": cider(gts, res)}
