"""Ours-versus-paper tables: numbers, a display frame, and Markdown + CSV files written atomically."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..atomic import write_text as write_text_atomic
from .chance import CHANCE_NOTE
from .frame import context, flagged, run_status, select, status_text
from .names import backbone_key, backbone_name, decimals, method_key, method_name, metric_name, task_key, task_name
from .paper import paper_cell, table_backbone, table_metrics
from .stats import describe_values

MISSING = "–"
NUMBER_COLUMNS = ["method_label", "task", "metric", "n", "mean", "std", "ci_lo", "ci_hi", "single", "paper",
                  "paper_metric", "paper_row", "delta", "runs", "collapsed", "at_chance", "above_chance", "status",
                  "collapsed_reason", "note"]
COLLAPSED_DELTA = "– (collapsed)"
CHANCE_DELTA = "– (at chance)"
INTERVAL_NOTE = ("mean ± standard deviation over the n runs (ddof = 1) [95% Student-t CI of the mean] n=runs "
                 "(n = 1: no interval)")
STATUS_NOTE = ("status: how many of a cell's runs collapsed (one predicted label for every example; generations "
               "all empty, or every non-empty one the same text whatever the source) or are at chance; such a cell "
               f"gets no Δ against the paper (\"{COLLAPSED_DELTA}\", \"{CHANCE_DELTA}\"): its score measures a run "
               "that learned nothing, not the method. " + CHANCE_NOTE[0].upper() + CHANCE_NOTE[1:] + ".")
ABOVE_NOTE = "Every run whose chance level is known scores above chance (" + CHANCE_NOTE.split(": ", 1)[1] + ")."


def _paper_cell(paper, table, method, task, k, backbone, metric) -> dict | None:
    cell = paper_cell(paper, table, method, task, k=k, backbone=backbone, metric=metric)
    if cell is None:
        try:  # the paper may print this column in another metric (e.g. Spearman where we asked Pearson)
            cell = paper_cell(paper, table, method, task, k=k, backbone=backbone)
        except ValueError:
            cell = None
    return cell


def comparison_numbers(frame: pd.DataFrame, *, paper: str, table: str, tasks: Sequence[str],
                       methods: Sequence[str], metric_for: Callable[[str], str], k: int | None = None,
                       backbone: str | None = None) -> pd.DataFrame:
    """One row per method x task: our seed statistics (n, mean, std, Student-t CI), the paper's value, Δ.

    Our rows are ``frame``'s reported metrics (mode "reported") with this ``k`` (None: full-data runs, k
    missing). ``metric_for(task)`` is the metric we report; where the paper's cell is in another metric that our
    runs also report (e.g. STS-B Spearman in UniPELT's tables), ours switches to it; where we lack it, Δ is
    missing and ``note`` says why. ``collapsed`` / ``at_chance``: how many of our runs collapsed (constant
    predictions, empty generations; :func:`peftkit.reporting.frame.collapse_reason`) or score at chance
    (:mod:`peftkit.reporting.chance`), ``status`` the cell's words for it (:func:`~.frame.status_text`): such a
    cell gets no Δ.
    """
    bb = table_backbone(paper, table, backbone)
    sub = frame if "mode" not in frame.columns else frame[frame["mode"] == "reported"]
    sub = select(sub, k=None if k is None else int(k))
    rows = []
    for method in [method_key(m) for m in methods]:
        for task in tasks:
            tk = task_key(task)
            metric = metric_for(tk)
            ours = select(sub, task=tk, method_label=method)
            cell = _paper_cell(paper, table, method, tk, k, bb, metric)
            note = ""
            if cell is not None and cell["metric"] != metric and len(ours):
                if (ours["metric"] == cell["metric"]).any():
                    note = f"ours in the paper's metric ({metric_name(cell['metric'])}), not {metric_name(metric)}"
                    metric = str(cell["metric"])
                else:
                    note = f"paper's cell is {metric_name(cell['metric'])}, ours {metric_name(metric)}: no Δ"
            stats = describe_values(ours.loc[ours["metric"] == metric, "value"].to_numpy(dtype=float))
            value = None if cell is None else float(cell["value"])
            status = run_status(ours[ours["metric"] == metric])
            comparable = value is not None and stats["n"] > 0 and cell["metric"] == metric and not flagged(status)
            rows.append({"method_label": method, "task": tk, "metric": metric, **stats, "paper": value,
                         "paper_metric": None if cell is None else cell["metric"],
                         "paper_row": None if cell is None else cell["row"],
                         "delta": stats["mean"] - value if comparable else float("nan"), "runs": status["runs"],
                         "collapsed": status["collapsed"], "at_chance": status["at_chance"],
                         "above_chance": status["above"], "status": status_text(status),
                         "collapsed_reason": status["reasons"], "note": note})
    out = pd.DataFrame(rows, columns=NUMBER_COLUMNS)
    out["paper"] = out["paper"].astype(float)
    return out


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


SINGLE_NOTE = "ours: one run per cell (n = 1), so no interval"


def single_runs(n: Sequence[int]) -> bool:
    """True when every cell of a table holds at most one run (and some cell one): its "ours" cells then print the
    value alone (``format_ours(..., single=True)``) and the table's notes say so once (:func:`ours_note`)."""
    n = [int(x) for x in n]
    return bool(n) and max(n) == 1


def ours_note(single: bool) -> str:
    """How to read a table's "ours" cells: n = 1 said once (``single``), else mean ± std [CI] over n runs."""
    return SINGLE_NOTE if single else f"ours: {INTERVAL_NOTE}"


def format_ours(n: int, mean: float, std: float, lo: float, hi: float, metric: str = "accuracy", *,
                single: bool = False) -> str:
    """'81.20 ± 1.10 [78.47, 83.93] n=3' (± the standard deviation, then the Student-t CI); one run: '81.20 (n=1,
    no CI)', or '81.20' in a table of single runs (``single``, see :func:`single_runs`: the notes say n = 1 once);
    no runs: '–'. Every number in the metric's precision; whether runs collapsed or are at chance goes in a
    status column of its own, never into this cell."""
    if not n:
        return MISSING
    d = decimals(metric)
    return f"{mean:.{d}f}" if single and n == 1 else f"{mean:.{d}f} (n=1, no CI)" if n == 1 else \
        f"{mean:.{d}f} ± {std:.{d}f} [{lo:.{d}f}, {hi:.{d}f}] n={n}"


def _fmt(x, d=2, sign=False) -> str:
    if _missing(x):
        return MISSING
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def delta_cell(delta, paper, metric: str, status: dict | None = None) -> str:
    """A Δ cell in the metric's precision: '– (collapsed)' / '– (at chance)' where the paper has a cell but (some
    of) our runs collapsed or are at chance (``status``: :func:`peftkit.reporting.frame.run_status`), so there is
    no Δ (see :func:`comparison_numbers`); '–' where either side is missing."""
    if status and flagged(status) and not _missing(paper):
        return COLLAPSED_DELTA if status["collapsed"] else CHANCE_DELTA
    return _fmt(delta, decimals(metric), sign=True)


def status_of(row) -> dict:
    """The :func:`~.frame.run_status` dict of a :func:`comparison_numbers` row (a namedtuple or a Series)."""
    get = row.get if isinstance(row, (dict, pd.Series)) else (lambda k: getattr(row, k))
    return {"runs": int(get("runs")), "collapsed": int(get("collapsed")), "at_chance": int(get("at_chance")),
            "above": int(get("above_chance")),
            "reasons": get("collapsed_reason")}


def number_cells(nums: pd.DataFrame) -> list[dict]:
    """The long-format cells of a :func:`comparison_numbers` frame as a display table's ``attrs["cells"]`` (what
    :mod:`peftkit.reporting.findings` summarises): row (the method's name), task, metric, n, mean, std, status,
    flagged (runs collapsed or at chance), paper, delta."""
    return [{"row": method_name(r.method_label), "task": r.task, "metric": r.metric, "n": int(r.n), "mean": r.mean,
             "std": r.std, "status": r.status, "flagged": bool(r.collapsed or r.at_chance), "paper": r.paper,
             "delta": r.delta} for r in nums.itertuples()]


def chance_levels(frame: pd.DataFrame, metric_of: dict) -> list[str]:
    """"Chance levels: SST-2 accuracy 50.92, CoLA Matthews corr. 0.00." for the tasks of ``metric_of`` ({task:
    metric}) whose chance score the runs frame knows (its ``chance`` column), as a one-item list (empty: none)."""
    parts = []
    for task, metric in metric_of.items():
        values = frame.loc[(frame["task"] == task) & (frame["metric"] == metric), "chance"].dropna().unique() \
            if "chance" in frame else []
        if len(values) == 1:
            parts.append(f"{task_name(task)} {metric_name(metric)} {values[0]:.{decimals(metric)}f}")
    return [f"Chance levels (the majority class, or 0 for correlations): {', '.join(parts)}."] if parts else []


def status_notes(statuses: Sequence[dict]) -> list[str]:
    """The notes a table's status columns need: what "status" means when some cell is flagged
    (:data:`STATUS_NOTE`), else that every judged run is above chance (:data:`ABOVE_NOTE`), else nothing."""
    if any(flagged(s) for s in statuses):
        return [STATUS_NOTE]
    return [ABOVE_NOTE] if any(s.get("above") for s in statuses) else []


def comparison_table(frame: pd.DataFrame, *, paper: str, table: str, tasks: Sequence[str], methods: Sequence[str],
                     metric_for: Callable[[str], str], k: int | None = None,
                     backbone: str | None = None) -> pd.DataFrame:
    """Display table as a paper prints it: one row per method; per task three columns, ours | paper | Δ, plus
    "Avg" columns where every task is present. Each column has one precision (the metric's).

    "ours" reads ``mean ± std [95% Student-t CI] n=runs`` (when every cell holds one run: the value, and the notes
    say n = 1 once, :func:`single_runs`); "Δ" = ours mean − paper (none where runs collapsed or are at chance);
    where some cell's runs did, a "<task> status" column after each task's Δ says how many (:func:`status_of`);
    empty cells are "–". The frame's ``attrs`` carry what :func:`write_table` puts in the title (backbone,
    profile, the paper's backbone) and notes.
    """
    nums = comparison_numbers(frame, paper=paper, table=table, tasks=tasks, methods=methods, metric_for=metric_for,
                              k=k, backbone=backbone)
    single = single_runs(nums["n"])
    statuses = [status_of(r) for r in nums.itertuples()]
    show_status = any(flagged(x) for x in statuses)
    index, body = [], []
    for method in dict.fromkeys(nums["method_label"]):
        m = nums[nums["method_label"] == method]
        row = {}
        for r in m.itertuples():
            d, name = decimals(r.metric), task_name(r.task)
            row[f"{name} ours"] = format_ours(r.n, r.mean, r.std, r.ci_lo, r.ci_hi, r.metric, single=single)
            row[f"{name} paper"] = _fmt(r.paper, d)
            row[f"{name} Δ"] = delta_cell(r.delta, r.paper, r.metric, status_of(r))
            if show_status:
                row[f"{name} status"] = r.status
        if len(tasks) > 1:
            have_ours = bool((m["n"] > 0).all())
            have_paper = bool(m["paper"].notna().all())
            row["Avg ours"] = f"{m['mean'].mean():.2f}" if have_ours else MISSING
            row["Avg paper"] = f"{m['paper'].mean():.2f}" if have_paper else MISSING
            row["Avg Δ"] = (f"{m['mean'].mean() - m['paper'].mean():+.2f}"
                            if have_ours and have_paper and m["delta"].notna().all() else MISSING)
        index.append(method_name(method))
        body.append(row)
    out = pd.DataFrame(body, index=pd.Index(index, name="method"))
    used = select(frame, task=[task_key(t) for t in tasks], method_label=[method_key(m) for m in methods])
    ctx = context(used)
    metrics = "; ".join(f"{task_name(t)} {metric_name(mt)}" for t, mt in
                        dict(zip(nums["task"], nums["metric"])).items())
    notes = [f"{ours_note(single)}; Δ = ours mean − paper; – = no run or no paper cell.",
             f"Metrics: {metrics}. Paper: {paper} {table}" + (f", K = {k}" if k is not None else "") + "."]
    notes += [f"{method_name(r.method_label)}, {task_name(r.task)}: {r.note}." for r in nums.itertuples() if r.note]
    notes += status_notes(statuses) + chance_levels(used, dict(zip(nums["task"], nums["metric"])))
    if len(tasks) > 1:
        notes.append("Avg: mean over the tasks, only where every task has a value.")
    paper_bb = table_backbone(paper, table, backbone)
    deltas = nums.dropna(subset=["delta"])
    out.attrs.update({"backbone": ctx["backbone"], "backbone_keys": ctx["backbone_keys"],
                      "profile": ctx["profile"], "paper_backbone": paper_bb, "notes": notes,
                      "deltas": [(method_name(r.method_label), task_name(r.task), float(r.delta))
                                 for r in deltas.itertuples()], "cells": number_cells(nums)})
    return out


def collapsed_cell(runs: int, collapsed: int, reason) -> str:
    """'1/1 runs: empty generations', 'no' (runs, none collapsed) or '–' (no runs)."""
    if not runs:
        return MISSING
    return f"{collapsed}/{runs} runs: {reason}" if collapsed else "no"


def metrics_table(frame: pd.DataFrame, *, paper: str, table: str, task: str, metrics: Sequence[str],
                  methods: Sequence[str], headers: dict | None = None, backbone: str | None = None) -> pd.DataFrame:
    """One task's table over several metrics, as a paper prints it: one row per method; a ``collapsed`` column
    (:func:`collapsed_cell`); per metric "ours", and "paper" | "Δ" beside it where the paper's table prints that
    metric for the task. Each column has one precision (the metric's); collapsed runs get no Δ
    (:func:`delta_cell`). When every cell holds one run, "ours" is the value and the notes say "n = 1, no
    interval" once (:func:`single_runs`, as :func:`comparison_table`); otherwise ``mean ± std [95% Student-t CI]
    n=runs``.

    ``attrs``: ``numbers`` (:func:`comparison_numbers` over every metric: the long-format data behind the cells),
    ``notes``, and backbone / profile / the paper's backbone for the title, as :func:`comparison_table`.
    """
    headers = headers or {}
    nums = pd.concat([comparison_numbers(frame, paper=paper, table=table, tasks=[task], methods=methods,
                                         metric_for=lambda _t, m=m: m, backbone=backbone) for m in metrics],
                     ignore_index=True)
    printed = set(table_metrics(paper, table, task, backbone))
    single = single_runs(nums["n"])
    body, index = [], []
    for method in dict.fromkeys(nums["method_label"]):
        m = nums[nums["method_label"] == method]
        first = m.loc[m["runs"].idxmax()]
        row = {"collapsed": collapsed_cell(int(first["runs"]), int(m["collapsed"].max()), first["collapsed_reason"])}
        for r in m.itertuples():
            d, name = decimals(r.metric), headers.get(r.metric, metric_name(r.metric))
            row[f"{name} ours"] = format_ours(r.n, r.mean, r.std, r.ci_lo, r.ci_hi, r.metric, single=single)
            if r.metric in printed:
                row[f"{name} paper"] = _fmt(r.paper, d)
                row[f"{name} Δ"] = delta_cell(r.delta, r.paper, r.metric, status_of(r))
        index.append(method_name(method))
        body.append(row)
    out = pd.DataFrame(body, index=pd.Index(index, name="method"))
    ctx = context(select(frame, task=task_key(task), method_label=[method_key(x) for x in methods]))
    notes = [f"{ours_note(single)}; Δ = ours − paper, in the column's unit; – = no run or no paper cell. Paper and "
             "Δ columns only for the metrics the paper's table prints."]
    if (nums["collapsed"] > 0).any():
        notes.append("collapsed: how many of a method's runs collapsed and how (constant predictions; generations "
                     "all empty, or every non-empty one the same text whatever the source). Such cells get no Δ "
                     f"against the paper (\"{COLLAPSED_DELTA}\"): their scores measure a failed run, not the method.")
    out.attrs.update({"backbone": ctx["backbone"], "backbone_keys": ctx["backbone_keys"], "profile": ctx["profile"],
                      "paper_backbone": table_backbone(paper, table, backbone), "notes": notes,
                      "numbers": nums.assign(method=[method_name(x) for x in nums["method_label"]]),
                      "cells": number_cells(nums)})
    return out


def table_title(what: str, backbone: str, profile: str, paper_backbone: str | None = None,
                backbone_keys: Sequence[str] | None = None) -> str:
    """'GLUE dev, MiniLM-L6 (paper: BERT-base), profile cpu' (the paper's backbone only when it differs)."""
    keys = list(backbone_keys) if backbone_keys is not None else [backbone_key(b) for b in backbone.split(" / ")]
    same = paper_backbone is None or keys == [backbone_key(paper_backbone)]
    bb = backbone if same else f"{backbone} (paper: {backbone_name(paper_backbone)})"
    return f"{what}, {bb}, profile {profile}"


def _cell(x) -> str:
    if _missing(x) or (x is pd.NA):
        return MISSING
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``df`` (index levels first); missing values print as '–'."""
    flat = df.reset_index() if any(n is not None for n in df.index.names) else df.copy()
    if isinstance(df.index, pd.MultiIndex):  # print a repeated outer label once
        first = flat.columns[0]
        flat[first] = flat[first].where(flat[first].ne(flat[first].shift()), "")
    head = [str(c) for c in flat.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def merged_attrs(df) -> dict:
    """The ``attrs`` of a display frame, or of {heading: frame} sections merged: every backbone and profile (for the
    title), the paper's backbone, the notes once each (in order), the headline deltas and long-format numbers."""
    if isinstance(df, pd.DataFrame):
        return df.attrs
    attrs = [f.attrs for f in df.values()]
    out = dict(attrs[0]) if attrs else {}
    for key in ("backbone", "profile"):
        if any(key in a for a in attrs):
            out[key] = " / ".join(dict.fromkeys(p for a in attrs if key in a for p in str(a[key]).split(" / ")))
    if any("backbone_keys" in a for a in attrs):
        out["backbone_keys"] = sorted({k for a in attrs for k in a.get("backbone_keys", [])})
    out["notes"] = list(dict.fromkeys(n for a in attrs for n in a.get("notes", [])))
    out["deltas"] = [d for a in attrs for d in a.get("deltas", [])]
    numbers = [a["numbers"] for a in attrs if "numbers" in a]
    if numbers:
        out["numbers"] = pd.concat(numbers, ignore_index=True)
    return out


def write_table(df, path_stem: str | os.PathLike, title: str, notes: Sequence[str] = (), *,
                csv: pd.DataFrame | None = None) -> list[Path]:
    """Write ``<stem>.md`` (title, table, notes) and ``<stem>.csv``, each atomically. Returns both paths.

    ``df``: one display frame, or {heading: frame} for several tables under one title with one set of notes
    (e.g. one table per dataset, see :func:`metrics_table`). The CSV holds ``csv`` when given (e.g. the numbers
    in long format), else the displayed table (sections: stacked, with a ``table`` column).
    A frame from :func:`comparison_table` has its backbone and profile appended to ``title``, with the paper's
    backbone where it differs: "GLUE dev, MiniLM-L6 (paper: BERT-base), profile cpu".
    """
    stem = Path(path_stem)
    a = merged_attrs(df)
    heading = title
    if "backbone" in a:
        heading = table_title(title, a["backbone"], a.get("profile", MISSING), a.get("paper_backbone"),
                              a.get("backbone_keys"))
    all_notes = list(dict.fromkeys([*a.get("notes", []), *notes]))
    if isinstance(df, pd.DataFrame):
        md = f"# {heading}\n\n" + to_markdown(df)
    else:
        md = f"# {heading}\n\n" + "\n".join(f"## {h}\n\n" + to_markdown(f) for h, f in df.items())
    if all_notes:
        md += "\n" + "".join(f"- {n}\n" for n in all_notes)

    def flat(f: pd.DataFrame) -> pd.DataFrame:
        return f.reset_index() if any(n is not None for n in f.index.names) else f

    if csv is None:
        csv = flat(df) if isinstance(df, pd.DataFrame) else \
            pd.concat([flat(f).assign(table=h) for h, f in df.items()], ignore_index=True)
    buf = io.StringIO()
    csv.to_csv(buf, index=False, na_rep=MISSING, lineterminator="\n")
    return [write_text_atomic(stem.with_suffix(".md"), md), write_text_atomic(stem.with_suffix(".csv"), buf.getvalue())]
