"""Reporting layer: synthetic result.json files (the schema of peftkit/results.py) -> frame, statistics, paper
lookups, tables, claim verdicts, figures and the reports index."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peftkit import reporting as rep
from peftkit.results import SCHEMA, load_results, write_json_atomic

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
CONFIGS = {"pfeiffer": {"bottleneck": 48, "activation": "relu", "dropout": 0.0, "original_ln_before": True},
           "adamix": {"base": "pfeiffer", "num_modules": 4, "share": "up", "inference": "merged", "bottleneck": 48,
                      "activation": None, "r": 8, "alpha": 16.0, "dropout": 0.0, "targets": None},
           "unipelt": {"variant": "APL", "gates": True, "bottleneck": 48, "prefix_length": 10, "r": 8, "alpha": 16.0},
           "lora": {"r": 8, "alpha": 16.0, "dropout": 0.0, "targets": None}, "full": {}, "bitfit": {}, "prefix": {}}
PARAMS = {"full": (22_700_000, 22_700_000), "bitfit": (30_000, 30_000), "pfeiffer": (300_000, 300_000),
          "adamix": (700_000, 300_000), "lora": (110_000, 110_000), "unipelt": (3_000_000, 500_000),
          "prefix": (2_000_000, 60_000)}


def make_result(task="rte", method="pfeiffer", label=None, seed=42, metrics=None, *, k=None, data_seed=None,
                kind="glue", model="minilm", profile="cpu", config=None, modes=None, gates=None,
                train_eps=100.0, eval_eps=400.0, run_id=None, eval_rows=None) -> dict:
    """A finished run's result dict with every key of schema 1 (null where it does not apply); ``eval_rows``: the
    size of the reported set (default 277, RTE's dev set), e.g. 872 for SST-2's dev set."""
    trainable, inference = PARAMS.get(method, (1000, 1000))
    base, head = 22_700_000, 1_538
    total = base + head + (0 if method in ("full", "bitfit") else trainable)
    metrics = {"accuracy": 0.7} if metrics is None else metrics
    split = {"task": task, "split": "dev", "k": k, "data_seed": data_seed, "rows": 277, "ids_sha256": "0" * 64}
    return {
        "schema": SCHEMA, "status": "finished",
        "run_id": run_id or f"{task}-{label or method}-k{k}-d{data_seed}-s{seed}",
        "task": task, "task_kind": kind, "protocol": {"glue": "low-resource" if k else "full", "nlg": "nlg",
                                                      "fewshot": "fewshot"}[kind],
        "k": k, "data_seed": data_seed, "method": method, "method_label": label or method,
        "method_config": {**CONFIGS.get(method, {}), **(config or {})}, "model": model,
        "head": "causal" if kind == "nlg" else "classifier", "new_head_weights": True, "profile": profile,
        "training": {"lr": 1e-3, "batch_size": 16, "epochs": 3, "max_steps": None, "max_length": 128,
                     "warmup_ratio": 0.06, "weight_decay": 0.1, "consistency": None, "patience": None,
                     "eval_steps": None, "label_smoothing": 0.0, "max_train": None, "max_eval": None},
        "seeds": {"seed": seed, "data_seed": data_seed, "routing_seed": seed},
        "data": {"train": {**split, "split": "train"}, "dev": split,
                 "eval": {**split, "rows": eval_rows or split["rows"]}},
        "evaluations": [{"step": 10, "epoch": 1.0, **metrics, "loss": 0.6}],
        "best_metrics": {**metrics, "epoch": 3.0}, "selection_metric": next(iter(metrics)), "best_step": 10,
        "inference_modes": modes, "gates": gates, "expert_spread": None,
        "samples": [{"source": "s", "prediction": "p", "reference": "r"}]
        if kind == "nlg" else None,
        "generations": None,
        "scoring": "LoRA gpt2_decode.py --tokenize --lower --ref_num 6 + eval.py" if kind == "nlg" else None,
        "parameters": {"trainable": trainable, "inference": inference, "head": head, "total": total},
        "wall_time_s": 60.0, "resumed": None, "train_time_s": 50.0, "train_examples_per_s": train_eps,
        "eval_examples_per_s": eval_eps, "peak_memory_mb": 900.0, "peftkit_version": "0.1.0",
        "git_commit": "abc1234", "versions": {"torch": "2.5"}, "device": "cpu (x86_64)",
        "finished_at": "2025-01-01T00:00:00Z",
    }


def write_runs(root: Path, results) -> Path:
    for r in results:
        write_json_atomic(root / r["run_id"] / "result.json", r)
    return root


def frame_of(tmp_path, results, **kw) -> pd.DataFrame:
    return rep.runs_frame(load_results(write_runs(tmp_path / "runs", results)), **kw)


# ---------------------------------------------------------------------------------------------- loading, frame
def test_factory_follows_the_result_schema():
    import re

    import peftkit.results

    documented = set(re.findall(r"``([a-z_]+)``", peftkit.results.__doc__)) - {"null"}
    r = make_result()
    assert documented <= set(r), sorted(documented - set(r))
    assert set(r["seeds"]) == {"seed", "data_seed", "routing_seed"}
    assert set(r["parameters"]) == {"trainable", "inference", "head", "total"}
    assert set(r["data"]) == {"train", "dev", "eval"}


def test_loading_and_frame_shape(tmp_path):
    runs = [make_result("mrpc", "pfeiffer", seed=s, metrics={"accuracy": 0.8, "f1": 0.85}) for s in (1, 2)]
    runs.append(make_result("e2e", "lora", kind="nlg", model="gpt2-medium",
                            metrics={"bleu": 0.7, "nist": 8.5, "meteor": 0.46, "rouge_l": 0.71, "cider": 2.4}))
    runs.append(make_result("webnlg", "lora", kind="nlg", model="gpt2-medium", metrics={"bleu": 0.55, "ter": 0.4}))
    unfinished = {**make_result("rte", seed=9), "status": "running"}
    write_runs(tmp_path / "runs", [unfinished])
    frame = frame_of(tmp_path, runs)
    assert len(frame) == 2 * 2 + 5 + 2  # one row per run and metric; "epoch" and the unfinished run are not
    for col in ("task", "task_kind", "protocol", "k", "data_seed", "seed", "method", "method_label", "model", "head",
                "profile", "metric", "value", "trainable_params", "inference_params", "train_time_s",
                "train_examples_per_s"):
        assert col in frame.columns
    v = frame.set_index(["task", "metric"])["value"]
    assert v[("mrpc", "f1")].tolist() == pytest.approx([85.0, 85.0])  # fractions -> percent
    assert v[("e2e", "nist")] == pytest.approx(8.5) and v[("e2e", "cider")] == pytest.approx(2.4)  # raw
    assert v[("webnlg", "ter")] == pytest.approx(0.4)  # TER stays a fraction
    assert v[("e2e", "bleu")] == pytest.approx(70.0)
    assert set(frame["backbone"]) == {"MiniLM-L6", "GPT-2 medium"}
    assert frame["k"].isna().all() and str(frame["k"].dtype) == "Int64"
    row = frame[frame["method_label"] == "pfeiffer"].iloc[0]
    assert row["inference_pct"] == pytest.approx(100 * 300_000 / 22_700_000)
    assert row["budget"] == "277 training examples, 3 epochs at batch 16"
    # a folder works too, and the AdaMix inference modes come as extra rows on request
    modes = {"merged": {"accuracy": 0.7}, "random": {"accuracy": 0.6}}
    (tmp_path / "more").mkdir()
    write_runs(tmp_path / "more", [make_result("sst2", "adamix", "adamix-adapter", modes=modes)])
    plain = rep.runs_frame(tmp_path / "more")
    assert len(plain) == 1 and set(plain["mode"]) == {"reported"}
    with_modes = rep.runs_frame(tmp_path / "more", include_modes=True)
    assert sorted(with_modes["mode"]) == ["merged", "random", "reported"]
    assert with_modes.loc[with_modes["mode"] == "random", "value"].item() == pytest.approx(60.0)


# ---------------------------------------------------------------------------------------------- statistics
def test_bootstrap_ci_hand_checkable_cases():
    assert rep.bootstrap_ci([0.1, 0.1, 0.1]) == (0.1, 0.1)  # constant values: the value itself, exactly
    assert rep.bootstrap_ci([5.0]) == (5.0, 5.0)
    lo, hi = rep.bootstrap_ci([1.0, 3.0])  # resample means of 2 points: 1, 2 or 3 with p = 1/4, 1/2, 1/4
    assert (lo, hi) == (1.0, 3.0)
    lo, hi = rep.bootstrap_ci([70.0, 71.0, 75.0, 80.0])
    assert 70.0 <= lo < np.mean([70, 71, 75, 80]) < hi <= 80.0
    assert rep.bootstrap_ci([70.0, 71.0, 75.0, 80.0]) == (lo, hi)  # fixed seed: reproducible
    assert np.isnan(rep.bootstrap_ci([])[0])


def test_bootstrap_ci_coverage_on_normal_samples():
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        x = rng.normal(10.0, 2.0, size=30)
        lo, hi = rep.bootstrap_ci(x, n_resamples=2000, seed=i)
        hits += lo <= 10.0 <= hi
        half = 1.96 * x.std(ddof=1) / np.sqrt(30)  # the normal-theory interval has about the same width
        assert (hi - lo) == pytest.approx(2 * half, rel=0.25)
    assert 0.88 <= hits / 200 <= 0.99  # ~95% nominal (percentile bootstrap runs a little narrow at n = 30)


def test_t_interval_hand_checkable_cases():
    from peftkit.reporting.stats import t_interval

    lo, hi = t_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t(0.975, 2) = 4.3027
    assert (lo, hi) == (pytest.approx(2 - 4.302653 / np.sqrt(3)), pytest.approx(2 + 4.302653 / np.sqrt(3)))
    assert t_interval([0.1, 0.1, 0.1]) == (pytest.approx(0.1), pytest.approx(0.1))
    assert all(np.isnan(t_interval([5.0]))) and all(np.isnan(t_interval([])))


def test_t_interval_is_honest_at_three_seeds_where_the_percentile_bootstrap_is_not():
    from peftkit.reporting.stats import t_interval

    rng = np.random.default_rng(0)
    t_hits = boot_hits = 0
    for i in range(400):
        x = rng.normal(10.0, 2.0, size=3)
        lo, hi = t_interval(x)
        t_hits += lo <= 10.0 <= hi
        lo, hi = rep.bootstrap_ci(x, n_resamples=500, seed=i)
        boot_hits += lo <= 10.0 <= hi
    assert 0.91 <= t_hits / 400 <= 0.99  # nominal 95%
    assert boot_hits / 400 < 0.85  # the bootstrap "95%" interval of three values is about the min-max range


def test_summarise_numbers(tmp_path):
    runs = [make_result("rte", "lora", seed=s, metrics={"accuracy": a}) for s, a in ((1, 0.60), (2, 0.64), (3, 0.68))]
    runs.append(make_result("rte", "pfeiffer", seed=1, metrics={"accuracy": 0.5}))
    s = rep.summarise(frame_of(tmp_path, runs), by=["task", "k", "method_label", "metric"]).set_index("method_label")
    assert s.loc["lora", "n"] == 3 and s.loc["lora", "mean"] == pytest.approx(64.0)
    assert s.loc["lora", "std"] == pytest.approx(4.0)  # ddof=1: sqrt((16+0+16)/2)
    half = 4.302653 * 4.0 / np.sqrt(3)  # Student-t, 2 degrees of freedom: wider than the min-max range
    assert (s.loc["lora", "ci_lo"], s.loc["lora", "ci_hi"]) == (pytest.approx(64 - half), pytest.approx(64 + half))
    assert not s.loc["lora", "single"]
    assert s.loc["pfeiffer", "n"] == 1 and np.isnan(s.loc["pfeiffer", "std"]) and s.loc["pfeiffer", "single"]
    assert np.isnan(s.loc["pfeiffer", "ci_lo"]) and np.isnan(s.loc["pfeiffer", "ci_hi"])  # one run: no interval
    assert pd.isna(s.loc["lora", "k"])  # a missing k is its own group, not dropped


# ---------------------------------------------------------------------------------------------- paper numbers
@pytest.mark.parametrize("args, kw, expected", [
    (("unipelt", "low-resource", "pfeiffer", "SST-2"), {"k": 100}, 80.48),
    (("unipelt", "low-resource", "unipelt-APL", "cola"), {"k": 100}, 23.62),
    (("unipelt", "low-resource", "lora", "qqp"), {"k": 1000}, 70.89),
    (("unipelt", "full", "unipelt-APL", "qqp"), {}, 87.12),
    (("unipelt", "full", "unipelt-AP-nogates", "cola"), {}, 58.63),
    (("unipelt", "efficiency", "unipelt-APL", "inference_time_vs_ft"), {}, 1.27),
    (("unipelt", "table4", "bitfit", "trainable_pct"), {}, 0.09),
    (("adamix", "glue", "pfeiffer", "rte"), {"backbone": "bert-base"}, 71.8),
    (("adamix", "glue", "adamix-adapter", "mrpc"), {"backbone": "bert-base"}, 92.4),
    (("adamix", "glue", "unipelt-APL", "qqp"), {"backbone": "bert-base"}, 85.5),
    (("adamix", "glue", "adamix-adapter", "cola"), {"backbone": "roberta-large"}, 70.2),
    (("adamix", "glue", "pfeiffer", "rte"), {"backbone": "roberta-large"}, 80.1),  # the 0.8M row
    (("adamix", "glue", "Pfeiffer adapter", "rte"), {"backbone": "roberta-large", "params": "3.0M"}, 83.8),
    (("adamix", "glue", "houlsby", "cola"), {"backbone": "roberta-large"}, 66.3),
    (("adamix", "nlg", "adamix-lora", "e2e"), {"metric": "bleu"}, 71.0),
    (("adamix", "nlg", "adamix-lora", "e2e"), {"metric": "cider"}, 2.54),
    (("adamix", "nlg", "lora", "e2e"), {"metric": "nist"}, 8.77),  # the AdaMix authors' reproduction
    (("adamix", "nlg", "adamix-adapter", "dart"), {"metric": "bleu"}, 47.72),
    (("adamix", "nlg", "full", "webnlg"), {"metric": "ter"}, 0.53),
])
def test_paper_value_cells(args, kw, expected):
    assert rep.paper_value(*args, **kw) == expected


def test_paper_lookup_missing_and_errors():
    assert rep.paper_value("unipelt", "full", "bitfit", "sst2") is None  # Table 3 has no BitFit row
    assert rep.paper_value("unipelt", "full", "adamix-adapter", "sst2") is None
    assert rep.paper_value("unipelt", "full", "pfeiffer", "stsb", metric="pearson") is None  # it prints Spearman
    assert rep.paper_value("adamix", "glue", "adamix-adapter", "stsb", backbone="bert-base") == 89.9
    assert rep.paper_cell("adamix", "glue", "pfeiffer", "stsb", backbone="bert-base")["metric"] == "spearmanr"
    with pytest.raises(ValueError, match="k="):
        rep.paper_value("unipelt", "low-resource", "lora", "rte")
    with pytest.raises(ValueError, match="backbone="):
        rep.paper_value("adamix", "glue", "lora", "rte")
    with pytest.raises(ValueError, match="metric="):
        rep.paper_value("adamix", "nlg", "lora", "e2e")
    with pytest.raises(ValueError, match="unknown method"):
        rep.paper_value("unipelt", "full", "lorra", "rte")
    with pytest.raises(ValueError, match="no table"):
        rep.paper_value("unipelt", "glue", "lora", "rte")
    assert rep.paper_row("unipelt", "full", "pfeiffer") == "Adapter"
    assert rep.paper_row("adamix", "glue", "pfeiffer", backbone="bert-base") == "Adapter (Pfeiffer placement)"
    assert rep.paper_row("adamix", "glue", "adamix-adapter", backbone="bert-base") == "AdaMix (adapter)"
    assert rep.paper_row("adamix", "nlg", "adamix-lora") == "AdaMix (LoRA)"
    assert rep.paper_row("unipelt", "low-resource", "full") == "Full FT"


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared/reference not checked out beside the repo")
def test_every_reference_cell_is_transcribed():
    numbers = rep.paper_numbers()
    n = 0
    for f in sorted(REFERENCE.glob("*.csv")):
        mine = numbers[numbers["source"] == f.name]
        for row in csv.DictReader(f.read_text().splitlines()):
            cells = mine[(mine["row"] == row["method"])]
            if "K" in row:
                cells = cells[cells["k"] == int(row["K"])]
            if "trainable_params" in row:
                cells = cells[cells["trainable_params"] == row["trainable_params"]]
            values = sorted(float(v) for c, v in row.items() if c not in ("method", "K", "trainable_params"))
            assert sorted(cells["value"]) == pytest.approx(values), (f.name, row["method"])
            n += len(values)
    assert n == len(numbers)  # nothing extra either


# ---------------------------------------------------------------------------------------------- tables
def _k100_runs():
    runs = []
    for s, (sst, rte) in zip((1, 2, 3), ((0.80, 0.65), (0.82, 0.67), (0.81, 0.70))):
        runs.append(make_result("sst2", "pfeiffer", seed=s, k=100, data_seed=111, metrics={"accuracy": sst}))
        runs.append(make_result("rte", "pfeiffer", seed=s, k=100, data_seed=111, metrics={"accuracy": rte}))
        runs.append(make_result("stsb", "unipelt", "unipelt-APL", seed=s, k=100, data_seed=111,
                                metrics={"pearson": 0.70, "spearmanr": 0.60 + 0.01 * s}))
    runs.append(make_result("sst2", "unipelt", "unipelt-APL", seed=1, k=100, data_seed=111, metrics={"accuracy": 0.83}))
    runs.append(make_result("sst2", "pfeiffer", seed=1, metrics={"accuracy": 0.99}))  # full data: not in K=100
    return runs


def test_comparison_table_and_markdown(tmp_path):
    frame = frame_of(tmp_path, _k100_runs())
    metric_for = lambda t: "pearson" if t == "stsb" else rep.paper_metric(t, "unipelt")  # noqa: E731
    kw = dict(paper="unipelt", table="low-resource", k=100, tasks=["sst2", "rte", "stsb"],
              methods=["pfeiffer", "unipelt-APL", "lora"], metric_for=metric_for)
    nums = rep.comparison_numbers(frame, **kw).set_index(["method_label", "task"])
    a = nums.loc[("pfeiffer", "sst2")]
    assert (a["n"], a["mean"], a["std"], a["paper"]) == (3, pytest.approx(81.0), pytest.approx(1.0), 80.48)
    assert a["delta"] == pytest.approx(81.0 - 80.48)
    # the paper prints STS-B as Spearman: ours switches to it because our runs report it too
    st = nums.loc[("unipelt-APL", "stsb")]
    assert st["metric"] == "spearmanr" and st["mean"] == pytest.approx(62.0) and st["paper"] == 79.37
    assert st["delta"] == pytest.approx(62.0 - 79.37)
    assert nums.loc[("lora", "rte"), "n"] == 0 and np.isnan(nums.loc[("lora", "rte"), "delta"])

    table = rep.comparison_table(frame, **kw)  # one row per method; ours | paper | Δ as columns, per task
    half = 4.302653 / np.sqrt(3)  # Student-t interval of 80, 81, 82
    assert table.loc["Adapter (Pfeiffer)", "SST-2 ours"] == f"81.00 ± 1.00 [{81 - half:.2f}, {81 + half:.2f}] n=3"
    assert table.loc["Adapter (Pfeiffer)", "SST-2 paper"] == "80.48"
    assert table.loc["Adapter (Pfeiffer)", "SST-2 Δ"] == "+0.52"
    assert table.loc["UniPELT (APL)", "SST-2 ours"] == "83.00 (n=1, no CI)"
    assert table.loc["UniPELT (APL)", "RTE ours"] == "–"  # no run
    assert table.loc["UniPELT (APL)", "Avg ours"] == "–"  # not every task present
    assert table.loc["LoRA", "Avg paper"] == f"{np.mean([81.56, 55.02, 49.35]):.2f}"
    assert table.loc["LoRA", "STS-B paper"] == "49.35"  # the metric's precision, not "%g"
    assert list(table.columns[:3]) == ["SST-2 ours", "SST-2 paper", "SST-2 Δ"] and len(table) == 3

    md, csv_path = rep.write_table(table, tmp_path / "tables" / "k100", "UniPELT Table 1 (K=100), GLUE dev")
    text = md.read_text()
    assert text.splitlines()[0] == "# UniPELT Table 1 (K=100), GLUE dev, MiniLM-L6 (paper: BERT-base), profile cpu"
    ci = f"[{81 - half:.2f}, {81 + half:.2f}]"
    assert f"| Adapter (Pfeiffer) | 81.00 ± 1.00 {ci} n=3 | 80.48 | +0.52 | 67.33 ± 2.52" in text
    assert "nan" not in text.lower() and "None" not in text
    assert "STS-B: ours in the paper's metric (Spearman)" in text
    assert "95% Student-t CI" in text and "bootstrap" not in text
    back = pd.read_csv(csv_path, keep_default_na=False)
    assert list(back.columns) == ["method", "SST-2 ours", "SST-2 paper", "SST-2 Δ", "RTE ours", "RTE paper", "RTE Δ",
                                  "STS-B ours", "STS-B paper", "STS-B Δ", "Avg ours", "Avg paper", "Avg Δ"]
    assert len(back) == 3 and back.loc[back["method"] == "LoRA", "SST-2 ours"].item() == "–"
    assert not list(csv_path.parent.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_title_without_backbone_substitution(tmp_path):
    runs = [make_result("rte", "pfeiffer", seed=s, model="bert-base-uncased", profile="paper",
                        metrics={"accuracy": 0.7}) for s in (1, 2)]
    table = rep.comparison_table(frame_of(tmp_path, runs), paper="unipelt", table="full", tasks=["rte"],
                                 methods=["pfeiffer"], metric_for=lambda t: "accuracy")
    md, _ = rep.write_table(table, tmp_path / "t", "UniPELT Table 3, GLUE dev", notes=["a note of mine"])
    lines = md.read_text().splitlines()
    assert lines[0] == "# UniPELT Table 3, GLUE dev, BERT-base, profile paper"
    assert "- a note of mine" in lines and "Avg" not in lines[2]


# ---------------------------------------------------------------------------------------------- claims
def _claim_frame(tmp_path):
    runs = []
    for s in range(1, 6):
        base = 0.70 + 0.01 * s
        runs.append(make_result("rte", "pfeiffer", seed=s, metrics={"accuracy": base}))
        runs.append(make_result("rte", "adamix", "adamix-adapter", seed=s, metrics={"accuracy": base + 0.02},
                                modes={"merged": {"accuracy": base + 0.02}, "random": {"accuracy": base + 0.03}}))
        noise = [0.01, -0.01, 0.02, -0.02, 0.0][s - 1]
        runs.append(make_result("sst2", "pfeiffer", seed=s, metrics={"accuracy": base}))
        runs.append(make_result("sst2", "adamix", "adamix-adapter", seed=s, metrics={"accuracy": base + noise}))
    runs.append(make_result("mrpc", "adamix", "adamix-adapter", seed=1, metrics={"accuracy": 0.9}))
    runs.append(make_result("mrpc", "pfeiffer", seed=1, metrics={"accuracy": 0.8}))
    return frame_of(tmp_path, runs, include_modes=True)


def test_claim_verdicts(tmp_path):
    frame = _claim_frame(tmp_path)
    c = rep.claim_check(frame, "adamix-adapter", "pfeiffer", "accuracy", ["rte", "sst2", "mrpc", "qnli"])
    by = {r["task"]: r for r in c["tasks"]}
    assert by["rte"]["verdict"] == "held" and by["rte"]["n_pairs"] == 5
    assert by["rte"]["diff_mean"] == pytest.approx(2.0) and by["rte"]["ci_lo"] == pytest.approx(2.0)
    assert by["rte"]["better_mean"] == pytest.approx(75.0) and by["rte"]["worse_mean"] == pytest.approx(73.0)
    assert by["sst2"]["verdict"] == "inconclusive (CI spans 0)"
    assert by["sst2"]["ci_lo"] < 0 < by["sst2"]["ci_hi"]
    assert by["mrpc"]["verdict"] == "too few runs (1 pairs < 5)" and by["mrpc"]["n_pairs"] == 1
    assert by["qnli"]["n_pairs"] == 0 and by["qnli"]["verdict"].startswith("too few runs")
    assert c["verdict"] == "mixed"
    # merged vs random routing of the same models: random is better here, so the "≥" claim is not held
    modes = rep.claim_check(frame, {"method_label": "adamix-adapter", "mode": "merged"},
                            {"method_label": "adamix-adapter", "mode": "random"}, "accuracy", ["rte"],
                            at_least=True, claim="merged ≥ random routing")
    assert modes["tasks"][0]["verdict"] == "not held" and modes["verdict"] == "not held"
    assert modes["tasks"][0]["diff_mean"] == pytest.approx(-1.0)
    # "≥ the best of several": the best candidate per task is taken
    best = rep.claim_check(frame, {"method_label": "adamix-adapter", "mode": "merged"},
                           [{"method_label": "pfeiffer"}, {"method_label": "adamix-adapter", "mode": "random"}],
                           "accuracy", ["rte"])
    assert best["tasks"][0]["worse"] == "AdaMix (adapter), random"
    md = rep.claims_markdown([c, modes])
    assert "### merged ≥ random routing" in md and "Verdict: **not held**" in md
    assert ("| RTE | accuracy | AdaMix (adapter): 75.00 (n=5) | Adapter (Pfeiffer): 73.00 (n=5) "
            "| +2.00 [+2.00, +2.00] | 5 | held |") in md
    assert "inconclusive (CI spans 0)" in md
    assert "A verdict needs at least 5 pairs per task" in md and "Student-t" in md


def test_claim_needs_five_pairs_even_when_every_pair_agrees(tmp_path):
    runs = [make_result("rte", m, lab, seed=s, metrics={"accuracy": a + 0.01 * s})
            for s in (1, 2, 3, 4) for m, lab, a in (("adamix", "adamix-pfeiffer", 0.75), ("pfeiffer", None, 0.70))]
    four = rep.claim_check(frame_of(tmp_path, runs), "adamix-pfeiffer", "pfeiffer", "accuracy", ["rte"])
    assert four["tasks"][0]["verdict"] == "too few runs (4 pairs < 5)" and four["verdict"] == "too few runs"
    assert four["tasks"][0]["diff_mean"] == pytest.approx(5.0)  # the difference is still reported
    runs += [make_result("rte", m, lab, seed=5, metrics={"accuracy": a + 0.05})
             for m, lab, a in (("adamix", "adamix-pfeiffer", 0.75), ("pfeiffer", None, 0.70))]
    five = rep.claim_check(frame_of(tmp_path / "5", runs), "adamix-pfeiffer", "pfeiffer", "accuracy", ["rte"])
    assert five["verdict"] == "held"


def test_claim_on_collapsed_runs_reads_collapsed_not_held(tmp_path):
    """Runs stuck at the majority class are equal to each other: a "≥" claim between them must not read "held"."""
    stuck = {"merged": {"accuracy": 0.5092}, "random": {"accuracy": 0.5092}}
    runs = [make_result("sst2", m, lab, seed=s, metrics={"accuracy": 0.5092, "predicted_classes": 1},
                        modes=stuck if m == "adamix" else None)
            for s in (1, 2, 3, 4, 5) for m, lab in (("adamix", "adamix-adapter"), ("pfeiffer", None))]
    frame = frame_of(tmp_path, runs, include_modes=True)
    modes = rep.claim_check(frame, {"method_label": "adamix-adapter", "mode": "merged"},
                            {"method_label": "adamix-adapter", "mode": "random"}, "accuracy", ["sst2"], at_least=True)
    assert modes["tasks"][0]["verdict"] == "collapsed (all 5 pairs: both sides constant predictions)"
    assert modes["verdict"] == "collapsed" and "collapsed on 1" in modes["summary"]
    vs = rep.claim_check(frame, "adamix-adapter", "pfeiffer", "accuracy", ["sst2"])
    assert vs["tasks"][0]["verdict"] == "collapsed (all 5 pairs: both sides constant predictions)"
    md = rep.claims_markdown([modes, vs])
    assert "Verdict: **collapsed**" in md and "– (not comparable)" in md and "+0.00 [" not in md
    # pairs whose both sides collapsed are left out; the pair that learned remains (too few for a verdict)
    runs[0]["best_metrics"] = {"accuracy": 0.80, "predicted_classes": 2}
    runs[1]["best_metrics"] = {"accuracy": 0.78, "predicted_classes": 2}
    mixed = rep.claim_check(frame_of(tmp_path / "m", runs), "adamix-adapter", "pfeiffer", "accuracy", ["sst2"])
    row = mixed["tasks"][0]
    assert row["verdict"] == "too few runs (1 pairs < 5)" and row["n_dead_pairs"] == 4
    assert row["diff_mean"] == pytest.approx(2.0)
    assert row["runs"] == ("AdaMix (adapter): 4 of 5 runs collapsed (constant predictions); Adapter (Pfeiffer): "
                           "4 of 5 runs collapsed (constant predictions); 4 of 5 pairs left out: both sides collapsed")


def test_a_side_that_learned_nothing_while_the_other_learns_is_a_result_not_collapsed(tmp_path):
    """UniPELT's own K = 100 table prints prefix-tuning on CoLA at 0.00: a method stuck at the majority class while
    the other side learns is a finding. The claim counts it at its score and names the collapse beside the verdict;
    only pairs whose both sides collapsed are untestable (the old rule turned any collapsed run into "collapsed")."""
    runs = []
    for s in (1, 2, 3, 4, 5):
        runs.append(make_result("sst2", "unipelt", "unipelt-APL", seed=s, metrics={"accuracy": 0.80 + 0.01 * s,
                                                                                  "predicted_classes": 2}))
        runs.append(make_result("sst2", "prefix", seed=s, metrics={"accuracy": 0.5092, "predicted_classes": 1}))
    c = rep.claim_check(frame_of(tmp_path, runs), "unipelt-APL", "prefix", "accuracy", ["sst2"])
    row = c["tasks"][0]
    assert row["verdict"] == "held" and c["verdict"] == "held" and row["n_pairs"] == 5
    assert row["diff_mean"] == pytest.approx(83.0 - 50.92) and row["ci_lo"] > 0
    assert row["runs"] == "Prefix-tuning: 5 of 5 runs collapsed (constant predictions)"
    md = rep.claims_markdown([c])
    assert "Verdict: **held**" in md and "| held | Prefix-tuning: 5 of 5 runs collapsed (constant predictions) |" in md
    assert "– (not comparable)" not in md and f"{83.0 - 50.92:+.2f} [" in md
    # the other way round the claim is refuted, again with the collapse named
    back = rep.claim_check(frame_of(tmp_path / "b", runs), "prefix", "unipelt-APL", "accuracy", ["sst2"])
    assert back["tasks"][0]["verdict"] == "not held" and "5 of 5 runs collapsed" in back["tasks"][0]["runs"]


def test_claim_on_lower_is_better_metric(tmp_path):
    runs = [make_result("webnlg", m, lab, kind="nlg", seed=s, metrics={"bleu": 0.5, "ter": t + 0.001 * s})
            for s in (1, 2, 3, 4, 5) for m, lab, t in (("adamix", "adamix-lora", 0.38), ("lora", "lora", 0.40))]
    c = rep.claim_check(frame_of(tmp_path, runs), "adamix-lora", "lora", "ter", ["webnlg"])
    assert c["tasks"][0]["verdict"] == "held" and c["tasks"][0]["diff_mean"] == pytest.approx(0.02)


# ---------------------------------------------------------------------------------------------- figures
def _assert_images(paths):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    png, pdf = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1_000


def test_figures_write_png_and_pdf(tmp_path):
    rng = np.random.default_rng(0)
    runs = []
    for s in (1, 2, 3):
        for dim in (8, 48):
            a = 0.70 + 0.01 * np.log2(dim) + rng.normal(0, 0.01)
            modes = {"merged": {"accuracy": a}, "random": {"accuracy": a - 0.01}, "fixed-0": {"accuracy": a - 0.02},
                     "ensemble": {"accuracy": a}}
            runs.append(make_result("rte", "pfeiffer", seed=s, config={"bottleneck": dim}, metrics={"accuracy": a}))
            runs.append(make_result("rte", "adamix", "adamix-adapter", seed=s, config={"bottleneck": dim},
                                    metrics={"accuracy": a + 0.01}, modes=modes))
        gates = {"layer": list(range(6)), "adapter": list(rng.uniform(0, 1, 6)), "prefix": list(rng.uniform(0, 1, 6)),
                 "lora_query": list(rng.uniform(0, 1, 6)), "lora_value": list(rng.uniform(0, 1, 6))}
        runs.append(make_result("sst2", "unipelt", "unipelt-APL", seed=s, k=100, data_seed=111, gates=gates))
        runs.append(make_result("sst2", "unipelt", "unipelt-AP", seed=s, k=100, data_seed=111,
                                gates={**gates, "lora_query": None, "lora_value": None}))
        for m, lab, eps in (("full", "full", 50.0), ("lora", "lora", 100.0), ("pfeiffer", "pfeiffer", 90.0)):
            runs.append(make_result("mrpc", m, lab, seed=s, metrics={"f1": 0.8}, train_eps=eps))
        for m, lab in (("lora", "lora"), ("adamix", "adamix-lora")):
            runs.append(make_result("e2e", m, lab, kind="nlg", model="gpt2-medium", seed=s,
                                    metrics={"bleu": 0.68 + rng.normal(0, 0.01), "nist": 8.6, "meteor": 0.46,
                                             "rouge_l": 0.71, "cider": 2.45}))
    root = write_runs(tmp_path / "runs", runs)
    results = load_results(root)
    frame = rep.runs_frame(results, include_modes=True)
    out = tmp_path / "figures"
    _assert_images(rep.bottleneck_curve(frame, out / "bottleneck", tasks=["rte"], metric="accuracy"))
    _assert_images(rep.strip_by_mode(frame, out / "modes", tasks=["rte"], metric="accuracy"))
    first = (out / "modes.png").read_bytes()
    saved = np.random.get_state()
    try:
        np.random.seed(7)  # the points' jitter does not follow numpy's global state: a re-render is byte-identical
        rep.strip_by_mode(frame, out / "modes", tasks=["rte"], metric="accuracy")
    finally:
        np.random.set_state(saved)  # the other tests see numpy's global state as they would have
    assert (out / "modes.png").read_bytes() == first
    _assert_images(rep.gate_heatmap(results, out / "gates"))
    eff = rep.efficiency_rows(rep.select(frame, task="mrpc"))
    ours = eff[eff["source"] == "ours"].set_index("method_label")
    assert ours.loc["lora", "train_time_vs_ft"] == pytest.approx(0.5)  # full 50 ex/s vs LoRA 100 ex/s
    assert set(eff.loc[eff["source"] == "paper", "method_label"]) == {"full", "lora", "pfeiffer"}
    _assert_images(rep.efficiency_bars(eff, out / "efficiency"))
    _assert_images(rep.nlg_bars(frame, out / "nlg", tasks=["e2e"]))
    with pytest.raises(ValueError, match="no rows"):
        rep.bottleneck_curve(frame, out / "none", tasks=["cola"], metric="accuracy")
    assert not list(out.glob(".*"))  # no temporary files left


def test_a_figure_redrawn_from_the_same_data_is_the_same_pdf(tmp_path):
    """No creation date in the PDF: re-executing a notebook over unchanged runs leaves its figures unchanged."""
    import time

    import matplotlib.pyplot as plt

    from peftkit.reporting import plot

    def draw(stem):
        with plot.style():
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3], [3, 1, 2])
            return plot.finish(fig, tmp_path / stem)[1].read_bytes()

    first = draw("a")
    time.sleep(1.1)  # a creation date would now differ by a second
    assert draw("b") == first


def test_figure_tidy_enforces_fonts_and_untangles_labels(tmp_path):
    import matplotlib.pyplot as plt

    from peftkit.reporting import plot

    with plot.style():
        fig, ax = plt.subplots(figsize=(2.5, 2))
        names = [f"a rather long method name {i}" for i in range(6)]
        ax.bar(range(6), range(6))
        ax.set_xticks(range(6), names)
        ax.set_title("tiny", fontsize=6)
        assert plot.label_overlaps(fig)  # the test case really overlaps before tidying
        paths = plot.finish(fig, tmp_path / "tidy")
    assert not plot.label_overlaps(fig) and plot.min_font_size(fig) >= 9
    _assert_images(paths)


# ---------------------------------------------------------------------------------------------- index
def test_index_keeps_entries_of_separate_registrations(tmp_path):
    reports = tmp_path / "reports"
    (reports / "tables").mkdir(parents=True)
    (reports / "tables" / "glue.md").write_text("# t\n")
    rep.register_artifact(reports, "tables/glue.md", "GLUE dev table", "papermill notebooks/glue.ipynb")
    rep.register_artifact(reports, reports / "figures" / "gates.png", "UniPELT gate heatmap.", "make figures")
    readme = rep.write_index(reports, [("params.md", "parameter counts", "make params"),
                                       {"path": "tables/glue.md", "description": "GLUE dev table (v2)",
                                        "command": "make reports"}])
    index = json.loads((reports / "index.json").read_text())["artifacts"]
    assert set(index) == {"tables/glue.md", "figures/gates.png", "params.md"}
    assert index["tables/glue.md"]["command"] == "make reports"  # the later registration updates its line
    text = readme.read_text()
    assert readme == reports / "README.md" and text.startswith("# Reports")
    assert "- [tables/glue.md](tables/glue.md): GLUE dev table (v2). Rebuilt by `make reports`." in text
    assert "- [figures/gates.png](figures/gates.png) *(not built yet)*: UniPELT gate heatmap. Rebuilt by " \
           "`make figures`." in text
    assert len([ln for ln in text.splitlines() if ln.startswith("- [")]) == 3
    rep.write_index(reports, [("params.md", "parameter counts", "make params")], replace=True)
    assert list(rep.read_index(reports)) == ["params.md"]
    with pytest.raises(ValueError, match="must not be empty"):
        rep.register_artifact(reports, "x.md", "", "make")


def test_nlg_report_one_table_per_dataset_one_row_per_method_and_no_delta_for_collapsed_runs(tmp_path):
    """As a paper prints it: per dataset one row per method, per metric ours | paper | Δ columns (one precision
    each), "n = 1" said once in the notes; a run whose generations are all empty is flagged and gets no Δ; the CSV
    holds the numbers in long format (one row per method x dataset x metric)."""
    from peftkit.studies.nlg import report as nlg_report

    metrics = {"bleu": 0.05, "nist": 0.1, "meteor": 0.09, "rouge_l": 0.2, "cider": 0.1}
    ok = make_result("e2e", "lora", kind="nlg", metrics=metrics)
    ok["samples"] = [{"source": f"s{i}", "prediction": f"p{i}", "reference": "r"} for i in range(5)]
    empty = make_result("e2e", "adamix", "adamix-lora", kind="nlg", metrics={k: 0.0 for k in metrics})
    empty["samples"] = [{"source": "s", "prediction": "", "reference": "r"}]
    adapter = make_result("e2e", "pfeiffer", kind="nlg", metrics=metrics)  # no row in AdaMix's NLG table
    r = nlg_report([ok, empty, adapter], "cpu", tmp_path)
    t = r.tables["results"]["E2E"]
    assert list(t.index) == ["LoRA", "Adapter (Pfeiffer)", "AdaMix (LoRA)"]  # one row per method
    assert list(t.columns) == ["collapsed"] + [f"{m} {c}" for m in ("BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr")
                                               for c in ("ours", "paper", "Δ")]
    lora, dead = t.loc["LoRA"], t.loc["AdaMix (LoRA)"]
    assert (lora["BLEU ours"], lora["BLEU paper"], lora["BLEU Δ"]) == ("5.00", "69.80", "-64.80")
    assert (lora["CIDEr ours"], lora["CIDEr paper"], lora["CIDEr Δ"]) == ("0.100", "2.520", "-2.420")
    assert lora["collapsed"] == "no" and dead["collapsed"] == "1/1 runs: empty generations"
    assert all(dead[f"{m} Δ"] == "– (collapsed)" for m in ("BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr"))
    assert dead["BLEU paper"] == "71.00" and t.loc["Adapter (Pfeiffer)", "BLEU Δ"] == "–"
    text = (tmp_path / "tables" / "04_nlg_results.md").read_text()
    assert "## E2E" in text and "n=1" not in text and text.count("(n = 1), so no interval") == 1
    assert text.count("| AdaMix (LoRA) |") == 1 and "| ours |" not in text  # no ours / paper / Δ rows
    assert "-71.00" not in text  # the collapsed run's would-be Δ against the paper's 71.0 is printed nowhere
    with open(tmp_path / "tables" / "04_nlg_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 5 and {r["task"] for r in rows} == {"e2e"}
    cell = next(r for r in rows if r["method_label"] == "adamix-lora" and r["metric"] == "bleu")
    assert (cell["mean"], cell["paper"], cell["delta"], cell["collapsed_reason"]) == ("0.0", "71.0", "–",
                                                                                      "empty generations")
    assert next(r for r in rows if r["method_label"] == "lora" and r["metric"] == "bleu")["delta"] == "-64.8"


def test_nlg_table_with_several_seeds_prints_intervals_in_the_cells():
    frame = rep.runs_frame([make_result("e2e", "lora", kind="nlg", seed=s, metrics={"bleu": 0.5 + 0.01 * s})
                            for s in (1, 2, 3)])
    t = rep.metrics_table(frame, paper="adamix", table="nlg", task="e2e", metrics=["bleu"], methods=["lora"])
    assert t.loc["LoRA", "BLEU ours"] == "52.00 ± 1.00 [49.52, 54.48] n=3" and t.loc["LoRA", "BLEU Δ"] == "-17.80"
    assert "Student-t" in t.attrs["notes"][0]


def test_constant_generations_collapse_a_run_one_repeated_source_does_not():
    same = make_result("e2e", "lora", kind="nlg", metrics={"bleu": 0.1})
    same["samples"] = [{"source": f"s{i}", "prediction": "the eagle", "reference": "r"} for i in range(3)]
    one_source = make_result("e2e", "lora", kind="nlg", metrics={"bleu": 0.1})
    one_source["samples"] = [{"source": "s", "prediction": "the eagle", "reference": "r"}] * 2
    collapsed = rep.runs_frame([same, one_source])["collapsed"]
    assert collapsed.iloc[0] == "constant generations" and pd.isna(collapsed.iloc[1])


def test_one_text_or_nothing_whatever_the_source_is_collapsed_judged_on_every_generation():
    """A generator that prints "the city centre." or nothing for every source (04's E2E runs at the cpu budget) has
    collapsed as surely as one that always prints the same text; with ``generations`` (counted over every decoded
    source) the rule reads those counts, not the five stored samples."""
    from peftkit.reporting.frame import collapse_reason
    from peftkit.runner import generation_stats

    def run(texts, generations=None):
        r = make_result("e2e", "lora", kind="nlg", metrics={"bleu": 0.01})
        r["samples"] = [{"source": f"s{i}", "prediction": t, "reference": "r"} for i, t in enumerate(texts)]
        r["generations"] = generations
        return r

    assert collapse_reason(run(["", "the city centre.", ""])) == "constant generations"
    assert collapse_reason(run(["", " ", ""])) == "empty generations"
    assert collapse_reason(run([".", "the city.", "."])) is None
    stats = generation_stats([f"s{i}" for i in range(20)], ["the city centre."] * 3 + [""] * 17)
    assert stats == {"sources": 20, "distinct_sources": 20, "empty": 17, "distinct_nonempty": 1}
    varied = [f"text {i}" for i in range(5)]
    assert collapse_reason(run(varied, stats)) == "constant generations"  # the counts, not the samples, decide
    fine = generation_stats([f"s{i}" for i in range(20)], [""] * 5 + [f"text {i % 4}" for i in range(15)])
    assert collapse_reason(run(["x"] * 5, fine)) is None
    assert collapse_reason(run(varied, generation_stats(["a", "b"], ["", ""]))) == "empty generations"


# ---------------------------------------------------------------------------------------------- honesty
def test_collapsed_runs_are_flagged_and_get_no_delta(tmp_path):
    runs = [make_result("sst2", "lora", seed=s, k=100, data_seed=111, metrics={"accuracy": 0.8 + 0.01 * s})
            for s in (1, 2)]
    dead = make_result("sst2", "pfeiffer", seed=1, k=100, data_seed=111, metrics={"accuracy": 0.509})
    dead["best_metrics"]["predicted_classes"] = 1.0  # one label for every example
    frame = frame_of(tmp_path, runs + [dead])
    assert frame.loc[frame["method_label"] == "pfeiffer", "collapsed"].tolist() == ["constant predictions"]
    assert frame.loc[frame["method_label"] == "lora", "collapsed"].isna().all()
    kw = dict(paper="unipelt", table="low-resource", k=100, tasks=["sst2"], methods=["pfeiffer", "lora"],
              metric_for=lambda t: "accuracy")
    nums = rep.comparison_numbers(frame, **kw).set_index("method_label")
    assert np.isnan(nums.loc["pfeiffer", "delta"]) and nums.loc["pfeiffer", "collapsed"] == 1
    assert not np.isnan(nums.loc["lora", "delta"])
    table = rep.comparison_table(frame, **kw)
    assert table.loc["Adapter (Pfeiffer)", "SST-2 ours"] == "50.90 (n=1, no CI)"  # the number alone in its cell
    assert table.loc["Adapter (Pfeiffer)", "SST-2 Δ"] == "– (collapsed)"
    assert table.loc["Adapter (Pfeiffer)", "SST-2 status"] == "collapsed 1/1 (constant predictions)"
    assert list(table.columns[:4]) == ["SST-2 ours", "SST-2 paper", "SST-2 Δ", "SST-2 status"]
    assert any(n.startswith("status: how many of a cell's runs collapsed") for n in table.attrs["notes"])
    empty = make_result("e2e", "lora", kind="nlg", metrics={"bleu": 0.0})
    empty["samples"] = [{"source": "s", "prediction": " ", "reference": "r"}]
    assert rep.runs_frame([empty])["collapsed"].tolist() == ["empty generations"]


def _tick_at(ax, x: float) -> str:
    """The x tick label nearest to data coordinate ``x`` (the method a bar or a label belongs to)."""
    ticks = list(ax.get_xticks())
    i = min(range(len(ticks)), key=lambda j: abs(ticks[j] - x))
    return ax.get_xticklabels()[i].get_text().replace("\n", " ")


def _captured(monkeypatch):
    """Replace figures.finish: keep the figure's texts instead of writing files."""
    from matplotlib.container import ErrorbarContainer
    from matplotlib.patches import Rectangle

    from peftkit.reporting import figures

    seen = {}

    def finish(fig, out, caption=None):
        ax = fig.axes
        seen.update(caption=caption, xlabels=[a.get_xlabel() for a in ax],
                    legend=[t.get_text() for lg in fig.legends for t in lg.get_texts()],
                    bars=sum(isinstance(p, Rectangle) for a in ax for p in a.patches),
                    errorbars=sum(isinstance(c, ErrorbarContainer) and c.has_xerr for a in ax for c in a.containers),
                    yerr=[c for a in ax for c in a.containers if isinstance(c, ErrorbarContainer)],
                    log=[a.get_xscale() for a in ax],
                    # per panel: (text, the tick label under it) of every annotation, e.g. a collapsed run's
                    marks=[[(t.get_text(), _tick_at(a, getattr(t, "xy", t.get_position())[0])) for t in a.texts]
                           for a in ax],
                    # per panel: the drawn bars' (tick label, face colour, hatch); NaN-height bars are not drawn
                    patches=[[(_tick_at(a, p.get_x() + p.get_width() / 2), p.get_facecolor(), p.get_hatch())
                              for p in a.patches if isinstance(p, Rectangle) and p.get_height() == p.get_height()]
                             for a in ax])
        return []
    monkeypatch.setattr(figures, "finish", finish)
    return seen


def test_figures_say_what_they_plot(tmp_path, monkeypatch):
    seen = _captured(monkeypatch)
    runs = [make_result("mrpc", m, lab, seed=s, metrics={"f1": 0.8}, train_eps=eps * (1 + 0.05 * s * (lab == "lora")))
            for s in (1, 2, 3) for m, lab, eps in (("full", "full", 50.0), ("lora", "lora", 100.0))]
    timing = {"rows": [{"method_label": "lora", "aa": False, "ratio": 1.1, "q1": 1.05, "q3": 1.15, "within_aa": False},
                       {"method_label": "full", "aa": True, "ratio": 1.01, "q1": 0.98, "q3": 1.03}]}
    eff = rep.efficiency_rows(frame_of(tmp_path, runs), timing=timing)
    ours = eff[eff["source"] == "ours"].set_index("method_label")
    assert ours.loc["lora", "train_time_vs_ft_lo"] < ours.loc["lora", "train_time_vs_ft"] \
        < ours.loc["lora", "train_time_vs_ft_hi"]
    assert (ours.loc["lora", "inference_time_vs_ft_lo"], ours.loc["lora", "inference_time_vs_ft_hi"]) == (1.05, 1.15)
    rep.efficiency_bars(eff, tmp_path / "eff", caption="MiniLM-L6, profile cpu; budget: 2 epochs")
    assert seen["caption"] == "MiniLM-L6, profile cpu; budget: 2 epochs"
    assert "inference" in seen["xlabels"][0] and "trainable" not in seen["xlabels"][0]  # what it plots
    assert "range" in seen["xlabels"][1] and "IQR" in seen["xlabels"][2]  # what the error bars are
    assert seen["log"] == ["linear"] * 3 and seen["bars"] > 0  # bars on linear axes
    assert seen["errorbars"] >= 2  # the time ratios carry their spread (seeds' range, rounds' IQR)
    assert "A/A band (full FT vs a copy): 1 ± 0.030" in seen["legend"]
    nlg = [make_result("e2e", "lora", kind="nlg", seed=1, metrics={"bleu": 0.6, "nist": 8.0})]
    rep.nlg_bars(frame_of(tmp_path / "nlg", nlg), tmp_path / "nlg", tasks=["e2e"])
    assert seen["legend"] and not any("95% CI" in t for t in seen["legend"])  # n = 1: no interval to name
    assert "ours (n = 1, no interval)" in seen["legend"]
    curve = [make_result("rte", "pfeiffer", seed=s, config={"bottleneck": b}, metrics={"accuracy": 0.7})
             for s in (1, 2) for b in (8, 48)]
    rep.bottleneck_curve(frame_of(tmp_path / "curve", curve), tmp_path / "curve", tasks=["rte"], metric="accuracy",
                         methods=["pfeiffer"])
    assert seen["xlabels"][0] == "bottleneck dimension"
    one = [make_result("rte", "adamix", "adamix-adapter", seed=1, metrics={"accuracy": 0.7},
                       modes={"merged": {"accuracy": 0.7}, "random": {"accuracy": 0.69}})]
    rep.strip_by_mode(frame_of(tmp_path / "modes", one, include_modes=True), tmp_path / "m", tasks=["rte"],
                      metric="accuracy")
    assert seen["legend"] == ["majority class (chance)", "mean (n = 1)"]  # RTE dev: its majority class drawn


def _draw(kind: str, spec) -> int:
    """0, 1, 2 for GLUE's data seeds 111, 222, 333 (the cpu tables' replicates), else 0."""
    return (spec.data_seed - 111) // 111 if kind == "glue" and spec.data_seed else 0


def grid_results(study: str, profile: str, **params) -> list[dict]:
    """Synthetic results of exactly the runs of a study's grid (names, fields and budget as the grid's specs)."""
    import dataclasses

    from peftkit import studies
    from peftkit.experiment import method_label, resolve

    out = []
    for spec in studies.grid(study, profile, runs_dir="/nonexistent", **params):
        r = resolve(spec)
        kind, task = spec.task.split(":", 1) if ":" in spec.task else ("glue", spec.task)  # "fewshot:sst-2"
        res = make_result(task, spec.method, method_label(spec.method, spec.options), seed=spec.seed, k=spec.k,
                          data_seed=r.data_seed, model=r.model, profile=profile, run_id=Path(spec.out).name,
                          config=spec.options, kind=kind,
                          metrics={"accuracy": 0.7 + 0.001 * (spec.seed + _draw(kind, r))})
        res["head"] = r.head
        res["training"].update({k: v for k, v in dataclasses.asdict(r).items() if k in res["training"]})
        out.append(res)
    return out


def test_non_default_runs_never_overwrite_the_profile_reports(tmp_path, monkeypatch):
    from peftkit import studies

    monkeypatch.setattr(studies.common, "project_root", lambda: tmp_path)
    default = grid_results("glue_main", "cpu")
    assert studies.variant("glue_main", "cpu", default) == {}
    r = studies.glue_main_report(default, "cpu")
    assert r.reports_dir == tmp_path / "reports" and not r.variant
    committed = (tmp_path / "reports/tables/01_glue_main_vs_unipelt_k1000.md").read_text()
    index = (tmp_path / "reports/index.json").read_text()

    changed = grid_results("glue_main", "cpu", max_steps=1)
    diff = studies.variant("glue_main", "cpu", changed)
    assert diff["max_steps"] == "1" and set(diff) <= {"max_steps", "epochs"}
    v = studies.glue_main_report(changed, "cpu")
    assert v.reports_dir == tmp_path / "reports" / "variants" / studies.variant_folder(diff)
    assert "max-steps-1" in v.reports_dir.name
    assert (tmp_path / "reports/tables/01_glue_main_vs_unipelt_k1000.md").read_text() == committed  # untouched
    text = (v.reports_dir / "tables/01_glue_main_vs_unipelt_k1000.md").read_text()
    assert "with non-default parameters" in text.splitlines()[0] and "max_steps=1" in text
    assert (tmp_path / "reports/index.json").read_text() == index  # the profile's index and README too
    assert "tables/01_glue_main_vs_unipelt_k1000.md" in rep.read_index(v.reports_dir)
    fewer = [x for x in default if x["data_seed"] != 333]  # a subset of the default runs is a variant too
    assert studies.variant("glue_main", "cpu", fewer) == {"data_seeds": "111,222"}
    own = studies.glue_main_report(changed, "cpu", tmp_path / "elsewhere")  # an explicit REPORTS_DIR is used as is
    assert own.reports_dir == tmp_path / "elsewhere" and own.variant


def test_readme_opens_with_what_was_found(tmp_path, monkeypatch):
    """"What was found" is built from the notebooks' closing findings (one section each, in notebook order); a
    notebook's finding replaces the single claim / Δ lines it registered before."""
    from peftkit import studies

    monkeypatch.setattr(studies.common, "project_root", lambda: tmp_path)
    reports = tmp_path / "reports"
    rep.register_finding(reports, "01_glue_main_vs_adamix", "[old](t.md): Δ from -41.03 (BitFit, SST-2)", "delta",
                         caveat="An old caveat.")
    rep.register_finding(reports, "03_fewshot: A > B", "[A > B](claims/x.md): **too few runs** (...)", "claim")
    r = studies.glue_main_report(grid_results("glue_main", "cpu"), "cpu")
    assert "Δ from -41.03" in (reports / "README.md").read_text()  # until the notebook's finding replaces it
    r.finding()
    text = (reports / "README.md").read_text()
    assert text.startswith("# Reports\n\n## What was found\n\n### 01_glue_main\n\n**Runs.** 27 runs")
    assert "Δ from -41.03" not in text and "An old caveat" not in text  # superseded by 01's finding
    assert "**too few runs**" in text  # another notebook's line stays until that notebook concludes
    assert text.index("### 01_glue_main") < text.index("**too few runs**") < text.index("## Files") \
        < text.index("- [tables/")
    assert "MiniLM-L6 where the paper used BERT-base" in text
    with pytest.raises(ValueError, match="kind"):
        rep.register_finding(reports, "y", "text", "verdict")


def test_study_tables_put_ours_paper_and_delta_side_by_side(tmp_path):
    from peftkit.studies.ablation_bottleneck import report as ablation_bottleneck_report

    runs = [make_result("sst2", m, lab, seed=s, config={"bottleneck": 48}, metrics={"accuracy": a + 0.01 * s})
            for s in (1, 2, 3) for m, lab, a in (("pfeiffer", None, 0.80), ("adamix", "adamix-pfeiffer", 0.82))]
    r = ablation_bottleneck_report(runs, "cpu", tmp_path / "r")
    t = r.tables["results"]
    assert ["SST-2 ours", "SST-2 paper", "SST-2 Δ"] == [c for c in t.columns if c.startswith("SST-2")]
    paper = rep.paper_value("adamix", "glue", "pfeiffer", "sst2", backbone="bert-base",
                            metric=rep.paper_metric("sst2", "adamix"))
    row = t.loc["Adapter (Pfeiffer), b=48"]
    assert row["SST-2 paper"] == f"{paper:.2f}" and row["SST-2 Δ"] == f"{82.0 - paper:+.2f}"
    assert row["SST-2 ours"].endswith("n=3") and r.variant  # not the cpu grid: a variant, said so
    text = (tmp_path / "r/tables/05_ablation_bottleneck_results.md").read_text()
    assert "with non-default parameters" in text.splitlines()[0] and "Student-t" in text


@pytest.mark.parametrize("study", ["ablation_bottleneck", "ablation_adamix"])
def test_ablation_tables_at_k_have_no_full_data_paper_column_and_say_why(tmp_path, study):
    """AdaMix's BERT-base GLUE table trained on the full training sets: beside runs on K examples per data seed its
    cells would give a Δ that is mostly the data size, so the table drops them and its note says why; the same runs
    on the full training sets keep them."""
    from peftkit import studies

    name = {"ablation_bottleneck": "results", "ablation_adamix": "variants"}[study]
    nb = next(n for n, s in studies.NOTEBOOKS.items() if s == study)
    at_k = _with_modes(grid_results(study, "cpu"))
    assert {r["k"] for r in at_k} == {studies.defaults(study, "cpu")["k"][0]}
    full = [{**r, "k": None, "data_seed": None, "protocol": {"glue": "full"}} for r in at_k]
    for runs, paper, out in ((at_k, False, tmp_path / "k"), (full, True, tmp_path / "full")):
        t = studies.report(study, runs, "cpu", out).tables[name]
        assert any(c.endswith(("paper", "Δ")) for c in t.columns) is paper, list(t.columns)
        note = (out / "tables" / f"{nb}_{name}.md").read_text()
        assert ("No paper column: these runs train on K = " in note) is not paper
        assert ("paper: AdaMix's BERT-base GLUE table" in note) is paper


def test_nlg_report_prints_webnlg_seen_unseen_all_and_dart_beside_the_paper(tmp_path):
    from peftkit.studies.nlg import report as nlg_report

    webnlg = {f"{m}{s}": v + d for m, v in (("bleu", 0.5), ("meteor", 0.4), ("ter", 0.4))
              for s, d in (("_seen", 0.05), ("_unseen", -0.05), ("", 0.0))}
    runs = [make_result("webnlg", "lora", kind="nlg", model="gpt2-medium", metrics=webnlg),
            make_result("dart", "lora", kind="nlg", model="gpt2-medium",
                        metrics={"bleu": 0.47, "meteor": 0.39, "ter": 0.46})]
    for x in runs:
        x["scoring"] = "LoRA gpt2_decode.py --tokenize --lower --ref_num 6 + eval.py"
    r = nlg_report(runs, "paper", tmp_path)
    web, dart = r.tables["results"]["WebNLG"], r.tables["results"]["DART"]
    assert list(web.columns) == ["collapsed", "BLEU S ours", "BLEU U ours", "BLEU A ours", "BLEU A paper",
                                 "BLEU A Δ", "METEOR S ours", "METEOR U ours", "METEOR A ours", "TER S ours",
                                 "TER U ours", "TER A ours", "TER A paper", "TER A Δ"]  # paper: A's BLEU, TER only
    assert list(dart.columns) == ["collapsed", "BLEU ours", "BLEU paper", "BLEU Δ", "METEOR ours", "TER ours",
                                  "TER paper", "TER Δ"]
    lora = web.loc["LoRA"]
    assert lora["BLEU S ours"] == "55.00" and lora["BLEU U ours"] == "45.00" and lora["BLEU A Δ"] == "-5.37"
    assert lora["BLEU A paper"] == "55.37" and lora["TER A paper"] == "0.390" and lora["TER A ours"] == "0.400"
    assert dart.loc["LoRA", "BLEU paper"] == "47.35"
    text = (tmp_path / "tables" / "04_nlg_results.md").read_text()
    assert "WebNLG scoring: LoRA gpt2_decode.py --tokenize --lower --ref_num 6" in text and "DART scoring" in text


def _nlg_run(label, method, seed=1, texts=("a", "b", "c")) -> dict:
    r = make_result("e2e", method, label, kind="nlg", seed=seed,
                    metrics={"bleu": 0.0, "nist": 0.0} if set(texts) <= {""} else {"bleu": 0.3, "nist": 3.0})
    r["samples"] = [{"source": f"s{i}", "prediction": t, "reference": "r"} for i, t in enumerate(texts)]
    return r


def test_nlg_bars_mark_collapsed_runs_by_the_tables_rule(tmp_path, monkeypatch):
    """A method whose generations collapsed gets a grey hatched bar labelled "collapsed" in every panel (no
    unflagged zero beside the paper's bar), by the same rule that flags it in the table."""
    from peftkit.reporting.figures import COLLAPSED_COLOUR

    seen = _captured(monkeypatch)
    runs = [_nlg_run("lora", "lora"), _nlg_run("adamix-lora", "adamix", texts=("", "")),
            _nlg_run("pfeiffer", "pfeiffer", seed=1), _nlg_run("pfeiffer", "pfeiffer", seed=2, texts=("x",) * 3)]
    frame = rep.runs_frame(runs)
    rep.nlg_bars(frame, tmp_path / "nlg", tasks=["e2e"])
    assert seen["marks"] == [[("collapsed 1/2", "Adapter (Pfeiffer)"), ("collapsed", "AdaMix (LoRA)")]] * 2
    legend = "ours, collapsed (constant generations, empty generations): not comparable"
    assert legend in seen["legend"]
    for panel in seen["patches"]:  # the collapsed methods' bars: grey, cross-hatched; LoRA's: ours' colour
        ours = {m: (face, hatch) for m, face, hatch in panel if hatch != "//"}  # "//": the paper's bars
        grey = _rgba(COLLAPSED_COLOUR)
        assert ours["AdaMix (LoRA)"] == (grey, "xx") and ours["Adapter (Pfeiffer)"] == (grey, "xx")
        assert ours["LoRA"][0] != grey and not ours["LoRA"][1]
    table = rep.metrics_table(frame, paper="adamix", table="nlg", task="e2e", metrics=["bleu"],
                              methods=["lora", "pfeiffer", "adamix-lora"])
    assert table["collapsed"].tolist() == ["no", "1/2 runs: constant generations", "1/1 runs: empty generations"]
    rep.nlg_bars(rep.runs_frame(runs[:1]), tmp_path / "fine", tasks=["e2e"])
    assert seen["marks"] == [[], []] and not any("collapsed" in t for t in seen["legend"])


def _rgba(colour) -> tuple:
    from matplotlib.colors import to_rgba

    return to_rgba(colour)


def test_single_run_tables_say_n_1_once_and_mixed_tables_per_cell(tmp_path):
    """Every cell one run: the cells print the value alone and the notes say n = 1 once (the NLG table's code path,
    reused by comparison_table and ours_table); mixed n: each cell keeps its n."""
    from peftkit import studies

    one = grid_results("glue_main", "cpu", data_seeds=(111,))
    r = studies.glue_main_report(one, "cpu", tmp_path / "one")
    assert r.tables["vs_unipelt_k1000"].loc["LoRA", "SST-2 ours"] == "74.20"
    b = studies.ablation_bottleneck_report(grid_results("ablation_bottleneck", "cpu", data_seeds=(111,)), "cpu",
                                           tmp_path / "one")
    assert b.tables["results"].loc["Adapter (Pfeiffer), b=48", "SST-2"] == "74.20"  # K examples: no paper column
    for stem in ("01_glue_main_vs_unipelt_k1000", "05_ablation_bottleneck_results"):
        text = (tmp_path / "one" / "tables" / f"{stem}.md").read_text()
        assert "n=1" not in text and text.count("(n = 1), so no interval") == 1, stem
        assert "Student-t" not in text, stem  # no interval is described where none is printed
    more = [x for x in grid_results("glue_main", "cpu") if x["method_label"] == "lora"]
    r = studies.glue_main_report(one + [x for x in more if x["data_seed"] != 111], "cpu", tmp_path / "mixed")
    t = r.tables["vs_unipelt_k1000"]
    assert t.loc["BitFit", "SST-2 ours"] == "74.20 (n=1, no CI)" and t.loc["LoRA", "SST-2 ours"].endswith("n=3")
    text = (tmp_path / "mixed" / "tables" / "01_glue_main_vs_unipelt_k1000.md").read_text()
    assert "(n = 1), so no interval" not in text and "Student-t" in text


def _ours_paper_delta(columns) -> list[str]:
    """The column groups of a table: [ours, paper, Δ] per task, in that order, with nothing between them."""
    out = []
    for i, c in enumerate(columns):
        if c.endswith("ours"):
            stem = c[: -len("ours")]
            out.append(" | ".join(columns[i:i + 3]) if columns[i + 1:i + 2] == [stem + "paper"] else c)
    return out


def test_study_tables_are_one_row_per_method_with_ours_paper_delta_columns(tmp_path):
    """01, 02, 03, 05 and 06: no "ours" / "paper" / "Δ" rows; one row per method (per K and task in the upper-bound
    table, per inference mode / variant in 06) and, where the paper has numbers at the runs' K, ours | paper | Δ
    columns (05 and 06 train on K examples, and AdaMix published none at any K)."""
    from peftkit import studies

    expected = {("glue_main", "vs_unipelt_k1000"): ["SST-2 ours | SST-2 paper | SST-2 Δ"],
                ("low_resource", "k100"): ["SST-2 ours | SST-2 paper | SST-2 Δ"],
                ("low_resource", "upper_bound"): ["ours | paper | Δ"],
                ("fewshot", "results"): [],  # no paper numbers transcribed: ours only
                ("ablation_bottleneck", "results"): [],  # K examples: AdaMix's GLUE table is full data
                ("ablation_adamix", "modes"): [],
                ("ablation_adamix", "variants"): [],  # the same
                ("ablation_adamix", "expert_init"): [],
                ("ablation_adamix", "prefix_modes"): [],  # AdaMix over prefix: peftkit's extension, no paper
                ("ablation_adamix", "prefix"): []}
    for study in dict.fromkeys(s for s, _ in expected):
        results = _with_modes(grid_results(study, "cpu"))
        r = studies.report(study, results, "cpu", tmp_path / study)
        for (s, name), groups in expected.items():
            if s != study:
                continue
            t = r.tables[name]
            rows = [i[-1] if isinstance(i, tuple) else i for i in t.index]
            assert t.index.is_unique and len(t) > 1, (study, name)
            assert not {"ours", "paper", "Δ"} & set(map(str, rows)) and "row" not in t.index.names, (study, name)
            assert _ours_paper_delta(list(t.columns)) == groups, (study, name, list(t.columns))
            if name == "upper_bound":
                assert rows == ["Adapter (Pfeiffer)", "Prefix-tuning", "LoRA", "UniPELT (AP)", "UniPELT (APL)"]
                assert list(t.columns) == ["ours", "paper", "Δ", "ours − best component", "paper − best component"]
            if groups == []:
                assert not any("paper" in c or "Δ" in c for c in t.columns), (study, name)


def test_every_claim_of_the_cpu_grids_is_checked(tmp_path):
    """Each study checks every claim its cpu grid has the runs for (a claim whose method labels no longer match the
    grid's is silently dropped otherwise: 03's AdaMix-adapter claim was, once AdaMix's base became the authors')."""
    from peftkit import studies

    expected = {"fewshot": ["AdaMix (adapter) > Adapter (Pfeiffer)", "AdaMix (LoRA) > LoRA",
                            "AdaMix (prefix-tuning) > Prefix-tuning",
                            "LoRA with the prompt (MLM) head > LoRA with a classification head"],
                "ablation_adamix": ["merging ≥ random routing (AdaMix adapter)",
                                    "AdaMix-adapter > a single adapter of the same inference size (M=1)",
                                    "sharing the up-projection > no sharing", "consistency regularisation > none",
                                    "merging ≥ random routing (AdaMix-prefix)",
                                    "merge=kv ≥ merge=weights (AdaMix-prefix: the default's measurement)",
                                    "AdaMix-prefix (merged) > prefix-tuning"]}
    for study, claims in expected.items():
        r = studies.report(study, _with_modes(grid_results(study, "cpu")), "cpu", tmp_path / study)
        assert [c["claim"] for c in r.claims] == claims, study


@pytest.mark.parametrize("copy", [True, False])
def test_adamix_prefix_modes_show_the_runs_own_merge_once(tmp_path, copy):
    """The runs' own merge option (kv) is their merged mode: the table shows it once, whether the record holds the
    merged-kv copy (every record does, the earlier ones from a second evaluation) or not; the claim on the two merge
    options still reads it."""
    from peftkit import studies

    results = _with_modes(grid_results("ablation_adamix", "cpu"))
    if not copy:
        for x in results:
            (x["inference_modes"] or {}).pop("merged-kv", None)
    r = studies.report("ablation_adamix", results, "cpu", tmp_path)
    rows = list(r.tables["prefix_modes"].index)
    assert rows == ["merged (merge=kv, the runs' option)", "merged-weights", "random"]
    kv = next(c for c in r.claims if c["claim"].startswith("merge=kv"))
    assert kv["better"] == "AdaMix (prefix-tuning), merged-kv" and kv["verdict"] == "held"


def _with_modes(results: list[dict]) -> list[dict]:
    """The inference modes the runs with ``inference_modes`` record (06's AdaMix bases): merged and random, and for
    AdaMix-prefix both merge options."""
    for x in results:
        if x["method_label"] == "adamix-adapter":
            x["inference_modes"] = {"merged": {"accuracy": 0.74}, "random": {"accuracy": 0.73}}
        if x["method_label"] == "adamix-prefix" and x["task_kind"] == "glue":
            x["inference_modes"] = {"merged": {"accuracy": 0.74}, "merged-kv": {"accuracy": 0.74},
                                    "merged-weights": {"accuracy": 0.72}, "random": {"accuracy": 0.73}}
    return results


def test_gate_table_says_each_cells_score_and_which_runs_collapsed(tmp_path):
    """Notebook 07's gate means beside the runs' score and collapse flag (its CoLA runs all predict one label at the
    cpu budget: their gates are real but say nothing about which component helps), gates at one precision."""
    from peftkit.studies import unipelt_gates

    gates = {"layer": [0, 1], "adapter": [0.5, 0.54], "prefix": [0.52, 0.52], "lora_query": [0.6, 0.7],
             "lora_value": [0.4, 0.5]}
    runs = [make_result("sst2", "unipelt", "unipelt-APL", seed=42, k=100, data_seed=d, gates=gates,
                        metrics={"accuracy": a, "predicted_classes": c}) for d, a, c in ((111, 0.5, 1), (222, 0.7, 2))]
    t = unipelt_gates.report(runs, "smoke", tmp_path).tables["means"]
    row = t.iloc[0]
    assert row["score"] == "accuracy 60.00" and row["status"] == "collapsed 1/2 (constant predictions)"
    assert row["prefix"] == "0.520" and row["adapter"] == "0.520"
