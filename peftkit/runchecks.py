"""Checks on a whole run, beyond each field's own value: a setting that cannot apply to the run asked for is an
error, not ignored (:func:`check_applies`), and a run directory that holds another run's result is not silently
taken for this one (:func:`check_same_run`). Both name the field and what would apply instead.

:func:`settings_key` is what identifies a run's settings (the study grids hash it into their run names).
"""
from __future__ import annotations

import dataclasses
import json
import os

#: RunSpec fields that never change what a run trains: where it is written and where its data is read from
NOT_SETTINGS = ("out", "data_dir")


def canonical_options(method: str, options: dict) -> dict:
    """``options`` without the values that equal the method's defaults: the same run has one spelling."""
    from .config import make_config

    full, default = make_config(method, **options).to_dict(), make_config(method).to_dict()
    return {k: v for k, v in options.items() if full.get(k) != default.get(k)}


def settings_key(spec: dict, options: dict, fields) -> dict:
    """A RunSpec (as a dict, ``dataclasses.asdict``) reduced to what sets its run apart: ``options`` in place of
    its own, without :data:`NOT_SETTINGS`, unknown fields, or fields at RunSpec's defaults (so a field added
    later with a default keeps the earlier runs' keys). ``fields``: RunSpec's (``dataclasses.fields``)."""
    unset = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
             for f in fields if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    known = {f.name for f in fields}
    spec = {**spec, "options": options}
    return {k: v for k, v in spec.items() if k in known and k not in NOT_SETTINGS and (k not in unset or v != unset[k])}


def check_same_run(out: str | os.PathLike, spec) -> None:
    """``out`` holds a result: it must be the result of ``spec`` (resolved), else ValueError naming what differs
    (a run that also evaluated AdaMix's inference modes serves one that does not ask for them)."""
    from .results import result_path

    try:
        done = json.loads(result_path(out).read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return  # unreadable or from before results recorded their spec: nothing to compare
    if not isinstance(done, dict) or not isinstance(done.get("options"), dict) or "method" not in done:
        return
    asked = json.loads(json.dumps(dataclasses.asdict(spec), default=str))
    if done.get("inference_modes") and not asked["inference_modes"]:
        asked["inference_modes"] = True
    try:
        there = settings_key(done, canonical_options(done["method"], done["options"]), dataclasses.fields(spec))
    except ValueError:  # options of a method this version no longer accepts: certainly another run
        there = {"method": done["method"], "options": done["options"]}
    here = settings_key(asked, canonical_options(asked["method"], asked["options"]), dataclasses.fields(spec))
    differs = sorted(k for k in set(there) | set(here) if there.get(k) != here.get(k))
    if differs:
        said = "; ".join(f"{k} {there.get(k, 'default')!r} there, {here.get(k, 'default')!r} here" for k in differs[:3])
        raise ValueError(f"invalid out={str(out)!r}: it holds the result of another run ({said}"
                         f"{'; ...' if len(differs) > 3 else ''}); give another out directory, or force (--force) "
                         "to replace that result")


def check_applies(spec, filled, kind: str) -> None:
    """Fields given for ``spec`` (as asked) that cannot apply to the run ``filled`` (resolved) would be ignored:
    each is a ValueError. One is settled instead: a given ``warmup_ratio`` replaces the protocol's
    ``warmup_steps`` (which would otherwise override it), so the flag applies as asked."""
    adamix = filled.method == "adamix"
    checks = [
        (spec.data_seed is not None and filled.k is None, "data_seed", spec.data_seed,
         "it draws the low-resource sample (k) or the few-shot split, and this run trains on the full training "
         "set; give k as well, or leave data_seed out"),
        (spec.inference_modes and not (adamix and kind != "nlg"), "inference_modes", spec.inference_modes,
         f"AdaMix's random / fixed / ensemble routing is evaluated on classification runs only (this is "
         f"{filled.method} on a {kind} task)"),
        (spec.nlg_format is not None and kind != "nlg", "nlg_format", spec.nlg_format,
         f"it formats NLG inputs, and {spec.task} is a {kind} task"),
        (spec.extra_eos is not None and kind != "nlg", "extra_eos", spec.extra_eos,
         f"it ends NLG beams, and {spec.task} is a {kind} task"),
        (spec.consistency_ce != "first" and not (adamix and filled.consistency > 0), "consistency_ce",
         spec.consistency_ce, "it picks the task loss of AdaMix's consistency loss, which this run does not compute "
         f"(method {filled.method}, consistency={filled.consistency:g})"),
        (spec.evaluate_model == "best" and filled.eval_steps == 0, "evaluate_model", spec.evaluate_model,
         "eval_steps=0 evaluates nothing during training, so there is no best evaluation; give eval_steps, or "
         "evaluate_model='final'"),
        (spec.patience is not None and filled.eval_steps == 0, "patience", spec.patience,
         "patience counts evaluations during training, and eval_steps=0 makes none; give eval_steps, or leave "
         "patience out"),
    ]
    if spec.label_smoothing and kind == "glue":
        from .data import glue_task

        checks.append((glue_task(spec.task).label_names is None, "label_smoothing", spec.label_smoothing,
                       f"{spec.task} is a regression task (one score, no labels to smooth); leave it out"))
    for bad, field, value, why in checks:
        if bad:
            raise ValueError(f"invalid {field}={value!r}: {why}")
    if spec.warmup_ratio is not None and spec.warmup_steps is None:
        filled.warmup_steps = None

