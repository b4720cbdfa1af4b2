"""The notebooks' studies as data: which runs each notebook trains under each profile, where they go, and the
report each notebook writes (see :mod:`peftkit.studies_reports`).

    specs = studies.grid("glue_main", "cpu", tasks=["rte"], seeds=[42])   # RunSpecs, nothing trained yet
    studies.plan(specs)                                                   # the grid as a table
    results = studies.run_specs(specs)                                    # trains what is missing
    report = studies.glue_main_report(results, "cpu", None)               # tables, figures, claims -> reports/

A notebook parameter left at ``None`` takes the profile's default from :data:`DEFAULTS` (one table, so the
notebooks, ``peftkit reproduce`` and the docs never disagree). Run directories are named from the spec (task,
method label, the options that vary, K, data seed, seed) plus a short hash of every other resolved setting
(backbone, budget, learning rate, ...): rerunning a notebook skips finished runs, and changing the budget never
silently reuses a run trained under another one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import itertools
import json
import re
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

from .experiment import RunSpec, method_label, resolve, run
from .studies_defaults import (COMMON_PARAMETERS, DEFAULTS, GLUE_NOT_RUN, GLUE_TASKS, METHODS,  # noqa: F401
                               NLG_NOT_RUN, NLG_OPTIONS, NLG_OPTIONS_BY_TASK, NOTEBOOKS, PROFILES, STUDIES,
                               STUDY_PARAMETERS)


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"invalid PROFILE={profile!r}: allowed one of {', '.join(PROFILES)}")


def _check_study(study: str) -> None:
    if study not in DEFAULTS:
        raise ValueError(f"unknown study {study!r}: allowed one of {', '.join(STUDIES)}")


def project_root() -> Path:
    """The checkout this package lives in (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() and (here / "peftkit").is_dir() else Path.cwd()


def _under_root(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def runs_path(study: str, profile: str, runs_dir: str | Path | None = None) -> Path:
    """``runs/<profile>/<study>`` under the checkout, or ``runs_dir`` (relative paths: from the checkout)."""
    _check_study(study)
    _check_profile(profile)
    return _under_root(runs_dir) if runs_dir is not None else project_root() / "runs" / profile / study


def reports_path(profile: str, reports_dir: str | Path | None = None) -> Path:
    """``reports/`` for the cpu profile (the committed reports), ``reports/<profile>/`` for smoke and paper, so a
    smoke or paper build never overwrites the committed cpu reports; or ``reports_dir`` (relative: from the
    checkout)."""
    _check_profile(profile)
    if reports_dir is not None:
        return _under_root(reports_dir)
    return project_root() / "reports" if profile == "cpu" else project_root() / "reports" / profile


def command(profile: str, notebook: str) -> str:
    """The command that rebuilds a notebook's artifacts (what the reports index prints)."""
    return f"peftkit reproduce --profile {profile} --only {notebook}"


def defaults(study: str, profile: str) -> dict:
    """The grid defaults of a study under a profile (a copy; ``budget``: RunSpec fields)."""
    _check_study(study)
    _check_profile(profile)
    d = dict(DEFAULTS[study][profile])
    d["budget"] = d.get("budget", {})
    return d


# ---- run directory names ----------------------------------------------------------------------------------

_TAGS = {"bottleneck": "b", "num_modules": "m", "r": "r", "alpha": "a", "prefix_length": "pl", "share": "share-",
         "dropout": "drop"}
_IN_LABEL = ("base", "variant", "gates")  # method_label already says these


def _tag(key: str, value) -> str:
    text = f"{_TAGS.get(key, key + '-')}{value}"
    return re.sub(r"[^A-Za-z0-9.+-]", "", text.replace("_", "-"))


def canonical_options(method: str, options: dict) -> dict:
    """``options`` without the values that equal the method's defaults: the same run has one spelling."""
    from .config import make_config

    full, default = make_config(method, **options).to_dict(), make_config(method).to_dict()
    return {k: v for k, v in options.items() if full.get(k) != default.get(k)}


def run_name(spec: RunSpec) -> str:
    """e.g. ``sst2_adamix-adapter_b16_k100_d111_s42_3fa2c1d0``: task, method label, the options that differ from
    the method's defaults, head (few-shot classification head), consistency (when set), K, data seed, seed, and a
    hash of every other resolved setting that differs from RunSpec's defaults (backbone, budget, lr, ...)."""
    parts = [re.sub(r"[^A-Za-z0-9.+-]", "", spec.task.split(":", 1)[-1].lower()),
             method_label(spec.method, spec.options)]
    parts += [_tag(k, v) for k, v in sorted(canonical_options(spec.method, spec.options).items())
              if k not in _IN_LABEL]
    if spec.head == "classifier" and spec.task.startswith("fewshot:"):
        parts.append("clshead")
    if spec.consistency is not None:
        parts.append(f"cons{spec.consistency:g}")
    if spec.k is not None:
        parts.append(f"k{spec.k}")
    if spec.data_seed is not None:
        parts.append(f"d{spec.data_seed}")
    parts.append(f"s{spec.seed}")
    resolved = dataclasses.asdict(resolve(spec))
    resolved["options"] = canonical_options(spec.method, spec.options)
    unset = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
             for f in dataclasses.fields(RunSpec) if f.default is not dataclasses.MISSING
             or f.default_factory is not dataclasses.MISSING}
    kept = {k: v for k, v in resolved.items() if k not in ("out", "data_dir") and (k not in unset or v != unset[k])}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return "_".join(parts + [digest])


# ---- grids -------------------------------------------------------------------------------------------------

def _listify(value, name: str) -> tuple:
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise ValueError(f"invalid {name.upper()}={value!r}: give a list (or None for the profile's default)")


def _method(label: str) -> tuple[str, dict]:
    from .reporting.names import method_key

    key = method_key(label)
    if key not in METHODS:
        raise ValueError(f"invalid method {label!r} in METHODS: allowed one of {', '.join(METHODS)}")
    method, options = METHODS[key]
    return method, dict(options)


def _glue(task: str) -> str:
    from .reporting.names import task_key

    key = task_key(task)
    if key in GLUE_NOT_RUN:
        raise ValueError(f"invalid task {task!r} in TASKS: {GLUE_NOT_RUN[key]}; allowed {', '.join(GLUE_TASKS)}")
    return task


def _points(study: str, p: dict) -> Iterable[dict]:
    """The grid's points: RunSpec fields (task, method, options, k, data_seed, seed, head, ...)."""
    if study in ("glue_main", "efficiency"):
        for task, label, seed in itertools.product(p["tasks"], p["methods"], p["seeds"]):
            yield dict(task=_glue(task), label=label, seed=seed)
    elif study in ("low_resource", "unipelt_gates"):
        for task, label, k in itertools.product(p["tasks"], p["methods"], p["k"]):
            full = k in (None, "full")
            for ds, seed in itertools.product((None,) if full else p["data_seeds"], p["seeds"]):
                yield dict(task=_glue(task), label=label, k=None if full else int(k), data_seed=ds, seed=seed)
    elif study == "fewshot":
        heads = [(m, "prompt") for m in p["methods"]] + [(m, "classifier") for m in p["classifier_head"] or ()]
        for task, (label, head), seed in itertools.product(p["tasks"], heads, p["seeds"]):
            yield dict(task=f"fewshot:{task.split(':', 1)[-1]}", label=label, head=head, data_seed=seed, seed=seed)
    elif study == "nlg":
        for task, label, seed in itertools.product(p["tasks"], p["methods"], p["seeds"]):
            if task.lower() in NLG_NOT_RUN:
                raise ValueError(f"invalid task {task!r} in TASKS: {NLG_NOT_RUN[task.lower()]}")
            options = {**NLG_OPTIONS.get(label, {}), **NLG_OPTIONS_BY_TASK.get(task.lower(), {}).get(label, {})}
            yield dict(task=task, label=label, seed=seed, options=options)
    elif study == "ablation_bottleneck":
        for task, label, b, seed in itertools.product(p["tasks"], p["methods"], p["bottlenecks"], p["seeds"]):
            yield dict(task=_glue(task), label=label, seed=seed, options={"bottleneck": int(b)})
    elif study == "ablation_adamix":
        variants = [dict(inference_modes=True)]  # the base: M=4, shared up-projection, default consistency
        variants += [dict(options={"num_modules": int(m)}) for m in p["num_modules"] if int(m) != 4]
        variants += [dict(options={"share": s}) for s in p["share"] if s != "up"]
        variants += [dict(consistency=float(c)) for c in p["consistency"] if c is not None]
        for task, v, seed in itertools.product(p["tasks"], variants, p["seeds"]):
            yield dict(task=_glue(task), label="adamix-adapter", seed=seed, **v)
        for task, e, seed in itertools.product(p["tasks"], p["lora_expert_init"] or (), p["seeds"]):
            yield dict(task=_glue(task), label="adamix-lora", seed=seed, options={"expert_init": e})
        if p["adapter_baseline"]:
            for task, seed in itertools.product(p["tasks"], p["seeds"]):
                yield dict(task=_glue(task), label="pfeiffer", seed=seed)


def grid(study: str, profile: str, *, model: str | None = None, seeds=None, max_steps: int | None = None,
         epochs: float | None = None, max_train: int | None = None, runs_dir: str | Path | None = None,
         **params) -> list[RunSpec]:
    """The RunSpecs of ``study`` under ``profile``; every argument left at None takes the profile's default.

    ``params``: the study's own parameters (see :data:`STUDY_PARAMETERS`), e.g. ``tasks``, ``methods`` (method
    labels: "lora", "adamix-adapter", "unipelt-APL", ...), ``k``, ``data_seeds``, ``bottlenecks``.
    ``max_steps`` / ``epochs`` / ``max_train`` replace the profile's training budget. Nothing is trained.
    """
    d = defaults(study, profile)
    allowed = STUDY_PARAMETERS[study]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"study {study!r} takes no parameter {', '.join(u.upper() for u in unknown)}; "
                         f"allowed: {', '.join(a.upper() for a in COMMON_PARAMETERS + allowed)}")
    if max_steps is not None and epochs is not None:
        raise ValueError("give MAX_STEPS or EPOCHS, not both")
    p = {name: d.get(name) for name in allowed}
    p["seeds"] = _listify(seeds, "seeds") or d["seeds"]
    for name, value in params.items():
        if value is not None:
            p[name] = value if name == "adapter_baseline" else _listify(value, name)
    budget = dict(d["budget"])
    if max_steps is not None:
        budget.pop("epochs", None)
        budget["max_steps"] = int(max_steps)
    if epochs is not None:
        budget.pop("max_steps", None)
        budget["epochs"] = float(epochs)
    if max_train is not None:
        budget["max_train"] = int(max_train)
    if model is not None:
        budget["model"] = model
    root = runs_path(study, profile, runs_dir)
    specs, seen = [], set()
    for point in _points(study, p):
        method, options = _method(point.pop("label"))
        options = canonical_options(method, {**options, **point.pop("options", {})})
        spec = RunSpec(task=point.pop("task"), method=method, options=options, profile=profile, out="pending",
                       **{**budget, **point})
        spec.out = str(root / run_name(spec))
        if spec.out not in seen:  # the same run asked twice (e.g. a variant equal to the base) trains once
            seen.add(spec.out)
            specs.append(spec)
    return specs


