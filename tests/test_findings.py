"""Closing findings (peftkit.reporting.findings): each checked against the report it summarises (its runs, its
tables' cells and deltas, its claim checks), and the README's "What was found" built from the same texts."""
from __future__ import annotations

import pandas as pd
import pytest

from peftkit import reporting as rep
from peftkit.reporting.findings import tour_finding
from test_reporting import grid_results, make_result


def _sst2(results, learned_nothing=()):
    """The grid's results scored on SST-2's 872 dev sentences; ``learned_nothing``: {label: (accuracy, classes)}."""
    for x in results:
        x["data"]["eval"]["rows"] = 872
        x["best_metrics"]["predicted_classes"] = 2
        if x["method_label"] in dict(learned_nothing):
            acc, classes = dict(learned_nothing)[x["method_label"]]
            x["best_metrics"].update(accuracy=acc, predicted_classes=classes)
    return results


def test_closing_finding_is_the_report_it_summarises(tmp_path, monkeypatch):
    from peftkit import studies

    monkeypatch.setattr(studies.common, "project_root", lambda: tmp_path)
    results = _sst2(grid_results("glue_main", "cpu"), {"bitfit": (0.5107, 2), "prefix": (0.5015, 2),
                                                         "lora": (0.5092, 1)})
    r = studies.glue_main_report(results, "cpu")
    text = r.finding_text()
    n = len(results)
    assert text.startswith(f"**Runs.** {n} runs of ") and "profile cpu; budget: 277 training examples" in text
    assert (f"Of them 3 collapsed (constant predictions), 6 are at chance (not significantly above the majority "
            f"class) and {n - 9} score above chance") in text
    for name in ("vs_unipelt_k1000",):
        t = r.tables[name]
        deltas = sorted(t.attrs["deltas"], key=lambda d: d[2])
        median = float(pd.Series([d[2] for d in deltas]).median())
        assert (f"Δ against the paper from {deltas[0][2]:+.2f} ({deltas[0][0]}, SST-2) to {deltas[-1][2]:+.2f} "
                f"({deltas[-1][0]}, SST-2), median {median:+.2f} over {len(deltas)} cells") in text
        without = int(t["SST-2 Δ"].isin(["– (at chance)", "– (collapsed)"]).sum())
        assert without and f"; {without} cell{'s' if without > 1 else ''} without Δ (runs collapsed or at chance)" \
            in text
        cells = pd.DataFrame(t.attrs["cells"])
        best = cells.loc[cells["mean"].idxmax()]
        assert f"*{r.whats[name]}*: SST-2 accuracy: best {best['row']} {best['mean']:.2f} ± {best['std']:.2f}" in text
    assert "lowest Prefix-tuning 50.15 ± 0.00 (n=3), at chance 3/3" in text
    assert "**Scale.** MiniLM-L6 where the paper used BERT-base" in text and "**Claims.**" not in text
    r.finding()
    readme = (tmp_path / "reports" / "README.md").read_text()
    assert f"## What was found\n\n### 01_glue_main\n\n{text}\n" in readme


def test_runs_at_chance_under_a_frozen_random_classifier_are_named():
    """A run that collapsed or sits at chance while its new classifier stayed frozen at its random init (the
    authors' freeze_params for BitFit, LoRA-only and prefix-only, fidelity U4) is named as such in the finding;
    a frozen-head run that learned, or a learning-nothing run with a trained head, is not counted."""
    from peftkit.reporting.findings import runs_sentence

    results = _sst2(grid_results("glue_main", "cpu"), {"bitfit": (0.5092, 1), "prefix": (0.5015, 2),
                                                         "full": (0.5092, 1)})
    for x in results:
        x["training"]["train_head"] = x["method_label"] not in ("bitfit", "lora")
    n_bitfit = sum(x["method_label"] == "bitfit" for x in results)
    text = runs_sentence(rep.runs_frame(results), "cpu")
    assert (f"of those that collapsed or sit at chance, {n_bitfit} (BitFit {n_bitfit}) trained with the new "
            "classifier frozen at its random initialisation") in text, text
    for x in results:
        x["training"]["train_head"] = True
    assert "frozen at its random" not in runs_sentence(rep.runs_frame(results), "cpu")


