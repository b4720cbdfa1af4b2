"""WebNLG / DART / E2E scoring against the authors' evaluation (LoRA repository's NLG pipeline).

Fixtures (tests/fixtures/nlg, rebuilt by its make_fixtures.py): 49 WebNLG 2017 test sources (27 seen, 22 unseen
categories, 137 references; two sources have 7-8 references, so the 6-reference cap drops 3) and 60 DART test
sources (280 references, 52 dropped by the cap), each with three system outputs: the first reference, a degraded
copy of it and one generic sentence.

Expected values: the official scripts run on those files (never vendored here), with
microsoft/LoRA @ c4593f06 (examples/NLG/src/{format_converting_webnlg,format_converting_dart,gpt2_decode}.py,
examples/NLG/eval/eval.py, vocab/), WebNLG/GenerationEval metrics/multi-bleu-detok.perl, meteor-1.5.jar with
paraphrase-en.gz (pycocoevalcap 1.2's copy), pyter3 0.3, nltk 3.10.4::

    python format_converting_webnlg.py tests/fixtures/nlg/webnlg/test.json test_formatted.jsonl
    #   (DART: format_converting_dart.py tests/fixtures/nlg/dart/dart-v1.1.1-full-test.json ...)
    # sample.jsonl: one line per source {"id": <first row of that context>, "predict": GPT-2 ids of the output}
    python gpt2_decode.py --vocab vocab --sample_file sample.jsonl --input_file test_formatted.jsonl \
        --ref_type webnlg --ref_num 6 --output_ref_file refs --output_pred_file hyp --tokenize --lower \
        --filter all            # seen | unseen for the S / U columns; --ref_type dart for DART
    truncate -s -1 hyp refs/reference[0-5]      # drop the final newline (see docs/fidelity.md, Known bugs)
    cd GenerationEval && python -c "import eval; print(eval.run(refs_path='refs/reference', \
        hyps_path='hyp', num_refs=6, metrics='bleu,meteor,ter'))"

``eval.run`` is what ``eval.py -nr 6 -m bleu,meteor,ter`` prints, unrounded (its table rounds METEOR and TER to
2 decimals). punkt data cannot be downloaded offline, so ``nltk.word_tokenize`` ran with ``preserve_line=True``
(no sentence split first; on text that gpt2_decode already split at every non-word character this changes no
token). With the trailing newline kept, the same runs print METEOR -1 and TER 0.29433 (WebNLG all, degraded) /
0.29055 (DART, degraded): the extra empty line counted as one more output with TER 1.
"""
import json
import os
from pathlib import Path

import pytest

from peftkit import metrics as M
from peftkit.data import DataError, load_nlg_eval
from peftkit.metrics import _coco
from peftkit.metrics._lora_eval import cap_references, lora_postprocess, nltk_tokens, pyter_ter

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = os.environ.get("PEFTKIT_DATA_DIR", "").strip()
SHARED = Path(DATA) if DATA else None
needs_java = pytest.mark.skipif(_coco.shutil.which("java") is None, reason="java not installed")

# official values: BLEU as multi-bleu-detok prints it (x100, 2 decimals) / 100; METEOR and TER unrounded
OFFICIAL = {
    ("webnlg", "first"): {part: (1.0, 1.0, 0.0) for part in ("all", "seen", "unseen")},
    ("webnlg", "degraded"): {"all": (0.3643, 0.3916772247506326, 0.2799311745217407),
                             "seen": (0.3730, 0.39443433727039195, 0.27284369143076054),
                             "unseen": (0.3502, 0.3878082791874138, 0.288629449224307)},
    ("webnlg", "generic"): {"all": (0.0246, 0.05757468583069921, 0.9888681671286832),
                            "seen": (0.0159, 0.056338810278174375, 0.9927703297486168),
                            "unseen": (0.0348, 0.05932626477647427, 0.9840791493678562)},
    ("dart", "first"): {"all": (1.0, 1.0, 0.0)},
    ("dart", "degraded"): {"all": (0.3699, 0.39832016375744256, 0.27872127876064745)},
    ("dart", "generic"): {"all": (0.0317, 0.06538741009962509, 0.9375483719501639)},
}
TOL = {"bleu": 0.0005, "meteor": 0.005, "ter": 0.002}


