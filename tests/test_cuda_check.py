"""The CUDA check (``bench/cuda_check.py``) rehearsed on the CPU (``--dry``: tiny configurations, the same code
paths), so that it runs the first time a GPU is available: every section reports a status with its numbers, the
JSON and the Markdown are written, the time budget skips what it cannot fit, and the packing section's equality
check can fail."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cuda_check, cuda_pack  # noqa: E402
from bench.cuda_common import STATUSES, TIME_BUDGET  # noqa: E402

SECTIONS = ("methods", "routing", "timing", "packing", "ddp", "generation")


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench.cuda_check", "--dry", "--out", str(out), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda-check")
    proc = _run(out, "--dry-ddp")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / cuda_check.JSON_NAME).read_text()), (out / cuda_check.MD_NAME).read_text()


def test_every_section_reports_a_status_with_its_numbers(dry):
    res, _ = dry
    meta = res["meta"]
    assert meta["check"] == "bench.cuda_check" and meta["mode"].startswith("dry") and meta["settings"]["dry"]
    assert {"torch", "transformers", "peftkit"} <= set(meta["versions"]) and meta["git"]["commit"]
    assert meta["wall_s"] > 0 and meta["cuda"]["gpu_count"] >= 0
    secs = res["sections"]
    assert set(secs) == set(SECTIONS) and sorted(s["number"] for s in secs.values()) == [1, 2, 3, 4, 5, 6]
    for name, s in secs.items():
        assert s["status"] in STATUSES and isinstance(s["summary"], str) and s["summary"], name
        assert s["seconds"] >= 0 and (s["status"] != "skipped" or s["reason"]), name
    assert res["totals"] == {k: sum(s["status"] == k for s in secs.values()) for k in ("pass", "fail", "skipped")}
    assert res["totals"]["fail"] == 0, {n: s["summary"] for n, s in secs.items() if s["status"] == "fail"}


def test_the_sections_ran_what_they_say(dry):
    secs = dry[0]["sections"]
    methods = secs["methods"]["details"]
    assert len(methods["rows"]) == 15 * 2 * 3  # every method x fp32 / bf16 x BERT, RoBERTa, GPT-2
    for row in methods["rows"]:
        assert len(row["losses"]) == methods["steps"] == 10 and row["finite"] and row["decreasing"], row["method"]
        assert row["merge"]["ok"] and (row["merge"]["applicable"] or row["method"] == "unipelt-APL")
    assert set(methods["merge_tolerance"]) == {"fp32", "bf16"}
    routing = secs["routing"]["details"]["rows"]
    assert [r["base"] for r in routing] == ["adapter", "lora"] and all(r["routes_equal"] for r in routing)
    timing = secs["timing"]["details"]
    names = {r["name"] for r in timing["ratios"]}
    assert {"lora train step peftkit/peft", "full train step peftkit/torch"} <= names
    assert sum(n.startswith("A/A control") for n in names) == 2 and len(timing["ratios"]) == 8  # 2 backbones
    pack = secs["packing"]["details"]
    assert pack["runs"] == len(pack["rows"]) == 2 and all(r["equal"] for r in pack["rows"])
    assert pack["packed_over_sequential"] > 0 and "local" in pack["executor"]
    ddp = secs["ddp"]
    assert ddp["status"] == "pass" and ddp["details"]["world_size"] == 2 and ddp["details"]["weights_equal"]
    gen = secs["generation"]["details"]["rows"]
    assert len(gen) == 5 and all(r["same_beams"] for r in gen)


def test_markdown_summarises_every_section(dry):
    res, md = dry
    assert md.startswith("# CUDA check: CPU") and "6 passed, 0 failed, 0 skipped" in md
    for s in res["sections"].values():
        assert f"## {s['number']}. {s['title']}" in md
    assert "unipelt-APL" in md and "A/A control" in md and "merged vs unmerged" in md
    table = [line for line in md.splitlines() if line.startswith("| 1 | methods")]
    assert len(table) == 1 and table[0].count("|") == 6  # no stray pipes inside the summary cells


def test_the_time_budget_skips_what_it_cannot_fit(tmp_path):
    assert cuda_check.main(["--dry", "--budget", "0.01", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / cuda_check.JSON_NAME).read_text())
    assert all(s["status"] == "skipped" and s["reason"] == TIME_BUDGET for s in res["sections"].values())
    assert "0 passed, 0 failed, 6 skipped" in (tmp_path / cuda_check.MD_NAME).read_text()
    with pytest.raises(SystemExit):
        cuda_check.main(["--dry", "--only", "nonsense", "--out", str(tmp_path)])


BAD_FLAGS = [
    # (arguments, the error's words)
    (["--dry", "--budget", "0"], "--budget: allowed a positive number of seconds"),  # was: the default budget
    (["--dry", "--budget=-5"], "--budget: allowed a positive number of seconds"),
    (["--dry", "--budget", "nan"], "--budget: allowed a positive number of seconds"),
    (["--dry", "--budget", "inf"], "--budget: allowed a positive number of seconds"),
    (["--dry-ray", "--only", "packing"], "--dry-ray: allowed only with --dry"),
    (["--dry-ddp", "--only", "ddp"], "--dry-ddp: allowed only with --dry"),
]


@pytest.mark.parametrize("args,words", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_exit_2_naming_the_flag_before_anything_runs(args, words, tmp_path, capsys, monkeypatch):
    def refuse(ctx):
        raise AssertionError("a section ran before the bad flag was rejected")
    monkeypatch.setattr(cuda_check, "section_functions", lambda: dict.fromkeys(SECTIONS, refuse))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        cuda_check.main([*args, "--out", str(out)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert not out.exists()  # nothing written


def test_the_result_comparison_finds_a_difference(tmp_path):
    """The packing section's equality check: timings and paths are ignored, a metric or a weight is not."""
    import torch
    from safetensors.torch import save_file

    def write(d: Path, accuracy: float, weight: float, seconds: float):
        (d / "best").mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"best_metrics": {"accuracy": accuracy}, "wall_time_s": seconds,
                                                   "evaluations": [{"eval_runtime": seconds, "loss": 0.5}],
                                                   "spec": {"out": str(d)}}))
        save_file({"w": torch.full((2,), weight)}, str(d / "best" / "peftkit_weights.safetensors"))

    write(tmp_path / "a", 0.75, 1.0, 3.0)
    write(tmp_path / "b", 0.75, 1.0, 9.0)
    write(tmp_path / "c", 0.5, 1.5, 3.0)
    same = cuda_pack.compare(tmp_path / "a", tmp_path / "b")
    assert same["equal"] and same["bitwise"] and same["weights_max_abs_diff"] == 0.0
    other = cuda_pack.compare(tmp_path / "a", tmp_path / "c")
    assert not other["equal"] and other["differences"] == [["best_metrics.accuracy", 0.75, 0.5]]
    assert other["weights_max_abs_diff"] == 0.5


@pytest.mark.slow
def test_dry_packing_through_ray(tmp_path):
    """``--dry-ray``: the packing section's Ray half on CPU workers (start-up dominates: ~20 s on 2 cores)."""
    pytest.importorskip("ray")
    proc = _run(tmp_path, "--dry-ray", "--only", "packing")
    assert proc.returncode == 0, proc.stderr[-4000:]
    pack = json.loads((tmp_path / cuda_check.JSON_NAME).read_text())["sections"]["packing"]
    assert pack["status"] == "pass" and pack["details"]["executor"].startswith("ray")
    assert all(r["equal"] and r["packed"] == "trained" for r in pack["details"]["rows"])
