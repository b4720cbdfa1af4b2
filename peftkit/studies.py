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

import dataclasses
import hashlib
import itertools
import json
import os
import re
import time
from pathlib import Path
from typing import Iterable, Sequence

from .executors import GridError, progress_bar
from .experiment import RunSpec, method_label, resolve
from .study_tasks import PAPER_TASKS, grid_tasks, missing_data  # noqa: F401 (missing_data: part of the API)
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
    """The run store: ``runs/<profile>`` under the checkout, or ``runs_dir`` (relative paths: from the checkout).

    One store for every study: a run directory is named by :func:`run_name` (readable parts plus a hash of every
    other resolved setting), so a run that two notebooks ask for (06's adapter baseline and 01's Pfeiffer, 07's
    K-shot UniPELT and 02's) is trained once and read by both. ``study`` is validated, not used in the path."""
    _check_study(study)
    _check_profile(profile)
    return _under_root(runs_dir) if runs_dir is not None else project_root() / "runs" / profile


def reports_path(profile: str, reports_dir: str | Path | None = None) -> Path:
    """``reports/`` for the cpu profile (the committed reports), ``reports/<profile>/`` for smoke and paper, so a
    smoke or paper build never overwrites the committed cpu reports; or ``reports_dir`` (relative: from the
    checkout). Runs that differ from the profile's default grid are reported one level down, in
    ``variants/<what differed>/`` (see :func:`variant`)."""
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


def _points(study: str, p: dict) -> Iterable[dict]:
    """The grid's points: RunSpec fields (task, method, options, k, data_seed, seed, head, ...)."""
    if study in ("glue_main", "efficiency"):
        for task, label, seed in itertools.product(p["tasks"], p["methods"], p["seeds"]):
            yield dict(task=task, label=label, seed=seed)
    elif study in ("low_resource", "unipelt_gates"):
        for task, label, k in itertools.product(p["tasks"], p["methods"], p["k"]):
            full = k in (None, "full")
            for ds, seed in itertools.product((None,) if full else p["data_seeds"], p["seeds"]):
                yield dict(task=task, label=label, k=None if full else int(k), data_seed=ds, seed=seed)
    elif study == "fewshot":
        heads = [(m, "prompt") for m in p["methods"]] + [(m, "classifier") for m in p["classifier_head"] or ()]
        for task, (label, head), seed in itertools.product(p["tasks"], heads, p["seeds"]):
            yield dict(task=f"fewshot:{task.split(':', 1)[-1]}", label=label, head=head, data_seed=seed, seed=seed)
    elif study == "nlg":
        for task, label, seed in itertools.product(p["tasks"], p["methods"], p["seeds"]):
            options = {**NLG_OPTIONS.get(label, {}), **NLG_OPTIONS_BY_TASK.get(task.lower(), {}).get(label, {})}
            yield dict(task=task, label=label, seed=seed, options=options)
    elif study == "ablation_bottleneck":
        for task, label, b, seed in itertools.product(p["tasks"], p["methods"], p["bottlenecks"], p["seeds"]):
            yield dict(task=task, label=label, seed=seed, options={"bottleneck": int(b)})
    elif study == "ablation_adamix":
        variants = [dict(inference_modes=True)]  # the base: M=4, shared up-projection, default consistency
        variants += [dict(options={"num_modules": int(m)}) for m in p["num_modules"] if int(m) != 4]
        variants += [dict(options={"share": s}) for s in p["share"] if s != "up"]
        variants += [dict(consistency=float(c)) for c in p["consistency"] if c is not None]
        for task, v, seed in itertools.product(p["tasks"], variants, p["seeds"]):
            yield dict(task=task, label="adamix-adapter", seed=seed, **v)
        for task, e, seed in itertools.product(p["tasks"], p["lora_expert_init"] or (), p["seeds"]):
            yield dict(task=task, label="adamix-lora", seed=seed, options={"expert_init": e})
        if p["adapter_baseline"]:
            for task, seed in itertools.product(p["tasks"], p["seeds"]):
                yield dict(task=task, label="pfeiffer", seed=seed)


