"""Smoke test of the benchmark machinery (bench/) on a tiny model: structure and arithmetic, never timings."""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402
from bench.__main__ import main  # noqa: E402

pytestmark = pytest.mark.peers  # the peer groups need AdapterHub adapters (transformers 4.57): make peers
pytest.importorskip("peft")
pytest.importorskip("adapters")

GROUPS = "lora,pfeiffer,adamix-lora,infer-lora,infer-adamix-adapter"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    rc = main(["--quick", "--repeats", "2", "--threads", "1", "--only", GROUPS, "--out", str(out)])
    assert rc == 0
    return json.loads(out.read_text()), out


def test_json_has_provenance_and_every_selected_group(result):
    res, _ = result
    meta = res["meta"]
    assert meta["schema"] == 1 and meta["device"] == "cpu" and meta["precision"] == "fp32"
    assert {"torch", "transformers", "peft", "adapters", "peftkit"} <= set(meta["versions"])
    assert meta["settings"]["quick"] is True and "memory_method" in meta and meta["date"]
    assert list(res["backbones"]) == ["tiny"]
    assert (res["backbones"]["tiny"]["train_rounds"], res["backbones"]["tiny"]["infer_rounds"]) == (2, 4)
    groups = {m["group"] for m in res["measurements"]}
    assert groups == set(GROUPS.split(","))
    for m in res["measurements"]:
        assert "error" not in m, m
        assert len(m["samples"]) == (2 if m["mode"] == "train" else 4) and all(s > 0 for s in m["samples"])
        assert m["q1"] <= m["median"] <= m["q3"] and math.isclose(m["iqr"], m["q3"] - m["q1"])
        assert m["peak_bytes"] == m["static_bytes"] + m["transient_bytes"] and m["transient_bytes"] > 0
        assert math.isclose(m["throughput"], 4 / m["median"])
        if m["mode"] == "train":
            assert m["trainable_params"] > 0


def test_peer_pairs_train_the_same_number_of_parameters(result):
    res, _ = result
    by_group = {}
    for m in res["measurements"]:
        by_group.setdefault(m["group"], {})[m["impl"]] = m["trainable_params"]
    assert by_group["lora"]["peftkit"] == by_group["lora"]["peft"]
    assert by_group["pfeiffer"]["peftkit"] == by_group["pfeiffer"]["adapters"]


def test_ratios_are_computed_from_the_measured_numbers(result):
    res, _ = result
    rows = {(m["group"], m["contender"]): m for m in res["measurements"]}
    names = {r["name"] for r in res["ratios"]}
    assert "lora train step peftkit/peft" in names and "merged LoRA / base model inference" in names
    assert len(res["ratios"]) == 6
    for r in res["ratios"]:
        num, den = rows[(r["group"], r["numerator"])], rows[(r["group"], r["denominator"])]
        assert math.isclose(r["ratio"], num["median"] / den["median"])
        cpu = statistics.median(num["cpu_samples"]) / statistics.median(den["cpu_samples"])
        assert math.isclose(r["cpu_ratio"], cpu)
        assert math.isclose(r["mem_ratio"], num["peak_bytes"] / den["peak_bytes"])
        paired = [a / b for a, b in zip(num["samples"], den["samples"])]
        assert math.isclose(r["paired_median"], statistics.median(paired))
        if r["time_goal"] is not None:
            assert r["time_met"] == (r["ratio"] <= r["time_goal"])
        if r["mem_goal"] is not None:
            assert r["mem_met"] == (r["mem_ratio"] <= r["mem_goal"])


def test_markdown_is_written_beside_the_json(result):
    res, out = result
    md = out.with_suffix(".md").read_text()
    assert "## Goals" in md and "## Ratios" in md and "## Measurements" in md
    assert res["meta"]["versions"]["torch"] in md
    for r in res["ratios"]:
        assert r["name"] in md and f"{r['ratio']:.3f}" in md
    index = (out.parent / "README.md").read_text()  # registered in the reports index with the command
    assert f"]({out.with_suffix('.md').name})" in index and "--quick" in index


def test_interleaving_rotates_and_discards_warmup():
    calls = []
    steps = [lambda i=i: calls.append(i) for i in range(3)]
    wall, cpu = measure.time_group(steps, rounds=2, warmup=1, device=__import__("torch").device("cpu"))
    assert calls == [0, 1, 2, 1, 2, 0, 2, 0, 1]
    assert [len(s) for s in wall] == [2, 2, 2] and [len(s) for s in cpu] == [2, 2, 2]


def test_summary_and_ratio_arithmetic():
    s = measure.summary([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["median"], s["q1"], s["q3"], s["iqr"], s["n"]) == (3.0, 2.0, 4.0, 2.0, 5)
    r = measure.ratio({"median": 2.0, "samples": [2.0, 4.0]}, {"median": 4.0, "samples": [4.0, 4.0]})
    assert r["ratio"] == 0.5 and r["paired_median"] == 0.75


def test_bad_options_fail_cleanly(capsys):
    assert main(["--quick", "--only", "no-such-group", "--no-write"]) == 2
    assert main(["--backbone", "bert-huge", "--no-write"]) == 2
    assert "no-such-group" in capsys.readouterr().err


def test_bf16_autocast_and_aa_controls(tmp_path):
    """--precision bf16 runs the autocast path (the one CUDA takes by default) on CPU, and the A/A control groups
    time two identical contenders as separate models and report their ratio as the run's noise floor."""
    out = tmp_path / "bench.json"
    rc = main(["--quick", "--repeats", "1", "--threads", "1", "--only", "control-*", "--precision", "bf16",
               "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["meta"]["precision"] == "bf16 autocast" and res["meta"]["settings"]["precision"] == "bf16"
    keys = {m["contender"] for m in res["measurements"]}
    assert keys == {"peftkit:lora", "peftkit:lora#2", "torch:base@infer", "torch:base@infer#2"}
    controls = [r for r in res["ratios"] if r["name"].startswith("A/A control")]
    assert len(controls) == 2 and all(r["ratio"] > 0 and r["time_goal"] is None for r in controls)
    md = out.with_suffix(".md").read_text()
    assert "(bf16 autocast)" in md and md.count("within this run's noise") == 2


def test_precision_choices_are_checked():
    from bench.contenders import resolve_precision

    cpu = __import__("torch").device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="allowed auto, fp32, bf16"):
        resolve_precision("fp16", cpu)
    with pytest.raises(SystemExit) as e:
        main(["--quick", "--precision", "fp16", "--no-write"])
    assert e.value.code == 2
