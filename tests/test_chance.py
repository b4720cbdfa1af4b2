"""At chance (peftkit.reporting.chance): the rule per metric, the shipped label counts against the data, runs at
chance without a Δ in the tables, and the figures' chance reference lines, marks and axes."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from peftkit import reporting as rep
from test_reporting import frame_of, make_result


def test_chance_rules_hand_checked():
    """The at-chance rule per metric (peftkit.reporting.chance), at the thresholds worked out by hand."""
    from peftkit.reporting import chance

    sst = chance.eval_set("sst2", "dev", 872)
    assert sst["majority"] == pytest.approx(444 / 872) and chance.chance_score("accuracy", sst) == pytest.approx(
        100 * 444 / 872)
    # exact binomial, one-sided at 5%: 469 of 872 correct is the first count above the majority class's 444
    assert chance.at_chance("accuracy", {"accuracy": 468 / 872}, 872, sst) is True
    assert chance.at_chance("accuracy", {"accuracy": 469 / 872}, 872, sst) is False
    assert chance.at_chance("accuracy", {"accuracy": 0.5107}, 872, sst)  # 01's BitFit: two classes, still chance
    cola = chance.eval_set("cola", "dev", 1043)  # MCC: at chance below 1.645 / sqrt(1043) = 0.0509
    assert chance.at_chance("matthews_correlation", {"matthews_correlation": 0.050}, 1043, cola) is True
    assert chance.at_chance("matthews_correlation", {"matthews_correlation": 0.052}, 1043, cola) is False
    assert chance.chance_score("matthews_correlation", cola) == 0.0
    mrpc = chance.eval_set("mrpc", "dev", 408)  # F1: judged by the same evaluation's accuracy
    assert chance.chance_score("f1", mrpc) == pytest.approx(100 * 2 * 279 / (408 + 279))  # predict all positive
    assert chance.at_chance("f1", {"f1": 0.812, "accuracy": 0.684}, 408, mrpc) is True
    assert chance.at_chance("f1", {"f1": 0.85, "accuracy": 0.78}, 408, mrpc) is False
    assert chance.at_chance("pearson", {"pearson": 0.04}, 1500, None) is True  # Fisher z: r below 0.0425 at n=1500
    assert chance.at_chance("pearson", {"pearson": 0.05}, 1500, None) is False
    # a set the file does not hold (a max_eval subset, other content): accuracy is not judged, never guessed
    assert chance.eval_set("sst2", "dev", 16) is None and chance.eval_set("sst2", "dev", 872, "0" * 64) is None
    assert chance.at_chance("accuracy", {"accuracy": 0.5}, 16, None) is None
    assert chance.at_chance("bleu", {"bleu": 0.0}, 20, None) is None


@pytest.mark.skipif(not os.environ.get("PEFTKIT_DATA_DIR"), reason="needs the shared data (PEFTKIT_DATA_DIR)")
def test_the_shipped_label_counts_are_the_datas():
    from peftkit.reporting import chance

    shipped = chance.eval_sets()
    measured = chance.measure_eval_sets()
    assert len(measured) >= 10
    pd.testing.assert_frame_equal(shipped.reset_index(drop=True), measured.astype(shipped.dtypes.to_dict()))


def test_runs_at_chance_get_no_delta_and_a_status_of_their_own(tmp_path):
    """01 at the old cpu budget: BitFit at 51.07 and prefix-tuning at 50.15 predict two classes (the collapse rule
    misses them) but are not significantly above SST-2's majority class (50.92 on 872 sentences): no Δ against the
    paper, the status column says so, and the table's headline deltas leave them out."""
    runs = [make_result("sst2", m, seed=42, eval_rows=872, metrics={"accuracy": a, "predicted_classes": 2})
            for m, a in (("bitfit", 0.5107), ("prefix", 0.5015), ("lora", 0.80))]
    frame = frame_of(tmp_path, runs)
    assert frame.set_index("method")["at_chance"].to_dict() == {"bitfit": True, "prefix": True, "lora": False}
    assert frame["chance"].tolist() == pytest.approx([100 * 444 / 872] * 3)
    t = rep.comparison_table(frame, paper="adamix", table="glue", tasks=["sst2"], methods=["bitfit", "prefix", "lora"],
                             metric_for=lambda t: "accuracy", backbone="bert-base")
    assert t.loc["BitFit", "SST-2 ours"] == "51.07" and t.loc["BitFit", "SST-2 Δ"] == "– (at chance)"
    assert t.loc["BitFit", "SST-2 status"] == "at chance 1/1" and t.loc["LoRA", "SST-2 status"] == "above chance 1/1"
    assert t.loc["LoRA", "SST-2 Δ"].startswith("-") and [d[0] for d in t.attrs["deltas"]] == ["LoRA"]
    assert any("exact binomial test against the majority-class rate" in n for n in t.attrs["notes"])
    assert "Chance levels (the majority class, or 0 for correlations): SST-2 accuracy 50.92." in t.attrs["notes"]
    fine = rep.comparison_table(rep.select(frame, method="lora"), paper="adamix", table="glue", tasks=["sst2"],
                                methods=["lora"], metric_for=lambda t: "accuracy", backbone="bert-base")
    assert "SST-2 status" not in fine.columns and any(n.startswith("Every run whose chance level is known")
                                                      for n in fine.attrs["notes"])