def grid(study: str, profile: str, *, model: str | None = None, seeds=None, max_steps: int | None = None,
         epochs: float | None = None, max_train: int | None = None, runs_dir: str | Path | None = None,
         follow_data: bool = True, **params) -> list[RunSpec]:
    """The RunSpecs of ``study`` under ``profile``; every argument left at None takes the profile's default.

    ``params``: the study's own parameters (see :data:`STUDY_PARAMETERS`), e.g. ``tasks``, ``methods`` (method
    labels: "lora", "adamix-adapter", "unipelt-APL", ...), ``k``, ``data_seeds``, ``bottlenecks``.
    ``max_steps`` / ``epochs`` / ``max_train`` replace the profile's training budget. Nothing is trained.
    ``follow_data``: the tasks follow the data that can be loaded here (see :func:`missing_data`); False: the paper
    profile's full task lists whatever the data (for :mod:`peftkit.plan`).
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
    if "tasks" in p and study != "fewshot":
        given = _listify(params.get("tasks"), "tasks")
        full = PAPER_TASKS.get(study) if profile == "paper" else None
        p["tasks"] = grid_tasks(study, profile, given, d.get("tasks")) if follow_data else given or full or d["tasks"]
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


_VARIANT_TRAINING = ("max_steps", "epochs", "max_train", "lr", "batch_size", "max_length", "eval_steps", "consistency")


def _field_sets(rows: Iterable[dict]) -> dict[str, set]:
    out: dict[str, set] = {}
    for row in rows:
        for k, v in row.items():
            out.setdefault(k, set()).add("none" if v is None else f"{v:g}" if isinstance(v, float) else str(v))
    return out


def variant(study: str, profile: str, results: Sequence[dict]) -> dict[str, str]:
    """What makes ``results`` differ from the runs of the profile's default grid: {} when they are exactly those
    runs (same run names, so same tasks, methods, seeds, budget and backbone), else {field: our values}, e.g.
    {"max_steps": "1"}; a difference the fields do not show reads {"runs": "..."}."""
    from .reporting.names import backbone_key, method_key, task_key

    default = grid(study, profile)
    want, have = {Path(s.out).name for s in default}, {r.get("run_id") for r in results}
    if want == have:
        return {}

    def spec_row(s: RunSpec) -> dict:
        r = resolve(s)
        return {"tasks": task_key(s.task), "methods": method_key(method_label(s.method, s.options)), "seeds": s.seed,
                "k": s.k, "data_seeds": r.data_seed, "model": backbone_key(r.model),
                **{f: getattr(r, f) for f in _VARIANT_TRAINING}}

    def result_row(x: dict) -> dict:
        t = x.get("training") or {}
        return {"tasks": task_key(x.get("task")), "methods": method_key(x.get("method_label") or x.get("method")),
                "seeds": (x.get("seeds") or {}).get("seed"), "k": x.get("k"), "data_seeds": x.get("data_seed"),
                "model": backbone_key(x.get("model")), **{f: t.get(f) for f in _VARIANT_TRAINING}}

    ours, base = _field_sets(map(result_row, results)), _field_sets(map(spec_row, default))
    diff = {k: ",".join(sorted(v)) for k, v in ours.items() if v != base.get(k)}
    return diff or {"runs": f"{len(have - want)} runs outside the default grid, {len(want - have)} of its runs "
                            "missing"}


def variant_text(diff: dict[str, str]) -> str:
    """{"max_steps": "1", "seeds": "42"} -> "max_steps=1, seeds=42"."""
    return ", ".join(f"{k}={v}" for k, v in diff.items())


def variant_folder(diff: dict[str, str]) -> str:
    """A folder name for a non-default run set, e.g. "max-steps-1_seeds-42" (long ones end in a short hash)."""
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "-", "_".join(f"{k}-{v}" for k, v in diff.items()).replace("_", "-"))
    slug = slug.replace("-" * 2, "-").strip("-")
    if len(slug) > 60:
        slug = slug[:50].rstrip("-") + "-" + hashlib.sha256(slug.encode()).hexdigest()[:8]
    return slug or "variant"


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


def run_specs(specs: Sequence[RunSpec], force: bool = False, verbose: bool = False, executor: str | None = None,
              ray_address: str | None = None, gpus_per_run: float | None = None,
              cpus_per_run: float | None = None) -> list[dict]:
    """Train every spec whose result is missing (all validated first) and return all results, in order.

    ``executor``: ``"local"`` (this process, one run after another) or ``"ray"`` (one Ray task per missing run;
    ``ray_address`` / ``$RAY_ADDRESS`` joins a cluster, else a local Ray instance starts; ``gpus_per_run`` may be
    fractional, e.g. 0.25 packs four runs on a GPU). ``None`` takes ``$PEFTKIT_EXECUTOR`` (and
    ``$PEFTKIT_GPUS_PER_RUN`` / ``$PEFTKIT_CPUS_PER_RUN``), which ``peftkit reproduce`` sets, else local.

    Prints one line per run as it ends (wall time and metrics, or the error and its log) with a bar for the grid;
    ``verbose`` (local executor): the trainer's own output instead of ``<run>/train.log``. Every run is claimed
    atomically before it trains, so two drivers (notebooks, machines) on one grid train each run once. A failed
    run never stops the others: after the grid, :class:`GridError` lists the failures. A killed run resumes from
    its last checkpoint when rerun (see :func:`peftkit.experiment.run`).
    """
    from .executors import ExecutorOptions, execute_grid
    from .results import has_result

    for s in specs:
        resolve(s)
    options = ExecutorOptions(executor, ray_address, gpus_per_run, cpus_per_run).resolved()
    todo = sum(force or not has_result(s.out) for s in specs)
    root = Path(specs[0].out).parent if specs else None
    print(f"[studies] {len(specs)} runs in {root}: {len(specs) - todo} done, {todo} to train "
          f"(executor {options.executor})", flush=True)
    t_all = time.time()

    def report(o: dict, done: int, total: int) -> None:
        name = Path(o["out"]).name
        if o["status"] == "failed":
            what = f"FAILED after {o['seconds']:.0f} s: {o['error']} (log: {o['log']})"
        elif o.get("elsewhere"):
            what = "finished by another driver"
        else:
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(o["result"]["best_metrics"].items()))
            what = f"done in {o['seconds']:.0f} s ({metrics})"
        line = f"{progress_bar(done, total)} {name}: {what}"
        print(f"[studies] {line}", flush=True)
        feed = os.environ.get("PEFTKIT_PROGRESS_FILE")
        if feed:  # peftkit reproduce prints these as they come (one JSON line per event, appended)
            event = {"run": name, "status": o["status"], "line": line, "error": o.get("error"), "log": o["log"]}
            with open(feed, "a", encoding="utf-8") as f:
                f.write(json.dumps(event) + "\n")

    outcomes = execute_grid(specs, options, force=force, verbose=verbose, report=report)
    failed = [o for o in outcomes if o["status"] == "failed"]
    print(f"[studies] {len(specs) - len(failed)}/{len(specs)} runs finished ({time.time() - t_all:.0f} s)",
          flush=True)
    if failed:
        for o in failed:
            print(f"[studies] FAILED {Path(o['out']).name}: {o['error']} (log: {o['log']})", flush=True)
        raise GridError(failed)
    return [o["result"] for o in outcomes]


def run_study(study: str, profile: str, force: bool = False, verbose: bool = False, executor: str | None = None,
              **params) -> list[dict]:
    """:func:`grid` then :func:`run_specs`: the study's results, training only what is missing."""
    return run_specs(grid(study, profile, **params), force=force, verbose=verbose, executor=executor)


from .studies_reports import Report, glue_main_report, low_resource_report, report  # noqa: E402
from .studies_reports2 import (ablation_adamix_report, ablation_bottleneck_report, efficiency_report,  # noqa: E402
                               fewshot_report, nlg_report, unipelt_gates_report)

__all__ = ["PROFILES", "NOTEBOOKS", "STUDIES", "DEFAULTS", "METHODS", "grid", "plan", "run_specs", "run_study",
           "GridError", "run_name", "runs_path", "reports_path", "variant", "project_root", "defaults", "command",
           "Report",
           "report",
           "glue_main_report", "low_resource_report", "fewshot_report", "nlg_report", "ablation_bottleneck_report",
           "ablation_adamix_report", "unipelt_gates_report", "efficiency_report"]
