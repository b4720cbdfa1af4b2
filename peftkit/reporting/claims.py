"""The papers' qualitative claims, checked on our seeds with paired Student-t intervals.

A verdict needs at least :data:`MIN_PAIRS` paired runs per task. Below that a claim is reported as "too few
runs", never "held": with four pairs or fewer even differences that all favour the claim are not significant at
5% by a one-sided sign test (1/16 at n = 4), and a t interval over 2-3 pairs rests on a spread estimated from
almost nothing.

Runs that learned nothing: a pair is untestable only where **both** of its sides collapsed
(:func:`peftkit.reporting.frame.collapse_reason`: one predicted label for every example, empty or constant
generations): two models stuck at the majority class are equal, which says nothing about the methods. Such pairs
are left out of the interval, and a task whose every pair is one reads "collapsed". A side that collapsed or sits at
chance (:mod:`peftkit.reporting.chance`) while the other learns is a result, not a missing one (UniPELT's own
K = 100 table prints prefix-tuning on CoLA at 0.00): it counts at the score it has, and the verdict names it
(``runs`` beside the verdict: "Prefix-tuning: 5 of 5 runs collapsed (constant predictions)").
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np
import pandas as pd

from .frame import run_status, select
from .names import LOWER_IS_BETTER, method_name, metric_name, task_key, task_name
from .stats import paired_differences, t_interval
from .tables import to_markdown

Selector = Union[str, dict]
PAIR_KEYS = ("task", "k", "data_seed", "seed", "model", "profile")
HELD, NOT_HELD, SPANS = "held", "not held", "inconclusive (CI spans 0)"
MIN_PAIRS = 5  # paired runs per task a verdict needs (see the module docstring)
TOO_FEW = "too few runs"
COLLAPSED = "collapsed"


def _where(selector: Selector, frame: pd.DataFrame) -> dict:
    where = {"method_label": selector} if isinstance(selector, str) else dict(selector)
    if "mode" in frame.columns and "mode" not in where:
        where["mode"] = "reported"
    return where


def selector_name(selector: Selector) -> str:
    """'AdaMix (adapter)' for "adamix-adapter"; 'AdaMix (adapter), merged' for {... "mode": "merged"}."""
    if isinstance(selector, str):
        return method_name(selector)
    parts = [method_name(selector["method_label"])] if "method_label" in selector else []
    parts += [f"{v}" if k == "mode" else f"{k}={v}" for k, v in selector.items() if k != "method_label"]
    return ", ".join(parts)


def _verdict(diffs: np.ndarray, lo: float, hi: float, at_least: bool) -> str:
    if diffs.size < MIN_PAIRS:
        return f"{TOO_FEW} ({diffs.size} pairs < {MIN_PAIRS})"
    if hi < 0:
        return NOT_HELD
    if lo > 0 or (at_least and lo >= 0):
        return HELD
    return SPANS


def _pairs(b: pd.DataFrame, w: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """:func:`paired_differences` of the scores, with ``dead``: both sides of the pair collapsed (every run under
    the pairing key, on each side)."""
    def flag(df):
        return df.assign(_dead=df["collapsed"].notna().astype(float) if "collapsed" in df else 0.0)

    pairs = paired_differences(b, w, keys)
    dead = paired_differences(flag(b), flag(w), keys, value="_dead")
    pairs["dead"] = (dead["a"] == 1.0) & (dead["b"] == 1.0)
    return pairs


def _side(name: str, rows: pd.DataFrame) -> str | None:
    """"Prefix-tuning: 5 of 5 runs collapsed (constant predictions), 0 at chance" when a side has runs that learned
    nothing, else None."""
    s = run_status(rows)
    parts = [f"{s['collapsed']} of {s['runs']} runs collapsed ({s['reasons']})"] if s["collapsed"] else []
    parts += [f"{s['at_chance']} of {s['runs']} at chance"] if s["at_chance"] else []
    return f"{name}: " + ", ".join(parts) if parts else None


def _check_task(frame, task, metric, better, worses, pair_on, at_least) -> dict:
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    ours = select(frame, task=task, metric=metric)
    b = select(ours, **_where(better, frame))
    candidates = [(w, select(ours, **_where(w, frame))) for w in worses]
    present = [(w, df) for w, df in candidates if len(df)]
    # "the best of several" (e.g. UniPELT's best single component): the candidate with the best mean
    worse, w = max(present, key=lambda p: sign * p[1]["value"].mean()) if present else (worses[0], candidates[0][1])
    pairs = _pairs(b, w, [c for c in pair_on if c in frame.columns])
    dead = int(pairs["dead"].sum())
    diffs = sign * pairs.loc[~pairs["dead"], "diff"].to_numpy(dtype=float)
    lo, hi = t_interval(diffs)
    verdict = _verdict(diffs, lo, hi, at_least)
    if dead and dead == len(pairs):
        verdict = f"{COLLAPSED} (all {dead} pairs: both sides {run_status(pd.concat([b, w]))['reasons']})"
    runs = [x for x in (_side(selector_name(better), b), _side(selector_name(worse), w)) if x]
    if dead and dead < len(pairs):
        runs.append(f"{dead} of {len(pairs)} pairs left out: both sides collapsed")
    return {"task": task, "metric": metric, "better": selector_name(better), "worse": selector_name(worse),
            "better_mean": float(b["value"].mean()) if len(b) else float("nan"),
            "worse_mean": float(w["value"].mean()) if len(w) else float("nan"),
            "n_better": int(len(b)), "n_worse": int(len(w)), "n_pairs": int(diffs.size), "n_dead_pairs": dead,
            "diff_mean": float(diffs.mean()) if diffs.size else float("nan"), "ci_lo": lo, "ci_hi": hi,
            "verdict": verdict, "runs": "; ".join(runs)}


def claim_check(frame: pd.DataFrame, better: Selector, worse: Selector | Sequence[Selector],
                metric: str | Callable[[str], str], tasks: Sequence[str], *, claim: str | None = None,
                at_least: bool = False, pair_on: Sequence[str] = PAIR_KEYS) -> dict:
    """Does ``better`` beat ``worse`` on each task, seed for seed?

    ``better``/``worse``: a method_label, or a dict of column filters (e.g. ``{"method_label": "adamix-adapter",
    "mode": "random"}`` on a ``runs_frame(..., include_modes=True)``); rows default to mode "reported". ``worse``
    may be a list: per task the one with the best mean is taken ("best single component"). ``metric``: a name or
    ``callable(task) -> name``. Runs are paired on ``pair_on`` (task, k, data seed, seed, model, profile); the
    paired difference (better − worse; sign flipped for lower-is-better metrics such as TER, so > 0 always means
    "better is better") gets a 95% Student-t CI. Per task ``verdict``: "held" (CI above 0; with ``at_least``,
    a "≥" claim, CI ≥ 0 suffices), "not held" (CI below 0), "inconclusive (CI spans 0)", or "too few runs"
    with fewer than :data:`MIN_PAIRS` pairs; "collapsed" only where every pair has both sides collapsed (pairs
    with both sides collapsed are left out, see the module docstring). ``runs`` names the runs of either side
    that collapsed or are at chance: they count at their scores. Several runs under one pairing key (e.g. two
    bottleneck sizes) are averaged first: select the runs the claim is about before calling (``select(frame,
    k=100)``, one bottleneck, ...).
    """
    worses = list(worse) if isinstance(worse, (list, tuple)) else [worse]
    if not worses:
        raise ValueError("worse needs at least one selector")
    metric_for = metric if callable(metric) else (lambda t: metric)
    rows = [_check_task(frame, task_key(t), metric_for(task_key(t)), better, worses, pair_on, at_least)
            for t in tasks]
    verdicts = [r["verdict"] for r in rows]
    counts = {v: sum(x == v for x in verdicts) for v in (HELD, NOT_HELD)}
    too_few = sum(x.startswith(TOO_FEW) for x in verdicts)
    collapsed = sum(x.startswith(COLLAPSED) for x in verdicts)
    other = len(verdicts) - counts[HELD] - counts[NOT_HELD] - too_few - collapsed
    if verdicts and collapsed == len(verdicts):
        overall = COLLAPSED
    elif verdicts and counts[HELD] == len(verdicts):
        overall = HELD
    elif verdicts and counts[NOT_HELD] == len(verdicts):
        overall = NOT_HELD
    elif verdicts and too_few == len(verdicts):
        overall = TOO_FEW
    else:
        overall = "mixed" if counts[HELD] or counts[NOT_HELD] else "inconclusive"
    relation = "≥" if at_least else ">"
    worse_name = (selector_name(worses[0]) if len(worses) == 1 else
                  "best of " + ", ".join(selector_name(w) for w in worses))
    return {"claim": claim or f"{selector_name(better)} {relation} {worse_name}", "better": selector_name(better),
            "worse": worse_name, "relation": relation, "tasks": rows, "verdict": overall,
            "summary": f"held on {counts[HELD]}/{len(rows)} tasks, not held on {counts[NOT_HELD]}, "
                       f"inconclusive on {other}, too few runs on {too_few}, collapsed on {collapsed}"}


def _num(x: float, d: int = 2, sign: bool = False) -> str:
    if x is None or np.isnan(x):
        return "–"
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def claims_markdown(checks: Sequence[dict]) -> str:
    """One section per claim: its overall verdict, then per task both means, the paired Δ with CI and verdict."""
    out = []
    for c in checks:
        rows = []
        for r in c["tasks"]:
            d = 3 if r["metric"] == "ter" else 2
            rows.append({"task": task_name(r["task"]), "metric": metric_name(r["metric"]),
                         "better": f"{r['better']}: {_num(r['better_mean'], d)} (n={r['n_better']})",
                         "worse": f"{r['worse']}: {_num(r['worse_mean'], d)} (n={r['n_worse']})",
                         "paired Δ [95% CI]": "– (not comparable)" if r["verdict"].startswith(COLLAPSED) else
                         f"{_num(r['diff_mean'], d, True)} [{_num(r['ci_lo'], d, True)}, {_num(r['ci_hi'], d, True)}]",
                         "pairs": r["n_pairs"], "verdict": r["verdict"],
                         "runs that learned nothing": r.get("runs") or "none"})
        table = to_markdown(pd.DataFrame(rows, columns=["task", "metric", "better", "worse", "paired Δ [95% CI]",
                                                        "pairs", "verdict", "runs that learned nothing"]))
        out.append(f"### {c['claim']}\n\nVerdict: **{c['verdict']}** ({c['summary']}).\n\n{table}")
    note = ("Paired Δ: better − worse over runs matched on task, K, data seed, seed, backbone and profile (sign "
            "flipped for TER, so Δ > 0 favours the claim); 95% Student-t CI of the mean difference over the n "
            f"pairs. A verdict needs at least {MIN_PAIRS} pairs per task; below that it reads \"{TOO_FEW}\" (with "
            "4 pairs or fewer, even differences that all favour the claim are not significant at 5% by a sign "
            f"test). \"{COLLAPSED}\": every pair has both sides predicting one label for every example (or "
            "generating empty or constant text): two models that learned nothing are equal, which says nothing "
            "about the methods, so there is no Δ; such pairs are left out wherever other pairs remain. A side that "
            "collapsed or is at chance while the other learns counts at its score (runs that learned nothing: "
            "named per side; at chance: not significantly above the majority class, see the tables' notes).\n")
    return "\n".join(out) + ("\n" + note if out else "")
