"""Result files -> one tidy data frame (one row per run and per reported metric)."""
from __future__ import annotations

import os
from typing import Iterable

import pandas as pd

from ..results import load_results
from .chance import at_chance, chance_score, result_eval_set
from .names import KNOWN_METRICS, backbone_key, backbone_name, method_key, scale_metric, task_key

COLUMNS = ["run_id", "task", "task_kind", "protocol", "k", "data_seed", "seed", "routing_seed", "method",
           "method_label", "model", "backbone", "head", "profile", "bottleneck", "r", "num_modules", "mode",
           "metric", "value", "trainable_params", "inference_params", "head_params", "total_params",
           "inference_pct", "train_time_s", "train_examples_per_s", "eval_examples_per_s", "wall_time_s",
           "best_step", "git_commit", "path", "budget", "train_rows", "schedule", "collapsed", "chance", "at_chance",
           "frozen_head", "stopped_epoch", "best_epoch"]
INT_COLUMNS = ("k", "data_seed", "seed", "routing_seed", "bottleneck", "r", "num_modules", "trainable_params",
               "inference_params", "head_params", "total_params", "best_step", "train_rows")
# A run is identified across methods by these (the pairing key of claim checks and relative timings).
RUN_KEYS = ["task", "task_kind", "protocol", "k", "data_seed", "seed", "model", "profile"]


def _int(value):
    return None if value is None else int(value)


def _base_parameters(method: str, params: dict) -> int | None:
    """Parameters of the backbone alone (no head, no added modules)."""
    total, head, trainable = params.get("total"), params.get("head") or 0, params.get("trainable") or 0
    if total is None:
        return None
    # full fine-tuning and BitFit train base parameters; the other methods add theirs to the model.
    return total - head if method in ("full", "bitfit") else total - head - trainable


def training_length(max_steps: int | None, epochs: float | None) -> str | None:
    """"80 steps" or "2 epochs" (what a RunSpec or a result's ``training`` says), None when neither is set."""
    if max_steps:
        return f"{max_steps} steps"
    return None if epochs is None else f"{epochs:g} epochs"


def schedule_text(r: dict) -> str | None:
    """How long a run trained, e.g. "2 epochs at batch 16" (None when the result does not say)."""
    t = r.get("training") or {}
    length = training_length(t.get("max_steps"), t.get("epochs"))
    return None if length is None else f"{length} at batch {t.get('batch_size')}"


def budget_text(r: dict) -> str | None:
    """The training budget of a run in words, e.g. "1,000 training examples, 2 epochs at batch 16"."""
    rows = ((r.get("data") or {}).get("train") or {}).get("rows")
    schedule = schedule_text(r)
    if rows is None or schedule is None:
        return None
    return f"{rows:,} training examples, {schedule}"


def budget_summary(frame: pd.DataFrame) -> str | None:
    """The budgets of a runs frame, once each and in order: runs that share a schedule are one phrase with their
    training-set sizes in increasing order ("100, 500 or 1,000 training examples, 5 epochs at batch 16"); None
    when no run says."""
    runs = frame.drop_duplicates("run_id") if "run_id" in frame else frame
    runs = runs.dropna(subset=["train_rows", "schedule"])
    if runs.empty:
        return None
    parts = []
    for schedule, g in sorted(runs.groupby("schedule"), key=lambda item: int(item[1]["train_rows"].min())):
        sizes = [f"{int(x):,}" for x in sorted(set(g["train_rows"]))]
        sizes_text = sizes[0] if len(sizes) == 1 else ", ".join(sizes[:-1]) + " or " + sizes[-1]
        parts.append(f"{sizes_text} training examples, {schedule}")
    return "; ".join(parts)


def collapse_reason(r: dict) -> str | None:
    """Why a run's scores are not comparable to a trained model's, or None: a classifier that predicts one label
    for every example (``best_metrics["predicted_classes"] == 1``), or a generator that ignores its input: every
    generation empty ("empty generations"), or, for two or more different sources, every non-empty generation the
    same text ("constant generations", e.g. "the city centre." or nothing, whatever the source). Generators are
    judged on all their generations (``result["generations"]``, :func:`peftkit.runner.generation_stats`), runs
    written before that field on their stored samples."""
    if (r.get("best_metrics") or {}).get("predicted_classes") == 1:
        return "constant predictions"
    g = r.get("generations")
    if g:
        empty, distinct, sources = g["empty"] == g["sources"] > 0, g["distinct_nonempty"], g["distinct_sources"]
    else:
        samples = r.get("samples") or []
        texts = {str(s.get("prediction", "")).strip() for s in samples}
        empty, distinct = bool(samples) and texts == {""}, len(texts - {""})
        sources = len({str(s.get("source", "")) for s in samples})
    if empty:
        return "empty generations"
    if distinct == 1 and sources > 1:
        return "constant generations"
    return None


