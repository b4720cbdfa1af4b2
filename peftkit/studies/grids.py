"""Grids: a study's RunSpecs under a profile, their run directory names, the grid as a table (:func:`plan`) and
its training (:func:`run_specs`), and what sets a run set apart from the profile's default grid (:func:`variant_of`).

A study module (:mod:`peftkit.studies.glue_main`, ...) holds its ``DEFAULTS`` per profile, its ``PARAMETERS`` and
its ``points``; :func:`build` turns them into RunSpecs. Run directories are named from the spec (task, method label,
the options that vary, K, data seed, seed) plus a short hash of every other resolved setting (backbone, budget,
learning rate, ...): rerunning a notebook skips finished runs, and changing the budget never silently reuses a run
trained under another one.
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
from typing import Callable, Iterable, Mapping, Sequence

from ..executors import GridError, progress_bar
from ..experiment import RunSpec, method_label, resolve
from ..runchecks import canonical_options, settings_key
from .common import COMMON_PARAMETERS, METHODS, check_profile, check_study, runs_path
from .tasks import PAPER_TASKS, grid_tasks


# ---- run directory names ----------------------------------------------------------------------------------

_TAGS = {"bottleneck": "b", "num_modules": "m", "r": "r", "alpha": "a", "prefix_length": "pl", "share": "share-",
         "dropout": "drop"}
_IN_LABEL = ("base", "variant", "gates")  # method_label already says these


def _tag(key: str, value) -> str:
    text = f"{_TAGS.get(key, key + '-')}{value}"
    return re.sub(r"[^A-Za-z0-9.+-]", "", text.replace("_", "-"))


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
    kept = settings_key(dataclasses.asdict(resolve(spec)), canonical_options(spec.method, spec.options),
                        dataclasses.fields(RunSpec))
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return "_".join(parts + [digest])


# ---- grids -------------------------------------------------------------------------------------------------

#: study parameters that are one true / false (not lists): 06's adapter baseline and AdaMix-prefix rows
FLAGS = ("adapter_baseline", "prefix_rows")


def listify(value, name: str) -> tuple:
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise ValueError(f"invalid {name.upper()}={value!r}: give a list (or None for the profile's default)")


def method_spec(label: str) -> tuple[str, dict]:
    from ..reporting.names import method_key

    key = method_key(label)
    if key not in METHODS:
        raise ValueError(f"invalid method {label!r} in METHODS: allowed one of {', '.join(METHODS)}")
    method, options = METHODS[key]
    return method, dict(options)


def draws(p: dict) -> Iterable[dict]:
    """The training sets and seeds of one grid cell: every K with each data seed (the K-example draws of UniPELT's
    low-resource protocol) x model seed; K "full" (or None): the whole training set, one draw, each model seed."""
    for k in p["k"]:
        full = k in (None, "full")
        for ds, seed in itertools.product((None,) if full else p["data_seeds"], p["seeds"]):
            yield dict(k=None if full else int(k), data_seed=ds, seed=seed)


def k_points(p: dict) -> Iterable[dict]:
    """Every task x method x (K, data seed, seed) of :func:`draws` (GLUE main, low resource, UniPELT gates,
    efficiency)."""
    for task, label in itertools.product(p["tasks"], p["methods"]):
        for d in draws(p):
            yield dict(task=task, label=label, **d)


def profile_defaults(study: str, profile: str, table: Mapping[str, dict]) -> dict:
    """A study's grid defaults under a profile, from its DEFAULTS ``table`` (a copy; ``budget``: RunSpec fields)."""
    check_study(study)
    check_profile(profile)
    d = dict(table[profile])
    d["budget"] = d.get("budget", {})
    return d


