"""Bad input, round 2: ``peftkit reproduce`` and its executors, and the ``train`` flags that cannot apply
(``peftkit data fetch``: tests/test_bad_inputs_fetch.py). As in tests/test_bad_inputs.py: a usage error exits 2
with one line naming the flag and what is allowed, no traceback, and leaves the reports and the run store exactly
as they were (compared by content); nothing waits on what cannot succeed (no Ray started, no kernel run).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import listing, one_line_error
from peftkit.cli import main

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}
DECLARED = "PROFILE = 'cpu'\nSEEDS = None\nREPORTS_DIR = None\nRUNS_DIR = None\n"


def notebook(folder: Path, name: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNEL})
    params = nbformat.v4.new_code_cell(DECLARED)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}.ipynb")
    return folder / f"{name}.ipynb"


def committed_reports(reports: Path) -> None:
    """What a checkout's reports folder holds: a rendered notebook, the index, a table."""
    for rel, text in (("executed/cpu/01_x.html", "<html>committed 01</html>"),
                      ("executed/cpu/02_y.html", "<html>committed 02</html>"), ("tables/t.md", "| committed |"),
                      ("index.json", '{"artifacts": {}}\n'), ("README.md", "# Reports (committed)\n")):
        (reports / rel).parent.mkdir(parents=True, exist_ok=True)
        (reports / rel).write_text(text)


@pytest.fixture
def no_kernel(monkeypatch):
    """A notebook must not start: papermill is never reached."""
    import papermill

    def refuse(*a, **k):
        raise AssertionError("a notebook was executed before the bad input was rejected")
    monkeypatch.setattr(papermill, "execute_notebook", refuse)


@pytest.fixture
def no_ray(monkeypatch):
    """Ray must not start or connect: a stand-in module whose init fails the test."""
    import types

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False

    def refuse(*a, **k):
        raise AssertionError("ray.init was called before the bad input was rejected")
    fake.init = refuse
    monkeypatch.setitem(sys.modules, "ray", fake)


# --- peftkit reproduce: every flag checked before anything is written, started or connected to ------------------
REPRODUCE_CASES = [
    # (id, arguments, substrings of the error)
    ("gpus-with-local", ["--executor", "local", "--gpus-per-run", "1"], ["--gpus-per-run 1.0", "ray executor only"]),
    ("cpus-with-default-local", ["--cpus-per-run", "2"], ["--cpus-per-run 2.0", "ray executor only"]),
    ("address-with-local", ["--ray-address", "127.0.0.1:6379"], ["--ray-address '127.0.0.1:6379'", "ray executor"]),
    ("cpus-zero", ["--executor", "ray", "--cpus-per-run", "0"], ["--cpus-per-run 0.0", "positive"]),
    ("gpus-nan", ["--executor", "ray", "--gpus-per-run", "nan"], ["--gpus-per-run nan", "finite"]),
    ("gpus-inf", ["--executor", "ray", "--gpus-per-run", "inf"], ["--gpus-per-run inf", "finite"]),
    ("cpus-negative", ["--executor", "ray", "--cpus-per-run=-1"], ["--cpus-per-run -1.0", "positive"]),
    ("gpus-none-here", ["--executor", "ray", "--gpus-per-run", "1"], ["--gpus-per-run 1.0", "offers at most 0"]),
    ("cpus-too-many", ["--executor", "ray", "--cpus-per-run", "4096"], ["--cpus-per-run 4096.0", "offers at most"]),
    ("address-dead", ["--executor", "ray", "--ray-address", "127.0.0.1:1"], ["--ray-address '127.0.0.1:1'",
                                                                             "nothing answers"]),
    ("address-no-port", ["--executor", "ray", "--ray-address", "headnode"], ["HOST:PORT"]),
    ("executor-unknown", ["--executor", "dask"], ["--executor 'dask'", "local, ray"]),
    ("p-profile-contradicts", ["-p", "PROFILE='paper'"], ["-p PROFILE='paper'", "--profile"]),
    ("p-runs-dir-without-flag", ["-p", "RUNS_DIR='elsewhere'"], ["-p RUNS_DIR", "--runs-dir"]),
    ("p-reports-dir-contradicts", ["--reports-dir", "{reports}", "-p", "REPORTS_DIR='x'"], ["--reports-dir"]),
    ("reports-dir-a-file", ["--reports-dir", "{file}"], ["--reports-dir", "existing file"]),
    ("reports-dir-under-a-file", ["--reports-dir", "{file}/reports"], ["--reports-dir", "is a file"]),
    ("runs-dir-a-file", ["--runs-dir", "{file}"], ["--runs-dir", "existing file"]),
    ("list-with-profile", ["--list", "--profile", "paper"], ["--profile with --list"]),
    ("list-with-executor", ["--list", "--executor", "ray"], ["--executor with --list"]),
    # a time to come: no run could have finished before it, so every run would retrain on every resume
    ("retrain-before-future", ["--retrain-before", "2999-01-01T00:00:00Z"],
     ["--retrain-before '2999-01-01T00:00:00Z'", "UTC time not in the future"]),
]