def collapsed_runs(rows: pd.DataFrame) -> tuple[int, int, str | None]:
    """(collapsed, runs, reasons) of the runs behind ``rows`` of a runs frame (each run counted once, by
    ``run_id``): how many collapsed (the ``collapsed`` column, :func:`collapse_reason`), out of how many runs, and
    why ("constant predictions", ...; None when none did). Tables and figures flag a cell by this one rule."""
    runs = rows.drop_duplicates("run_id") if "run_id" in rows else rows
    reasons = runs["collapsed"].dropna() if "collapsed" in runs else pd.Series([], dtype=object)
    return int(len(reasons)), int(len(runs)), ", ".join(sorted(set(reasons))) or None


def run_status(rows: pd.DataFrame) -> dict:
    """How the runs behind ``rows`` of a runs frame fared, each run counted once (by ``run_id``) under one word:
    "collapsed" (:func:`collapse_reason`), else "at chance" (the ``at_chance`` column, see
    :mod:`peftkit.reporting.chance`), else "above chance" (judged and above), else unjudged. Returns runs,
    collapsed, at_chance, above and reasons (the collapse reasons, None when no run collapsed)."""
    if rows.empty:
        return {"runs": 0, "collapsed": 0, "at_chance": 0, "above": 0, "reasons": None}
    by_run, dead, chance = _run_flags(rows)
    judged = by_run["at_chance"].agg(lambda s: s.notna().any()) if "at_chance" in rows else None
    n = int(by_run.ngroups)
    c = int(dead.sum()) if dead is not None else 0
    a = int((chance & ~dead).sum()) if chance is not None and dead is not None else 0
    above = int((judged & ~chance & ~dead).sum()) if judged is not None and dead is not None else 0
    return {"runs": n, "collapsed": c, "at_chance": a, "above": above, "reasons": collapsed_runs(rows)[2]}


def status_text(status: dict) -> str:
    """A status cell: "collapsed 2/3 (constant predictions), at chance 1/3", "above chance 3/3", or "–" (no run,
    or none collapsed and none judged). Numbers of runs only: a cell's score is printed in its own column."""
    n = status["runs"]
    if not n:
        return "–"
    parts = []
    if status["collapsed"]:
        parts.append(f"collapsed {status['collapsed']}/{n}" + (f" ({status['reasons']})" if status["reasons"] else ""))
    if status["at_chance"]:
        parts.append(f"at chance {status['at_chance']}/{n}")
    if not parts and status["above"]:
        parts.append(f"above chance {status['above']}/{n}")
    return ", ".join(parts) or "–"


def frozen_head_flagged(rows: pd.DataFrame) -> dict[str, int]:
    """Of the runs behind ``rows`` that collapsed or sit at chance, how many trained with their new classifier
    frozen at its random initialisation (``training.train_head`` false: the authors' ``freeze_params`` for the
    LoRA-only, prefix-only and BitFit baselines, docs/fidelity.md U4), per method label."""
    if rows.empty or not {"frozen_head", "collapsed", "at_chance"} <= set(rows):
        return {}
    runs = _flagged_runs(rows, ["method_label", "frozen_head"])
    methods = runs.loc[runs["frozen_head"].astype(bool), "method_label"]
    return {str(m): int(n) for m, n in methods.value_counts(sort=False).items()}


def early_stopped_flagged(rows: pd.DataFrame) -> dict[str, dict]:
    """Of the runs behind ``rows`` that collapsed or sit at chance, not counted by :func:`frozen_head_flagged`,
    those the protocol's early stopping ended before their last epoch, per method label: how many, after which
    epochs they stopped and at which epochs their best (reported) evaluation was (``{"runs", "stopped", "best"}``,
    the last two (min, max), best None where no record names its best epoch)."""
    if rows.empty or not {"frozen_head", "stopped_epoch", "collapsed", "at_chance"} <= set(rows):
        return {}
    runs = _flagged_runs(rows, ["method_label", "frozen_head", "stopped_epoch", "best_epoch"])
    runs = runs[~runs["frozen_head"].astype(bool) & runs["stopped_epoch"].notna()]
    return {str(m): {"runs": len(g), "stopped": _min_max(g["stopped_epoch"]), "best": _min_max(g["best_epoch"])}
            for m, g in runs.groupby("method_label", sort=False)}


