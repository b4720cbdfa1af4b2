"""Report figures. Each takes data frames / records and an output path stem, writes ``<stem>.png`` (200 dpi) and
``<stem>.pdf`` and returns both paths. Means carry 95% Student-t CIs (see :mod:`.stats`; none for n = 1), and
``caption`` (what, backbone, profile, training budget) goes above the panels.

Runs that learned nothing are never shown as findings: every score axis draws the chance reference (the
majority class, or 0 for correlations: :mod:`.chance`) as a dashed line and spans at least
:data:`.plot.MIN_PERCENT_SPAN` points, and points, bars or panels whose runs collapsed or are at chance are
marked as such (the tables' rule, :func:`.frame.run_status`). Generation metrics have no chance reference: their
collapsed runs are marked. The UniPELT gate heat maps live in :mod:`.gates` (re-exported here)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import seaborn as sns

from matplotlib.lines import Line2D

from .chance import chance_label
from .frame import collapsed_runs, flagged, run_status, select, status_text
from .gates import GATE_COMPONENTS, gate_heatmap, gate_heatmap_examples, gate_matrix  # noqa: F401
from .names import (LOWER_IS_BETTER, metric_axis_label, metric_name, method_key, method_name, method_order,
                    task_key, task_name)
from .paper import paper_value
from .plot import (FLAG_COLOUR, PALETTE, SOURCE_COLOURS, finish, grid, legend_below, method_colour, reference_line,
                   score_axis, style, wrap)
from .stats import summarise

Metric = str | Callable[[str], str]
COLLAPSED_COLOUR = "0.65"  # grey: a collapsed run's bar (nlg_bars)


def _metric_for(metric: Metric) -> Callable[[str], str]:
    return metric if callable(metric) else (lambda task: metric)


def _reported(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["mode"] == "reported"] if "mode" in frame.columns else frame


def _yerr(s: pd.DataFrame) -> np.ndarray:
    """Error-bar lengths of a summary's CI around its mean (≥ 0; 0 where missing)."""
    lo = (s["mean"] - s["ci_lo"]).to_numpy(dtype=float)
    hi = (s["ci_hi"] - s["mean"]).to_numpy(dtype=float)
    return np.clip(np.nan_to_num(np.vstack([lo, hi])), 0.0, None)


def _need(df: pd.DataFrame, what: str) -> None:
    if df.empty:
        raise ValueError(f"no rows to plot for {what}")


def _reference(df: pd.DataFrame) -> float | None:
    """The chance reference of a panel's runs (one task and metric: one value), None when unknown."""
    values = df["chance"].dropna().unique() if "chance" in df else []
    return float(values[0]) if len(values) else None


def _chance(ax, df: pd.DataFrame, metric: str, values) -> None:
    """Draw the panel's chance reference line and scale its y axis to hold it (:func:`.plot.score_axis`)."""
    ref = _reference(df)
    reference_line(ax, ref, chance_label(metric))
    score_axis(ax, values, metric, ref)


def _flag_title(title: str, df: pd.DataFrame) -> str:
    """A panel title with, on a second line, how many of its runs collapsed or are at chance (where some did)."""
    status = run_status(df)
    return title + (f"\n{status_text(status)}" if flagged(status) else "")


FLAGGED_LABEL = "hollow: runs that collapsed or are at chance"


def _mark(status: dict) -> str:
    """A short mark for a point or a mode whose runs learned nothing: "collapsed\\n5/5", "at chance\\n2/5"."""
    n = status["runs"]
    return "\n".join(f"{word}\n{k}/{n}" for word, k in (("collapsed", status["collapsed"]),
                                                        ("at chance", status["at_chance"])) if k)


