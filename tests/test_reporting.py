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
                train_eps=100.0, eval_eps=400.0, run_id=None) -> dict:
    """A finished run's result dict with every key of schema 1 (null where it does not apply)."""
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
        "data": {"train": {**split, "split": "train"}, "dev": split, "eval": split},
        "evaluations": [{"step": 10, "epoch": 1.0, **metrics, "loss": 0.6}],
        "best_metrics": {**metrics, "epoch": 3.0}, "selection_metric": next(iter(metrics)), "best_step": 10,
        "inference_modes": modes, "gates": gates, "samples": [{"source": "s", "prediction": "p", "reference": "r"}]
        if kind == "nlg" else None,
        "scoring": "LoRA gpt2_decode.py --tokenize --lower --ref_num 6 + eval.py" if kind == "nlg" else None,
        "parameters": {"trainable": trainable, "inference": inference, "head": head, "total": total},
        "wall_time_s": 60.0, "train_time_s": 50.0, "train_examples_per_s": train_eps,
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
    write_runs(tmp_path / "more", [make_result("sst2", "adamix", "adamix-pfeiffer", modes=modes)])
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


def test_summarise_numbers(tmp_path):
    runs = [make_result("rte", "lora", seed=s, metrics={"accuracy": a}) for s, a in ((1, 0.60), (2, 0.64), (3, 0.68))]
    runs.append(make_result("rte", "pfeiffer", seed=1, metrics={"accuracy": 0.5}))
    s = rep.summarise(frame_of(tmp_path, runs), by=["task", "k", "method_label", "metric"]).set_index("method_label")
    assert s.loc["lora", "n"] == 3 and s.loc["lora", "mean"] == pytest.approx(64.0)
    assert s.loc["lora", "std"] == pytest.approx(4.0)  # ddof=1: sqrt((16+0+16)/2)
    assert 60.0 <= s.loc["lora", "ci_lo"] < 64.0 < s.loc["lora", "ci_hi"] <= 68.0
    assert not s.loc["lora", "single"]
    assert s.loc["pfeiffer", "n"] == 1 and np.isnan(s.loc["pfeiffer", "std"]) and s.loc["pfeiffer", "single"]
    assert s.loc["pfeiffer", "ci_lo"] == s.loc["pfeiffer", "ci_hi"] == pytest.approx(50.0)
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
    (("adamix", "glue", "adamix-pfeiffer", "mrpc"), {"backbone": "bert-base"}, 92.4),
    (("adamix", "glue", "unipelt-APL", "qqp"), {"backbone": "bert-base"}, 85.5),
    (("adamix", "glue", "adamix-pfeiffer", "cola"), {"backbone": "roberta-large"}, 70.2),
    (("adamix", "glue", "pfeiffer", "rte"), {"backbone": "roberta-large"}, 80.1),  # the 0.8M row
    (("adamix", "glue", "Pfeiffer adapter", "rte"), {"backbone": "roberta-large", "params": "3.0M"}, 83.8),
    (("adamix", "glue", "houlsby", "cola"), {"backbone": "roberta-large"}, 66.3),
    (("adamix", "nlg", "adamix-lora", "e2e"), {"metric": "bleu"}, 71.0),
    (("adamix", "nlg", "adamix-lora", "e2e"), {"metric": "cider"}, 2.54),
    (("adamix", "nlg", "lora", "e2e"), {"metric": "nist"}, 8.77),  # the AdaMix authors' reproduction
    (("adamix", "nlg", "adamix-pfeiffer", "dart"), {"metric": "bleu"}, 47.72),
    (("adamix", "nlg", "full", "webnlg"), {"metric": "ter"}, 0.53),
])
def test_paper_value_cells(args, kw, expected):
    assert rep.paper_value(*args, **kw) == expected