# ---------------------------------------------------------------------------------------------- figures: chance
def _figure(monkeypatch):
    """Replace the figures' finish: keep the figure itself (open) instead of writing files."""
    from peftkit.reporting import figures, plot

    kept = {}

    def finish(fig, out, caption=None):
        kept.update(fig=fig, caption=caption)
        return []
    monkeypatch.setattr(figures, "finish", finish)
    monkeypatch.setattr(plot, "finish", finish)  # the gate heat maps import it when they draw
    return kept


def _reference_lines(ax) -> list[tuple[str, float]]:
    """(legend label, y) of every horizontal line across a panel (axhline: x data [0, 1] in axes coordinates)."""
    return [(ln.get_label(), float(ln.get_ydata()[0])) for ln in ax.get_lines()
            if list(ln.get_xdata()) == [0, 1] and len(set(ln.get_ydata())) == 1]


def test_modes_figure_draws_the_majority_class_marks_collapsed_modes_and_keeps_noise_small(tmp_path, monkeypatch):
    """06 at the old cpu budget: five seeds whose every mode predicts one label, at 50.90-51.00 on SST-2. The axis
    held 50.90-51.00, so a one-example difference filled it; now it spans ≥ 10 points with the majority class drawn,
    and each mode says it collapsed."""
    kept = _figure(monkeypatch)
    dead = {"accuracy": 0.5092, "predicted_classes": 1}
    runs = [make_result("sst2", "adamix", "adamix-adapter", seed=s, eval_rows=872, metrics=dead,
                        modes={"merged": dead, "random": {"accuracy": 0.5092 + 0.001 * (s % 2), "predicted_classes": 1},
                               "ensemble": dead}) for s in range(1, 6)]
    rep.strip_by_mode(frame_of(tmp_path, runs, include_modes=True), tmp_path / "m", tasks=["sst2"], metric="accuracy")
    ax = kept["fig"].axes[0]
    assert _reference_lines(ax) == [("majority class (chance)", pytest.approx(100 * 444 / 872))]
    lo, hi = ax.get_ylim()
    assert hi - lo >= 10 and lo < 100 * 444 / 872 < hi
    assert [t.get_text() for t in ax.texts] == ["collapsed\n5/5"] * 3
    assert ax.get_title().endswith("\ncollapsed 5/5 (constant predictions)")
    assert "majority class (chance)" in [t.get_text() for lg in kept["fig"].legends for t in lg.get_texts()]