@pytest.mark.parametrize("case,args,words", REPRODUCE_CASES, ids=[c[0] for c in REPRODUCE_CASES])
def test_reproduce_rejects_what_cannot_apply_before_anything_starts(case, args, words, tmp_path, capsys, no_kernel,
                                                                    no_ray, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever the machine has
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    nbs = tmp_path / "nbs"
    notebook(nbs, "01_x", "raise SystemExit('must not run')")
    reports = tmp_path / "reports"
    committed_reports(reports)
    (tmp_path / "a_file").write_text("not a directory\n")
    args = [a.format(file=tmp_path / "a_file", reports=reports) for a in args]
    if "--reports-dir" not in args and "--list" not in args:
        args += ["--reports-dir", str(reports)]
    before = listing(tmp_path)
    t0 = time.time()
    assert main(["reproduce", "--notebooks-dir", str(nbs), "--no-html", *args]) == 2
    assert time.time() - t0 < 10  # no retries, no waiting on a cluster
    err = one_line_error(capsys, "peftkit reproduce")
    for w in words:
        assert w in err, err
    assert listing(tmp_path) == before  # no executed/<profile>/ folder, nothing written


def _reproduce_two(tmp_path: Path, reports: Path) -> int:
    """01_x succeeds (writes and registers its table), 02_y writes and registers a table, edits the README, fails."""
    nbs = tmp_path / "nbs"
    write = ("from pathlib import Path\nfrom peftkit.reporting.index import register_artifact\n"
             "p = Path(REPORTS_DIR) / 'tables' / '{name}.md'\np.parent.mkdir(parents=True, exist_ok=True)\n"
             "p.write_text('new')\nregister_artifact(REPORTS_DIR, p, 'table {name}', 'make it')")
    notebook(nbs, "01_x", write.format(name="01_x"))
    notebook(nbs, "02_y", write.format(name="02_y"), "(Path(REPORTS_DIR) / 'tables' / 't.md').write_text('edited')",
             "raise RuntimeError('deliberately broken')")
    return main(["reproduce", "--notebooks-dir", str(nbs), "--reports-dir", str(reports)])


def test_a_failed_notebook_leaves_every_committed_report_as_it_was(tmp_path, capsys):
    """Item 1: the failed notebook's executed copy goes to executed/<profile>/failed/ (its line names it); its
    table, its edit and its index entry are undone, its committed HTML stays; the one that succeeded is in place."""
    reports = tmp_path / "reports"
    committed_reports(reports)
    before = listing(reports)
    assert _reproduce_two(tmp_path, reports) == 1
    out = capsys.readouterr().out
    failed = reports / "executed/cpu/failed/02_y.ipynb"
    assert "FAILED 02_y: cell 4" in out and f"(see {failed})" in out and failed.is_file()
    after = listing(reports)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith("executed/cpu/failed") and k != ".index.lock"} == {
        "executed/cpu/01_x.html", "executed/cpu/01_x.ipynb", "tables/01_x.md", "index.json", "README.md"}
    index = (reports / "index.json").read_text()
    assert "tables/01_x.md" in index and "executed/cpu/01_x.html" in index and "02_y" not in index
    assert (reports / "tables/t.md").read_text() == "| committed |"
    assert (reports / "executed/cpu/02_y.html").read_text() == "<html>committed 02</html>"
    assert not list(reports.rglob(".*.running.*"))


