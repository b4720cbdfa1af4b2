"""08 efficiency: the interleaved inference timing of the runs' methods (A/A control, JSON beside the tables), the
training-time spread rule and the table and figure built from them. Models are the embedded MiniLM with untrained
method weights saved as a run's ``best/`` (seconds); timings are checked for structure, never for values."""
from __future__ import annotations

import json

import pytest

from conftest import needs_data
from peftkit import reporting as rep
from peftkit.reporting.efficiency import training_spread
from peftkit.studies import efficiency
from test_reporting import make_result, write_runs

METHODS = (("full", "full", {}), ("lora", "lora", {}), ("unipelt", "unipelt-APL", {"variant": "APL"}))


def _result(method: str, label: str, seed: int = 42, eps: float = 100.0, **kw) -> dict:
    r = make_result("rte", method, label, seed=seed, profile="smoke", train_eps=eps, run_id=f"rte_{label}_s{seed}",
                    **kw)
    r["training"].update(max_length=32, pad_to_max_length=False, bf16=False)
    return r


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A run store of three finished runs whose best/ holds a MiniLM classifier's method weights, and one without
    (the committed records carry no weights: the timing needs none)."""
    import peftkit
    from peftkit import backbones
    from peftkit.results import load_results

    root = tmp_path_factory.mktemp("eff") / "runs"
    results = [_result(m, label) for m, label, _ in METHODS]
    write_runs(root, results + [_result("pfeiffer", "pfeiffer")])  # a run whose best/ is gone
    for (method, label, options), r in zip(METHODS, results):
        model = backbones.load_model("minilm", "classifier", 2)
        peftkit.apply(model, method, seed=42, **options)
        peftkit.save(model, root / r["run_id"] / "best")
    return load_results(root)


@needs_data
def test_timing_has_a_row_per_method_and_the_aa_control(store, tmp_path):
    reports = tmp_path / "reports"
    out = efficiency.time_inference(store, "smoke", reports, rounds=3, warmup=1, batch_size=8)
    rows = out["rows"]
    assert [(x["method_label"], x["aa"]) for x in rows] == [("full", False), ("lora", False), ("pfeiffer", False),
                                                           ("unipelt-APL", False), ("full", True)]
    assert all(x["ratio"] > 0 and x["q1"] <= x["ratio"] <= x["q3"] for x in rows)
    assert rows[0]["ratio"] == 1.0  # full FT against itself
    lo, hi = out["aa"]["band"]
    assert 0 <= lo <= 1 <= hi and out["aa"]["q1"] <= out["aa"]["ratio"] <= out["aa"]["q3"]
    assert hi - 1 == pytest.approx(max(abs(out["aa"]["q1"] - 1), abs(out["aa"]["q3"] - 1)))
    assert all(x["within_aa"] == (lo <= x["ratio"] <= hi) for x in rows[:-1]) and rows[0]["within_aa"]
    forms = {(c["method_label"], c["copy"]): c["form"] for c in out["contenders"]}
    assert forms == {("full", 1): "unmerged", ("full", 2): "unmerged", ("lora", 1): "merge applied",
                     ("pfeiffer", 1): "merge applied",  # peftkit.merge on an adapter: nothing to fold, nothing changes
                     ("unipelt-APL", 1): "unmerged"}  # UniPELT's gated LoRA cannot merge
    assert all(len(c["samples_s"]) == 3 and min(c["samples_s"]) > 0 for c in out["contenders"])
    assert out["batch"]["rows"] == 8 and out["batch"]["split"] == "dev" and out["precision"] == "fp32"
    assert out["missing"] == {}  # the structure is timed: a run whose trained weights are gone is timed too
    assert out["settings"]["weights"] == "attached"
    order = [(c["method_label"], c["copy"]) for c in out["contenders"]]  # the A/A copy half a rotation away
    assert order[0] == ("full", 1) and order[len(order) // 2] == ("full", 2)
    path = reports / "tables" / "08_efficiency_inference_timing.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(out))
    assert "tables/08_efficiency_inference_timing.json" in (reports / "index.json").read_text()
    again = efficiency.time_inference(store, "smoke", reports, rounds=3, warmup=1, batch_size=8)
    assert again["contenders"] == out["contenders"]  # same runs and settings: the stored file, not re-timed
    fresh = efficiency.time_inference(store, "smoke", reports, rounds=3, warmup=1, batch_size=8, force=True)
    assert fresh["contenders"] != out["contenders"]
    with pytest.raises(ValueError, match="invalid rounds=0"):
        efficiency.time_inference(store, "smoke", reports, rounds=0)

    r = efficiency.report(store, "smoke", reports)
    md = (reports / "tables" / "08_efficiency_results.md").read_text()
    header = md.splitlines()[2]
    for col in ("inference params % (ours)", "training time × FT (ours)", "inference time × FT (ours)",
                "inference time × FT (paper)"):
        assert col in header
    assert "Full FT, A/A control (a second copy)" in md and "1.00 (reference)" in md
    assert "3 timed rounds after 1 warm-up round(s)" in md and "one fixed batch of 8 rte dev examples" in md
    assert "A/A band" in md and "eval_examples_per_s" not in md
    assert "Not timed" not in md  # every run rebuilt from its record (the Pfeiffer run's best/ is gone)
    lora = next(line for line in md.splitlines() if line.startswith("| LoRA"))
    assert "(IQR " in lora
    assert r.figures["bars"].is_file()


@needs_data
def test_a_run_not_rebuilt_from_its_record_is_named_and_full_ft_is_needed(store, tmp_path, monkeypatch):
    """A run whose record does not rebuild (:func:`peftkit.reload.attached_model` fails) is left out of the timing
    and named in the note; without full FT's model there is nothing to time against."""
    from peftkit import reload

    real = reload.attached_model

    def attached(fails: str):
        def build(result: dict):
            if result["method_label"] == fails:
                raise FileNotFoundError(f"no record to rebuild {fails} from")
            return real(result)
        return build

    reports = tmp_path / "reports"
    monkeypatch.setattr(reload, "attached_model", attached("pfeiffer"))
    out = efficiency.time_inference(store, "smoke", reports, rounds=1, warmup=0, batch_size=8)
    assert out["missing"] == {"pfeiffer": "no record to rebuild pfeiffer from"}
    assert [x["method_label"] for x in out["rows"]] == ["full", "lora", "unipelt-APL", "full"]
    efficiency.report(store, "smoke", reports)
    md = (reports / "tables" / "08_efficiency_results.md").read_text()
    assert "Not timed (could not be rebuilt from its record): Adapter (Pfeiffer)." in md
    monkeypatch.setattr(reload, "attached_model", attached("full"))
    skipped = efficiency.time_inference(store, "smoke", tmp_path / "other", rounds=1, warmup=0, batch_size=8)
    assert skipped == {"rows": [], "skipped": "full fine-tuning's model could not be rebuilt from its record: no "
                                              "record to rebuild full from"}


