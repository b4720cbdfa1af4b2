"""UniPELT gates: the runs' mean gates as a long frame (:func:`gate_matrix`, no plotting library needed), their
heat map (one panel per task / K / variant, marked where its runs learned nothing) and the gates of one forward
(the tour). The figures are written as the others are (:mod:`.plot`, imported when one is drawn)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .frame import flagged, run_status, runs_frame, status_text
from .names import method_key, method_name, task_key, task_name

GATE_COMPONENTS = {"adapter": "adapter", "prefix": "prefix", "lora_query": "LoRA\n(query)",
                   "lora_value": "LoRA\n(value)"}
#: the hatch over a panel whose every run collapsed or is at chance (light, so that the values stay readable)
DEAD_HATCH = "//"
DEAD_HATCH_COLOUR = (1.0, 1.0, 1.0, 0.5)


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


def panel_status(frame: pd.DataFrame, task: str, k, label: str) -> dict:
    """:func:`~.frame.run_status` of the runs behind one heat-map panel (their reported scores)."""
    rows = frame[(frame["task"] == task) & (frame["method_label"] == label) & (frame["mode"] == "reported")]
    rows = rows[rows["k"].isna()] if k is None or pd.isna(k) else rows[rows["k"] == int(k)]
    return run_status(rows)


def gate_heatmap(results: Sequence[dict], out: str | os.PathLike, *, tasks: Sequence[str] | None = None,
                 ncols: int = 3, caption: str | None = None) -> list[Path]:
    """Layers x components of UniPELT's mean gate values (averaged over the reported set and over seeds), one
    panel per task / K / variant, from the result files' ``gates`` field. A panel whose runs collapsed or are at
    chance says so under its title ("collapsed 2/2 (constant predictions)"); when every run of a panel did, the
    panel is cross-hatched: its gates are what runs that learned nothing ended with."""
    from matplotlib.patches import Rectangle

    from .plot import FLAG_COLOUR, finish, grid, style

    g = gate_matrix(results)
    if tasks is not None:
        g = g[g["task"].isin([task_key(t) for t in tasks])]
    if g.empty:
        raise ValueError("no rows to plot for gate heatmap (no result with gates)")
    g["k"] = g["k"].astype(object).where(g["k"].notna(), None)
    scores = runs_frame([r for r in results if r.get("gates")])
    groups = list(g.groupby(["task", "k", "method_label"], dropna=False, sort=True))
    if tasks is not None:  # panels in the caller's task order
        rank = {task_key(t): i for i, t in enumerate(tasks)}
        groups.sort(key=lambda item: rank[item[0][0]])
    several = g["method_label"].nunique() > 1
    with style():
        nl = g["layer"].nunique()
        fig, axes = grid(len(groups), ncols=ncols, panel=(3.3, 1.1 + 0.32 * nl))
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
            title = f"{task_name(task)}{kk}" + (f" {method_name(label)}" if several else "") + f" (n={seeds})"
            status = panel_status(scores, task, k, label)
            if flagged(status):
                title += "\n" + status_text(status)
                if status["collapsed"] + status["at_chance"] == status["runs"]:
                    ax.add_patch(Rectangle((-0.5, -0.5), len(comps), len(mat.index), fill=False, hatch=DEAD_HATCH,
                                           edgecolor=DEAD_HATCH_COLOUR, linewidth=0))
            ax.set_title(title, color=FLAG_COLOUR if flagged(status) else "black")
        fig.colorbar(image, ax=axes, shrink=0.9, label="mean gate value (0–1)")
        return finish(fig, out, caption)


def gate_heatmap_examples(frame: pd.DataFrame, out: str | os.PathLike, caption: str) -> list[Path]:
    """Gate values of one forward, one panel per component: layers x examples, the value in each cell.
    ``frame``: layer, component, example, gate (see :func:`peftkit.tour.gate_frame`)."""
    from .plot import finish, grid, style

    if frame.empty:
        raise ValueError("no rows to plot for gate heatmap (no gate values)")
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
