"""Report figures. Each takes data frames / records and an output path stem, writes ``<stem>.png`` (200 dpi) and
``<stem>.pdf`` and returns both paths. Means carry 95% Student-t CIs (see :mod:`.stats`; none for n = 1), and
``caption`` (backbone, profile, training budget) goes above the panels."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import seaborn as sns

from ._plot import PALETTE, SOURCE_COLOURS, finish, grid, legend_below, method_colour, style, wrap
from .frame import collapsed_runs, select
from .names import (LOWER_IS_BETTER, metric_axis_label, metric_name, method_key, method_name, method_order,
                    task_key, task_name)
from .paper import paper_value
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


def bottleneck_curve(frame: pd.DataFrame, out: str | os.PathLike, *, tasks: Sequence[str], metric: Metric,
                     methods: Sequence[str] = ("pfeiffer", "adamix-adapter"), dim: str = "bottleneck",
                     caption: str | None = None) -> list[Path]:
    """Metric against adapter dimension (``dim``: "bottleneck", or "r" for LoRA) per method: mean over seeds with
    its 95% CI band; one panel per task."""
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
            dims = sorted({int(d) for d in df[dim]})
            ax.set_xscale("log", base=2)
            ax.set_xticks(dims, [str(d) for d in dims])
            ax.minorticks_off()
            ax.set_xlabel("bottleneck dimension" if dim == "bottleneck" else f"LoRA rank {dim}")
            ax.set_ylabel(metric_axis_label(m))
            ax.set_title(task_name(tk))
        handles, labels = axes[0].get_legend_handles_labels()
        legend_below(fig, handles, labels)
        return finish(fig, out, caption)


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
    the mean with its 95% CI in black, a violin where a mode has ≥ 5 seeds. Needs ``runs_frame(...,
    include_modes=True)``."""
    if "mode" not in frame.columns:
        raise ValueError("the frame has no mode column: build it with runs_frame(results, include_modes=True)")
    metric_for = _metric_for(metric)
    n_modes = frame.loc[frame["mode"] != "reported", "mode"].nunique() if modes is None else len(modes)
    with style():
        fig, axes = grid(len(tasks), ncols=3, panel=(max(3.6, 1.2 + 0.6 * n_modes), 3.0))
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
            sns.stripplot(df, x="mode", y="value", hue="mode", palette=colours, order=order, jitter=0.15, size=5,
                          alpha=0.85, legend=False, ax=ax)
            s = summarise(df.assign(mode=df["mode"].astype(str)), by=["mode"]).set_index("mode").loc[order]
            xs = np.arange(len(order))
            several = bool((s["n"] > 1).any())
            ax.errorbar(xs + 0.3, s["mean"], yerr=_yerr(s) if several else None, fmt="D", color="black",
                        markersize=4, capsize=3, linewidth=1, label="mean, 95% CI" if several else "mean (n = 1)")
            ax.set_xlabel("inference mode")
            ax.set_ylabel(metric_axis_label(m))
            ax.set_title(f"{task_name(tk)}: {method_name(method)}")
        handles, labels = axes[0].get_legend_handles_labels()
        legend_below(fig, handles, labels)
        return finish(fig, out, caption)


GATE_COMPONENTS = {"adapter": "adapter", "prefix": "prefix", "lora_query": "LoRA\n(query)",
                   "lora_value": "LoRA\n(value)"}


def gate_matrix(results: Sequence[dict]) -> pd.DataFrame:
    """Long frame of UniPELT gate means: task, k, method_label, seed, layer, component, gate."""
    rows = []
    for r in results:
        gates = r.get("gates")
        if not gates:
            continue
        for comp in GATE_COMPONENTS:
            for layer, g in zip(gates.get("layer") or [], gates.get(comp) or []):
                if g is not None:
                    rows.append({"task": task_key(r.get("task")), "k": r.get("k"),
                                 "method_label": method_key(r.get("method_label") or r.get("method")),
                                 "seed": (r.get("seeds") or {}).get("seed"), "data_seed": r.get("data_seed"),
                                 "layer": int(layer), "component": comp, "gate": float(g)})
    return pd.DataFrame(rows, columns=["task", "k", "method_label", "seed", "data_seed", "layer", "component", "gate"])


