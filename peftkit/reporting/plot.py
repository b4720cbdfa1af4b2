"""Figure style shared by every report figure: fonts ≥ 9 pt, a colour-blind-safe palette, no overlapping tick
labels, PNG (200 dpi) + PDF written atomically, the figure closed."""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import textwrap
import zlib

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from ..atomic import write_via as write_bytes_via
from .names import metric_unit

MIN_FONT = 9.0
DPI = 200
STYLE = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 11, "axes.spines.top": False,
         "axes.spines.right": False, "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.bbox": "tight",
         "savefig.pad_inches": 0.05}
PALETTE = sns.color_palette("colorblind", 10)  # Okabe-Ito-like: distinguishable with the common deficiencies
SOURCE_COLOURS = {"ours": PALETTE[0], "paper": PALETTE[1]}
#: the chance reference line (majority class, or 0 for correlations) every score axis draws
REFERENCE_STYLE = {"color": "0.3", "linestyle": (0, (5, 3)), "linewidth": 1.0, "zorder": 1}
FLAG_COLOUR = "0.25"  # annotations that mark runs that learned nothing
#: the narrowest span a score axis in percent may have: about six binomial standard errors of an 872-example dev
#: set at 50%, so that a difference of a few examples never fills the axis
MIN_PERCENT_SPAN = 10.0


# Methods compared in one figure get different hues (adapter vs AdaMix-adapter, LoRA vs AdaMix-LoRA, ...).
_COLOUR_INDEX = {"pfeiffer": 0, "adamix-adapter": 1, "adamix-pfeiffer": 1, "lora": 2, "adamix-lora": 3,
                 "unipelt-AP": 4, "prefix": 5,
                 "unipelt-APL": 6, "full": 7, "bitfit": 8, "houlsby": 9, "prompt": 9, "adamix-houlsby": 8,
                 "unipelt-AP-nogates": 5, "unipelt-APL-nogates": 9}


def method_colour(label: str):
    """The same colour for a method in every figure."""
    i = _COLOUR_INDEX.get(label, zlib.crc32(str(label).encode()))
    return PALETTE[i % len(PALETTE)]


def wrap(text: str, width: int = 11) -> str:
    """Break a tick label at spaces so that it needs less width ("AdaMix (LoRA)" -> "AdaMix\n(LoRA)")."""
    return textwrap.fill(str(text), width=width, break_long_words=False)


@contextlib.contextmanager
def style():
    with plt.rc_context(STYLE):
        yield


def reference_line(ax, value: float | None, label: str) -> None:
    """The chance reference (see :mod:`peftkit.reporting.chance`) as a dashed horizontal line, in the legend."""
    if value is not None and value == value:
        ax.axhline(value, label=label, **REFERENCE_STYLE)


def score_axis(ax, values, metric: str, reference: float | None = None) -> None:
    """Y limits that hold ``values`` and the reference line, never narrower than :data:`MIN_PERCENT_SPAN` for a
    percent metric (other units: 10% of the largest magnitude), so that seed noise does not fill the axis."""
    import numpy as np

    v = [float(x) for x in values if x is not None and x == x]
    v += [reference] if reference is not None and reference == reference else []
    if not v:
        return
    lo, hi = min(v), max(v)
    span = MIN_PERCENT_SPAN if metric_unit(metric) == "%" else 0.1 * max(abs(lo), abs(hi), 1e-9)
    if hi - lo < span:
        mid = (lo + hi) / 2.0
        lo, hi = mid - span / 2.0, mid + span / 2.0
        if metric_unit(metric) == "%":  # keep a percent axis inside [0, 100]
            lo, hi = (0.0, span) if lo < 0 else (100.0 - span, 100.0) if hi > 100 else (lo, hi)
    pad = 0.06 * (hi - lo)
    ax.set_ylim(float(np.floor((lo - pad) * 100) / 100), float(np.ceil((hi + pad) * 100) / 100))


def caption_lines(caption: str, width: int) -> str:
    """``caption`` wrapped to ``width`` characters at its phrase boundaries ("; ", ". ", ", "), so that a phrase such as
    "2 epochs at batch 64" never breaks across lines; a phrase longer than a line is wrapped at its spaces."""
    import re

    phrases = [p for p in re.split(r"(?<=[;.,]) ", caption) if p]
    lines: list[str] = []
    for phrase in phrases:
        if lines and len(lines[-1]) + 1 + len(phrase) <= width:
            lines[-1] += " " + phrase
        elif len(phrase) <= width:
            lines.append(phrase)
        else:
            lines += textwrap.wrap(phrase, width=width, break_long_words=False)
    return "\n".join(lines)


def grid(n: int, ncols: int = 4, panel=(3.2, 2.8), sharey: bool = False):
    """A figure of ``n`` panels (unused ones hidden); returns (fig, flat list of the n axes)."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False,
                             sharey=sharey, layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _overlapping(boxes) -> bool:
    boxes = [b for b in boxes if b is not None and b.width > 0]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def label_overlaps(fig) -> list[str]:
    """Axes titles whose visible x or y tick labels overlap each other (empty when the figure is clean)."""
    if not hasattr(fig.canvas, "get_renderer"):  # a closed figure: give it an Agg canvas to measure with
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis, labels in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
            if _overlapping(boxes):
                bad.append(f"{ax.get_title() or ax.get_label()} ({axis})")
    return bad


def tidy(fig) -> None:
    """Raise every text to ≥ 9 pt and rotate x tick labels (30°, then 90°) until none overlap."""
    for t in fig.findobj(Text):
        if t.get_fontsize() < MIN_FONT:
            t.set_fontsize(MIN_FONT)
    for angle in (30, 90):
        if not label_overlaps(fig):
            return
        for ax in fig.axes:
            for t in ax.get_xticklabels():
                t.set_rotation(angle)
                t.set_horizontalalignment("right" if angle < 90 else "center")
                t.set_rotation_mode("anchor" if angle < 90 else "default")


def min_font_size(fig) -> float:
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    return min(sizes) if sizes else MIN_FONT


def finish(fig, path_stem: str | os.PathLike, caption: str | None = None) -> list[Path]:
    """Tidy, write ``<stem>.png`` (200 dpi) and ``<stem>.pdf``, close the figure; returns both paths.
    ``caption`` (what, backbone, profile, budget) goes above the panels, wrapped to the figure's width at its
    phrase boundaries (:func:`caption_lines`)."""
    stem = Path(path_stem)
    try:
        if caption:
            width = max(40, int(fig.get_figwidth() * 13))
            fig.suptitle(caption_lines(caption, width), fontsize=MIN_FONT)
        tidy(fig)
        png = write_bytes_via(stem.with_suffix(".png"), lambda p: fig.savefig(p, dpi=DPI, format="png"))
        # no creation date: a figure redrawn from the same runs is the same file (no diff in the committed reports)
        pdf = write_bytes_via(stem.with_suffix(".pdf"),
                              lambda p: fig.savefig(p, format="pdf", metadata={"CreationDate": None}))
    finally:
        plt.close(fig)
    return [png, pdf]


def legend_below(fig, handles, labels, ncol: int | None = None) -> None:
    """One legend for the whole figure, under the panels (never over the data)."""
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol or min(len(labels), 4), frameon=False)