def test_paper_lookup_missing_and_errors():
    assert rep.paper_value("unipelt", "full", "bitfit", "sst2") is None  # Table 3 has no BitFit row
    assert rep.paper_value("unipelt", "full", "adamix-pfeiffer", "sst2") is None
    assert rep.paper_value("unipelt", "full", "pfeiffer", "stsb", metric="pearson") is None  # it prints Spearman
    assert rep.paper_value("adamix", "glue", "adamix-pfeiffer", "stsb", backbone="bert-base") == 89.9
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
    for s, (sst, rte) in zip((1, 2, 3), ((0.80, 0.55), (0.82, 0.57), (0.81, 0.60))):
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

    table = rep.comparison_table(frame, **kw)
    assert table.loc[("Adapter (Pfeiffer)", "ours"), "SST-2"] == "81.00 ± 1.00 [80.00, 82.00] n=3"
    assert table.loc[("Adapter (Pfeiffer)", "paper"), "SST-2"] == "80.48"
    assert table.loc[("Adapter (Pfeiffer)", "Δ"), "SST-2"] == "+0.52"
    assert table.loc[("UniPELT (APL)", "ours"), "SST-2"] == "83.00 (n=1, no CI)"
    assert table.loc[("UniPELT (APL)", "ours"), "RTE"] == "–"  # no run
    assert table.loc[("UniPELT (APL)", "ours"), "Avg"] == "–"  # not every task present
    assert table.loc[("LoRA", "paper"), "Avg"] == f"{np.mean([81.56, 55.02, 49.35]):.2f}"

    md, csv_path = rep.write_table(table, tmp_path / "tables" / "k100", "UniPELT Table 1 (K=100), GLUE dev")
    text = md.read_text()
    assert text.splitlines()[0] == "# UniPELT Table 1 (K=100), GLUE dev, MiniLM-L6 (paper: BERT-base), profile cpu"
    assert "| Adapter (Pfeiffer) | ours | 81.00 ± 1.00 [80.00, 82.00] n=3 | 57.33 ± 2.52" in text
    assert "|  | paper | 80.48 | 52.78 | 77.32 |" in text
    assert "|  | Δ | +0.52 | +4.55 | – | – |" in text
    assert "nan" not in text.lower() and "None" not in text
    assert "STS-B: ours in the paper's metric (Spearman)" in text
    back = pd.read_csv(csv_path, keep_default_na=False)
    assert list(back.columns) == ["method", "row", "SST-2", "RTE", "STS-B", "Avg"] and len(back) == 9
    assert back.loc[(back["method"] == "LoRA") & (back["row"] == "ours"), "SST-2"].item() == "–"
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
        runs.append(make_result("rte", "adamix", "adamix-pfeiffer", seed=s, metrics={"accuracy": base + 0.02},
                                modes={"merged": {"accuracy": base + 0.02}, "random": {"accuracy": base + 0.03}}))
        noise = [0.01, -0.01, 0.02, -0.02, 0.0][s - 1]
        runs.append(make_result("sst2", "pfeiffer", seed=s, metrics={"accuracy": base}))
        runs.append(make_result("sst2", "adamix", "adamix-pfeiffer", seed=s, metrics={"accuracy": base + noise}))
    runs.append(make_result("mrpc", "adamix", "adamix-pfeiffer", seed=1, metrics={"accuracy": 0.9}))
    runs.append(make_result("mrpc", "pfeiffer", seed=1, metrics={"accuracy": 0.8}))
    return frame_of(tmp_path, runs, include_modes=True)


def test_claim_verdicts(tmp_path):
    frame = _claim_frame(tmp_path)
    c = rep.claim_check(frame, "adamix-pfeiffer", "pfeiffer", "accuracy", ["rte", "sst2", "mrpc", "qnli"])
    by = {r["task"]: r for r in c["tasks"]}
    assert by["rte"]["verdict"] == "held" and by["rte"]["n_pairs"] == 5
    assert by["rte"]["diff_mean"] == pytest.approx(2.0) and by["rte"]["ci_lo"] == pytest.approx(2.0)
    assert by["rte"]["better_mean"] == pytest.approx(75.0) and by["rte"]["worse_mean"] == pytest.approx(73.0)
    assert by["sst2"]["verdict"] == "inconclusive (CI spans 0)"
    assert by["sst2"]["ci_lo"] < 0 < by["sst2"]["ci_hi"]
    assert by["mrpc"]["verdict"].startswith("inconclusive") and by["mrpc"]["n_pairs"] == 1
    assert by["qnli"]["n_pairs"] == 0 and by["qnli"]["verdict"].startswith("inconclusive")
    assert c["verdict"] == "mixed"
    # merged vs random routing of the same models: random is better here, so the "≥" claim is not held
    modes = rep.claim_check(frame, {"method_label": "adamix-pfeiffer", "mode": "merged"},
                            {"method_label": "adamix-pfeiffer", "mode": "random"}, "accuracy", ["rte"],
                            at_least=True, claim="merged ≥ random routing")
    assert modes["tasks"][0]["verdict"] == "not held" and modes["verdict"] == "not held"
    assert modes["tasks"][0]["diff_mean"] == pytest.approx(-1.0)
    # "≥ the best of several": the best candidate per task is taken
    best = rep.claim_check(frame, {"method_label": "adamix-pfeiffer", "mode": "merged"},
                           [{"method_label": "pfeiffer"}, {"method_label": "adamix-pfeiffer", "mode": "random"}],
                           "accuracy", ["rte"])
    assert best["tasks"][0]["worse"] == "AdaMix (adapter), random"
    md = rep.claims_markdown([c, modes])
    assert "### merged ≥ random routing" in md and "Verdict: **not held**" in md
    assert ("| RTE | accuracy | AdaMix (adapter): 75.00 (n=5) | Adapter (Pfeiffer): 73.00 (n=5) "
            "| +2.00 [+2.00, +2.00] | 5 | held |") in md
    assert "inconclusive (CI spans 0)" in md