def build(study: str, profile: str, table: Mapping[str, dict], allowed: Sequence[str],
          points: Callable[[dict], Iterable[dict]], *, model: str | None = None, seeds=None,
          max_steps: int | None = None, epochs: float | None = None, max_train: int | None = None,
          runs_dir: str | Path | None = None, follow_data: bool = True, **params) -> list[RunSpec]:
    """The RunSpecs of ``study`` under ``profile`` from the study module's defaults (``table``: DEFAULTS), its
    ``allowed`` parameters (PARAMETERS) and ``points`` (the grid's points: RunSpec fields plus a method ``label``);
    every argument left at None takes the profile's default.

    ``params``: the study's own parameters, e.g. ``tasks``, ``methods`` (method labels: "lora", "adamix-adapter",
    "unipelt-APL", ...), ``k``, ``data_seeds``, ``bottlenecks``.
    ``max_steps`` / ``epochs`` / ``max_train`` replace the profile's training budget. Nothing is trained.
    ``follow_data``: the tasks follow the data that can be loaded here (see
    :func:`peftkit.studies.tasks.missing_data`); False: the paper profile's full task lists whatever the data
    (for :mod:`peftkit.plan`).
    """
    d = profile_defaults(study, profile, table)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"study {study!r} takes no parameter {', '.join(u.upper() for u in unknown)}; "
                         f"allowed: {', '.join(a.upper() for a in COMMON_PARAMETERS + allowed)}")
    if max_steps is not None and epochs is not None:
        raise ValueError("give MAX_STEPS or EPOCHS, not both")
    p = {name: d.get(name) for name in allowed}
    p["seeds"] = listify(seeds, "seeds") or d["seeds"]
    for name, value in params.items():
        if value is not None:
            p[name] = value if name in FLAGS else listify(value, name)
    if "tasks" in p and study != "fewshot":
        given = listify(params.get("tasks"), "tasks")
        full = PAPER_TASKS.get(study) if profile == "paper" else None
        p["tasks"] = grid_tasks(study, profile, given, d.get("tasks")) if follow_data else given or full or d["tasks"]
    budget = dict(d["budget"])
    if max_steps is not None:
        budget.pop("epochs", None)
        budget.pop("epoch_fraction", None)
        budget["max_steps"] = int(max_steps)
    if epochs is not None:
        budget.pop("max_steps", None)
        budget.pop("epoch_fraction", None)
        budget["epochs"] = float(epochs)
    if max_train is not None:
        budget["max_train"] = int(max_train)
    if model is not None:
        budget["model"] = model
    root = runs_path(study, profile, runs_dir)
    specs, seen = [], set()
    for point in points(p):
        method, options = method_spec(point.pop("label"))
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


def variant_of(default: Sequence[RunSpec], results: Sequence[dict]) -> dict[str, str]:
    """What makes ``results`` differ from the runs of a profile's ``default`` grid: {} when they are exactly those
    runs (same run names, so same tasks, methods, seeds, budget and backbone), else {field: our values}, e.g.
    {"max_steps": "1"}; a difference the fields do not show reads {"runs": "..."}."""
    from ..reporting.names import backbone_key, method_key, task_key

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
    opts += [f"protocol {s.protocol}"] if s.protocol else []  # set by the grid, not the method's default
    return ", ".join(opts) or "–"


def plan(specs: Sequence[RunSpec]):
    """The grid as a table, for the notebooks to show: one row per run under its whole run id (the index, which a
    notebook never cuts short), ``done`` when its result exists; columns that no run sets (k, data_seed, ...) left
    out."""
    import pandas as pd

    from ..reporting.frame import training_length
    from ..results import has_result

    rows = [{"task": s.task.split(":", 1)[-1], "method": method_label(s.method, s.options), "settings": _settings(s),
             "head": r.head, "k": r.k, "data_seed": r.data_seed, "seed": s.seed,
             "budget": training_length(r.max_steps, r.epochs),
             "max_train": r.max_train, "done": has_result(s.out), "run": Path(s.out).name}
            for s, r in ((s, resolve(s)) for s in specs)]
    table = pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()
    return table.loc[:, table.notna().any()] if rows else table


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
    from ..cpucost import Eta, run_seconds
    from ..executors import ExecutorOptions, execute_grid
    from ..results import has_result

    resolved = {s.out: resolve(s) for s in specs}
    options = ExecutorOptions(executor, ray_address, gpus_per_run, cpus_per_run).resolved()
    todo = sum(force or not has_result(s.out) for s in specs)
    # the ETA: the cost model's estimate of each run to train (peftkit.cpucost), scaled as runs finish
    slots = max(1, int(os.cpu_count() // (options.cpus_per_run or 1))) if options.executor == "ray" else 1
    eta = Eta({s.out: run_seconds(resolved[s.out]) for s in specs if force or not has_result(s.out)}, slots=slots)
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
        if o["status"] in ("trained", "failed"):  # its estimate leaves the ETA
            eta.finished(o["out"], o["seconds"])
            what += eta.text()
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