def test_an_interrupted_notebook_leaves_the_reports_as_they_were(tmp_path, capsys, monkeypatch):
    """Ctrl-C while a notebook runs (after it wrote a table and part of its executed copy): exit 130, the reports
    as they were, the partial copy named."""
    import papermill

    def interrupted(source, output, parameters=None, **k):
        Path(output).write_text(Path(source).read_text())  # papermill writes the copy as cells run
        (Path(parameters["REPORTS_DIR"]) / "tables" / "t.md").write_text("half")
        raise KeyboardInterrupt
    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    nbs = tmp_path / "nbs"
    notebook(nbs, "01_x", "pass")
    reports = tmp_path / "reports"
    committed_reports(reports)
    before = listing(reports)
    assert main(["reproduce", "--notebooks-dir", str(nbs), "--reports-dir", str(reports)]) == 130
    err = capsys.readouterr().err
    kept = reports / "executed/cpu/failed/01_x.ipynb"
    assert f"partial executed copy is {kept}" in err and kept.is_file() and "Traceback" not in err
    assert {k: v for k, v in listing(reports).items() if not k.startswith("executed/cpu/failed")} == before


def test_ray_resources_are_checked_against_the_cluster_before_submitting():
    """Item 2 on a cluster: one run's GPUs / CPUs must fit one live node (else Ray holds the task forever)."""
    from peftkit.capacity import check_address, check_fits, cluster_offer

    class Cluster:
        @staticmethod
        def nodes():
            return [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
                    {"Alive": True, "Resources": {"CPU": 2.0, "GPU": 4.0}},
                    {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    nodes = cluster_offer(Cluster)
    check_fits(0.25, 4, nodes, "the cluster")
    check_fits(4, 2, nodes, "the cluster")
    with pytest.raises(ValueError, match=r"gpus_per_run=8: .*offers at most 4 on one node \(2 live nodes\)"):
        check_fits(8, None, nodes, "the cluster")
    with pytest.raises(ValueError, match="no node of the cluster offers both"):
        check_fits(2, 4, nodes, "the cluster")
    t0 = time.time()
    with pytest.raises(ValueError, match="nothing answers"):
        check_address("ray://127.0.0.1:1")
    assert time.time() - t0 < 5


def test_executor_options_reject_non_finite_and_zero_amounts_in_python_too():
    from peftkit.executors import ExecutorOptions

    for kwargs, words in ((dict(executor="ray", gpus_per_run=float("nan")), "gpus_per_run=nan"),
                          (dict(executor="ray", cpus_per_run=0), "cpus_per_run=0"),
                          (dict(executor="local", gpus_per_run=0.5), "ray executor only")):
        with pytest.raises(ValueError, match="invalid") as err:
            ExecutorOptions(**kwargs).resolved()
        assert words in str(err.value)


def test_an_exported_ray_address_does_not_break_a_local_grid(monkeypatch):
    from peftkit.executors import ExecutorOptions

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ExecutorOptions("local").resolved().address is None
    assert ExecutorOptions("ray").resolved().address == "10.0.0.1:6379"


# --- peftkit train: a protocol, a precision or a flag that cannot apply to the run asked for --------------------
def _other_result(out: Path) -> None:
    """``out`` holds the result of an rte LoRA run at lr 5e-4 (this one asks for 1e-3)."""
    import dataclasses
    import json

    from peftkit.experiment import RunSpec, resolve

    spec = resolve(RunSpec("rte", "lora", str(out), lr=5e-4))
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"schema": 1, "status": "finished", "best_metrics": {"accuracy": 0.5},
                                                 "spec": dataclasses.asdict(spec)}))


def _no_native_bf16(monkeypatch, gpu: str | None) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu is not None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: gpu)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)