def test_claim_on_lower_is_better_metric(tmp_path):
    runs = [make_result("webnlg", m, lab, kind="nlg", seed=s, metrics={"bleu": 0.5, "ter": t + 0.001 * s})
            for s in (1, 2, 3) for m, lab, t in (("adamix", "adamix-lora", 0.38), ("lora", "lora", 0.40))]
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
            runs.append(make_result("rte", "adamix", "adamix-pfeiffer", seed=s, config={"bottleneck": dim},
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


def test_figure_tidy_enforces_fonts_and_untangles_labels(tmp_path):
    import matplotlib.pyplot as plt

    from peftkit.reporting import _plot

    with _plot.style():
        fig, ax = plt.subplots(figsize=(2.5, 2))
        names = [f"a rather long method name {i}" for i in range(6)]
        ax.bar(range(6), range(6))
        ax.set_xticks(range(6), names)
        ax.set_title("tiny", fontsize=6)
        assert _plot.label_overlaps(fig)  # the test case really overlaps before tidying
        paths = _plot.finish(fig, tmp_path / "tidy")
    assert not _plot.label_overlaps(fig) and _plot.min_font_size(fig) >= 9
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


def test_nlg_report_flags_runs_that_generate_nothing(tmp_path):
    from peftkit.studies_reports2 import nlg_report

    metrics = {"bleu": 0.05, "nist": 0.1, "meteor": 0.09, "rouge_l": 0.2, "cider": 0.1}
    ok = make_result("e2e", "lora", kind="nlg", metrics=metrics)
    empty = make_result("e2e", "adamix", "adamix-lora", kind="nlg", metrics={k: 0.0 for k in metrics})
    empty["samples"] = [{"source": "s", "prediction": "", "reference": "r"}]
    r = nlg_report([ok, empty], "cpu", tmp_path)
    text = (tmp_path / "tables" / "04_nlg_results.md").read_text()
    assert "Empty generations" in text and "AdaMix (LoRA) on E2E" in text and "LoRA on E2E;" not in text
    assert r.notes[-1].startswith("Empty generations")


def test_nlg_report_prints_webnlg_seen_unseen_all_and_dart_beside_the_paper(tmp_path):
    from peftkit.studies_reports2 import nlg_report

    webnlg = {f"{m}{s}": v + d for m, v in (("bleu", 0.5), ("meteor", 0.4), ("ter", 0.4))
              for s, d in (("_seen", 0.05), ("_unseen", -0.05), ("", 0.0))}
    runs = [make_result("webnlg", "lora", kind="nlg", model="gpt2-medium", metrics=webnlg),
            make_result("dart", "lora", kind="nlg", model="gpt2-medium",
                        metrics={"bleu": 0.47, "meteor": 0.39, "ter": 0.46})]
    for x in runs:
        x["scoring"] = "LoRA gpt2_decode.py --tokenize --lower --ref_num 6 + eval.py"
    r = nlg_report(runs, "paper", tmp_path)
    t = r.tables["results"]
    assert list(t.columns) == [f"WebNLG {m} {p}" for m in ("BLEU", "METEOR", "TER") for p in "SUA"] + \
        ["DART BLEU", "DART METEOR", "DART TER"]
    ours, paper = t.loc[("LoRA", "ours")], t.loc[("LoRA", "paper")]
    assert ours["WebNLG BLEU S"].startswith("55.00") and ours["WebNLG BLEU U"].startswith("45.00")
    assert paper["WebNLG BLEU A"] == "55.37" and paper["WebNLG TER A"] == "0.39" and paper["DART BLEU"] == "47.35"
    assert paper["WebNLG BLEU S"] == paper["WebNLG METEOR A"] == paper["DART METEOR"] == "–"
    text = (tmp_path / "tables" / "04_nlg_results.md").read_text()
    assert "WebNLG scoring: LoRA gpt2_decode.py --tokenize --lower --ref_num 6" in text and "DART scoring" in text