def test_report_without_timing_says_why(tmp_path):
    results = [_result(m, label, seed=s) for s in (1, 2) for m, label, _ in METHODS[:2]]
    write_runs(tmp_path / "runs", results)
    reports = tmp_path / "reports"
    efficiency.report(results, "smoke", reports)
    md = (reports / "tables" / "08_efficiency_results.md").read_text()
    assert "inference time × FT (ours) is missing: no inference timing for these runs" in md
    lora = next(line for line in md.splitlines() if line.startswith("| LoRA")).split("|")
    header = md.splitlines()[2].split("|")
    assert lora[header.index(" inference time × FT (ours) ")].strip() == "–"
    assert "A/A control (a second copy)" not in md
    # a timing file of other runs is not shown
    stale = {"schema": efficiency.TIMING_SCHEMA, "settings": {"task": "rte", "seed": 1, "runs": {"full": "other"}},
             "rows": []}
    efficiency.report(results, "smoke", reports, timing=stale)
    assert "measured on other runs" in (reports / "tables" / "08_efficiency_results.md").read_text()
    # without full fine-tuning there is nothing to time against, and nothing is written
    out = efficiency.time_inference(results[1::2], "smoke", reports)
    assert out["rows"] == [] and "no full fine-tuning run" in out["skipped"]
    assert not (reports / "tables" / "08_efficiency_inference_timing.json").exists()