def test_runs_at_chance_that_early_stopping_ended_are_named():
    """A run that sits at chance, not under a frozen classifier, which the protocol's patience ended before its last
    epoch (02's Pfeiffer runs at K = 100), is named with the epoch it stopped after and its best epoch; the same runs
    trained to their last epoch, or without a patience, are not."""
    from peftkit.reporting.findings import runs_sentence

    def results(last_epoch, patience=10):
        rs = _sst2(grid_results("low_resource", "cpu"), {"pfeiffer": (0.5115, 2)})
        for x in rs:
            x["training"].update(train_head=True, epochs=50, patience=patience)
            x["evaluations"] = [{"epoch": float(e), "step": 7 * e, "accuracy": 0.55} for e in range(1, last_epoch + 1)]
            x["best_step"] = 14 if x["method_label"] == "pfeiffer" else 7 * last_epoch
        return rs

    n = sum(x["method_label"] == "pfeiffer" for x in results(12))
    text = runs_sentence(rep.runs_frame(results(12)), "cpu")
    assert (f" and {sum(x['method_label'] != 'pfeiffer' for x in results(12))} score above chance; of those that "
            f"collapsed or sit at chance, {n} (Adapter (Pfeiffer) {n}) were ended by the protocol's early stopping "
            "after epoch 12, their selection score never improving after epoch 2.") in text, text
    assert "early stopping" not in runs_sentence(rep.runs_frame(results(50)), "cpu")
    assert "early stopping" not in runs_sentence(rep.runs_frame(results(12, patience=None)), "cpu")


def test_closing_finding_gives_each_claim_its_verdict_and_interval(tmp_path):
    from peftkit import studies

    results = _sst2(grid_results("ablation_adamix", "cpu"))
    for x in results:
        if x["method_label"] == "adamix-adapter":
            s = x["seeds"]["seed"]
            x["inference_modes"] = {"merged": {"accuracy": 0.74 + 0.001 * s}, "random": {"accuracy": 0.73}}
    r = studies.ablation_adamix_report(results, "cpu", tmp_path)
    text = r.finding_text()
    assert len(r.claims) == 5  # the adapter's four and AdaMix-prefix (merged) > prefix-tuning (no modes recorded here)
    for c in r.claims:
        t = c["tasks"][0]
        assert (f"{c['claim']}: **{c['verdict']}**; SST-2: Δ {t['diff_mean']:+.2f} [{t['ci_lo']:+.2f}, "
                f"{t['ci_hi']:+.2f}] over {t['n_pairs']} pairs.") in text
    assert "merging ≥ random routing (AdaMix adapter): **held**" in text
    # K = 500: no paper cell (AdaMix published none at any K), so the scale sentence speaks of the claims only
    assert "The claims compare our own methods under one budget, seed for seed." in text
    assert "Δ against the paper" not in text


def test_gate_finding_names_runs_that_learned_nothing(tmp_path):
    from peftkit.studies import unipelt_gates

    gates = {"layer": [0, 1], "adapter": [0.5, 0.6], "prefix": [0.4, 0.4], "lora_query": [0.5, 0.5],
             "lora_value": [0.7, 0.7]}
    runs = [make_result("cola", "unipelt", "unipelt-APL", k=100, data_seed=d, eval_rows=1043, gates=gates,
                        metrics={"matthews_correlation": 0.0, "predicted_classes": 1}) for d in (111, 222)]
    runs += [make_result("sst2", "unipelt", "unipelt-APL", k=1000, data_seed=d, eval_rows=872, gates=gates,
                         metrics={"accuracy": 0.8, "predicted_classes": 2}) for d in (111, 222)]
    text = unipelt_gates.report(runs, "cpu", tmp_path).finding_text()
    assert ("*UniPELT gates*: CoLA, K = 100: Matthews corr. 0.00 over 2 runs, collapsed 2/2 (constant predictions); "
            "mean gates from prefix 0.400 to LoRA (value) 0.700. SST-2, K = 1,000: accuracy 80.00 over 2 runs, above "
            "chance 2/2; mean gates") in text
    assert text.endswith("Every number here is from our own runs. A run that collapsed or sits at chance learned "
                         "nothing at this budget.")
    assert "Of them 2 collapsed (constant predictions), 0 are at chance" in text


