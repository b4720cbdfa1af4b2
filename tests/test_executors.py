"""Executors: a smoke grid trained through Ray equals the local one, reruns train nothing, a failing run is reported
while the others finish, and two drivers on one grid train each run once (atomic claims, stale-claim recovery)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import needs_data
from peftkit import executors, studies
from peftkit.executors import ExecutorOptions, claim, is_stale

ROOT = Path(__file__).resolve().parents[1]


def _grid(runs, seeds=(42, 43), methods=("lora", "bitfit", "adamix-pfeiffer")):
    """6 smoke runs (1 step on 8 RTE examples, 8 evaluated) of MiniLM."""
    return studies.grid("glue_main", "smoke", tasks=["rte"], methods=list(methods), seeds=list(seeds), max_steps=1,
                        max_train=8, runs_dir=runs)


def _metrics(specs) -> list[dict]:
    return [json.loads((Path(s.out) / "result.json").read_text())["best_metrics"] for s in specs]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for the module (the executor reuses a running ray.init)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


def test_bad_executor_options_name_the_field():
    for kwargs, field in ((dict(executor="dask"), "executor"), (dict(executor="ray", gpus_per_run=-1), "gpus_per_run"),
                          (dict(executor="ray", gpus_per_run=1.5), "gpus_per_run"),
                          (dict(executor="ray", cpus_per_run="2"), "cpus_per_run")):
        with pytest.raises(ValueError, match=f"invalid {field}"):
            ExecutorOptions(**kwargs).resolved()
    with pytest.raises(ValueError, match="invalid executor"):
        studies.run_specs([], executor="slurm")


def test_claim_is_exclusive_and_a_stale_claim_is_taken_over(tmp_path, monkeypatch):
    first = claim(tmp_path / "run")
    assert first is not None and claim(tmp_path / "run") is None  # held by a live process (this one)
    first.release()
    assert not (tmp_path / "run" / executors.CLAIM_FILE).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs, on this host: its claim is stale
    path = tmp_path / "run" / executors.CLAIM_FILE
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": 0, "token": "x"}))
    assert is_stale(tmp_path / "run")
    again = claim(tmp_path / "run")
    assert again is not None and json.loads(path.read_text())["pid"] == os.getpid()
    again.release()
    # another host's claim: stale only when its heartbeat is older than PEFTKIT_CLAIM_STALE_S
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0, "token": "y"}))
    assert not is_stale(tmp_path / "run") and claim(tmp_path / "run") is None
    monkeypatch.setenv("PEFTKIT_CLAIM_STALE_S", "60")
    old = time.time() - 120
    os.utime(path, (old, old))
    assert is_stale(tmp_path / "run")
    taken = claim(tmp_path / "run")
    assert taken is not None
    taken.release()


@needs_data
def test_ray_grid_equals_local_then_trains_nothing_and_a_failure_does_not_stop_the_others(tmp_path, local_ray,
                                                                                          capsys):
    import torch

    local, remote = _grid(tmp_path / "local"), _grid(tmp_path / "ray")
    assert len(local) == 6
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task (cpus_per_run=1): bf16 sums differ with the thread count
    try:
        studies.run_specs(local, executor="local")
    finally:
        torch.set_num_threads(threads)
    studies.run_specs(remote, executor="ray", cpus_per_run=1)
    out = capsys.readouterr().out
    assert out.count("done in") == 12 and "[####################] 6/6" in out and "(executor ray)" in out
    assert _metrics(local) == _metrics(remote)  # CPU training is deterministic: the same numbers either way, on the
    # same number of threads
    finished = [json.loads((Path(s.out) / "result.json").read_text())["finished_at"] for s in remote]
    training = json.loads((Path(remote[0].out) / "result.json").read_text())["training"]
    assert training["world_size"] == 1 and training["effective_batch_size"] == training["batch_size"]

    studies.run_specs(remote, executor="ray")  # a second invocation trains nothing
    out = capsys.readouterr().out
    assert "6 done, 0 to train" in out and "done in" not in out
    assert [json.loads((Path(s.out) / "result.json").read_text())["finished_at"] for s in remote] == finished
    assert not any((Path(s.out) / executors.CLAIM_FILE).exists() for s in remote)  # claims released

    broken = tmp_path / "empty-data"
    broken.mkdir()
    mixed = _grid(tmp_path / "mixed", seeds=(42,), methods=("lora", "bitfit"))
    bad = _grid(tmp_path / "mixed", seeds=(7,), methods=("lora",))[0]
    bad.data_dir = str(broken)  # resolves, then fails when the run loads its data
    with pytest.raises(studies.GridError) as err:
        studies.run_specs([bad, *mixed], executor="ray")
    out = capsys.readouterr().out
    assert len(err.value.failed) == 1 and err.value.failed[0]["out"] == bad.out
    assert "DataError" in err.value.failed[0]["error"] and f"{bad.out}/train.log" in out and "FAILED" in out
    assert "Traceback" in (Path(bad.out) / "train.log").read_text()
    assert all((Path(s.out) / "result.json").is_file() for s in mixed)  # the others finished
    assert not (Path(bad.out) / "result.json").exists() and "2/3 runs finished" in out


DRIVER = """
import json, sys
from peftkit import studies
from peftkit.executors import ExecutorOptions, execute_grid
specs = studies.grid("glue_main", "smoke", tasks=["rte"], methods=["lora", "bitfit"], seeds=[42, 43], max_steps=1,
                     max_train=8, runs_dir=sys.argv[1])
