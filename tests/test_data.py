"""Tests of peftkit.data: real-data checks against SOURCES.md and LM-BFF's md5 list, plus bad inputs.

Real-data tests need PEFTKIT_DATA_DIR (CI sets it); the rest write their own files under tmp_path.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import os
import pathlib
import shutil
import time

import datasets
import numpy as np
import pytest

import peftkit.data as D
from peftkit.data import DataError
from peftkit.data.formats import write_label_csv

ENV_DIR = os.environ.get("PEFTKIT_DATA_DIR", "").strip()


@pytest.fixture(scope="module")
def data_dir() -> pathlib.Path:
    if not ENV_DIR:
        pytest.skip("PEFTKIT_DATA_DIR is unset: the real-data tests need the shared data directory")
    return pathlib.Path(ENV_DIR)


# ---------------------------------------------------------------- GLUE on the real files

# (task, split, rows, label counts in class-index order or None for STS-B): SOURCES.md §1.
GLUE_FILES = [
    ("cola", "train", 8551, [2528, 6023]),
    ("cola", "dev", 1043, [322, 721]),
    ("sst2", "train", 67349, [29780, 37569]),
    ("sst2", "dev", 872, [428, 444]),
    ("mrpc", "train", 3668, [1194, 2474]),
    ("mrpc", "dev", 408, [129, 279]),
    ("stsb", "train", 5749, None),
    ("stsb", "dev", 1500, None),
    ("rte", "train", 2490, [1249, 1241]),
    ("rte", "dev", 277, [146, 131]),
    ("qnli", "dev", 5463, [2702, 2761]),
]


@pytest.mark.parametrize("task,split,rows,counts", GLUE_FILES)
def test_glue_rows_and_labels_match_sources(data_dir, task, split, rows, counts):
    ds = D.load_glue(task, split, data_dir)
    assert len(ds) == rows
    assert ds.column_names == ["idx", "text_a", "text_b", "label"]
    assert len(set(ds["idx"])) == rows
    spec = D.GLUE_TASKS[task]
    if counts is None:
        scores = np.array(ds["label"])
        assert scores.min() >= 0 and scores.max() <= 5 and len(np.unique(scores)) > 50
    else:
        assert ds.features["label"].names == list(spec.label_names)
        got = collections.Counter(ds["label"])
        assert [got[i] for i in range(spec.num_labels)] == counts
    texts_b = ds["text_b"]
    if spec.is_pair:
        assert all(isinstance(t, str) for t in texts_b)
    else:
        assert all(t is None for t in texts_b)


def test_glue_columns_and_ids(data_dir):
    rte = D.load_glue("rte", "train", data_dir)[0]
    assert rte == {"idx": 0, "text_a": "No Weapons of Mass Destruction Found in Iraq Yet.",
                   "text_b": "Weapons of Mass Destruction Found in Iraq.", "label": 1}
    mrpc = D.load_glue("MRPC", "train", data_dir)
    assert mrpc["idx"][:3] == [0, 1, 2]  # no single id column: row numbers
    assert mrpc[0]["text_a"].startswith("Amrozi accused his brother") and "\ufeff" not in mrpc[0]["text_a"]
    cola = D.load_glue("cola", "dev", data_dir)[0]
    assert cola == {"idx": 0, "text_a": "The sailors rode the breeze clear of the rocks.", "text_b": None, "label": 1}
    assert D.load_glue("sst2", "train", data_dir)[0]["text_a"] == "hide new secretions from the parental units "
    stsb = D.load_glue("STS-B", "validation", data_dir)
    assert stsb.features["label"] == datasets.Value("float32") and stsb[0]["label"] == 5.0
    assert D.GLUE_TASKS["stsb"].num_labels == 1 and D.GLUE_TASKS["mnli"].num_labels == 3


def test_glue_aliases_give_the_same_split(data_dir):
    a = D.split_identity(D.load_glue("SST-2", "validation", data_dir), "sst2", "dev")
    b = D.split_identity(D.load_glue("sst2", "dev", data_dir), "sst2", "dev")
    assert a == b and a["rows"] == 872


@pytest.mark.parametrize("task,split,file", [
    ("mnli", "train", "glue/MNLI/train.tsv"),
    ("mnli", "validation_matched", "glue/MNLI/dev_matched.tsv"),
    ("MNLI", "dev_mismatched", "glue/MNLI/dev_mismatched.tsv"),
    ("qqp", "dev", "glue/QQP/dev.tsv"),
    ("qnli", "train", "glue/QNLI/train.tsv"),
])
def test_glue_missing_files_say_where_to_put_them(data_dir, task, split, file):
    with pytest.raises(DataError, match="not found") as e:
        D.load_glue(task, split, data_dir)
    assert str(data_dir / file) in str(e.value) and "SOURCES.md" in str(e.value)


# ---------------------------------------------------------------- hub fallback (no network needed)

def test_hub_offline_fails_at_once(monkeypatch):
    monkeypatch.delenv("PEFTKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DataError, match="HF_HUB_OFFLINE") as e:
        D.load_glue("rte", "train")
    assert time.monotonic() - start < 2
    assert "PEFTKIT_DATA_DIR" in str(e.value) and "glue/RTE/train.tsv" in str(e.value)


def test_hub_unreachable_fails_at_once(monkeypatch):
    monkeypatch.delenv("PEFTKIT_DATA_DIR", raising=False)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")
    start = time.monotonic()
    with pytest.raises(DataError, match="unreachable") as e:
        D.load_glue("mnli", "dev_matched")
    assert time.monotonic() - start < 10
    assert "--data-dir" in str(e.value) and "glue/MNLI/dev_matched.tsv" in str(e.value)


def test_hub_columns_are_mapped():
    from peftkit.data.glue import from_hub_columns
    names = ["entailment", "neutral", "contradiction"]
    hub = datasets.Dataset.from_dict(
        {"premise": ["P."], "hypothesis": ["H."], "label": [2], "idx": [7]},
        features=datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=names), "idx": datasets.Value("int32")}))
    ds = from_hub_columns(hub, D.glue_task("mnli"))
    assert ds[0] == {"idx": 7, "text_a": "P.", "text_b": "H.", "label": 2}
    swapped = hub.cast_column("label", datasets.ClassLabel(names=names[::-1]))
    with pytest.raises(DataError, match="label order"):
        from_hub_columns(swapped, D.glue_task("mnli"))



def test_hub_path_without_data_dir(monkeypatch):
    import peftkit.data.glue as glue
    calls = []
    fake = datasets.Dataset.from_dict(
        {"sentence1": ["A."], "sentence2": ["B."], "label": [1], "idx": [0]},
        features=datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
                                    "idx": datasets.Value("int32")}))
    monkeypatch.delenv("PEFTKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(glue, "require_hub", lambda what, hint: calls.append(what))
    monkeypatch.setattr(glue.datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or fake)
    ds = D.load_glue("RTE", "dev")
    assert calls[1] == (("nyu-mll/glue", "rte"), {"split": "validation"})
    assert ds[0] == {"idx": 0, "text_a": "A.", "text_b": "B.", "label": 1}

# ---------------------------------------------------------------- UniPELT low-resource protocol

def test_low_resource_split(data_dir):
    train = D.load_glue("rte", "train", data_dir)  # idx == row number here
    assert D.LOW_RESOURCE_SEEDS == (111, 222, 333, 444, 555)
    seen = set()
    for seed in D.LOW_RESOURCE_SEEDS:
        tr, dev = D.low_resource_split(train, 100, seed)
        perm = np.random.default_rng(seed).permutation(len(train))  # datasets' shuffle, independently
        assert tr["idx"] == perm[:100].tolist() and dev["idx"] == perm[100:1100].tolist()
        assert not set(tr["idx"]) & set(dev["idx"])
        ident = D.split_identity(tr, "rte", "train", 100, seed)
        joined = "\n".join(str(i) for i in perm[:100])
        assert len(ident.pop("content_sha256")) == 64
        assert ident == {"task": "rte", "split": "train", "k": 100, "data_seed": seed, "rows": 100,
                         "ids_sha256": hashlib.sha256(joined.encode()).hexdigest()}
        assert D.split_identity(D.low_resource_split(train, 100, seed)[0], "rte", "train")["ids_sha256"] \
            == ident["ids_sha256"]
        seen.add(ident["ids_sha256"])
    assert len(seen) == 5
    tr, dev = D.low_resource_split(train, 2000, 111)
    assert (len(tr), len(dev)) == (2000, 490)  # smaller than k + 1000: dev gets what is left


# ---------------------------------------------------------------- few-shot (LM-BFF)

TEST_ROWS = {"SST-2": 872, "sst-5": 2210, "mr": 2000, "cr": 2000, "mpqa": 2000, "subj": 2000, "trec": 500,
             "CoLA": 1043, "QNLI": 5463, "RTE": 277, "MRPC": 408, "STS-B": 1500}


@pytest.mark.parametrize("task", list(D.FEWSHOT_TASKS))
def test_kshot_splits_are_balanced(data_dir, task):
    spec = D.fewshot_task(task)
    for seed in D.FEWSHOT_SEEDS:
        for split in ("train", "dev"):
            ds = D.load_kshot(task, split, 16, seed, data_dir)
            assert ds.column_names == ["idx", "text_a", "text_b", "label"]
            if spec.label_names is None:  # STS-B: 16 per half, split at 2.5
                counts = collections.Counter(lab >= 2.5 for lab in ds["label"])
                assert counts == {False: 16, True: 16}
            else:
                assert collections.Counter(ds["label"]) == {i: 16 for i in range(len(spec.label_names))}
    if task in TEST_ROWS:
        assert len(D.load_kshot(task, "test", data_dir=data_dir)) == TEST_ROWS[task]


def test_kshot_test_is_the_glue_dev_set(data_dir):
    for few, glue in [("CoLA", "cola"), ("RTE", "rte"), ("MRPC", "mrpc"), ("STS-B", "stsb"), ("QNLI", "qnli")]:
        a = D.load_kshot(few, "test", 16, 42, data_dir)
        b = D.load_glue(glue, "dev", data_dir)
        assert a["idx"] == b["idx"] and a["label"] == b["label"] and a["text_a"] == b["text_a"]


def test_kshot_missing_test_uses_glue_copy_or_says_so(data_dir, tmp_path):
    with pytest.raises(DataError, match="MNLI/16-13/test_matched.tsv") as e:
        D.load_kshot("mnli", "test_matched", data_dir=data_dir)
    assert "glue/MNLI/dev_matched.tsv" in str(e.value)
    with pytest.raises(DataError, match="SNLI/16-13/test.tsv"):
        D.load_kshot("snli", "test", data_dir=data_dir)
    setting = tmp_path / "fewshot/k-shot/RTE/16-13"
    setting.mkdir(parents=True)
    shutil.copy(data_dir / "fewshot/k-shot/RTE/16-13/train.tsv", setting)
    (tmp_path / "glue/RTE").mkdir(parents=True)
    shutil.copy(data_dir / "glue/RTE/dev.tsv", tmp_path / "glue/RTE")
    assert len(D.load_kshot("rte", "test", data_dir=tmp_path)) == 277
    (tmp_path / "fewshot/k-shot/SST-2/16-13").mkdir(parents=True)
    (tmp_path / "glue/SST-2").mkdir(parents=True)
    shutil.copy(data_dir / "glue/SST-2/dev.tsv", tmp_path / "glue/SST-2")
    with pytest.raises(DataError, match=r"SST-2/16-13/test\.tsv: SST-2 k-shot test file not found"):
        D.load_kshot("sst-2", "test", data_dir=tmp_path)  # LM-BFF's SST-2 is not GLUE's: no fallback


def test_published_kshot_files_pass_checksum(data_dir):
    result = D.verify_kshot(data_dir)
    assert (len(result["ok"]), len(result["mismatch"]), len(result["absent"])) == (210, 0, 20)
    assert {p.split("/")[0] for p in result["absent"]} == {"MNLI", "QQP", "SNLI"}
    assert all(p.split("/")[-1].startswith("test") for p in result["absent"])


def test_regenerated_kshot_splits_match_lmbff_md5(data_dir, tmp_path):
    out = tmp_path / "k-shot"
    written = []
    for task in ("CoLA", "RTE", "MRPC", "STS-B"):
        written += D.make_kshot_splits(task, data_dir / f"glue/{task}/train.tsv", 16, D.FEWSHOT_SEEDS, out)
    assert len(written) == 40
    result = D.verify_kshot(out, data_dir / "fewshot/k-shot/checksum")
    assert len(result["ok"]) == 40 and result["mismatch"] == []
    # CoLA's shuffles accumulate: asking for seed 87 alone replays 100, 13, 21, 42 first.
    alone = tmp_path / "alone"
    D.make_kshot_splits("cola", data_dir / "glue/CoLA/train.tsv", 16, [87], alone)
    assert D.verify_kshot(alone, data_dir / "fewshot/k-shot/checksum")["ok"] == ["CoLA/16-87/train.tsv",
                                                                                 "CoLA/16-87/dev.tsv"]


def test_csv_writer_reproduces_published_csv(data_dir, tmp_path):
    files = sorted((data_dir / "fewshot/k-shot").glob("*/16-*/*.csv"))
    assert len(files) == 6 * 5 * 3
    for path in files:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        write_label_csv(tmp_path / "x.csv", rows)
        assert (tmp_path / "x.csv").read_bytes() == path.read_bytes(), path


def test_make_kshot_csv_task(tmp_path):
    rows = [[str(i % 6), f'question {i} , "quoted"'] for i in range(6 * 40)]
    write_label_csv(tmp_path / "train.csv", rows)
    files = D.make_kshot_splits("trec", tmp_path / "train.csv", 8, [13, 21], tmp_path / "fewshot/k-shot")
    assert [f.name for f in files] == ["train.csv", "dev.csv"] * 2
    ds = D.load_kshot("TREC", "train", 8, 13, tmp_path).to_pandas()
    dev = D.load_kshot("trec", "dev", 8, 13, tmp_path).to_pandas()
    assert (ds.label.value_counts() == 8).all() and len(ds) == 48 and len(dev) == 48
    assert not set(ds.text_a) & set(dev.text_a)
    again = D.make_kshot_splits("trec", tmp_path / "train.csv", 8, [13], tmp_path / "again")
    assert again[0].read_bytes() == files[0].read_bytes()


# ---------------------------------------------------------------- prompts

def _lmbff_render(template: str, a: str, b: str | None, mask: str) -> str:
    """LM-BFF's part-by-part concatenation, as text; the mask gets RoBERTa's absorbed space."""
    out = ""
    for part in template.split("*"):
        if part in ("", "cls", "sep+"):
            continue
        if part == "mask":
            out += (" " if out else "") + mask
            continue
        space = " " if part.startswith("+") else ""
        kind, _, sid = part.lstrip("+").partition("_")
        if kind in ("sent", "sent-", "sentl") and sid.isdigit():
            text = (a, b)[int(sid)]
            text = text[:-1] if kind == "sent-" else text[:1].lower() + text[1:] if kind == "sentl" else text
            out += space + text
        else:
            out += part.replace("_", " ")
    return out


def test_prompts_match_lmbff_templates():
    assert set(D.PROMPTS) == set(D.FEWSHOT_TASKS)
    for task, prompt in D.PROMPTS.items():
        spec = D.fewshot_task(task)
        n = 2 if spec.label_names is None else len(spec.label_names)
        assert sorted(prompt.label_words) == list(range(n))
        b = "Some Other text." if "{text_b" in prompt.template else None
        assert D.render_prompt(task, "A first text.", b, "<mask>") == \
            _lmbff_render(prompt.lmbff_template, "A first text.", b, "<mask>"), task


def test_render_prompt_examples():
    assert D.render_prompt("sst-2", "a gem .", mask_token="<mask>") == "a gem . It was <mask>."
    assert D.render_prompt("MNLI", "The cat sat.", "A dog ran.", "[MASK]") == "The cat sat? [MASK], a dog ran."
    assert D.render_prompt("trec", "What is LMDS ?", mask_token="<mask>") == "<mask>: What is LMDS ?"
    assert D.PROMPTS["SST-2"].label_words == {0: "terrible", 1: "great"}
    assert D.PROMPTS["MNLI"].label_words == {0: "Yes", 1: "Maybe", 2: "No"}  # entailment, neutral, contradiction
    assert D.PROMPTS["trec"].label_words[2] == "Expression"  # class 2 is abbreviation (ABBR)


# ---------------------------------------------------------------- NLG

@pytest.mark.parametrize("fmt", ["official", "lora"])
def test_e2e_counts_and_grouping(data_dir, fmt):
    for split, rows, mrs in [("train", 42061, 4862), ("dev", 4672, 547), ("test", 4693, 630)]:
        ds = D.load_nlg("e2e", split, data_dir, e2e_format=fmt)
        ev = D.load_nlg_eval("e2e", split, data_dir, e2e_format=fmt, e2e_references=fmt)
        assert (len(ds), len(ev)) == (rows, mrs)
        assert sum(map(len, ev["references"])) == rows
        if split == "dev":
            first = ev[0]
            assert ds.filter(lambda r: r["source"] == first["source"])["target"] == first["references"]
            assert ds[0]["references"] == first["references"]
    src = D.load_nlg_eval("e2e", "test", data_dir, e2e_format=fmt)[0]["source"]
    assert src == ("name[Blue Spice], eatType[coffee shop], area[city centre]" if fmt == "official"
                   else "name : Blue Spice | Type : coffee shop | area : city centre")


def test_webnlg_linearisation_and_counts(data_dir):
    train = D.load_nlg("webnlg", "train", data_dir)
    assert len(train) == 18025  # 18102 lexicalisations minus 77 marked "toFix" (LoRA keeps "good" only)
    assert train[0]["source"] == 'Aarhus_Airport : cityServed : "Aarhus, Denmark"'
    assert any(" | " in s and s.count(" : ") == 2 * (s.count(" | ") + 1) for s in train["source"][-50:])
    assert all(train["seen"])
    test = D.load_nlg("webnlg", "test", data_dir)
    ev = D.load_nlg_eval("webnlg", "test", data_dir)
    assert (len(test), len(ev)) == (4928, 1862)
    assert {c for c, s in zip(test["category"], test["seen"]) if not s} >= {"Artist", "Politician"}


def test_dart(data_dir, tmp_path):
    dev = D.load_nlg("dart", "dev", data_dir)
    assert len(dev) == 6980
    assert dev[0]["source"] == ("Mars Hill College : joined : 1973 | "
                                "Mars Hill College : location : Mars Hill, North Carolina")
    nlg = data_dir / "nlg/dart"
    # the XML reader (test split without LoRA's JSON) reads the dev XML as the JSON reader reads the dev JSON
    as_test = {}
    for suffix in ("json", "xml"):
        root = tmp_path / suffix
        (root / "nlg/dart").mkdir(parents=True)
        (root / f"nlg/dart/dart-v1.1.1-full-test.{suffix}").symlink_to(nlg / f"dart-v1.1.1-full-dev.{suffix}")
        as_test[suffix] = D.load_nlg("dart", "test", root)
    assert as_test["xml"].to_list() == as_test["json"].to_list() and len(as_test["xml"]) == len(dev)
    test = D.load_nlg_eval("dart", "test", data_dir)  # the 2021 XML stands in for LoRA's test JSON
    assert sum(map(len, test["references"])) == 12552
    with pytest.raises(DataError, match="dart-v1.1.1-full-train.json: dart train file not found") as e:
        D.load_nlg("dart", "train", data_dir)
    assert "SOURCES.md" in str(e.value)


# ---------------------------------------------------------------- task registry

def test_task_kind_and_list_tasks():
    assert D.list_tasks("glue") == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"]
    assert len(D.list_tasks("fewshot")) == 15 and D.list_tasks("nlg") == ["e2e", "webnlg", "dart"]
    assert len(D.list_tasks()) == 26 and "fewshot:SST-2" in D.list_tasks()
    assert [D.task_kind(t) for t in ("SST-2", "sts-b", "sst-5", "SNLI", "trec", "E2E", "fewshot:sst2")] == \
        ["glue", "glue", "fewshot", "fewshot", "fewshot", "nlg", "fewshot"]


# ---------------------------------------------------------------- bad inputs

RTE_HEAD = "index\tsentence1\tsentence2\tlabel\n"
STSB_HEAD = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
STSB_ROW = "0\tg\tf\t2012\t0001\tnone\tnone\tA b.\tC d.\t{}\n"


def _write(root: pathlib.Path, rel: str, text: str) -> pathlib.Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# (file to write, its text, call, regex the message must match: file name and 1-based line)
BAD_FILES = [
    ("glue/RTE/train.tsv", RTE_HEAD + "0\ta\tb\tentailment\n1\ta\tb\n",
     lambda d: D.load_glue("rte", "train", d), r"RTE/train\.tsv:3: expected 4 tab-separated columns, found 3"),
    ("glue/RTE/train.tsv", RTE_HEAD + "0\ta\tb\tmaybe\n",
     lambda d: D.load_glue("rte", "train", d), r"RTE/train\.tsv:2: unknown label 'maybe'"),
    ("glue/STS-B/dev.tsv", STSB_HEAD + STSB_ROW.format("4.0") + STSB_ROW.replace("0\t", "1\t", 1).format("high"),
     lambda d: D.load_glue("stsb", "dev", d), r"STS-B/dev\.tsv:3: score 'high' .* is not a number"),
    ("glue/STS-B/dev.tsv", STSB_HEAD + STSB_ROW.format("7.5"),
     lambda d: D.load_glue("stsb", "dev", d), r"STS-B/dev\.tsv:2: score '7\.5' .* outside \[0\.0, 5\.0\]"),
    ("glue/RTE/dev.tsv", "index\tsentence1\tsentence2\tgold\n0\ta\tb\tentailment\n",
     lambda d: D.load_glue("rte", "dev", d), r"RTE/dev\.tsv:1: header lacks column\(s\) 'label'"),
    ("glue/RTE/dev.tsv", "",
     lambda d: D.load_glue("rte", "dev", d), r"RTE/dev\.tsv: empty file"),
    ("glue/CoLA/dev.tsv", "",
     lambda d: D.load_glue("cola", "dev", d), r"CoLA/dev\.tsv: empty file"),
    ("glue/CoLA/train.tsv", "gj04\t1\t\tFine.\ngj04\t1\tToo few.\n",
     lambda d: D.load_glue("cola", "train", d), r"CoLA/train\.tsv:2: expected 4 tab-separated columns, found 3"),
    ("glue/RTE/train.tsv", RTE_HEAD + "0\ta\tb\tentailment\n0\tc\td\tentailment\n",
     lambda d: D.load_glue("rte", "train", d), r"RTE/train\.tsv:3: id 0 appears twice"),
    ("glue/RTE/train.tsv", RTE_HEAD + "x1\ta\tb\tentailment\n",
     lambda d: D.load_glue("rte", "train", d), r"RTE/train\.tsv:2: id 'x1' is not an integer"),
    ("fewshot/k-shot/trec/16-13/train.csv", '0,"a\nmultiline question"\n9,bad label\n',
     lambda d: D.load_kshot("trec", "train", data_dir=d), r"trec/16-13/train\.csv:3: unknown label '9'"),
    ("fewshot/k-shot/mr/16-13/dev.csv", "0,one,two\n",
     lambda d: D.load_kshot("mr", "dev", data_dir=d), r"mr/16-13/dev\.csv:1: expected 2 comma-separated fields"),
    ("nlg/webnlg/train.json", '{\n  "entries": [\n    {"1": }\n  ]\n}\n',
     lambda d: D.load_nlg("webnlg", "train", d), r"webnlg/train\.json:3: invalid JSON"),
    ("nlg/e2e/dev.csv", "mr,text\n\"name[X]\",X is a pub.\n",
     lambda d: D.load_nlg("e2e", "dev", d), r"e2e/dev\.csv:1: header lacks column 'mr' or 'ref'"),
    ("nlg/e2e/dev.csv", "mr,ref\n\"name[X]\",X.\n\"name[Y]\",Y.,extra\n",
     lambda d: D.load_nlg("e2e", "dev", d), r"e2e/dev\.csv:3: expected 2 fields, found 3"),
    ("nlg/e2e/lora/valid.txt", "name : X||X .\nname : Y | Y .\n",
     lambda d: D.load_nlg("e2e", "dev", d, e2e_format="lora"), r"lora/valid\.txt:2: expected 'source\|\|reference'"),
    ("nlg/dart/dart-v1.1.1-full-test.xml", "<benchmark>\n<entries>\n<entry>\n</benchmark>\n",
     lambda d: D.load_nlg("dart", "test", d), r"dart-v1\.1\.1-full-test\.xml:4: invalid XML"),
    ("fewshot/k-shot/checksum", "0123456789abcdef0123456789abcdef  RTE/16-13/train.tsv\nnot-an-md5 RTE\n",
     lambda d: D.verify_kshot(d), r"k-shot/checksum:2: expected '<32 hex md5>  <path>'"),
    ("orig/RTE/train.tsv", RTE_HEAD + "".join(f"{i}\ta\tb\t{'entailment' if i % 2 else 'not_entailment'}\n"
                                               for i in range(40)),
     lambda d: D.make_kshot_splits("rte", d / "orig/RTE/train.tsv", 16, [13], d / "out"),
     r"k=16 is too large for .*orig/RTE/train\.tsv: label 'not_entailment' has 20 rows"),
    ("orig/RTE/train.tsv", RTE_HEAD + "0\ta\tb\tentailment\n1\ta\tb\tyes\n",
     lambda d: D.make_kshot_splits("rte", d / "orig/RTE/train.tsv", 1, [13], d / "out"),
     r"orig/RTE/train\.tsv:3: unknown label 'yes'"),
]


@pytest.mark.parametrize("rel,text,call,pattern", BAD_FILES, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_FILES)])
def test_bad_files_name_file_and_line(tmp_path, rel, text, call, pattern):
    _write(tmp_path, rel, text)
    with pytest.raises(DataError, match=pattern):
        call(tmp_path)


def test_missing_files_name_the_file(tmp_path):
    (tmp_path / "glue").mkdir()
    with pytest.raises(DataError, match=r"glue/QQP/train\.tsv: GLUE QQP train file not found"):
        D.load_glue("qqp", "train", tmp_path)
    with pytest.raises(DataError, match=r"nlg/webnlg/dev\.json: webnlg dev file not found"):
        D.load_nlg("webnlg", "validation", tmp_path)
    with pytest.raises(DataError, match=r"no k-shot split for k=16, seed=13"):
        D.load_kshot("rte", "train", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"missing\.tsv: original train file not found"):
        D.make_kshot_splits("rte", tmp_path / "missing.tsv", 16, [13], tmp_path)


BAD_ARGS = [
    (lambda: D.load_glue("wnli", "train"), r"task='wnli' is not a GLUE task; allowed: cola, sst2, mrpc"),
    (lambda: D.load_glue("rte", "test"), r"split='test' is not a split of GLUE task 'rte'; allowed: train, dev$"),
    (lambda: D.load_glue("mnli", "dev"), r"allowed: train, dev_matched, dev_mismatched"),
    (lambda: D.load_kshot("rte", "train", 16, -1), r"seed must be an integer >= 0, got -1"),
    (lambda: D.load_kshot("rte", "train", 0), r"k must be an integer >= 1, got 0"),
    (lambda: D.load_kshot("wic", "train"), r"task='wic' is not an LM-BFF few-shot task; allowed: SST-2, sst-5"),
    (lambda: D.load_kshot("rte", "dev_matched"), r"allowed: train, dev, test"),
    (lambda: D.load_nlg("totto", "train"), r"task='totto' is not an NLG task; allowed: e2e, webnlg, dart"),
    (lambda: D.load_nlg("e2e", "train", e2e_format="raw"), r"e2e_format must be one of \['official', 'lora'\]"),
    (lambda: D.make_kshot_splits("rte", "x.tsv", 16, [], "."), r"seeds must name at least one seed"),
    (lambda: D.make_kshot_splits("rte", "x.tsv", 16, [13], ".", dev_multiple=0), r"dev_multiple must be"),
    (lambda: D.render_prompt("rte", "A."), r"text_b is required"),
    (lambda: D.task_kind("glue:sst-5"), r"task='glue:sst-5': 'sst-5' is not a glue task"),
    (lambda: D.task_kind("imdb"), r"task='imdb' is not a known task; allowed: glue:cola"),
    (lambda: D.list_tasks("vision"), r"kind='vision' is not a task kind; allowed: glue, fewshot, nlg"),
    (lambda: D.resolve_data_dir("/nonexistent/peftkit-data"), r"data_dir '/nonexistent/peftkit-data' does not exist"),
]


@pytest.mark.parametrize("call,pattern", BAD_ARGS, ids=[p[:40] for _, p in BAD_ARGS])
def test_bad_arguments_name_argument_and_allowed_values(tmp_path, monkeypatch, call, pattern):
    monkeypatch.setenv("PEFTKIT_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=pattern):
        call()


def test_low_resource_bad_arguments():
    ds = datasets.Dataset.from_dict({"idx": list(range(10))})
    for kwargs, pattern in [({"k": 0, "data_seed": 1}, r"k must be an integer >= 1"),
                            ({"k": 10, "data_seed": 1}, r"k=10 is too large: the training set has 10 rows"),
                            ({"k": 50, "data_seed": 1}, r"k=50 is too large"),
                            ({"k": 3, "data_seed": -5}, r"data_seed must be an integer >= 0, got -5")]:
        with pytest.raises(DataError, match=pattern):
            D.low_resource_split(ds, **kwargs)
    with pytest.raises(DataError, match="needs an 'idx' column"):
        D.split_identity(datasets.Dataset.from_dict({"x": [1]}), "t", "train")


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTKIT_DATA_DIR", str(tmp_path))
    assert D.resolve_data_dir() == tmp_path
    assert D.resolve_data_dir(tmp_path / "..") == tmp_path / ".."
    monkeypatch.setenv("PEFTKIT_DATA_DIR", "")
    assert D.resolve_data_dir() is None
    monkeypatch.setenv("PEFTKIT_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"\$PEFTKIT_DATA_DIR=.*nope.* does not exist"):
        D.resolve_data_dir()
