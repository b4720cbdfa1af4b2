"""Bad input, one table per entry point: each case raises a clear error naming the file or field and the allowed
values (the CLI exits 2) and leaves the model, the run directory and the reports exactly as they were.

No case loads a backbone's weights: validation happens before (the CLI cases fail if anything tries).
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import peftkit
from conftest import listing, needs_data, tiny
from peftkit.core import CONFIG_FILE, WEIGHTS_FILE, has_state, state_of


def snapshot(model) -> dict:
    """Everything a failed call must leave as it was."""
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "modules": [n for n, _ in model.named_modules()],
            "peftkit": state_of(model) if has_state(model) else None}


def assert_unchanged(model, before: dict) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"]
    assert after["grad"] == before["grad"]
    assert after["peftkit"] is before["peftkit"]
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], before["state"][k]) for k in before["state"])


# --- peftkit.load / load_weights: corrupt and mismatched checkpoints ---------------------------------------------
def _checkpoint(tmp_path: Path, arch="bert", method="lora", **opts) -> Path:
    model = peftkit.apply(tiny(arch), method, seed=0, **(opts or {"r": 4}))
    return peftkit.save(model, tmp_path / "ckpt")


def _edit_config(**changes):
    def edit(d: Path):
        meta = json.loads((d / CONFIG_FILE).read_text())
        for k, v in changes.items():
            if v is _DROP:
                meta.pop(k)
            else:
                meta[k] = v
        (d / CONFIG_FILE).write_text(json.dumps(meta))
    return edit


_DROP = object()


def _edit_weights(fn):
    def edit(d: Path):
        tensors = load_file(str(d / WEIGHTS_FILE))
        fn(tensors)
        save_file(tensors, str(d / WEIGHTS_FILE))
    return edit


def _write(name: str, data: bytes | None = None, truncate: int | None = None):
    def edit(d: Path):
        p = d / name
        p.write_bytes(data if data is not None else p.read_bytes()[:truncate])
    return edit


def _three_labels():
    return tiny("bert")  # num_labels=3


def _two_labels():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = tiny("bert").config
    cfg.num_labels = 2
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig.from_dict(cfg.to_dict())).eval()


def _wider():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = tiny("bert").config.to_dict()
    cfg.update(hidden_size=48, num_attention_heads=4)
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig.from_dict(cfg)).eval()


def _attached():
    return peftkit.apply(tiny("bert"), "bitfit")


def _delete(name):
    return lambda d: (d / name).unlink()


LOAD_CASES = [
    # (id, edit of the saved checkpoint, model to load into, error type, substrings of the message)
    ("shapes-mismatch-hidden", None, _wider, ValueError, ["has shape", WEIGHTS_FILE]),
    ("corrupt-json", _write(CONFIG_FILE, b'{"method": "lora", '), _three_labels, ValueError,
     [CONFIG_FILE, "not valid JSON"]),
    ("no-model_type", _edit_config(model_type=_DROP), _three_labels, ValueError, [CONFIG_FILE, "'model_type'"]),
    ("no-method", _edit_config(method=_DROP), _three_labels, ValueError, [CONFIG_FILE, "'method'", "required"]),
    ("truncated-weights", _write(WEIGHTS_FILE, truncate=20), _three_labels, ValueError,
     [WEIGHTS_FILE, "truncated or corrupt"]),
    ("empty-weights", _write(WEIGHTS_FILE, b""), _three_labels, ValueError, [WEIGHTS_FILE, "truncated or corrupt"]),
    ("garbage-weights", _write(WEIGHTS_FILE, b"\x00" * 64), _three_labels, ValueError, [WEIGHTS_FILE]),
    ("2-label-into-3-label", None, _three_labels, ValueError, ["classifier.", "num_labels=2"]),
    ("json-not-object", _write(CONFIG_FILE, b"[1, 2]"), _three_labels, ValueError, [CONFIG_FILE, "JSON object"]),
    ("method-wrong-type", _edit_config(method=5), _three_labels, ValueError, [CONFIG_FILE, "method=5", "allowed"]),
    ("method-unknown", _edit_config(method="lorax"), _three_labels, ValueError, [CONFIG_FILE, "allowed", "lora"]),
    ("option-invalid", _edit_config(options={"r": -1}), _three_labels, ValueError, [CONFIG_FILE, "r=-1", "allowed"]),
    ("option-unknown", _edit_config(options={"rank": 4}), _three_labels, ValueError, [CONFIG_FILE, "'rank'"]),
    ("seed-negative", _edit_config(seed=-1), _three_labels, ValueError, [CONFIG_FILE, "seed=-1", "non-negative"]),
    ("merged-not-bool", _edit_config(merged="no"), _three_labels, ValueError, [CONFIG_FILE, "merged", "bool"]),
    ("model-type-other", _edit_config(model_type="gpt2"), _three_labels, ValueError, ["'gpt2'", "model_type"]),
    ("unknown-parameter", _edit_weights(lambda t: t.update({"bert.nope.weight": torch.zeros(2)})), _three_labels,
     ValueError, [WEIGHTS_FILE, "bert.nope.weight"]),
    ("missing-parameter", _edit_weights(lambda t: t.pop(sorted(k for k in t if "pk_" in k)[0])), _three_labels,
     ValueError, [WEIGHTS_FILE, "missing"]),
    ("integer-dtype", _edit_weights(lambda t: t.update({k: v.long() for k, v in t.items() if "pk_" in k})),
     _three_labels, ValueError, [WEIGHTS_FILE, "dtype"]),
    ("no-weights-file", _delete(WEIGHTS_FILE), _three_labels, FileNotFoundError, [WEIGHTS_FILE]),
    ("no-config-file", _delete(CONFIG_FILE), _three_labels, FileNotFoundError, [CONFIG_FILE]),
    ("already-attached", None, _attached, ValueError, ["already attached", "fresh base model"]),
]


@pytest.mark.parametrize("case,edit,target,error,words", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_load_is_all_or_nothing_with_a_clear_error(case, edit, target, error, words, tmp_path):
    if case == "2-label-into-3-label":
        d = peftkit.save(peftkit.apply(_two_labels(), "lora", r=4, seed=0), tmp_path / "ckpt")
    else:
        d = _checkpoint(tmp_path)
    if edit:
        edit(d)
    model = target()
    before, files = snapshot(model), listing(tmp_path)
    with pytest.raises(error) as err:
        peftkit.load(model, d)
    for w in words:
        assert w in str(err.value), str(err.value)
    assert_unchanged(model, before)
    assert listing(tmp_path) == files


def test_load_weights_checks_every_shape_before_copying(tmp_path):
    d = _checkpoint(tmp_path)
    _edit_weights(lambda t: t.update({"classifier.weight": torch.zeros(5, 32)}))(d)
    model = peftkit.apply(tiny("bert"), "lora", r=4, seed=0)
    before = snapshot(model)
    with pytest.raises(ValueError, match="classifier.weight.*nothing was loaded"):
        peftkit.core.load_weights(model, d)
    assert_unchanged(model, before)


def test_a_good_checkpoint_still_loads(tmp_path):
    saved = peftkit.apply(tiny("bert"), "lora", r=4, seed=0)
    with torch.no_grad():
        for n, p in saved.named_parameters():
            if p.requires_grad:
                p.add_(0.1)
    peftkit.save(saved, tmp_path / "ok")
    x = {"input_ids": torch.tensor([[5, 6, 7]])}
    assert torch.allclose(peftkit.load(tiny("bert"), tmp_path / "ok")(**x).logits, saved(**x).logits, atol=1e-6)


# --- the Python API: apply, route_groups, set_inference ----------------------------------------------------------
API_CASES = [
    ("lora", {"targets": ["query", "", "value"]}, "targets"),
    ("lora", {"targets": []}, "non-empty"),
    ("lora", {"targets": ["  "]}, "targets"),
    ("pfeiffer", {"bottleneck": 1_000_000_000}, "bottleneck=1000000000"),  # no 3 TB allocation: refused first
    ("houlsby", {"bottleneck": 257}, "<= 256"),  # 8 x hidden 32
    ("adamix", {"bottleneck": 10**9}, "bottleneck"),
    ("lora", {"r": 33}, "r=33"),  # > hidden 32
    ("adamix", {"base": "lora", "r": 10**6}, "r="),
    ("unipelt", {"r": 64}, "r=64"),
    ("prefix", {"prefix_length": 65}, "prefix_length=65"),  # > 64 positions
    ("prompt", {"prompt_length": 1000}, "prompt_length=1000"),
    ("prefix", {"prefix_hidden": 10**7}, "prefix_hidden"),
    ("adamix", {"num_modules": 10**4}, "num_modules"),
    ("lora", {"alpha": math.inf}, "alpha=inf"),
    ("lora", {"alpha": math.nan}, "alpha=nan"),
    ("lora", {"dropout": math.nan}, "dropout"),
    ("lora", {"r": "8"}, "r='8'"),
    ("pfeiffer", {"bottleneck": None}, "bottleneck=None"),
    ("lora", {"targets": "query,value"}, "targets"),
]


@pytest.mark.parametrize("method,opts,words", API_CASES, ids=[f"{m}-{o}" for m, o, _ in API_CASES])
def test_apply_rejects_bad_sizes_and_types_before_any_change(method, opts, words):
    model = tiny("bert")
    before = snapshot(model)
    with pytest.raises(ValueError, match="allowed") as err:
        peftkit.apply(model, method, **opts)
    assert words in str(err.value), str(err.value)
    assert_unchanged(model, before)


@pytest.mark.parametrize("groups", [0, -1, 1.5, "2", True])
def test_route_groups_needs_a_positive_integer(groups):
    model = peftkit.apply(tiny("bert"), "adamix", bottleneck=8, seed=0)
    with pytest.raises(ValueError, match="groups.*allowed a positive integer"):
        with peftkit.route_groups(model, groups):
            pass
    assert state_of(model).groups == 1


@pytest.mark.parametrize("method", ["lora", "pfeiffer", "unipelt"])
def test_set_inference_is_adamix_only(method):
    model = peftkit.apply(tiny("bert"), method, seed=0)
    with pytest.raises(ValueError, match=f"AdaMix only.*{method}"):
        peftkit.set_inference(model, "ensemble")
    assert state_of(model).inference == "merged"


# --- peftkit train (in-process): every RunSpec field, checked before the model loads ----------------------------
TRAIN_CASES = [
    # (id, arguments, substrings of the error)
    ("targets-empty-name", ["--option", "targets=query,,value"], ["targets", "none of them empty"]),
    ("targets-empty-list", ["--option", "targets=[]"], ["targets", "non-empty"]),
    ("bottleneck-huge", ["--method", "pfeiffer", "--option", "bottleneck=1000000000"], ["bottleneck", "<= 3072"]),
    ("lr-inf", ["--lr", "inf"], ["lr=inf", "finite"]),
    ("lr-nan", ["--lr", "nan"], ["lr=nan", "allowed"]),
    ("lr-huge", ["--lr", "1e6"], ["lr=", "(0, 10]"]),
    ("r-zero", ["--option", "r=0"], ["r=0", "0 method parameters"]),
    ("bottleneck-zero", ["--method", "pfeiffer", "--option", "bottleneck=0"], ["bottleneck=0", ">= 1"]),
    ("houlsby-bottleneck-zero", ["--method", "houlsby", "--option", "bottleneck=0"], ["bottleneck=0"]),
    ("label-smoothing-1.5", ["--label-smoothing", "1.5"], ["label_smoothing=1.5", "[0, 1)"]),
    ("label-smoothing-1", ["--label-smoothing", "1"], ["label_smoothing=1", "[0, 1)"]),
    ("label-smoothing-negative", ["--label-smoothing=-0.1"], ["label_smoothing"]),
    ("max-length-1", ["--max-length", "1"], ["max_length=1", ">= 8"]),
    ("max-length-100000", ["--max-length", "100000"], ["max_length=100000", "512"]),
    ("max-length-prompt", ["--method", "prompt", "--max-length", "500"], ["max_length=500", "492"]),
    ("epochs-1e-9", ["--epochs", "1e-9"], ["epochs=1e-09", "[0.01, 10000]"]),
    ("epochs-inf", ["--epochs", "inf"], ["epochs=inf"]),
    ("weight-decay-nan", ["--weight-decay", "nan"], ["weight_decay=nan"]),
    ("warmup-ratio-nan", ["--warmup-ratio", "nan"], ["warmup_ratio"]),
    ("consistency-inf", ["--method", "adamix", "--consistency", "inf"], ["consistency=inf"]),
    ("prefix-length-huge", ["--method", "prefix", "--option", "prefix_length=100000"], ["prefix_length", "512"]),
    ("prompt-length-huge", ["--method", "prompt", "--option", "prompt_length=600"], ["prompt_length", "512"]),
    ("r-huge", ["--option", "r=100000"], ["r=100000", "<= 384"]),
    ("r-string", ["--option", "r=abc"], ["r='abc'", "allowed"]),
    ("alpha-inf", ["--option", "alpha=Infinity"], ["alpha=inf", "finite"]),
    ("option-no-equals", ["--option", "r8"], ["expected key=value"]),
    ("option-unknown", ["--option", "rank=8"], ["'rank'", "allowed options"]),
    ("precision", ["--precision", "fp16"], ["precision='fp16'", "auto, bf16, fp32"]),
    ("num-modules-huge", ["--method", "adamix", "--option", "num_modules=100000"], ["num_modules", "<= 64"]),
    ("out-is-a-file", ["--out", "{file}"], ["it is an existing file"]),
    ("out-under-a-file", ["--out", "{file}/run"], ["is a file"]),
    ("out-name-too-long", ["--out", "{tmp}/" + "x" * 300], ["bytes long", "255"]),
    ("out-read-only", ["--out", "{readonly}/run"], ["not writable"]),
    ("out-empty", ["--out", ""], ["out=''"]),
]


@pytest.mark.parametrize("case,args,words", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_rejects_bad_input_before_loading_the_model(case, args, words, tmp_path, capsys, no_backbone,
                                                          readonly_dir):
    from peftkit.cli import main

    if case == "out-read-only" and os.geteuid() == 0:
        pytest.skip("root can write to a read-only directory")
    (tmp_path / "a_file").write_text("not a directory\n")
    args = [a.format(file=tmp_path / "a_file", tmp=tmp_path, readonly=readonly_dir) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    if "--method" not in args:
        args += ["--method", "lora"]
    before = listing(tmp_path)
    assert main(["train", "--task", "rte", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftkit: error: ") and len(err.splitlines()) == 1, err  # one line, no traceback
    for w in words:
        assert w in err, err
    assert listing(tmp_path) == before  # nothing created, nothing half-written


@pytest.mark.parametrize("args", [["--lr", "abc"], ["--batch-size", "1.5"], ["--max-steps", "x"],
                                  ["--epochs", "1", "--max-steps", "2"], ["--seed", "4.2"]])
def test_train_wrong_types_exit_2_through_argparse(args, tmp_path, capsys, no_backbone):
    from peftkit.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "rte", "--method", "lora", "--out", str(tmp_path / "run"), *args])
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "run").exists()


RUNSPEC_CASES = [
    ({"options": ["r=8"]}, "options"),
    ({"lr": "1e-3"}, "lr="),
    ({"task": 5}, "task"),
    ({"out": None}, "out=None"),
    ({"inference_modes": "yes"}, "inference_modes"),
    ({"train_head": 1}, "train_head"),
    ({"model": 3}, "model=3"),
]


@pytest.mark.parametrize("fields,words", RUNSPEC_CASES, ids=[str(c[0]) for c in RUNSPEC_CASES])
def test_runspec_wrong_types_fail_in_resolve(fields, words, tmp_path, no_backbone):
    from peftkit.experiment import RunSpec, run

    spec = RunSpec(**{"task": "rte", "method": "lora", "out": str(tmp_path / "run"), **fields})
    with pytest.raises(ValueError, match="allowed") as err:
        run(spec)
    assert words in str(err.value)
    assert listing(tmp_path) == {}


def test_sweep_validates_every_spec_before_the_first_run(tmp_path, no_backbone):
    from peftkit.experiment import RunSpec, sweep

    good = RunSpec("rte", "lora", str(tmp_path / "a"))
    bad = RunSpec("rte", "lora", str(tmp_path / "b"), max_length=100000)
    with pytest.raises(ValueError, match="max_length=100000"):
        sweep([good, bad])
    assert listing(tmp_path) == {}


def test_ctrl_c_prints_how_to_resume_and_exits_130(tmp_path, capsys, monkeypatch):
    from peftkit import experiment
    from peftkit.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(experiment, "run", interrupted)
    assert main(["train", "--task", "rte", "--method", "lora", "--out", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "same command again to resume" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_sigint_in_a_real_process_exits_130_with_one_line(tmp_path):
    """A real Ctrl-C (SIGINT) while the run works: no traceback, the resume hint, status 130."""
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import sys, time\nfrom peftkit import experiment\n"
            "def work(*a, **k):\n    print('working', flush=True)\n    time.sleep(60)\n"
            "experiment.run = work\nfrom peftkit.cli import main\nsys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", code, "train", "--task", "rte", "--method", "lora", "--out",
                             str(tmp_path / "r")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "working"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "run the same command again to resume" in err
    assert len(err.strip().splitlines()) == 1


def test_params_rejects_huge_sizes_without_allocating(capsys):
    from peftkit.cli import main

    assert main(["params", "--arch", "bert-base", "--method", "pfeiffer", "--option", "bottleneck=1000000000"]) == 2
    assert "bottleneck=1000000000" in capsys.readouterr().err


# --- peftkit reproduce: notebook parameters ---------------------------------------------------------------------
DECLARED = "PROFILE = 'cpu'\nSEEDS = None\nREPORTS_DIR = None\n"


def _notebooks(tmp_path: Path, parameters_source: str | None = None) -> Path:
    import nbformat

    d = tmp_path / "nbs"
    d.mkdir()
    nb = nbformat.v4.new_notebook()
    if parameters_source is not None:
        cell = nbformat.v4.new_code_cell(parameters_source)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell("raise SystemExit('must not run')"))
    nbformat.write(nb, d / "01_x.ipynb")
    return d


REPRODUCE_CASES = [
    ("typo-param", ["-p", "TYPO_PARAM=1"], None, ["TYPO_PARAM", "declares PROFILE, SEEDS, REPORTS_DIR"]),
    ("lower-case-typo", ["-p", "seeds=[1]"], None, ["seeds", "declares PROFILE, SEEDS, REPORTS_DIR"]),
    ("no-equals", ["-p", "SEEDS"], None, ["expected NAME=VALUE"]),
    ("empty-name", ["-p", "=3"], None, ["not a parameter name"]),
    ("not-identifier", ["-p", "1X=2"], None, ["'1X' is not a parameter name"]),
    ("runs-dir-undeclared", ["--runs-dir", "{tmp}/runs"], None,
     ["--runs-dir (RUNS_DIR)", "declares PROFILE, SEEDS, REPORTS_DIR"]),
    ("no-parameters-cell", ["-p", "SEEDS=[1]"], "", ["declares nothing"]),
    ("broken-parameters-cell", [], "PROFILE = 'cpu\n", ["parameters cell is not valid Python"]),
    ("not-a-notebook", [], "!garbage", ["not a readable notebook"]),
]


@pytest.mark.parametrize("case,args,source,words", REPRODUCE_CASES, ids=[c[0] for c in REPRODUCE_CASES])
def test_reproduce_rejects_bad_parameters_before_running(case, args, source, words, tmp_path, capsys):
    from peftkit.cli import main

    nbs = _notebooks(tmp_path, None if source == "" else source or DECLARED)
    if source == "!garbage":
        (nbs / "01_x.ipynb").write_text("{not json")
    reports = tmp_path / "reports"
    args = [a.format(tmp=tmp_path) for a in args]
    before = listing(tmp_path)
    assert main(["reproduce", "--notebooks-dir", str(nbs), "--reports-dir", str(reports), "--no-html",
                 *args]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert listing(tmp_path) == before  # no executed copy, no report


def test_the_real_notebooks_declare_what_reproduce_injects():
    from peftkit.reproduce import declared_parameters, notebooks
    from peftkit.studies import NOTEBOOKS

    for name, path in notebooks().items():  # the study notebooks take the run store; the tour trains no runs
        wanted = {"PROFILE", "REPORTS_DIR"} | ({"RUNS_DIR"} if name in NOTEBOOKS else set())
        assert wanted <= set(declared_parameters(path)), name
        assert name in NOTEBOOKS or "RUNS_DIR" not in declared_parameters(path), name


# --- records that must be true ----------------------------------------------------------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_respect_the_umask(umask, mode, tmp_path):
    from peftkit.atomic import write_json, write_via

    old = os.umask(umask)
    try:
        a = write_json(tmp_path / "result.json", {"x": 1})
        b = write_via(tmp_path / "w.safetensors", lambda p: save_file({"t": torch.zeros(1)}, p))
        c = peftkit.save(peftkit.apply(tiny("bert"), "bitfit"), tmp_path / "ck")
    finally:
        os.umask(old)
    for p in (a, b, c / CONFIG_FILE, c / WEIGHTS_FILE):
        assert stat.S_IMODE(p.stat().st_mode) == mode, p


def test_split_identity_hashes_the_rows_not_their_numbers():
    import datasets

    from peftkit.data import split_identity

    a = datasets.Dataset.from_dict({"idx": [0, 1], "sentence": ["good", "bad"], "label": [1, 0]})
    b = datasets.Dataset.from_dict({"idx": [0, 1], "sentence": ["fine", "awful"], "label": [1, 0]})
    ia, ib = split_identity(a, "sst-2", "train"), split_identity(b, "sst-2", "train")
    assert ia["ids_sha256"] == ib["ids_sha256"]  # same row numbers ...
    assert ia["content_sha256"] != ib["content_sha256"]  # ... different examples
    assert split_identity(a.select([1, 0]), "sst-2", "train")["content_sha256"] != ia["content_sha256"]  # order


@needs_data
def test_fewshot_seeds_and_splits_get_different_content_hashes():
    from peftkit.data import FEWSHOT_SEEDS, load_kshot, split_identity

    ids = {(seed, split): split_identity(load_kshot("sst-2", split, k=16, seed=seed), "sst-2", split, 16, seed)
           for seed in FEWSHOT_SEEDS[:2] for split in ("train", "dev")}
    assert len({i["content_sha256"] for i in ids.values()}) == 4
    assert len({i["ids_sha256"] for i in ids.values()}) == 1  # why ids alone could not tell them apart


def test_new_head_weights_is_false_for_tied_gpt2(tmp_path):
    from peftkit.backbones import new_head_weights

    gpt2 = tiny("gpt2")
    gpt2.save_pretrained(tmp_path / "gpt2")  # tied: no lm_head key, the head is wte
    assert new_head_weights(str(tmp_path / "gpt2"), "causal") is False
    gpt2.transformer.save_pretrained(tmp_path / "gpt2_body")  # still has wte: the tied head is complete
    assert new_head_weights(str(tmp_path / "gpt2_body"), "causal") is False
    untied = tiny("gpt2")
    untied.config.tie_word_embeddings = False
    untied.transformer.save_pretrained(tmp_path / "untied")  # an untied head with no lm_head weights: new
    cfg = json.loads((tmp_path / "untied" / "config.json").read_text())
    cfg["tie_word_embeddings"] = False
    (tmp_path / "untied" / "config.json").write_text(json.dumps(cfg))
    assert new_head_weights(str(tmp_path / "untied"), "causal") is True


def test_fewshot_report_names_minilm_only_when_it_is_minilm():
    from peftkit.studies.fewshot import head_note

    minilm = [{"head": "prompt", "model": "minilm", "new_head_weights": True}] * 3
    roberta = [{"head": "prompt", "model": "roberta-large", "new_head_weights": False}] * 3
    assert "MiniLM ships its encoder only" in head_note(minilm) and "3 of 3" in head_note(minilm)
    assert "MiniLM" not in head_note(roberta) and "0 of 3" in head_note(roberta)
    other = [{"head": "prompt", "model": "/models/bare-bert", "new_head_weights": True}]
    assert "MiniLM" not in head_note(other) and "/models/bare-bert" in head_note(other)


def test_decoding_shows_progress(capsys):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from peftkit.backbones import resolve
    from peftkit.generate import generate

    tok = AutoTokenizer.from_pretrained(resolve("minilm"))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=tok.vocab_size,
                                       n_positions=64)).eval()
    seen = []
    out = generate(model, tok, ["name[a]", "name[b]", "name[c]"], 24, {"num_beams": 2, "max_new_tokens": 2},
                   batch_size=2, progress=seen.append)
    assert len(out) == 3 and sum(seen) == 3 and len(seen) == 2
    generate(model, tok, ["name[a]"], 24, {"num_beams": 2, "max_new_tokens": 2}, show=True)
    assert "decoding" in capsys.readouterr().err


# --- a run whose loss becomes NaN -------------------------------------------------------------------------------
@needs_data
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    """lr=inf is refused up front, so the NaN is forced: the loss turns NaN from step 5 on (checkpoints every 2)."""
    from peftkit.cli import main
    from peftkit.trainer import PeftTrainer

    real = PeftTrainer.compute_loss

    def poisoned(self, model, inputs, *a, **k):
        out = real(self, model, inputs, *a, **k)
        if self.state.global_step >= 4 and model.training:
            return out * float("nan") if isinstance(out, torch.Tensor) else (out[0] * float("nan"), out[1])
        return out
    monkeypatch.setattr(PeftTrainer, "compute_loss", poisoned)
    out = tmp_path / "run"
    rc = main(["train", "--task", "rte", "--method", "lora", "--profile", "smoke", "--max-steps", "8",
               "--eval-steps", "2", "--max-train", "32", "--max-eval", "8", "--precision", "fp32", "--quiet",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "training loss is nan at step 5" in err and "checkpoint-4" in err and "no result was written" in err
    assert not (out / "result.json").exists()
    last = out / "checkpoints" / "checkpoint-4"
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))[-1] == "checkpoint-4"  # none after
    files = sorted(p.name for p in last.iterdir())
    assert "pytorch_model.bin" not in files and "model.safetensors" not in files  # no frozen backbone
    assert {CONFIG_FILE, WEIGHTS_FILE, "optimizer.pt", "rng_state.pth", "scheduler.pt"} <= set(files)
    assert sum(p.stat().st_size for p in last.iterdir()) < 4_000_000  # was ~93 MB with the backbone
    weights = load_file(str(last / WEIGHTS_FILE))
    assert weights and all(torch.isfinite(t).all() for t in weights.values())
    # only what trains: unipelt-glue keeps the classifier of a LoRA-only run frozen (the fork's freeze_params)
    assert any("pk_lora" in k for k in weights) and "classifier.weight" not in weights


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
@pytest.mark.parametrize("method,opts", [("prefix", {"prefix_length": 4, "prefix_hidden": 16}), ("lora", {"r": 4}),
                                         ("adamix", {"bottleneck": 8}), ("adamix", {"base": "lora", "r": 4})])
def test_merged_checkpoints_pass_the_checks_and_load(arch, method, opts, tmp_path):
    """The all-or-nothing checks run on a merged meta copy too (prefix key/values exist only once merged)."""
    from conftest import batch, logits, perturb

    model = peftkit.apply(tiny(arch), method, seed=0, **opts)
    perturb(model)
    peftkit.merge(model.eval())
    peftkit.save(model, tmp_path)
    fresh = peftkit.load(tiny(arch), tmp_path).eval()
    assert state_of(fresh).merged
    assert torch.allclose(logits(fresh, batch(arch)), logits(model, batch(arch)), atol=1e-5)