def bottleneck_curve(frame: pd.DataFrame, out: str | os.PathLike, *, tasks: Sequence[str], metric: Metric,
                     methods: Sequence[str] = ("pfeiffer", "adamix-adapter"), dim: str = "bottleneck",
                     caption: str | None = None) -> list[Path]:
    """Metric against adapter dimension (``dim``: "bottleneck", or "r" for LoRA) per method: mean over seeds with
    its 95% CI band; one panel per task, with the chance reference line; a mean whose runs include ones that
    collapsed or are at chance is drawn hollow, and the panel title counts them."""
    metric_for = _metric_for(metric)
    methods = [method_key(m) for m in methods]
    with style():
        fig, axes = grid(len(tasks), ncols=3)
        for ax, task in zip(axes, tasks):
            tk, m = task_key(task), metric_for(task_key(task))
            df = select(_reported(frame), task=tk, metric=m, method_label=methods)
            df = df[df[dim].notna()]
            _need(df, f"{task} {m}")
            s = summarise(df, by=["method_label", dim]).sort_values(dim)
            for method in method_order(s["method_label"]):
                g = s[s["method_label"] == method]
                x = g[dim].astype(float).to_numpy()
                c = method_colour(method)
                ax.plot(x, g["mean"], marker="o", color=c, label=method_name(method))
                ax.fill_between(x, g["ci_lo"], g["ci_hi"], color=c, alpha=0.2, linewidth=0)
                dead = [flagged(run_status(df[(df["method_label"] == method) & (df[dim] == v)])) for v in g[dim]]
                if any(dead):
                    ax.plot(x[dead], g["mean"].to_numpy()[dead], linestyle="none", marker="o", markersize=7,
                            markerfacecolor="white", markeredgecolor=c, zorder=3)
            _chance(ax, df, m, [*s["mean"], *s["ci_lo"], *s["ci_hi"]])
            dims = sorted({int(d) for d in df[dim]})
            ax.set_xscale("log", base=2)
            ax.set_xticks(dims, [str(d) for d in dims])
            ax.minorticks_off()
            ax.set_xlabel("bottleneck dimension" if dim == "bottleneck" else f"LoRA rank {dim}")
            ax.set_ylabel(metric_axis_label(m))
            ax.set_title(_flag_title(task_name(tk), df))
        handles, labels = axes[0].get_legend_handles_labels()
        if any(flagged(run_status(select(_reported(frame), task=task_key(t)))) for t in tasks):
            handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white",
                                  markeredgecolor="0.3"))
            labels.append(FLAGGED_LABEL)
        legend_below(fig, handles, labels)
        return finish(fig, out, caption)