@pytest.fixture(scope="module")
def fixture_sets():
    outputs = json.loads((FIXTURES / "nlg" / "outputs.json").read_text(encoding="utf-8"))
    sets = {task: load_nlg_eval(task, "test", FIXTURES) for task in ("webnlg", "dart")}
    yield outputs, sets
    _coco.close_meteor()


@needs_java
@pytest.mark.parametrize("task,system", list(OFFICIAL))
def test_default_scores_equal_the_official_pipeline(fixture_sets, task, system):
    outputs, sets = fixture_sets
    ds = sets[task]
    kwargs = {"seen": list(ds["seen"])} if task == "webnlg" else {}
    got = M.load(task).compute(predictions=outputs[task][system], references=list(ds["references"]), **kwargs)
    for part, values in OFFICIAL[(task, system)].items():
        suffix = "" if part == "all" else f"_{part}"
        for metric, want in zip(("bleu", "meteor", "ter"), values):
            assert got[metric + suffix] == pytest.approx(want, abs=TOL[metric]), (part, metric)


def test_bleu_and_ter_without_java_and_the_sacrebleu_option(fixture_sets):
    outputs, sets = fixture_sets
    refs = list(sets["webnlg"]["references"])
    preds = outputs["webnlg"]["degraded"]
    lora = M.load("webnlg").compute(predictions=preds, references=refs, java_metrics=False)
    assert set(lora) == {"bleu", "ter"}
    want = OFFICIAL[("webnlg", "degraded")]["all"]
    assert lora["bleu"] == pytest.approx(want[0], abs=5e-5) and lora["ter"] == pytest.approx(want[2], abs=1e-12)
    raw = M.load("webnlg").compute(predictions=preds, references=refs, scoring="sacrebleu")
    assert set(raw) == {"bleu", "ter"}
    # the raw-text variant (case-sensitive 13a BLEU on all references, corpus TER) is a different number
    assert abs(raw["bleu"] - lora["bleu"]) > 0.02 and raw["ter"] != pytest.approx(lora["ter"], abs=1e-6)


def test_gpt2_decode_preprocessing_and_reference_cap():
    assert lora_postprocess("  Alan Bean's  (born 1932) was a U.S. test-pilot.\n") == \
        "alan bean ' s ( born 1932 ) was a u . s . test - pilot ."
    assert lora_postprocess("Ça coûte 5€", lower=False) == "Ça coûte 5 €"  # \W is Unicode-aware
    assert cap_references(["a", "b"], 4) == ["a", "b", "a", "a"]
    assert cap_references(list("abcdefgh")) == list("abcdef")
    # NLTK (eval.py's word_tokenize): double quotes become ``, and "cannot" two tokens
    assert nltk_tokens(lora_postprocess('It "cannot" be')) == ["it", "``", "can", "not", "``", "be"]
    with pytest.raises(ValueError, match="ref_num"):
        cap_references(["a"], 0)


def test_references_dropped_by_the_cap():
    counts = {}
    for task in ("webnlg", "dart"):
        refs = load_nlg_eval(task, "test", FIXTURES)["references"]
        counts[task] = sum(max(0, len(r) - 6) for r in refs)
    assert counts == {"webnlg": 3, "dart": 52}
    if SHARED is not None and (SHARED / "nlg").is_dir():  # full test sets: 3 WebNLG, 576 DART references unscored
        full = {t: sum(max(0, len(r) - 6) for r in load_nlg_eval(t, "test", SHARED)["references"])
                for t in ("webnlg", "dart")}
        assert full == {"webnlg": 3, "dart": 576}


