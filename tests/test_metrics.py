"""Tests for peftkit.metrics (evaluate modules loaded by path, offline)."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from scipy import stats
from sklearn import metrics as skm

from peftkit import metrics as M
from peftkit.metrics import _coco, _mteval
from peftkit.metrics._nlg import e2e_scores, pad_reference_streams, sacrebleu_scores

REPO = Path(__file__).resolve().parents[1]
E2E_DEV = Path(os.environ.get("PEFTKIT_DATA_DIR") or REPO.parent / "shared" / "data") / "nlg" / "e2e" / "dev.csv"
BETA = -math.log(0.5) / math.log(1.5) ** 2
HAS_JAVA = _coco.shutil.which("java") is not None
needs_java = pytest.mark.skipif(not HAS_JAVA, reason="java not installed")


@pytest.fixture(scope="module")
def glue_modules():
    return {task: M.load("glue", task) for task in M.TASKS}


@pytest.fixture(scope="module")
def e2e():
    yield M.load("e2e")
    _coco.close_meteor()  # one METEOR JVM for the whole module


# API

def test_load_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match=r"unknown metric 'bleu'.*glue.*e2e.*webnlg"):
        M.load("bleu")
    with pytest.raises(ValueError, match="cola"):
        M.load("glue")
    with pytest.raises(ValueError, match="unknown task"):
        M.load("glue", "squad")


def test_modules_live_in_package():
    for name in M.METRIC_NAMES:
        path = Path(M.module_path(name))
        assert path.parent == Path(M.__file__).parent
        assert (path / f"{name}.py").is_file()


def test_load_offline_from_other_cwd(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_EVALUATE_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9",
               PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "hf"))
    code = ("from peftkit import metrics as M; "
            "print(M.load('glue', 'SST-2').compute(predictions=[1, 0], references=[1, 1]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "{'accuracy': 0.5}" in out.stdout


def test_task_tables():
    assert M.glue_metric_names("cola") == ["matthews_correlation"]
    assert M.glue_metric_names("STS-B") == ["pearson", "spearmanr"]
    assert M.glue_metric_names("mrpc") == M.glue_metric_names("qqp") == ["accuracy", "f1"]
    for task in ("sst2", "mnli", "mnli_mismatched", "qnli", "rte") + M.FEWSHOT_TASKS:
        assert M.glue_metric_names(task) == ["accuracy"]
    assert M.normalize_task("MNLI-mm") == "mnli_mismatched"
    # UniPELT: MRPC/QQP F1, STS-B Spearman; AdaMix BERT-base: F1, Pearson; RoBERTa-large: acc.
    assert [M.paper_metric(t, "unipelt") for t in ("cola", "mrpc", "qqp", "stsb", "rte")] == [
        "matthews_correlation", "f1", "f1", "spearmanr", "accuracy"]
    assert [M.paper_metric(t, "adamix") for t in ("cola", "mrpc", "qqp", "stsb", "mnli")] == [
        "matthews_correlation", "f1", "f1", "pearson", "accuracy"]
    assert M.paper_metric("mrpc", "adamix", backbone="roberta-large") == "accuracy"
    assert M.paper_metric("stsb", "adamix", backbone="roberta-large") == "pearson"
    assert M.primary_metric("stsb") == "pearson"
    assert M.primary_metric("stsb", paper="unipelt") == "spearmanr"
    assert M.primary_metric("mrpc") == "f1" and M.primary_metric("cola") == "matthews_correlation"
    for task in M.TASKS:
        assert M.primary_metric(task) in M.glue_metric_names(task)
    with pytest.raises(ValueError, match="UniPELT reports no"):
        M.paper_metric("sst5", "unipelt")
    with pytest.raises(ValueError, match="unknown paper"):
        M.paper_metric("cola", "lora")


# GLUE

def _reference_glue(task, p, r):
    if task == "cola":
        return {"matthews_correlation": skm.matthews_corrcoef(r, p)}
    if task == "stsb":
        return {"pearson": stats.pearsonr(p, r)[0], "spearmanr": stats.spearmanr(p, r)[0]}
    out = {"accuracy": skm.accuracy_score(r, p)}
    if task in ("mrpc", "qqp"):
        out["f1"] = skm.f1_score(r, p)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_glue_matches_sklearn_scipy(glue_modules, seed):
    rng = np.random.default_rng(seed)
    n_classes = {"mnli": 3, "mnli_matched": 3, "mnli_mismatched": 3, "snli": 3, "sst5": 5,
                 "trec": 6}
    for task, module in glue_modules.items():
        if task == "stsb":
            r = rng.uniform(0, 5, 300)
            p = np.clip(r + rng.normal(0, 1.0, 300), 0, 5)
        else:
            k = n_classes.get(task, 2)
            r = rng.integers(0, k, 300)
            p = np.where(rng.random(300) < 0.7, r, rng.integers(0, k, 300))
        got = module.compute(predictions=p.tolist(), references=r.tolist())
        want = _reference_glue(task, p, r)
        assert set(got) == set(want) == set(M.glue_metric_names(task)), task
        for key, value in want.items():
            assert isinstance(got[key], float)
            assert got[key] == pytest.approx(value, abs=1e-12), (task, key)


def test_glue_edge_cases(glue_modules):
    # a single class on either side: Matthews correlation is 0.0, no crash
    assert glue_modules["cola"].compute(predictions=[1] * 5, references=[1, 0, 1, 0, 1]) == {
        "matthews_correlation": 0.0}
    assert glue_modules["cola"].compute(predictions=[1, 1], references=[1, 1]) == {
        "matthews_correlation": 0.0}
    # constant predictions: correlations are undefined -> nan (documented)
    out = glue_modules["stsb"].compute(predictions=[2.0] * 4, references=[0.0, 1.0, 2.5, 5.0])
    assert math.isnan(out["pearson"]) and math.isnan(out["spearmanr"])
    # no positive predictions nor labels: F1 is 0.0
    assert glue_modules["mrpc"].compute(predictions=[0, 0], references=[0, 0]) == {
        "accuracy": 1.0, "f1": 0.0}
    with pytest.raises(ValueError, match=r"predictions \(3\).*references \(2\)"):
        glue_modules["sst2"].compute(predictions=[1, 0, 1], references=[1, 0])


def test_standalone_modules():
    rng = np.random.default_rng(7)
    r = rng.integers(0, 2, 100)
    p = np.where(rng.random(100) < 0.6, r, 1 - r)
    x, y = rng.normal(size=50), rng.normal(size=50)
    for name, fn in [("accuracy", skm.accuracy_score), ("f1", skm.f1_score),
                     ("matthews_correlation", skm.matthews_corrcoef)]:
        got = M.load(name).compute(predictions=p, references=r)
        assert got == {name: pytest.approx(fn(r, p), abs=1e-12)}
    pr = M.load("pearsonr").compute(predictions=x, references=y, return_pvalue=True)
    assert pr["pearsonr"] == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert pr["p-value"] == pytest.approx(stats.pearsonr(x, y)[1], abs=1e-12)
    sr = M.load("spearmanr").compute(predictions=x, references=y)
    assert sr == {"spearmanr": pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)}


# BLEU / NIST

def test_mteval_tokenization():
    text = "Hello, World! 3.5-star, 1,000 &amp; more."
    assert _mteval.tokenize(text) == [
        "hello", ",", "world", "!", "3.5", "-", "star", ",", "1,000", "&", "more", "."]
    assert _mteval.tokenize("Café", flavour="python") == ["café"]
    assert _mteval.tokenize("ÉA", flavour="perl") == ["Éa"]  # Perl tr/A-Z/a-z/: ASCII only
    assert _mteval.tokenize("", flavour="python") == [""]  # pymteval: one empty token
    assert _mteval.tokenize("", flavour="perl") == []


# Corpus A (two MRs, several references each).
# MR1 hyp "the cat the cat on the mat" (7 tokens);
#     refs R1 "the cat is on the mat" (6), R2 "there is a cat on the mat" (7).
#   1-grams: the x3 (clip to 2, max in R1), cat x2 (clip 1), on, mat -> 5 hits / 7
#   2-grams: the cat x2 (clip 1), cat the (0), cat on (R2), on the, the mat -> 4 / 6
#   3-grams: the cat the, cat the cat, the cat on, cat on the (R2), on the mat -> 2 / 5
#   4-grams: ..., cat on the mat (R2) -> 1 / 4; closest ref length 7 (R2, diff 0)
# MR2 hyp "a dog runs" (3); refs "a dog runs fast" (4), "the dog runs" (3)
#   1-grams 3/3, 2-grams 2/2, 3-grams 1/1, 4-grams 0/0; closest ref length 3
# Corpus: p = 8/10, 6/8, 3/6, 1/4; c = 10, r = 10 -> BP = 1
# BLEU = (0.8 * 0.75 * 0.5 * 0.25) ** (1/4) = 0.075 ** 0.25 = 0.5233175697
CORPUS_A = (["The cat the cat on the mat", "A dog runs"],
            [["the cat is on the mat", "There is a cat on the mat"],
             ["a dog runs fast", "the dog runs"]])


@pytest.mark.parametrize("flavour", ["python", "perl"])
def test_bleu_hand_worked_corpus_a(flavour):
    preds, refs = CORPUS_A
    d = _mteval.bleu_details(preds, refs, flavour=flavour)
    assert d["hits"] == [8, 6, 3, 1] and d["totals"] == [10, 8, 6, 4]
    assert d["hyp_len"] == d["ref_len"] == 10 and d["brevity_penalty"] == 1.0
    assert d["bleu"] == pytest.approx(0.075 ** 0.25, abs=1e-12)
    assert d["bleu"] == pytest.approx(0.5233175697, abs=1e-6)


def test_bleu_brevity_penalty_and_closest_ref_ties():
    # hyp "the quick brown fox" (4), one ref of 5 tokens containing it: all p_n = 1,
    # BP = exp(1 - 5/4) = exp(-0.25) = 0.7788007831
    hyp = ["the quick brown fox"]
    five = "the quick brown fox jumps"
    assert _mteval.bleu_details(hyp, [[five]])["bleu"] == pytest.approx(0.7788007831, abs=1e-6)
    # add a 3-token ref: |4-5| == |4-3| -> the tie goes to the shorter (3) -> BP = 1, BLEU = 1
    d = _mteval.bleu_details(hyp, [[five, "quick brown fox"]])
    assert d["ref_len"] == 3 and d["bleu"] == pytest.approx(1.0, abs=1e-12)


def test_bleu_zero_matches_and_short_outputs():
    # hyp "the cat sat on the mat", ref "the cat is on the mat": p = 5/6, 3/5, 1/4, 0/3, BP 1
    hyp, ref = ["the cat sat on the mat"], [["the cat is on the mat"]]
    # Perl mteval smooths the zero 4-gram count to 1/(2*3): (5/6*3/5*1/4*1/6)^(1/4) = (1/48)^.25
    perl = _mteval.bleu_details(hyp, ref, flavour="perl")["bleu"]
    assert perl == pytest.approx((1 / 48) ** 0.25, abs=1e-12)
    assert perl == pytest.approx(0.3799178428, abs=1e-6)
    # sacrebleu's default "exp" smoothing is the same rule
    sb = sacrebleu.corpus_bleu(hyp, [[ref[0][0]]], tokenize="13a", lowercase=True).score
    assert perl == pytest.approx(sb / 100, abs=1e-9)
    # pymteval floors the zero count at 1e-15: BLEU ~ (1/8 * 1e-15/3)^(1/4)
    py = _mteval.bleu_details(hyp, ref)["bleu"]
    assert py == pytest.approx((1 / 8 * 1e-15 / 3) ** 0.25, rel=1e-9)
    # two-token outputs: pymteval counts len-n+1 (negative) n-grams, Perl max(0, .)
    preds, refs = ["x y", "y z"], [["x y z", "x z"], ["y z"]]
    assert _mteval.bleu_details(preds, refs, flavour="perl")["bleu"] == pytest.approx(1.0)
    assert _mteval.bleu_details(preds, refs)["totals"] == [4, 2, 0, -2]
    assert _mteval.bleu_details(preds, refs)["bleu"] == pytest.approx(1e-3, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_matches_sacrebleu_13a_lowercase(seed):
    # Same tokeniser (13a = mteval-v13a), closest-ref BP, clipping; they coincide whenever no
    # n-gram order has zero matches and no output is shorter than 4 tokens.
    rng = np.random.default_rng(seed)
    vocab = "the a cat dog sat on mat Eagle , . coffee shop near 5 -".split()
    preds, refs = [], []
    for _ in range(30):
        base = list(rng.choice(vocab, rng.integers(6, 14)))
        refs.append([" ".join(base), " ".join(rng.permutation(base)[: len(base) - 1])][
            : rng.integers(1, 3)])
        hyp = base.copy()
        hyp[rng.integers(len(hyp))] = str(rng.choice(vocab)).upper()
        preds.append(" ".join(hyp))
    mine = _mteval.bleu_details(preds, refs)["bleu"]
    streams = pad_reference_streams(refs)
    sb = sacrebleu.corpus_bleu(preds, streams, tokenize="13a", lowercase=True).score / 100
    assert mine == pytest.approx(sb, abs=1e-9)
    # same with our tokens fed to sacrebleu untouched (tokenize="none")
    tok = lambda s: " ".join(_mteval.tokenize(s))  # noqa: E731
    sb_none = sacrebleu.corpus_bleu([tok(p) for p in preds],
                                    [[tok(r) if r is not None else None for r in st]
                                     for st in streams], tokenize="none").score / 100
    assert mine == pytest.approx(sb_none, abs=1e-9)


def test_nist_hand_worked_single():
    # ref "a b a c" (4 words): counts a 2, b 1, c 1; "a b" 1, "b a" 1, "a c" 1; ...
    # info(a) = log2(4/2) = 1, info(b) = info(c) = log2(4/1) = 2, info("a b") = log2(2/1) = 1
    # hyp "a b c": 1-grams a, b, c hit -> (1+2+2)/3; 2-grams "a b" hit, "b c" not -> 1/2
    # higher orders: no hits.  Sum = 5/3 + 1/2 = 13/6
    # length ratio 3/4: penalty exp(-beta * ln(0.75)^2) with beta = -ln .5 / ln(1.5)^2 = 4.2161736
    #   = 0.7054392; NIST = 13/6 * 0.7054392 = 1.5284517
    d = _mteval.nist_details(["a b c"], [["a b a c"]])
    assert d["info"][:2] == pytest.approx([5.0, 1.0]) and d["info"][2:] == [0.0, 0.0, 0.0]
    assert d["length_penalty"] == pytest.approx(math.exp(-BETA * math.log(0.75) ** 2), abs=1e-12)
    assert d["nist"] == pytest.approx(13 / 6 * math.exp(-BETA * math.log(0.75) ** 2), abs=1e-12)
    assert d["nist"] == pytest.approx(1.5284517, abs=1e-6)
    assert BETA == pytest.approx(4.2161736, abs=1e-6)


def test_nist_hand_worked_corpus_and_flavours():
    # MR1 hyp "x y", refs "x y z", "x z";  MR2 hyp "y z", ref "y z".
    # Reference counts over the corpus (7 words): x 2, y 2, z 3; "x y" 1, "y z" 2, "x z" 1.
    # info: x = y = log2(7/2), z = log2(7/3); "x y" = log2(2/1) = 1; "y z" = log2(2/2) = 0
    # 1-grams: all 4 hit -> (3*log2(3.5) + log2(7/3)) / 4; 2-grams: "x y" 1 + "y z" 0 -> 1/2
    # sum = 2.1611143
    # python: avg ref len = (3+2)/2 + 2 = 4.5 -> ratio 4/4.5 -> NIST = 2.0383357
    # perl:   7 words / (3 refs / 2 MRs) = 4.6667 -> ratio 4/4.6667 -> NIST = 1.9550923
    preds, refs = ["x y", "y z"], [["x y z", "x z"], ["y z"]]
    total = (3 * math.log2(3.5) + math.log2(7 / 3)) / 4 + 0.5
    py = _mteval.nist_details(preds, refs)
    pl = _mteval.nist_details(preds, refs, flavour="perl")
    assert py["avg_ref_len"] == pytest.approx(4.5) and pl["avg_ref_len"] == pytest.approx(7 / 1.5)
    assert py["nist"] == pytest.approx(total * math.exp(-BETA * math.log(4 / 4.5) ** 2), abs=1e-12)
    assert py["nist"] == pytest.approx(2.0383357, abs=1e-6)
    assert pl["nist"] == pytest.approx(1.9550923, abs=1e-6)
    # output at least as long as the references: no penalty
    assert _mteval.nist_details(["a b a c"], [["a b a c"]])["length_penalty"] == 1.0


# E2E

def test_e2e_length_mismatch_and_grouping_input_errors(e2e):
    with pytest.raises(ValueError, match=r"predictions \(2\).*references \(3\)"):
        e2e.compute(predictions=["a", "b"], references=[["a"], ["b"], ["c"]])
    with pytest.raises(ValueError, match=r"predictions \(1\).*references \(2\)"):
        e2e_scores(["a"], [["a"], ["b"]], java_metrics=False)
    assert M.group_references(["m1", "m2", "m1"], ["r1", "r2", "r3"]) == (
        ["m1", "m2"], [["r1", "r3"], ["r2"]])


def test_e2e_uses_all_grouped_references(e2e):
    pred = ["the mill is a cheap pub near the river"]
    grouped = [["there is a cheap pub called the mill", "the mill is a cheap pub near the river"]]
    first_only = [grouped[0][:1]]
    g = e2e.compute(predictions=pred, references=grouped, java_metrics=False)
    f = e2e.compute(predictions=pred, references=first_only, java_metrics=False)
    assert set(g) == {"bleu", "nist"}
    assert g["bleu"] == pytest.approx(1.0) and f["bleu"] < 0.5


@pytest.mark.skipif(not E2E_DEV.is_file(), reason="the shared data's E2E dev set is not here (PEFTKIT_DATA_DIR)")
def test_e2e_real_dev_bleu_matches_sacrebleu(e2e):
    rows = list(csv.reader(E2E_DEV.open(encoding="utf-8")))[1:]
    _, refs = M.group_references([r[0] for r in rows], [r[1] for r in rows])
    preds = [rs[0] for rs in refs]  # first human reference as the "system", scored on the rest
    rest = [rs[1:] or rs for rs in refs]
    out = e2e.compute(predictions=preds, references=rest, java_metrics=False)
    sb = sacrebleu.corpus_bleu(preds, pad_reference_streams(rest), tokenize="13a",
                               lowercase=True).score / 100
    assert out["bleu"] == pytest.approx(sb, abs=1e-9)
    assert 0.3 < out["bleu"] < 0.9 and 5 < out["nist"] < 12


def test_e2e_missing_java_raises(e2e, monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match=r"(?s)needs Java.*apt-get install"):
        e2e.compute(predictions=["a b"], references=[["a b"]])
    monkeypatch.setattr(_coco.shutil, "which", lambda *_: None)
    with pytest.raises(RuntimeError, match="METEOR"):
        _coco.meteor({"a": ["x"]}, {"a": ["x"]})
    # BLEU/NIST alone need no Java
    assert e2e.compute(predictions=["a b"], references=[["a b"]], java_metrics=False)["bleu"] > 0


@needs_java
def test_e2e_full_scores_and_known_behaviour(e2e):
    # identical outputs, disjoint vocabularies: every n-gram has df 1 of N=3 -> CIDEr-D = 10
    preds = ["the eagle serves cheap coffee near burger king",
             "green man pub has high ratings in riverside",
             "zizzi offers french food for families downtown"]
    out = e2e.compute(predictions=preds, references=[[p] for p in preds])
    assert set(out) == set(("bleu", "nist", "meteor", "rouge_l", "cider"))
    assert out["bleu"] == pytest.approx(1.0) and out["rouge_l"] == pytest.approx(1.0)
    assert out["meteor"] == pytest.approx(1.0, abs=1e-9)  # pycocoevalcap gives exactly 1.0
    assert out["cider"] == pytest.approx(10.0, abs=1e-9)
    # a one-MR corpus: idf = log(1/1) = 0 for everything -> CIDEr 0 even for a perfect output
    assert _coco.cider({"a": [preds[0]]}, {"a": [preds[0]]}) == 0.0
    # unrelated output: METEOR 0
    assert _coco.meteor({"a": [preds[0]]}, {"a": ["quantum lectures tomorrow"]}) == 0.0
    # PTB tokenisation (lower-case, punctuation dropped) before METEOR/ROUGE/CIDEr
    assert _coco.ptb_tokenize(["The Eagle, near Burger King!", ""]) == [
        "the eagle near burger king", ""]


@needs_java
def test_rouge_l_matches_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pairs = [("the eagle is a cheap coffee shop", "the eagle coffee shop is cheap"),
             ("a pub near the river", "near the river there is a family pub"),
             ("green man serves english food", "the green man is english")]
    want = []
    for hyp, ref in pairs:
        s = scorer.score(ref, hyp)["rougeL"]
        p, r = s.precision, s.recall
        want.append((1 + 1.2 ** 2) * p * r / (r + 1.2 ** 2 * p) if p and r else 0.0)
    got = _coco.coco_scores([h for h, _ in pairs], [[r] for _, r in pairs])["rouge_l"]
    assert got == pytest.approx(float(np.mean(want)), abs=1e-12)
    # several references: best precision and best recall are taken separately (COCO rule):
    # P = max(2/4, 2/4) = 0.5, R = max(2/6, 2/2) = 1 -> F = 2.44*0.5/(1+1.44*0.5) = 0.7093023
    gts, res = {"a": ["a b x x x x", "a c"]}, {"a": ["a b c d"]}
    assert _coco.rouge_l(gts, res) == pytest.approx(1.22 / 1.72, abs=1e-12)


# WebNLG / DART

@pytest.mark.parametrize("name", ["webnlg", "dart"])
def test_webnlg_dart_match_sacrebleu(name):
    rng = np.random.default_rng(3)
    vocab = "Alan Bean was born in Wheeler , Texas . He is a test pilot".split()
    preds, refs = [], []
    for i in range(40):
        refs.append([" ".join(rng.choice(vocab, rng.integers(5, 12)))
                     for _ in range(1 + i % 3)])  # 1-3 references per source
        preds.append(" ".join(rng.choice(vocab, rng.integers(4, 12))))
    out = M.load(name).compute(predictions=preds, references=refs, scoring="sacrebleu")
    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(3)]
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, streams).score / 100,
                                        abs=1e-12)
    assert out["ter"] == pytest.approx(sacrebleu.corpus_ter(preds, streams).score / 100,
                                       abs=1e-12)
    assert 0 <= out["bleu"] <= 1 and out["ter"] > 0
    # '' padding would add zero-length references and change the score
    padded = [[rs[k] if k < len(rs) else "" for rs in refs] for k in range(3)]
    assert sacrebleu.corpus_ter(preds, padded).score / 100 != pytest.approx(out["ter"])


def test_ter_sentence_min_variant():
    # "a b c d" vs its identical ref -> 0; "a b" vs "a b c d" -> 2 deletions / 4 = 0.5
    preds, refs = ["a b c d", "a b"], [["x y", "a b c d"], ["a b c d"]]
    assert sacrebleu_scores(preds, refs, ter_variant="sentence_min")["ter"] == pytest.approx(0.25)
    assert sacrebleu_scores(preds, refs)["ter"] == pytest.approx(2 / (3 + 4))
    with pytest.raises(ValueError, match=r"predictions \(2\).*references \(1\)"):
        M.load("webnlg").compute(predictions=preds, references=refs[:1])