@contextlib.contextmanager
def _seeded_numpy(seed: int):
    """numpy's global random state seeded with ``seed`` inside the block, restored after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _mode_order(modes: Iterable[str]) -> list[str]:
    def rank(m):
        if m == "merged":
            return (0, 0)
        if m == "random":
            return (1, 0)
        if m.startswith("fixed-"):
            return (2, int(m.split("-", 1)[1]) if m.split("-", 1)[1].isdigit() else 0)
        return (3, 0) if m == "ensemble" else (4, 0)
    return sorted(set(modes), key=lambda m: (rank(m), m))


def strip_by_mode(frame: pd.DataFrame, out: str | os.PathLike, *, tasks: Sequence[str], metric: Metric,
                  method: str = "adamix-adapter", modes: Sequence[str] | None = None,
                  caption: str | None = None) -> list[Path]:
    """AdaMix inference modes (merged, random, fixed-K, ensemble) of the same trained models: one point per seed,
    the mean with its 95% CI in black, a violin where a mode has ≥ 5 seeds, the chance reference line, and at the
    top of each mode whose runs collapsed or are at chance how many ("at chance 5/5"; the reason in the title).
    The y axis spans at least :data:`.plot.MIN_PERCENT_SPAN` points and holds the reference, so that a
    one-example difference between modes never fills it. Needs ``runs_frame(..., include_modes=True)``."""
    if "mode" not in frame.columns:
        raise ValueError("the frame has no mode column: build it with runs_frame(results, include_modes=True)")
    metric_for = _metric_for(metric)
    n_modes = frame.loc[frame["mode"] != "reported", "mode"].nunique() if modes is None else len(modes)
    with style():
        fig, axes = grid(len(tasks), ncols=3, panel=(max(3.6, 1.2 + 0.7 * n_modes), 3.4))
        for ax, task in zip(axes, tasks):
            tk, m = task_key(task), metric_for(task_key(task))
            df = select(frame, task=tk, metric=m, method_label=method)
            df = df[df["mode"] != "reported"]
            if modes is not None:
                df = df[df["mode"].isin(list(modes))]
            _need(df, f"{method} {task} inference modes")
            order = _mode_order(df["mode"]) if modes is None else [x for x in modes if x in set(df["mode"])]
            colours = dict(zip(order, sns.color_palette("colorblind", len(order))))
            df = df.assign(mode=pd.Categorical(df["mode"], categories=order))
            if df.groupby("mode", observed=True).size().min() >= 5:
                sns.violinplot(df, x="mode", y="value", hue="mode", palette=colours, order=order, inner=None,
                               cut=0, linewidth=0.6, alpha=0.3, dodge=False, legend=False, ax=ax)
            with _seeded_numpy(0):  # seaborn jitters with numpy's global generator: the same figure every render
                sns.stripplot(df, x="mode", y="value", hue="mode", palette=colours, order=order, jitter=0.15,
                              size=5, alpha=0.85, legend=False, ax=ax)
            s = summarise(df.assign(mode=df["mode"].astype(str)), by=["mode"]).set_index("mode").loc[order]
            xs = np.arange(len(order))
            several = bool((s["n"] > 1).any())
            ax.errorbar(xs + 0.3, s["mean"], yerr=_yerr(s) if several else None, fmt="D", color="black",
                        markersize=4, capsize=3, linewidth=1, label="mean, 95% CI" if several else "mean (n = 1)")
            _chance(ax, df, m, [*df["value"], *s["ci_lo"], *s["ci_hi"]])
            for x, mode in zip(xs, order):
                status = run_status(df[df["mode"] == mode])
                if flagged(status):
                    ax.annotate(_mark(status), (x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -3),
                                textcoords="offset points", ha="center", va="top", fontsize=9, color=FLAG_COLOUR)
            ax.set_xlabel("inference mode")
            ax.set_ylabel(metric_axis_label(m))
            ax.set_title(_flag_title(f"{task_name(tk)}: {method_name(method)}", df))
        handles, labels = axes[0].get_legend_handles_labels()
        legend_below(fig, handles, labels)
        return finish(fig, out, caption)


def efficiency_bars(rows: pd.DataFrame | Sequence[dict], out: str | os.PathLike, caption: str | None = None
                    ) -> list[Path]:
    """Per method, ours beside the paper's, bars on linear axes: parameters the method adds to the inference form
    (% of the backbone; full FT, the whole backbone, is written beside its row instead of drawn), training time
    relative to full FT (ours: median over seeds, error bar the range) and inference time relative to full FT
    (ours: median per-round ratio, error bar the IQR; the A/A band shaded when ``rows`` has the A/A row). ``rows``:
    :func:`peftkit.reporting.efficiency.efficiency_rows` (method_label, source "ours" | "paper" | "aa", the
    measures and their ``_lo`` / ``_hi``)."""
    df = pd.DataFrame(rows)
    _need(df, "efficiency bars")
    aa = df[df["source"] == "aa"]
    df = df[df["source"] != "aa"]
    order = method_order(df["method_label"])
    names = [method_name(m) for m in order]
    panels = [("trainable_pct", "parameters added at inference\n(% of backbone)"),
              ("train_time_vs_ft", "training time per example (× full FT)\nours: median over seeds, bar: range"),
              ("inference_time_vs_ft", "inference time per batch (× full FT)\nours: median over rounds, bar: IQR")]
    sources = [s for s in ("ours", "paper") if s in set(df["source"])]
    height = 0.38
    with style():
        fig, axes = grid(3, ncols=3, panel=(3.6, max(2.6, 1.2 + 0.45 * len(order))), sharey=True)
        for ax, (col, label) in zip(axes, panels):
            for src in sources:
                sub = df[df["source"] == src].set_index("method_label").reindex(order)
                ys = np.arange(len(order)) + (height / 2 if src == "paper" else -height / 2)
                xs = sub[col].astype(float).to_numpy()
                if col == "trainable_pct":  # full FT is the whole backbone: written once, not drawn
                    full = np.array([m == "full" for m in order])
                    if src == sources[0] and full.any():
                        ax.text(0, float(np.arange(len(order))[full][0]), " 100 (the whole backbone)", va="center",
                                fontsize=9)
                    xs = np.where(full, np.nan, xs)
                err = None
                if src == "ours" and f"{col}_lo" in sub and sub[f"{col}_lo"].notna().any():
                    lo, hi = sub[f"{col}_lo"].astype(float).to_numpy(), sub[f"{col}_hi"].astype(float).to_numpy()
                    err = np.clip(np.nan_to_num(np.vstack([xs - lo, hi - xs])), 0.0, None)
                ax.barh(ys, np.nan_to_num(xs), height=height, color=SOURCE_COLOURS[src],
                        hatch="//" if src == "paper" else None, edgecolor="white" if src == "paper" else None,
                        linewidth=0.5, xerr=err, capsize=2, error_kw={"linewidth": 0.8},
                        label=src)
            if col != "trainable_pct":
                ax.axvline(1.0, color="0.3", linestyle="--", linewidth=0.8)
            if col == "inference_time_vs_ft" and len(aa):
                a = aa.iloc[0]
                half = max(abs(a["inference_time_vs_ft_lo"] - 1), abs(a["inference_time_vs_ft_hi"] - 1))
                ax.axvspan(1 - half, 1 + half, color="0.6", alpha=0.3, linewidth=0, zorder=0,
                           label=f"A/A band (full FT vs a copy): 1 ± {half:.3f}")
            ax.set_xlim(left=0)
            ax.set_yticks(np.arange(len(order)), names)
            ax.set_xlabel(label)
        axes[0].invert_yaxis()  # shared: the first method on top in every panel
        axes[0].set_ylabel("method")
        handles, labels = axes[0].get_legend_handles_labels()
        for h, lab in zip(*axes[2].get_legend_handles_labels()):  # + the A/A band, where drawn
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
        legend_below(fig, handles, labels)
        return finish(fig, out, caption)


def nlg_bars(frame: pd.DataFrame, out: str | os.PathLike, *, tasks: Sequence[str] = ("e2e", "webnlg", "dart"),
             methods: Sequence[str] | None = None, metrics: Sequence[str] | None = None, paper: str = "adamix",
             table: str = "nlg", caption: str | None = None) -> list[Path]:
    """NLG metrics (BLEU, NIST, METEOR, ROUGE-L, CIDEr; TER) ours (mean, with its 95% Student-t CI where n > 1)
    beside the paper's, one panel per task and metric, methods on the x axis. The legend names the interval only
    when some bar has one (n = 1 everywhere: "ours (n = 1, no interval)"). A method whose runs collapsed on a task
    (the tables' rule, :func:`peftkit.reporting.frame.collapsed_runs`) gets a grey cross-hatched bar labelled
    "collapsed" (with k/n when only some of its runs did) and no interval: its score is not comparable with the
    paper's."""
    df = _reported(frame)
    df = select(df, task=[task_key(t) for t in tasks])
    if methods is not None:
        df = select(df, method_label=list(methods))
    if metrics is not None:
        df = df[df["metric"].isin(list(metrics))]
    _need(df, "NLG bars")
    s = summarise(df, by=["task", "metric", "method_label"])
    order_m = ["bleu", "nist", "meteor", "rouge_l", "cider", "ter"]
    panels = sorted({(t, m) for t, m in zip(s["task"], s["metric"])},
                    key=lambda p: ([task_key(t) for t in tasks].index(p[0]),
                                   order_m.index(p[1]) if p[1] in order_m else 99))
    labels = method_order(s["method_label"])
    dead = {key: collapsed_runs(g) for key, g in df.groupby(["task", "method_label"])}
    dead = {key: c for key, c in dead.items() if c[0]}
    n_max = int(s["n"].max())
    ours_label = ("ours (n = 1, no interval)" if n_max <= 1 else "ours (mean, 95% CI)" if (s["n"] > 1).all()
                  else "ours (mean; 95% CI where n > 1)")
    reasons = sorted({r for _, _, why in dead.values() for r in why.split(", ")})
    collapsed_label = f"ours, collapsed ({', '.join(reasons)}): not comparable"
    with style():
        fig, axes = grid(len(panels), ncols=min(4, len(panels)), panel=(1.0 + 0.75 * len(labels), 3.0))
        for ax, (task, metric) in zip(axes, panels):
            g = s[(s["task"] == task) & (s["metric"] == metric)].set_index("method_label").reindex(labels)
            xs = np.arange(len(labels))
            flag = np.array([(task, m) in dead for m in labels])
            mean = g["mean"].to_numpy(dtype=float)
            ax.bar(xs - 0.2, np.where(flag, np.nan, mean), width=0.4, color=SOURCE_COLOURS["ours"], label=ours_label,
                   yerr=np.where(flag, 0.0, _yerr(g)) if n_max > 1 else None, capsize=2, error_kw={"linewidth": 0.8})
            if flag.any():
                ax.bar(xs - 0.2, np.where(flag, mean, np.nan), width=0.4, color=COLLAPSED_COLOUR, hatch="xx",
                       edgecolor="white", linewidth=0.5, label=collapsed_label)
            for x, m, y in zip(xs, labels, mean):
                if (task, m) in dead:
                    c, n, _ = dead[(task, m)]
                    ax.annotate("collapsed" if c == n else f"collapsed {c}/{n}", (x - 0.2, 0 if np.isnan(y) else y),
                                xytext=(0, 3), textcoords="offset points", rotation=90, ha="center", va="bottom",
                                fontsize=9, color="0.25")
            pv = [paper_value(paper, table, m, task, metric=metric) for m in labels]
            ax.bar(xs + 0.2, [np.nan if v is None else v for v in pv], width=0.4, color=SOURCE_COLOURS["paper"],
                   hatch="//", edgecolor="white", linewidth=0.5, label="paper")
            ax.set_xticks(xs, [wrap(method_name(m)) for m in labels])
            arrow = " ↓" if metric in LOWER_IS_BETTER else ""
            ax.set_ylabel(metric_axis_label(metric) + arrow)
            ax.set_title(f"{task_name(task)} {metric_name(metric)}")
        handles = {}
        for ax in axes:  # the collapsed entry may come from any panel
            for h, n in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(n, h)
        legend_below(fig, list(handles.values()), list(handles))
        return finish(fig, out, caption)


__all__ = ["bottleneck_curve", "strip_by_mode", "gate_heatmap", "gate_heatmap_examples", "gate_matrix",
           "GATE_COMPONENTS", "efficiency_bars", "nlg_bars", "PALETTE"]