TRAIN_CASES = [
    # (id, arguments, substrings of the error); "@..." prepares the case
    ("protocol-glue-on-nlg", ["--task", "e2e", "--protocol", "unipelt-glue"],
     ["protocol='unipelt-glue'", "not nlg", "adamix-nlg"]),
    ("protocol-nlg-on-glue", ["--task", "rte", "--protocol", "adamix-nlg"], ["adamix-glue, unipelt-glue"]),
    ("protocol-glue-on-fewshot", ["--task", "fewshot:sst-2", "--protocol", "adamix-glue"], ["lmbff-fewshot"]),
    ("protocol-fewshot-on-glue", ["--task", "sst-2", "--protocol", "lmbff-fewshot"], ["not glue"]),
    ("bf16-on-a-cpu-without-it", ["--task", "rte", "--precision", "bf16", "@cpu"],
     ["precision='bf16'", "no native bf16", "auto", "fp32"]),
    ("bf16-on-a-gpu-without-it", ["--task", "rte", "--precision", "bf16", "@gpu"],
     ["precision='bf16'", "GPU Tesla V100-SXM2-16GB has no bf16 support"]),
    ("out-holds-another-run", ["--task", "rte", "--lr", "1e-3", "@other"],
     ["holds the result of another run", "lr 0.0005 there, 0.001 here", "--force"]),
    ("data-seed-full-glue", ["--task", "rte", "--profile", "paper", "--data-seed", "13"],
     ["data_seed=13", "full training set"]),
    ("data-seed-nlg", ["--task", "e2e", "--data-seed", "13"], ["data_seed=13"]),
    ("inference-modes-not-adamix", ["--task", "rte", "--inference-modes"], ["inference_modes=True", "lora"]),
    ("inference-modes-nlg", ["--task", "e2e", "--method", "adamix", "--inference-modes"], ["inference_modes"]),
    ("nlg-format-on-glue", ["--task", "rte", "--nlg-format", "plain"], ["nlg_format='plain'", "glue task"]),
    ("extra-eos-on-glue", ["--task", "rte", "--extra-eos", "628"], ["extra_eos=[628]"]),
    ("consistency-ce-not-adamix", ["--task", "rte", "--consistency-ce", "mean"], ["consistency_ce='mean'"]),
    ("consistency-ce-consistency-off", ["--task", "rte", "--method", "adamix", "--consistency", "0",
                                        "--consistency-ce", "mean"], ["consistency_ce='mean'", "consistency=0"]),
    ("evaluate-best-without-evaluations", ["--task", "rte", "--eval-steps", "0", "--evaluate-model", "best"],
     ["evaluate_model='best'", "eval_steps=0"]),
    ("patience-without-evaluations", ["--task", "rte", "--eval-steps", "0", "--patience", "3"], ["patience=3"]),
    ("label-smoothing-regression", ["--task", "stsb", "--label-smoothing", "0.1"],
     ["label_smoothing=0.1", "regression"]),
]


@pytest.mark.parametrize("case,args,words", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_rejects_what_cannot_apply_before_loading_the_model(case, args, words, tmp_path, capsys, monkeypatch,
                                                                 no_backbone):
    out = tmp_path / "run"
    if "@other" in args:
        _other_result(out)
    if "@cpu" in args or "@gpu" in args:
        _no_native_bf16(monkeypatch, "Tesla V100-SXM2-16GB" if "@gpu" in args else None)
    args = [a for a in args if not a.startswith("@")]
    if "--method" not in args:
        args += ["--method", "lora"]
    before = listing(tmp_path)
    assert main(["train", *args, "--out", str(out)]) == 2
    err = one_line_error(capsys)
    for w in words:
        assert w in err, err
    assert listing(tmp_path) == before  # nothing created, nothing replaced


def test_out_with_this_runs_result_is_still_skipped(tmp_path, capsys, no_backbone):
    _other_result(tmp_path / "run")
    assert main(["train", "--task", "rte", "--method", "lora", "--lr", "5e-4", "--out", str(tmp_path / "run")]) == 0
    assert "result exists, skipped" in capsys.readouterr().out


def test_an_explicit_warmup_ratio_replaces_the_protocols_warmup_steps(tmp_path, monkeypatch):
    """adamix-nlg warms E2E up for 2,000 steps, which overrode a given warmup_ratio silently: the ratio applies."""
    from peftkit.experiment import RunSpec, resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve(RunSpec("e2e", "lora", str(tmp_path), profile="paper")).warmup_steps == 2000
    given = resolve(RunSpec("e2e", "lora", str(tmp_path), profile="paper", warmup_ratio=0.1))
    assert given.warmup_steps is None and given.warmup_ratio == 0.1