def test_pyter_ter_hand_worked():
    # one block shift ("c d" to the front) and no edits: 1 / 4
    assert pyter_ter("a b c d".split(), "c d a b".split()) == pytest.approx(0.25)
    # no shift helps: 2 substitutions + 1 deletion over 3 reference words
    assert pyter_ter("x y z w".split(), "x a b".split()) == pytest.approx(1.0)
    assert pyter_ter([], "a b".split()) == 1.0
    # pyter's own doctest: 4 edits + shifts over 13 reference words
    ref = "SAUDI ARABIA denied THIS WEEK information published in the AMERICAN new york times".split()
    hyp = "THIS WEEK THE SAUDIS denied information published in the new york times".split()
    assert f"{pyter_ter(hyp, ref):.3f}" == "0.308"
    with pytest.raises(ValueError, match="non-empty reference"):
        pyter_ter(["a"], [])


def test_bad_options_name_the_field(fixture_sets):
    metric = M.load("dart")
    with pytest.raises(ValueError, match=r"scoring 'bleu'.*\['lora', 'sacrebleu'\]"):
        metric.compute(predictions=["a"], references=[["a"]], scoring="bleu")
    with pytest.raises(ValueError, match=r"\['ter_variant'\] apply to scoring='sacrebleu' only"):
        metric.compute(predictions=["a"], references=[["a"]], ter_variant="sentence_min", java_metrics=False)
    with pytest.raises(ValueError, match=r"seen must hold one bool per prediction \(2\)"):
        M.load("webnlg").compute(predictions=["a", "b"], references=[["a"], ["b"]], seen=[True], java_metrics=False)


def test_webnlg_eval_rows_carry_seen(fixture_sets):
    ds = fixture_sets[1]["webnlg"]
    assert sum(ds["seen"]) == 27 and len(ds) == 49
    assert all(s == (c in {"Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food", "Monument",
                           "SportsTeam", "University", "WrittenWork"}) for s, c in zip(ds["seen"], ds["category"]))


@pytest.mark.skipif(SHARED is None or not (SHARED / "nlg" / "e2e" / "lora").is_dir(),
                    reason="PEFTKIT_DATA_DIR unset or without nlg/e2e/lora")
def test_e2e_scored_against_loras_tokenised_references_by_default():
    lora = load_nlg_eval("e2e", "test", SHARED)
    raw = load_nlg_eval("e2e", "test", SHARED, e2e_references="official")
    assert lora["source"] == raw["source"] and len(lora) == 630  # same MRs (the CSV's), same grouping
    assert lora["references"][0][0] == "A coffee shop in the city centre area called Blue Spice ."
    assert raw["references"][0][0] == "A coffee shop in the city centre area called Blue Spice."
    assert [len(r) for r in lora["references"]] == [len(r) for r in raw["references"]]
    with pytest.raises(DataError, match=r"e2e_references must be one of \['official', 'lora'\]"):
        load_nlg_eval("e2e", "test", SHARED, e2e_references="csv")


def test_e2e_reference_swap_refuses_files_that_are_not_row_aligned(tmp_path):
    e2e = tmp_path / "nlg" / "e2e"
    (e2e / "lora").mkdir(parents=True)
    (e2e / "test.csv").write_text('mr,ref\n"name[A]","A is nice."\n"name[A]","A is bad."\n', encoding="utf-8")
    (e2e / "lora" / "test.txt").write_text("name : A||A is nice .\nname : A||A is bad .\n", encoding="utf-8")
    assert load_nlg_eval("e2e", "test", tmp_path)["references"] == [["A is nice .", "A is bad ."]]
    (e2e / "lora" / "test.txt").write_text("name : A||A is bad .\nname : A||A is nice .\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 1: the CSV and LoRA references differ beyond tokenisation"):
        load_nlg_eval("e2e", "test", tmp_path)
    assert load_nlg_eval("e2e", "test", tmp_path, e2e_references="official")["references"] == \
        [["A is nice.", "A is bad."]]