def _flagged_runs(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` (per-run fields: each run's first row) of the runs behind ``rows`` that collapsed or sit at
    chance, one row per run."""
    by_run, dead, chance = _run_flags(rows)
    runs = by_run[columns].first()
    return runs[dead | chance]


def _min_max(values: pd.Series) -> tuple[int, int] | None:
    """(smallest, largest) of the values present, as integers; None where none is."""
    return (int(values.min()), int(values.max())) if values.notna().any() else None


def _stopping(r: dict) -> tuple[float | None, float | None]:
    """(the epoch after which early stopping ended the run, the epoch of its best evaluation) for a run whose
    protocol has a patience and which stopped before its last epoch; (None, None) otherwise."""
    training, evals = r.get("training") or {}, r.get("evaluations")
    if not training.get("patience") or not training.get("epochs") or not isinstance(evals, list) or not evals:
        return None, None
    last = evals[-1].get("epoch")
    if last is None or last >= training["epochs"]:
        return None, None
    best = next((e.get("epoch") for e in evals if e.get("step") == r.get("best_step")), None)
    return float(last), (float(best) if best is not None else None)


def _run_flags(rows: pd.DataFrame):
    """The runs behind ``rows`` grouped by run (``run_id``), with per run whether it collapsed and whether it sits
    at chance (None where ``rows`` lacks the column): the one per-run reading of the status columns."""
    key = "run_id" if "run_id" in rows else rows.index
    by_run = rows.groupby(key, sort=False)
    dead = by_run["collapsed"].agg(lambda s: s.notna().any()) if "collapsed" in rows else None
    chance = by_run["at_chance"].agg(lambda s: s.eq(True).any()) if "at_chance" in rows else None
    return by_run, dead, chance


def flagged(status: dict) -> bool:
    """Whether some run behind a cell collapsed or is at chance (its cell gets no Δ against the paper)."""
    return bool(status["collapsed"] or status["at_chance"])


def _run_fields(r: dict) -> dict:
    cfg = r.get("method_config") or {}
    seeds = r.get("seeds") or {}
    params = r.get("parameters") or {}
    method = r.get("method")
    bottleneck = cfg.get("bottleneck") if method in ("pfeiffer", "houlsby", "unipelt") or (
        method == "adamix" and cfg.get("base") not in ("lora", "prefix", "prompt")) else None
    lora_based = method in ("lora", "unipelt") or (method == "adamix" and cfg.get("base") == "lora")
    r_dim = cfg.get("r") if lora_based else None
    base = _base_parameters(method, params)
    inference = params.get("inference")
    return {
        "run_id": r.get("run_id"), "task": task_key(r.get("task")), "task_kind": r.get("task_kind"),
        "protocol": r.get("protocol"), "k": _int(r.get("k")),
        "data_seed": _int(r.get("data_seed", seeds.get("data_seed"))), "seed": _int(seeds.get("seed")),
        "routing_seed": _int(seeds.get("routing_seed")), "method": method,
        "method_label": method_key(r.get("method_label") or method), "model": r.get("model"),
        "backbone": backbone_name(r.get("model")), "head": r.get("head"), "profile": r.get("profile"),
        "bottleneck": _int(bottleneck), "r": _int(r_dim),
        "num_modules": _int(cfg.get("num_modules")) if method == "adamix" else None,
        "trainable_params": _int(params.get("trainable")), "inference_params": _int(inference),
        "head_params": _int(params.get("head")), "total_params": _int(params.get("total")),
        "inference_pct": 100.0 * inference / base if inference is not None and base else None,
        "train_time_s": r.get("train_time_s"), "train_examples_per_s": r.get("train_examples_per_s"),
        "eval_examples_per_s": r.get("eval_examples_per_s"), "wall_time_s": r.get("wall_time_s"),
        "best_step": _int(r.get("best_step")), "git_commit": r.get("git_commit"), "path": r.get("path"),
        "budget": budget_text(r), "train_rows": _int(((r.get("data") or {}).get("train") or {}).get("rows")),
        "schedule": schedule_text(r), "collapsed": collapse_reason(r),
        "frozen_head": (r.get("training") or {}).get("train_head") is False and bool(r.get("new_head_weights")),
        **dict(zip(("stopped_epoch", "best_epoch"), _stopping(r))),
    }


def _metric_rows(fields: dict, metrics: dict | None, mode: str, evaluation: tuple) -> list[dict]:
    """One row per known metric of one evaluation (the reported one, or an AdaMix inference mode: judged by its
    own predicted classes where it records them), with its chance reference and whether it is at chance."""
    rows = []
    metrics = metrics or {}
    n, info = evaluation
    collapsed = fields["collapsed"]
    if mode != "reported" and "predicted_classes" in metrics:
        collapsed = "constant predictions" if metrics["predicted_classes"] == 1 else None
    for name, value in sorted(metrics.items()):
        if name not in KNOWN_METRICS or value is None:
            continue  # e.g. "epoch" that the evaluation loop also returns
        rows.append({**fields, "mode": mode, "metric": name, "value": scale_metric(name, value),
                     "collapsed": collapsed, "chance": chance_score(name, info),
                     "at_chance": at_chance(name, metrics, n, info)})
    return rows


def runs_frame(results: Iterable[dict] | str | os.PathLike, include_modes: bool = False) -> pd.DataFrame:
    """One row per run and per reported metric, in the papers' units.

    ``results``: result dicts (``peftkit.results.load_results``) or a folder to load them from.
    ``value``: percent (x100) for fraction metrics (accuracy, f1, matthews_correlation, pearson, spearmanr,
    bleu, meteor, rouge_l); raw for nist and cider; TER as a fraction (as the papers print it).
    ``mode`` is "reported" for ``best_metrics``; with ``include_modes`` AdaMix runs add one row per inference mode
    and metric (``mode`` = merged | random | fixed-K | ensemble) from ``inference_modes``.
    ``backbone`` is the display name of ``model`` (e.g. "MiniLM-L6"); ``inference_pct`` = inference-form
    parameters as a percentage of the backbone's own (the papers' "trainable %").
    """
    if isinstance(results, (str, os.PathLike)):
        results = load_results(results)
    rows = []
    for r in results:
        fields, evaluation = _run_fields(r), result_eval_set(r)
        rows += _metric_rows(fields, r.get("best_metrics"), "reported", evaluation)
        if include_modes:
            for mode, metrics in (r.get("inference_modes") or {}).items():
                rows += _metric_rows(fields, metrics, mode, evaluation)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in INT_COLUMNS:
        frame[col] = pd.array(frame[col].tolist(), dtype="Int64")
    frame["at_chance"] = frame["at_chance"].astype(object).where(frame["at_chance"].notna(), None)
    for col in ("value", "chance", "inference_pct", "train_time_s", "train_examples_per_s", "eval_examples_per_s",
                "wall_time_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def select(frame: pd.DataFrame, **where) -> pd.DataFrame:
    """Rows whose columns equal the given values (a list/tuple/set value means "one of"; None means missing)."""
    mask = pd.Series(True, index=frame.index)
    for col, want in where.items():
        if col not in frame.columns:
            raise KeyError(f"no column {col!r}; columns are {list(frame.columns)}")
        if col == "task":
            want = [task_key(w) for w in want] if isinstance(want, (list, tuple, set)) else task_key(want)
        if col == "method_label":
            want = [method_key(w) for w in want] if isinstance(want, (list, tuple, set)) else method_key(want)
        if want is None:
            mask &= frame[col].isna()
        elif isinstance(want, (list, tuple, set)):
            mask &= frame[col].isin(list(want))
        else:
            mask &= frame[col] == want
    return frame[mask.fillna(False).astype(bool)]


def context(frame: pd.DataFrame) -> dict:
    """The backbone(s) and profile(s) a selection of rows came from, for titles."""
    backbones = sorted({str(b) for b in frame["backbone"].dropna()})
    profiles = sorted({str(p) for p in frame["profile"].dropna()})
    keys = sorted({backbone_key(m) for m in frame["model"].dropna()})
    return {"backbone": " / ".join(backbones) or "no runs", "profile": " / ".join(profiles) or "–",
            "backbone_keys": keys}