outcomes = execute_grid(specs, ExecutorOptions("local"), poll_s=0.5)
print(json.dumps([[o["status"], bool(o.get("elsewhere"))] for o in outcomes]))
"""


@needs_data
def test_two_drivers_on_one_grid_train_each_run_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    drivers = [subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "runs")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path) for _ in range(2)]
    results = []
    for d in drivers:
        out, err = d.communicate(timeout=600)
        assert d.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    trained = [sum(status == "trained" for status, _ in r) for r in results]
    assert sum(trained) == 4  # every run trained exactly once, by one of the two drivers
    for a, b in zip(*results):  # and the other driver read its result (found done, or waited for it)
        assert sorted([a[0], b[0]]) == ["skipped", "trained"]
    logs = list((tmp_path / "runs").glob("*/train.log"))
    assert len(logs) == 4 and all(log.read_text().count("final evaluation") == 1 for log in logs)


@needs_data
@pytest.mark.slow
def test_reproduce_with_the_ray_executor_prints_each_run_as_it_ends(tmp_path, local_ray):
    """One smoke notebook through ``peftkit reproduce --executor ray``, its kernel joining the module's Ray instance
    with ``--ray-address`` (as on a cluster)."""
    address = local_ray.get_runtime_context().gcs_address
    args = [sys.executable, "-m", "peftkit.cli", "reproduce", "--profile", "smoke", "--only", "06_ablation_adamix",
            "--reports-dir", str(tmp_path / "reports"), "--runs-dir", str(tmp_path / "runs"), "--no-html",
            "--executor", "ray", "--ray-address", address, "--cpus-per-run", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = [line for line in proc.stdout.splitlines() if line.startswith("[reproduce]   [")]
    assert len(runs) == 2 and all("done in" in line for line in runs) and "2/2" in runs[-1], proc.stdout
    assert f"executor ray at {address}" in proc.stdout and "1/1 notebooks finished" in proc.stdout
    assert len(list((tmp_path / "runs").glob("*/result.json"))) == 2


CONTENDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("executors", sys.argv[3])  # stdlib only: no torch import to wait for
executors = sys.modules["executors"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(executors)
claim = executors.claim
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
c = claim(sys.argv[1])
print("won" if c else "lost", flush=True)
time.sleep(3)
"""


def test_several_contenders_for_a_stale_claim_one_wins(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / executors.CLAIM_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": 0,
                                                        "token": "dead"}))
    go = str(time.time() + 2)  # all start together, after their imports
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(run), go, executors.__file__],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["lost", "lost", "lost", "won"], outs


@needs_data
@pytest.mark.slow
def test_torchrun_records_world_size_and_effective_batch_and_decodes_on_rank_0_only(tmp_path):
    """Two CPU ranks (gloo) train one smoke NLG run: the result says world size 2 and batch 2 x per-device, and only
    rank 0 decodes the test sources (rank 1 returns no metrics)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", "-m",
           "peftkit.cli", "train", "--task", "e2e", "--method", "lora", "--profile", "smoke", "--max-train", "8",
           "--max-eval", "2", "--max-steps", "1", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [json.loads(line)["best_metrics"] for line in proc.stdout.splitlines() if line.startswith('{"out"')]
    assert len(printed) == 2 and sorted(len(m) for m in printed)[0] == 0 and "bleu" in max(printed, key=len)
    training = json.loads((out / "result.json").read_text())["training"]
    assert training["world_size"] == 2 and training["effective_batch_size"] == 2 * training["batch_size"]


@needs_data
def test_a_moved_run_store_still_finds_its_trained_models(tmp_path):
    """Results read back from the store carry the file they came from, so the trained model is found where the
    store is now, not where the run trained (``spec.out`` inside the result keeps the old directory)."""
    from peftkit.reload import load_trained, run_dir

    specs = _grid(tmp_path / "first", seeds=(42,), methods=("lora",))
    studies.run_specs(specs, executor="local")
    (tmp_path / "first").rename(tmp_path / "moved")
    moved = _grid(tmp_path / "moved", seeds=(42,), methods=("lora",))
    (result,) = studies.run_specs(moved, executor="local")
    assert result["spec"]["out"].startswith(str(tmp_path / "first"))  # where it trained
    assert run_dir(result) == Path(moved[0].out)
    model, _ = load_trained(result)
    assert not model.training