def gate_heatmap(results: Sequence[dict], out: str | os.PathLike, *, tasks: Sequence[str] | None = None,
                 ncols: int = 3, caption: str | None = None) -> list[Path]:
    """Layers x components of UniPELT's mean gate values (averaged over the reported set and over seeds), one
    panel per task / K / variant, from the result files' ``gates`` field."""
    g = gate_matrix(results)
    if tasks is not None:
        g = g[g["task"].isin([task_key(t) for t in tasks])]
    _need(g, "gate heatmap (no result with gates)")
    g["k"] = g["k"].astype(object).where(g["k"].notna(), None)
    groups = list(g.groupby(["task", "k", "method_label"], dropna=False, sort=True))
    if tasks is not None:  # panels in the caller's task order
        rank = {task_key(t): i for i, t in enumerate(tasks)}
        groups.sort(key=lambda item: rank[item[0][0]])
    several = g["method_label"].nunique() > 1
    with style():
        nl = g["layer"].nunique()
        fig, axes = grid(len(groups), ncols=ncols, panel=(3.3, 0.8 + 0.32 * nl))
        image = None
        for ax, ((task, k, label), df) in zip(axes, groups):
            comps = [c for c in GATE_COMPONENTS if c in set(df["component"])]
            mat = df.pivot_table(index="layer", columns="component", values="gate", aggfunc="mean")[comps]
            image = ax.imshow(mat.to_numpy(), aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
            for (i, j), v in np.ndenumerate(mat.to_numpy()):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9,
                            color="black" if v > 0.55 else "white")
            ax.set_xticks(range(len(comps)), [GATE_COMPONENTS[c] for c in comps])
            ax.set_yticks(range(len(mat.index)), [str(i) for i in mat.index])
            ax.set_ylabel("layer (index)")
            ax.set_xlabel("component")
            seeds = df[["seed", "data_seed"]].drop_duplicates().shape[0]
            kk = "" if k is None or pd.isna(k) else f", K={int(k)}"
            ax.set_title(f"{task_name(task)}{kk}" + (f" {method_name(label)}" if several else "") + f" (n={seeds})")
        fig.colorbar(image, ax=axes, shrink=0.9, label="mean gate value (0–1)")
        return finish(fig, out, caption)


def gate_heatmap_examples(frame: pd.DataFrame, out: str | os.PathLike, caption: str) -> list[Path]:
    """Gate values of one forward, one panel per component: layers x examples, the value in each cell.
    ``frame``: layer, component, example, gate (see :func:`peftkit.tour.gate_frame`)."""
    _need(frame, "gate heatmap (no gate values)")
    comps = [c for c in GATE_COMPONENTS if c in set(frame["component"])]
    examples = list(dict.fromkeys(frame["example"]))
    with style():
        fig, axes = grid(len(comps), ncols=len(comps), panel=(0.6 + 0.55 * len(examples), 2.6), sharey=True)
        image = None
        for ax, comp in zip(axes, comps):
            mat = frame[frame["component"] == comp].pivot(index="layer", columns="example", values="gate")[examples]
            image = ax.imshow(mat.to_numpy(), aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
            for (i, j), v in np.ndenumerate(mat.to_numpy()):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9, color="black" if v > 0.55 else "white")
            ax.set_xticks(range(len(examples)), examples, rotation=90)
            ax.set_yticks(range(len(mat.index)), [str(i) for i in mat.index])
            ax.set_title(GATE_COMPONENTS[comp].replace("\n", " "))
            ax.set_xlabel("example")
        axes[0].set_ylabel("layer (index)")
        fig.colorbar(image, ax=axes, shrink=0.9, label="gate value (0–1)")
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
           "efficiency_bars", "nlg_bars", "PALETTE"]