def _settings(s: RunSpec) -> str:
    opts = [f"{k}={v}" for k, v in s.options.items() if k not in _IN_LABEL]
    opts += [f"consistency={s.consistency:g}"] if s.consistency is not None else []
    opts += ["inference modes"] if s.inference_modes else []
    return ", ".join(opts) or "–"


def plan(specs: Sequence[RunSpec]):
    """The grid as a table (one row per run; ``done`` when its result exists), for the notebooks to show."""
    import pandas as pd

    from .reporting.frame import training_length
    from .results import has_result

    rows = [{"task": s.task.split(":", 1)[-1], "method": method_label(s.method, s.options), "settings": _settings(s),
             "head": r.head, "k": r.k, "data_seed": r.data_seed, "seed": s.seed,
             "budget": training_length(r.max_steps, r.epochs),
             "max_train": r.max_train, "done": has_result(s.out), "run": Path(s.out).name}
            for s, r in ((s, resolve(s)) for s in specs)]
    return pd.DataFrame(rows)


def _quiet(fn, *args, **kwargs):
    """``fn`` with its prints and progress bars captured; their last lines are shown if it fails."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            return fn(*args, **kwargs)
    except BaseException:
        print("\n".join(buf.getvalue().replace("\r", "\n").splitlines()[-30:]), file=sys.stderr)
        raise


def run_specs(specs: Sequence[RunSpec], force: bool = False, verbose: bool = False) -> list[dict]:
    """Train every spec whose result is missing (in order; all validated first) and return all results.

    Prints one line per run (start; end with wall time and metrics); ``verbose``: the trainer's own progress and
    logs too (otherwise captured, and shown only when a run fails). A killed run resumes from its last checkpoint
    when rerun (see :func:`peftkit.experiment.run`).
    """
    from .results import has_result

    for s in specs:
        resolve(s)
    todo = sum(not has_result(s.out) for s in specs)
    root = Path(specs[0].out).parent if specs else None
    print(f"[studies] {len(specs)} runs in {root}: {len(specs) - todo} done, {todo} to train", flush=True)
    results, t_all = [], time.time()
    for i, s in enumerate(specs, 1):
        done = has_result(s.out) and not force
        name = Path(s.out).name
        if not done:
            print(f"[studies] {i}/{len(specs)} {name}: training", flush=True)
        t0 = time.time()
        r = run(s, force=force, progress=verbose) if verbose else _quiet(run, s, force=force, progress=False)
        if not done:
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(r["best_metrics"].items()))
            print(f"[studies] {i}/{len(specs)} {name}: done in {time.time() - t0:.0f} s ({metrics})", flush=True)
        results.append(r)
    print(f"[studies] all {len(specs)} runs finished ({time.time() - t_all:.0f} s)", flush=True)
    return results


def run_study(study: str, profile: str, force: bool = False, verbose: bool = False, **params) -> list[dict]:
    """:func:`grid` then :func:`run_specs`: the study's results, training only what is missing."""
    return run_specs(grid(study, profile, **params), force=force, verbose=verbose)


from .studies_reports import Report, glue_main_report, low_resource_report, report  # noqa: E402
from .studies_reports2 import (ablation_adamix_report, ablation_bottleneck_report, efficiency_report,  # noqa: E402
                               fewshot_report, nlg_report, unipelt_gates_report)

__all__ = ["PROFILES", "NOTEBOOKS", "STUDIES", "DEFAULTS", "METHODS", "grid", "plan", "run_specs", "run_study",
           "run_name", "runs_path", "reports_path", "project_root", "defaults", "command", "Report", "report",
           "glue_main_report", "low_resource_report", "fewshot_report", "nlg_report", "ablation_bottleneck_report",
           "ablation_adamix_report", "unipelt_gates_report", "efficiency_report"]