def test_efficiency_finding_gives_each_measures_range():
    runs = [make_result("sst2", m, lab, seed=s, metrics={"accuracy": 0.8}, train_eps=eps)
            for s in (1, 2) for m, lab, eps in (("full", "full", 50.0), ("lora", "lora", 100.0),
                                                  ("bitfit", "bitfit", 80.0))]
    timing = {"rows": [{"method_label": "lora", "aa": False, "ratio": 1.10, "q1": 1.0, "q3": 1.2, "within_aa": False},
                       {"method_label": "bitfit", "aa": False, "ratio": 1.01, "q1": 0.9, "q3": 1.1, "within_aa": True},
                       {"method_label": "full", "aa": True, "ratio": 1.0, "q1": 0.98, "q3": 1.02}]}
    lines = rep.efficiency.efficiency_headlines(rep.efficiency_rows(rep.runs_frame(runs), timing=timing))
    assert lines == ["*Efficiency (ours, 2 methods besides full FT)*: inference parameters from 0.132% of the backbone "
                     "(BitFit) to 0.485% of the backbone (LoRA); training time per example from 0.50× full FT (LoRA) "
                     "to 0.62× full FT (BitFit); inference time per batch from 1.01× full FT (BitFit) to 1.10× full "
                     "FT (LoRA), 1 of 2 within the A/A noise band."]


def test_tour_finding_says_what_the_record_shows():
    record = {"routing": {"same_routes": False, "max_abs_diff": 0.0021, "replay_max_abs_diff": 0.0},
              "consistency": [{"kl": 0.004}, {"kl": 0.002}, {"kl": 0.001}],
              "merge": {"deterministic": True, "max_abs_diff_vs_formula": 0.0, "inference": 223_776,
                        "trainable": 556_416},
              "inference_modes": {"merged": [0.49, 0.50], "random": [0.48, 0.51]},
              "gates": {"values": [0.47, 0.52, 0.55], "shape": [6, 4, 4]},
              "export": {"peft_version": "0.21.2", "peft_class": "PeftModel", "max_abs_diff": 0.0}}
    text = tour_finding(record)
    assert "drew different modules; their logits differ by up to 0.0021" in text and "reproduces it to 0:" in text
    assert "the KL term went from 0.004 to 0.001" in text and "Merged twice: identical logits" in text
    assert "carries 223,776 of the 556,416 trainable method parameters" in text
    assert "lie between 0.470 and 0.550" in text and "reloaded as PeftModel: logits 0 apart" in text
    assert "no number here measures how well a method learns" in text


@pytest.mark.parametrize("name", ["00_tour", "01_glue_main", "05_ablation_bottleneck", "08_efficiency"])
def test_every_notebook_ends_with_its_finding(name):
    import nbformat

    from test_notebooks import NB_DIR

    cells = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4).cells
    assert cells[-2].cell_type == "markdown" and cells[-2].source.startswith("## What ")
    assert cells[-1].source == ("tour.finding(record, out)" if name == "00_tour" else "report.finding()")


def test_a_table_over_several_metrics_is_summarised_by_its_first_never_mixing_units():
    """04's NLG tables: BLEU, NIST, METEOR, ROUGE-L, CIDEr per dataset; the Δ range is BLEU's alone."""
    from peftkit.reporting.findings import numbers_sentences

    runs = [make_result("e2e", m, lab, kind="nlg", seed=1, metrics={"bleu": b, "nist": 3.0, "cider": 0.5})
            for m, lab, b in (("lora", "lora", 0.5), ("adamix", "adamix-lora", 0.6))]
    for r in runs:
        r["samples"] = [{"source": f"s{i}", "prediction": f"p{i}", "reference": "r"} for i in range(3)]
    t = rep.metrics_table(rep.runs_frame(runs), paper="adamix", table="nlg", task="e2e",
                          metrics=["bleu", "nist", "cider"], methods=["lora", "adamix-lora"])
    (line,) = numbers_sentences({"results": {"E2E": t}}, {"results": "NLG test sets"})
    assert line == ("*NLG test sets*: E2E BLEU: best AdaMix (LoRA) 60.00 (n=1), lowest LoRA 50.00 (n=1). Δ against "
                    "the paper from -19.80 (LoRA, E2E) to -11.00 (AdaMix (LoRA), E2E), median -15.40 over 2 cells.")