def test_bottleneck_curve_draws_chance_and_hollows_means_of_runs_at_chance(tmp_path, monkeypatch):
    kept = _figure(monkeypatch)
    runs = [make_result("sst2", "pfeiffer", seed=s, eval_rows=872, config={"bottleneck": b}, run_id=f"b{b}-s{s}",
                        metrics={"accuracy": a + 0.002 * s, "predicted_classes": 2})
            for s in (1, 2, 3) for b, a in ((8, 0.51), (48, 0.80))]
    rep.bottleneck_curve(frame_of(tmp_path, runs), tmp_path / "c", tasks=["sst2"], metric="accuracy",
                         methods=["pfeiffer"])
    ax = kept["fig"].axes[0]
    assert _reference_lines(ax) == [("majority class (chance)", pytest.approx(100 * 444 / 872))]
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [8.0]  # b=8 at chance, b=48 learned
    assert ax.get_title() == "SST-2\nat chance 3/6"
    legend = [t.get_text() for lg in kept["fig"].legends for t in lg.get_texts()]
    assert "hollow: runs that collapsed or are at chance" in legend and "majority class (chance)" in legend


def test_gate_heatmap_marks_panels_whose_runs_learned_nothing(tmp_path, monkeypatch):
    """07: CoLA panels whose runs all predict one label, SST-2 K=100 at chance (two labels, 51.26): the panels say
    so and the wholly dead ones are cross-hatched; SST-2 K=1000 learned and is left plain."""
    from peftkit.reporting.gates import DEAD_HATCH

    kept = _figure(monkeypatch)
    gates = {"layer": [0, 1], "adapter": [0.5, 0.6], "prefix": [0.4, 0.4], "lora_query": [0.5, 0.5],
             "lora_value": [0.6, 0.6]}
    runs = []
    for d in (111, 222):
        runs.append(make_result("cola", "unipelt", "unipelt-APL", k=100, data_seed=d, eval_rows=1043, gates=gates,
                                metrics={"matthews_correlation": 0.0, "predicted_classes": 1}))
        runs.append(make_result("sst2", "unipelt", "unipelt-APL", k=100, data_seed=d, eval_rows=872, gates=gates,
                                metrics={"accuracy": 0.5126, "predicted_classes": 2}))
        runs.append(make_result("sst2", "unipelt", "unipelt-APL", k=1000, data_seed=d, eval_rows=872, gates=gates,
                                metrics={"accuracy": 0.80, "predicted_classes": 2}))
    rep.gate_heatmap(runs, tmp_path / "g", tasks=["sst2", "cola"])
    panels = {ax.get_title().split("\n")[0]: ax for ax in kept["fig"].axes if ax.get_title()}
    assert panels["SST-2, K=100 (n=2)"].get_title().endswith("\nat chance 2/2")
    assert panels["CoLA, K=100 (n=2)"].get_title().endswith("\ncollapsed 2/2 (constant predictions)")
    assert panels["SST-2, K=1000 (n=2)"].get_title() == "SST-2, K=1000 (n=2)"
    hatched = {t for t, ax in panels.items() if any(p.get_hatch() == DEAD_HATCH for p in ax.patches)}
    assert hatched == {"SST-2, K=100 (n=2)", "CoLA, K=100 (n=2)"}


def test_captions_say_what_once_in_order_and_never_break_a_phrase(tmp_path):
    """07's caption named neither UniPELT nor its budget once (three budget lines, out of order); 06's broke
    "2 epochs at / batch 64" across lines."""
    from peftkit.reporting.plot import caption_lines
    from peftkit.studies.reports import Report

    runs = []
    for k in (1000, 100, 500):
        r = make_result("sst2", "unipelt", "unipelt-APL", k=k, data_seed=111)
        r["data"]["train"]["rows"] = k
        runs.append(r)
    caption = Report("unipelt_gates", "07_unipelt_gates", "cpu", tmp_path).caption(
        runs, "UniPELT gate values per layer and component, per task and K")
    assert caption == ("UniPELT gate values per layer and component, per task and K. MiniLM-L6, profile cpu; "
                       "budget: 100, 500 or 1,000 training examples, 3 epochs at batch 16")
    text = ("AdaMix inference modes of the same trained models, one point per seed. MiniLM-L6, profile cpu; budget: "
            "1,000 training examples, 2 epochs at batch 64")
    for width in (40, 50, 60, 80):
        lines = caption_lines(text, width).split("\n")
        assert any("2 epochs at batch 64" in line for line in lines), (width, lines)
        assert width < 60 or any("1,000 training examples, 2 epochs at batch 64" in line for line in lines)
        assert " ".join(lines) == text