def test_training_time_spread_flags_or_drops_the_column(tmp_path):
    # full FT 50 ex/s every seed; LoRA's ratios 0.50, 1.25, 0.83 (range 0.75 > |0.83 - 1|): flagged;
    # Pfeiffer's 0.56, 0.53, 0.50 (range 0.06 < 0.47): resolved
    eps = {"lora": (100.0, 40.0, 60.0), "pfeiffer": (90.0, 95.0, 100.0)}
    results = [_result("full", "full", seed=s, eps=50.0) for s in (1, 2, 3)]
    results += [_result(m, m, seed=s, eps=e) for m, es in eps.items() for s, e in zip((1, 2, 3), es)]
    write_runs(tmp_path / "runs", results)
    rows = rep.efficiency_rows(rep.runs_frame(results))
    ours = rows[rows["source"] == "ours"].set_index("method_label")
    assert ours.loc["lora", "train_time_vs_ft"] == pytest.approx(50 / 60)  # the median, not the mean
    assert (ours.loc["lora", "train_time_vs_ft_lo"], ours.loc["lora", "train_time_vs_ft_hi"]) == \
        (pytest.approx(0.5), pytest.approx(1.25))
    assert bool(ours.loc["lora", "train_spread_flag"]) and not bool(ours.loc["pfeiffer", "train_spread_flag"])
    assert ours.loc["lora", "train_n"] == 3 and not bool(ours.loc["full", "train_spread_flag"])
    assert training_spread(rows) == (True, None)
    efficiency.report(results, "smoke", tmp_path / "r1")
    md = (tmp_path / "r1" / "tables" / "08_efficiency_results.md").read_text()
    assert "0.83 (0.50–1.25, n=3) |" in md and "0.53 (0.50–0.56, n=3) |" in md  # numbers alone in their cells
    lora = next(x for x in md.splitlines() if x.startswith("| LoRA |"))
    assert lora.rstrip(" |").endswith("| training spread ≥ difference | 3")  # the reading, in its own column
    only_lora = [r for r in results if r["method_label"] != "pfeiffer"]  # every method's spread ≥ its difference
    efficiency.report(only_lora, "smoke", tmp_path / "r2")
    md = (tmp_path / "r2" / "tables" / "08_efficiency_results.md").read_text()
    assert "training time × FT (ours)" not in md.splitlines()[2] and "training time × FT (paper)" in md
    assert "training time × FT (ours) is left out: for every method (1)" in md


def test_table_marks_ratios_inside_the_aa_band(tmp_path):
    results = [_result(m, m, seed=1) for m in ("full", "lora", "pfeiffer")]
    write_runs(tmp_path / "runs", results)

    def row(label, ratio, q1, q3, within, aa=False):
        return {"method_label": label, "aa": aa, "ratio": ratio, "q1": q1, "q3": q3, "within_aa": within}
    timing = {"schema": efficiency.TIMING_SCHEMA, "measured_at": "2026-01-01T00:00:00Z", "precision": "fp32",
              "settings": {"task": "rte", "seed": 1, "rounds": 30, "warmup": 3, "batch_size": 32,
                           "runs": {r["method_label"]: r["run_id"] for r in results}},
              "batch": {"rows": 32, "split": "dev", "width": 128}, "threads": 2, "device_name": "cpu (x86_64)",
              "contenders": [{"method_label": m, "form": "unmerged" if m == "full" else "merge applied"}
                             for m in ("full", "lora", "full", "pfeiffer")],
              "rows": [row("full", 1.0, 1.0, 1.0, True), row("lora", 1.01, 0.98, 1.04, True),
                       row("pfeiffer", 1.12, 1.10, 1.15, False), row("full", 1.0, 0.97, 1.03, None, aa=True)],
              "aa": {"ratio": 1.0, "q1": 0.97, "q3": 1.03, "band": [0.97, 1.03]}, "missing": {}}
    assert efficiency.timing_matches(timing, results)
    efficiency.report(results, "smoke", tmp_path / "r", timing=timing)
    lines = (tmp_path / "r" / "tables" / "08_efficiency_results.md").read_text().splitlines()
    line = {x.split("|")[1].strip(): x for x in lines if x.startswith("| ")}
    assert "1.01 (IQR 0.98–1.04) |" in line["LoRA"] and "| inference within A/A band |" in line["LoRA"]
    assert "1.12 (IQR 1.10–1.15) |" in line["Adapter (Pfeiffer)"] and "| – | 1 |" in line["Adapter (Pfeiffer)"]
    assert "1.00 (IQR 0.97–1.03)" in line["Full FT, A/A control (a second copy)"]
    assert "30 timed rounds after 3 warm-up round(s)" in "\n".join(lines)
    assert not efficiency.timing_matches({**timing, "settings": {**timing["settings"], "seed": 2}}, results)
