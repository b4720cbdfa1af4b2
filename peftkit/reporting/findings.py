"""Closing findings: what a notebook found, in a few generated sentences (Markdown), from the same runs, tables
and claim checks its report shows, so that they are true after every rebuild. Each notebook ends with one
(:meth:`peftkit.studies.Report.finding`, :func:`tour_finding` for the tour), and ``reports/README.md``'s "What was
found" is built from the same texts (:func:`peftkit.reporting.index.register_finding`, kind "notebook").

A finding has four parts: **Runs** (how many, on what, at which budget, and how many collapsed, are at chance or
score above it: :func:`peftkit.reporting.frame.run_status`), **Numbers** (per table: the best and lowest cell per
task, and the Δ against the paper: range, median, and how many cells have none; then the sentences a study adds,
e.g. :func:`gate_sentences`), **Claims** (each verdict with its
paired interval per task and the runs that learned nothing) and **Scale** (what the backbone and budget mean for
reading the numbers).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from .frame import (budget_summary, context, early_stopped_flagged, flagged, frozen_head_flagged, run_status,
                    runs_frame, status_text)
from .gates import GATE_COMPONENTS, gate_matrix
from .names import (LOWER_IS_BETTER, backbone_key, backbone_name, decimals, method_name, method_order, metric_name,
                    task_name)

def _num(x: float, d: int = 2, sign: bool = False) -> str:
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _cells(n: int) -> str:
    return _plural(n, "cell")


def _listing(items: Sequence[str], limit: int = 6) -> str:
    items = list(items)
    return ", ".join(items) if len(items) <= limit else ", ".join(items[:limit]) + f" and {len(items) - limit} more"


def runs_sentence(frame: pd.DataFrame, profile: str) -> str:
    """How many runs, of which methods on which tasks, backbone, profile and budget, and how they fared."""
    reported = frame[frame["mode"] == "reported"] if "mode" in frame else frame
    s = run_status(reported)
    if not s["runs"]:
        return "**Runs.** None: nothing to report."
    ctx = context(reported)
    tasks = [task_name(t) for t in dict.fromkeys(reported["task"])]
    methods = [method_name(m) for m in method_order(reported["method_label"].dropna().unique())]
    budget = budget_summary(reported)
    ks = sorted({int(k) for k in reported["k"].dropna()})
    text = (f"**Runs.** {_plural(s['runs'], 'run')} of {_listing(methods)} on {', '.join(tasks)}"
            + (f" (K = {', '.join(f'{k:,}' for k in ks)} training examples per data seed)" if ks else "")
            + f", {ctx['backbone']}, profile {profile}" + (f"; budget: {budget}" if budget else "") + ". ")
    unjudged = s["runs"] - s["collapsed"] - s["at_chance"] - s["above"]
    if flagged(s):
        parts = [f"{s['collapsed']} collapsed" + (f" ({s['reasons']})" if s["reasons"] else ""),
                 f"{s['at_chance']} {'is' if s['at_chance'] == 1 else 'are'} at chance (not significantly above "
                 "the majority class)", f"{s['above']} score{'s' if s['above'] == 1 else ''} above chance"]
        text += "Of them " + ", ".join(parts[:-1]) + " and " + parts[-1]
        frozen = frozen_head_flagged(reported)
        if frozen:
            who = _listing([f"{method_name(m)} {n}" for m, n in frozen.items()])
            text += (f"; of those that collapsed or sit at chance, {sum(frozen.values())} ({who}) trained with the new "
                     "classifier frozen at its random initialisation, as the authors' code ran LoRA-only, "
                     "prefix-only and BitFit (docs/fidelity.md U4; `train_head=True` trains it)")
        stopped = early_stopped_flagged(reported)
        if stopped:
            who = _listing([f"{method_name(m)} {x['runs']}" for m, x in stopped.items()])
            stops = [e for x in stopped.values() for e in x["stopped"]]
            bests = [e for x in stopped.values() if x["best"] for e in x["best"]]
            n = sum(x["runs"] for x in stopped.values())
            text += (f"; {n} {'others' if n > 1 else 'other'} ({who}) " if frozen else
                     f"; of those that collapsed or sit at chance, {n} ({who}) ")
            text += (f"{'were' if n > 1 else 'was'} ended by the protocol's early stopping after epoch {_span(stops)}"
                     + (f", their selection score never improving after epoch {_span(bests)}" if bests else ""))
    else:
        text += "None collapsed or sits at chance" + (f": {s['above']} of {s['runs']} score above chance"
                                                       if s["above"] else "")
    if unjudged:
        text += f"; {unjudged} not judged against chance (no chance level for their metric or evaluation set)"
    return text + "."


def _span(values: list[int]) -> str:
    """'11' or '11-16'."""
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _cells_sentence(title: str, cells: pd.DataFrame) -> str | None:
    """One table's headline numbers: per task its first metric's best and lowest cell, then the Δ range of those
    cells (a table over several metrics, e.g. NLG's, is summarised by its first: a Δ range never mixes units)."""
    first = cells.groupby("task", sort=False)["metric"].transform("first")
    cells = cells[(cells["metric"] == first) & (cells["n"] > 0)]
    if cells.empty:
        return None
    parts = []
    for task, g in cells.groupby("task", sort=False):
        metric = g["metric"].iloc[0]
        d, low_better = decimals(metric), metric in LOWER_IS_BETTER
        order = g.sort_values("mean", ascending=low_better)
        best, worst = order.iloc[0], order.iloc[-1]

        def cell(x) -> str:
            spread = f" ± {_num(x['std'], d)}" if x["n"] > 1 and x["std"] == x["std"] else ""
            return f"{x['row']} {_num(x['mean'], d)}{spread} (n={int(x['n'])})" + (
                f", {x['status']}" if x.get("flagged") else "")

        text = f"{task_name(task)} {metric_name(metric)}: best {cell(best)}"
        parts.append(text + (f", lowest {cell(worst)}" if len(g) > 1 else ""))
    out = f"*{title}*: " + "; ".join(parts) + "."
    if "delta" in cells and cells["paper"].notna().any():
        with_paper = cells[cells["paper"].notna()]
        deltas = with_paper.dropna(subset=["delta"]).sort_values("delta")
        none = int(with_paper["flagged"].sum())
        if len(deltas):
            lo, hi = deltas.iloc[0], deltas.iloc[-1]
            out += (f" Δ against the paper from {_num(lo['delta'], 2, True)} ({lo['row']}, {task_name(lo['task'])}) "
                    f"to {_num(hi['delta'], 2, True)} ({hi['row']}, {task_name(hi['task'])}), median "
                    f"{_num(float(deltas['delta'].median()), 2, True)} over {_cells(len(deltas))}")
            out += f"; {_cells(none)} without Δ (runs collapsed or at chance)." if none else "."
        elif none:
            out += (f" No Δ against the paper: in all {_cells(none)} with a paper number runs collapsed or are at "
                    "chance.")
    return out


def table_cells(df) -> pd.DataFrame | None:
    """The long-format cells a display table carries (``attrs["cells"]``, sections merged), or None."""
    frames = [df] if isinstance(df, pd.DataFrame) else list(df.values())
    rows = [c for f in frames for c in f.attrs.get("cells", [])]
    return pd.DataFrame(rows) if rows else None


def numbers_sentences(tables: Mapping[str, object], titles: Mapping[str, str]) -> list[str]:
    out = []
    for name, df in tables.items():
        cells = table_cells(df)
        line = _cells_sentence(titles.get(name, name), cells) if cells is not None else None
        if line:
            out.append(line)
    return out


def gate_sentences(results: Sequence[dict]) -> list[str]:
    """UniPELT's gates per task, K (and variant): the runs' score and status, the components with the smallest and
    the largest mean gate (over layers, the reported set and runs)."""
    g = gate_matrix(results)
    if g.empty:
        return []
    frame = runs_frame([r for r in results if r.get("gates")])
    frame = frame[frame["mode"] == "reported"]
    g["k"] = g["k"].astype(object).where(g["k"].notna(), None)
    several = g["method_label"].nunique() > 1
    out = []
    groups = g.groupby(["task", "k", "method_label"], dropna=False, sort=False)
    for (task, k, label), d in sorted(groups, key=lambda item: (list(dict.fromkeys(g["task"])).index(item[0][0]),
                                                                 10**9 if item[0][1] is None else int(item[0][1]))):
        runs = frame[(frame["task"] == task) & (frame["method_label"] == label)]
        runs = runs[runs["k"].isna()] if k is None else runs[runs["k"] == int(k)]
        means = d.groupby("component")["gate"].mean().sort_values()
        name = f"{task_name(task)}, K = {'full' if k is None else f'{int(k):,}'}" + (
            f", {method_name(label)}" if several else "")
        score = ""
        if len(runs):
            metric = runs["metric"].iloc[0]
            status = run_status(runs[runs["metric"] == metric])
            judged = status_text(status)
            score = (f"{metric_name(metric)} {_num(runs.loc[runs['metric'] == metric, 'value'].mean(), 2)} over "
                     f"{_plural(status['runs'], 'run')}" + ("" if judged == "–" else f", {judged}") + "; ")
        lo, hi = means.index[0], means.index[-1]
        out.append(f"{name}: {score}mean gates from {GATE_COMPONENTS[lo].replace(chr(10), ' ')} "
                   f"{means[lo]:.3f} to {GATE_COMPONENTS[hi].replace(chr(10), ' ')} {means[hi]:.3f}.")
    return ["*UniPELT gates*: " + " ".join(out)] if out else []


def claim_sentence(check: dict) -> str:
    """A claim's verdict, then per task its paired Δ with the 95% CI, the pairs and the runs that learned nothing."""
    parts = []
    for r in check["tasks"]:
        d = decimals(r["metric"])
        if r["n_pairs"] and r["diff_mean"] == r["diff_mean"]:
            ci = (f" [{_num(r['ci_lo'], d, True)}, {_num(r['ci_hi'], d, True)}]" if r["ci_lo"] == r["ci_lo"]
                  else "")
            text = f"{task_name(r['task'])}: Δ {_num(r['diff_mean'], d, True)}{ci} over {_plural(r['n_pairs'], 'pair')}"
        else:
            text = f"{task_name(r['task'])}: no pairs to compare"
        text += f", {r['verdict']}" if len(check["tasks"]) > 1 else ""
        parts.append(text + (f" — runs that learned nothing: {r['runs']}" if r.get("runs") else ""))
    return f"{check['claim']}: **{check['verdict']}**; " + "; ".join(parts) + "."


def scale_sentence(frame: pd.DataFrame, paper_backbone: str | None, has_paper: bool, has_claims: bool) -> str:
    """What the backbone and the budget mean for reading the numbers."""
    reported = frame[frame["mode"] == "reported"] if "mode" in frame else frame
    ctx = context(reported)
    same = paper_backbone is None or ctx["backbone_keys"] == [backbone_key(paper_backbone)]
    text = f"**Scale.** {ctx['backbone']}" + ("" if same else f" where the paper used {backbone_name(paper_backbone)}")
    text += ", at the budget above. " if budget_summary(reported) else ". "
    said = []
    if has_paper:
        said.append("a Δ against the paper mixes the method with that difference in scale" if not same else
                    "a Δ against the paper compares our runs with the paper's at that budget")
    if has_claims:
        said.append("the claims compare our own methods under one budget, seed for seed")
    text += (said[0][0].upper() + "; ".join(said)[1:] + ".") if said else "Every number here is from our own runs."
    if flagged(run_status(reported)):
        text += (" A run that collapsed or sits at chance learned nothing at this budget"
                 + (": its cell carries no Δ" if has_paper else "")
                 + (", and a claim counts it at its score" if has_claims else "") + ".")
    return text


def closing_finding(results: Sequence[dict], *, profile: str, tables: Mapping[str, object] | None = None,
                    titles: Mapping[str, str] | None = None, claims: Sequence[dict] = (),
                    headlines: Sequence[str] = (), paper_backbone: str | None = None) -> str:
    """The Markdown a notebook ends with: runs, headline numbers (each table's, then ``headlines``), claims, scale."""
    frame = runs_frame(list(results))
    tables, titles = dict(tables or {}), dict(titles or {})
    numbers = numbers_sentences(tables, titles) + list(headlines)
    lines = [runs_sentence(frame, profile)]
    if numbers:
        lines.append("**Numbers.** " + " ".join(numbers))
    if claims:
        lines.append("**Claims.** " + " ".join(claim_sentence(c) for c in claims))
    has_paper = any(c is not None and "paper" in c and c["paper"].notna().any()
                    for c in (table_cells(t) for t in tables.values()))
    lines.append(scale_sentence(frame, paper_backbone, has_paper, bool(claims)))
    return "\n\n".join(lines)


def show_markdown(text: str) -> None:
    """Markdown in a notebook (IPython's display), the text itself elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython ships with the notebooks' environment
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


def tour_finding(record: dict) -> str:
    """The tour's closing finding, from its record (:func:`peftkit.tour.record`)."""
    r, m, g, e = record["routing"], record["merge"], record["gates"], record["export"]
    steps = record.get("consistency") or []
    kls = [s["kl"] for s in steps]
    modes = record["inference_modes"]
    spread = max(max(v) - min(v) for v in zip(*modes.values())) if modes else float("nan")
    drew = "the same" if r["same_routes"] else "different"
    lines = [
        f"**Routing.** Two training-mode forwards of the same batch drew {drew} modules; their logits differ by "
        f"up to {r['max_abs_diff']:.3g}, and replaying the first pass's routing reproduces it to "
        f"{r['replay_max_abs_diff']:.3g}: routing is the only source of the difference.",
        f"**Consistency.** {len(steps)} steps of task loss + symmetric KL; the KL term went from {kls[0]:.3g} to "
        f"{kls[-1]:.3g}." if kls else "**Consistency.** No steps taken.",
        f"**Merge.** Merged twice: {'identical' if m['deterministic'] else 'different'} logits; against the "
        f"averaged-weights formula at most {m['max_abs_diff_vs_formula']:.3g} apart. The merged model carries "
        f"{m['inference']:,} of the {m['trainable']:,} trainable method parameters. Across the inference modes "
        f"P(label 1) of an example moves by up to {spread:.3g}.",
        f"**Gates.** {len(g['values'])} untrained UniPELT gate values ({g['shape'][0]} layers x {g['shape'][1]} "
        f"components x {g['shape'][2]} pairs) lie between {min(g['values']):.3f} and {max(g['values']):.3f}.",
        f"**Export.** LoRA exported to peft {e['peft_version']} and reloaded as {e['peft_class']}: logits "
        f"{e['max_abs_diff']:.3g} apart.",
        *([_prefix_line(record["adamix_prefix"])] if record.get("adamix_prefix") else []),
        "**Scale.** A few steps on a handful of sentences, to show the mechanics: no number here measures how "
        "well a method learns (the study notebooks do).",
    ]
    return "\n\n".join(lines)


def _prefix_line(p: dict) -> str:
    """The tour's AdaMix-prefix cell in one sentence (:func:`peftkit.tour.adamix_prefix`)."""
    return (f"**AdaMix over prefix** (peftkit's extension). In one training forward its {len(p['drawn'])} layers "
            f"drew {p['distinct_modules']} distinct modules, each layer its own. Merged (merge={p['merge']}) it keeps "
            f"{p['inference']:,} of its {p['trainable']:,} trained parameters, as many as one prefix of the same "
            f"length ({p['one_prefix']:,}); its key/values are {p['max_abs_diff_vs_formula']:.3g} from the mean of the "
            f"modules' key/values, and two merged forwards give {'identical' if p['deterministic'] else 'different'} "
            "logits.")
