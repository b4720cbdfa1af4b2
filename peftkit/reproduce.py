"""``peftkit reproduce``: execute the notebooks headlessly with papermill and rebuild every report.

    peftkit reproduce [--profile cpu|smoke|paper] [--only NAME[,NAME]] [--reports-dir DIR] [--runs-dir DIR]
                      [-p NAME=VALUE ...] [--executor local|ray] [--ray-address ADDR] [--gpus-per-run F]
                      [--cpus-per-run N]

Each notebook in ``notebooks/`` runs with ``PROFILE`` (and ``REPORTS_DIR`` / ``RUNS_DIR`` / ``-p`` values)
injected; the executed copy goes to ``<reports>/executed/<profile>/<name>.ipynb`` and ``.html`` (``<reports>`` is
``--reports-dir``, else ``reports/``), never into ``notebooks/``. Finished runs are skipped (their result files
exist), so a rerun only trains what is missing. A failing notebook does not stop the others; at the end each
failure is listed with its cell, and the exit status is 1. A notebook executes into a copy beside its executed
copy, which replaces the old one only when it succeeds; a failed or interrupted notebook leaves every report as it
was (the tables, figures and index it wrote are put back, see :mod:`peftkit.guard`) and its executed copy goes to
``<reports>/executed/<profile>/failed/``, which the failure's line names. Bad arguments exit with status 2 before
anything is written, started or connected to: a flag that cannot apply (a Ray setting with the local executor, a
``-p`` for a parameter a flag sets) is one of them, and so are a Ray address where nothing answers and a
``--gpus-per-run`` / ``--cpus-per-run`` no node offers (see :mod:`peftkit.capacity`).

``--executor ray`` trains each notebook's missing runs as Ray tasks (see :mod:`peftkit.executors`): on the cluster
at ``--ray-address`` / ``$RAY_ADDRESS``, else on one local Ray instance started here for all the notebooks, with
``--gpus-per-run`` (fractional packs several runs on one GPU) and ``--cpus-per-run`` per task. Every run that ends
prints one line (wall time, a bar for its grid); the failed runs are listed at the end with their error and log.
"""
from __future__ import annotations

import argparse
import ast
import calendar
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .guard import TreeGuard
from .render import write_html
from .results import RETRAIN_BEFORE, TIME_FORMAT
from .runfeed import grid_settings
from .studies import NOTEBOOKS, PROFILES, command, project_root, reports_path
from .validate import check_out_dir

#: where a failed or interrupted notebook's executed copy goes (under ``<reports>/executed/<profile>/``)
FAILED = "failed"


@dataclass
class Outcome:
    name: str
    ok: bool
    seconds: float
    executed: Path
    cpu_seconds: float | None = None  # CPU time of the notebook's kernel (user + system): wall time on idle cores
    html: Path | None = None
    cell: int | None = None  # index of the failing cell in the executed notebook (papermill's, parameters included)
    source: str = ""  # its first source line
    error: str = ""  # "ExceptionName: message"
    failed_runs: list = field(default_factory=list)  # "run: error (log: path)" of each of its runs that failed


def notebooks(notebooks_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """{name: path} of the notebooks (``notebooks/*.ipynb``, sorted)."""
    folder = Path(notebooks_dir) if notebooks_dir else project_root() / "notebooks"
    return {p.stem: p for p in sorted(folder.glob("*.ipynb"))}


def select_notebooks(available: dict[str, Path], only: str | Sequence[str] | None) -> list[str]:
    if not only:
        return list(available)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    by_study = {study: nb for nb, study in NOTEBOOKS.items()}
    picked, bad = [], []
    for n in names:
        n = n[:-6] if n.endswith(".ipynb") else n
        n = by_study.get(n, n)  # a study name ("glue_main") names its notebook
        (picked if n in available else bad).append(n)
    if bad:
        raise ValueError(f"invalid --only {', '.join(bad)}: allowed {', '.join(available)} (comma-separated)")
    return list(dict.fromkeys(picked))


def _parse_param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ValueError(f"invalid -p {text!r}: expected NAME=VALUE, e.g. -p SEEDS=[42]")
    name, value = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise ValueError(f"invalid -p {text!r}: {name!r} is not a parameter name; expected NAME=VALUE with an "
                         "UPPER_CASE name from the notebook's parameters cell, e.g. -p SEEDS=[42]")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


#: notebook parameters that have their own flag: a -p for one of them may only repeat the flag's value
FLAG_PARAMETERS = {"PROFILE": "--profile", "REPORTS_DIR": "--reports-dir", "RUNS_DIR": "--runs-dir"}


def flag_parameters(parameters: dict, profile: str, reports_dir: str | None, runs_dir: str | None) -> dict:
    """``parameters`` without the ones a flag sets; a -p that contradicts its flag (``-p PROFILE='paper'`` with
    ``--profile cpu``, ``-p RUNS_DIR=...`` without ``--runs-dir``) is an error: one of the two would be ignored."""
    flags = {"PROFILE": profile, "REPORTS_DIR": reports_dir, "RUNS_DIR": runs_dir}
    for key, flag in FLAG_PARAMETERS.items():
        if key in parameters and parameters[key] != flags[key]:
            said = f"{flag} {flags[key]}" if flags[key] is not None else f"no {flag}"
            raise ValueError(f"invalid -p {key}={parameters[key]!r}: {key} is set by {flag} (here {said}); give "
                             f"{flag} {parameters[key]} instead of -p {key}")
    return {k: v for k, v in parameters.items() if k not in FLAG_PARAMETERS}


def declared_parameters(path: str | os.PathLike) -> list[str]:
    """The names assigned in a notebook's cell tagged ``parameters`` (papermill injects values for these)."""
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a readable notebook ({type(e).__name__}: {e})") from None
    names: list[str] = []
    for cell in cells:
        if "parameters" not in (cell.get("metadata") or {}).get("tags", []):
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        try:
            tree = ast.parse(source)
        except SyntaxError as e:
            raise ValueError(f"{path}: the parameters cell is not valid Python ({e})") from None
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return list(dict.fromkeys(names))


def check_parameters(paths: dict[str, Path], params: dict) -> None:
    """Every parameter must be declared by every selected notebook: a misspelt one would be silently ignored."""
    for name, path in paths.items():
        declared = declared_parameters(path)
        unknown = [p for p in params if p not in declared]
        if unknown:
            flag = {"REPORTS_DIR": "--reports-dir (REPORTS_DIR)", "RUNS_DIR": "--runs-dir (RUNS_DIR)",
                    "PROFILE": "--profile (PROFILE)"}.get(unknown[0], f"-p {unknown[0]}")
            raise ValueError(f"invalid {flag}: notebook {name} does not declare it (its parameters cell "
                             f"declares {', '.join(declared) or 'nothing'}); use --only to pick notebooks that "
                             "declare it")


def _first_line(source: str) -> str:
    return next((line for line in source.splitlines() if line.strip()), "")


def _failure(err: BaseException, executed: Path) -> tuple[int | None, str, str]:
    """(cell index, first source line, "Name: message") of a failed execution: papermill's error names the cell;
    otherwise (a dead kernel, a timeout) it is the last cell that started, from the executed copy's metadata."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        return err.cell_index, _first_line(err.source), f"{err.ename}: {err.evalue}"
    try:
        import nbformat

        cells = nbformat.read(executed, as_version=4).cells
        started = [i for i, c in enumerate(cells) if (c.metadata.get("papermill") or {}).get("start_time")]
    except Exception:  # noqa: BLE001 - no executed copy: the notebook never started
        started = []
    if started:
        return started[-1], _first_line(cells[started[-1]].source), f"{type(err).__name__}: {err}"
    return None, "", f"{type(err).__name__}: {err}"


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (the notebooks' kernels)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _register_html(html: Path, name: str, profile: str, reports_dir: Path) -> None:
    """List the HTML copy in the reports index of the folder the notebook reported to (its README links it)."""
    from .reporting.index import register_artifact

    register_artifact(reports_dir, html, f"Notebook {name} as executed under the {profile} profile, with its "
                      "outputs (HTML, readable without running anything)", command(profile, name))


def reproduce(profile: str = "cpu", only: str | Sequence[str] | None = None, reports_dir: str | None = None,
              runs_dir: str | None = None, parameters: dict | None = None, notebooks_dir: str | None = None,
              html: bool = True, progress_bar: bool = True, log_output: bool = False, executor: str = "local",
              ray_address: str | None = None, gpus_per_run: float | None = None,
              cpus_per_run: float | None = None, retrain_before: str | None = None) -> list[Outcome]:
    """Execute the selected notebooks in order; returns one :class:`Outcome` per notebook (never raises for a
    failing notebook). ``runs_dir``: every notebook's RUNS_DIR (the shared run store). ``retrain_before`` (UTC,
    ISO 8601): every run whose result finished earlier trains again (a fresh rebuild; the same time resumes it)."""
    if profile not in PROFILES:
        raise ValueError(f"invalid --profile {profile!r}: allowed one of {', '.join(PROFILES)}")
    available = notebooks(notebooks_dir)
    if not available:
        raise ValueError(f"no notebooks in {notebooks_dir or project_root() / 'notebooks'}")
    names = select_notebooks(available, only)
    parameters = flag_parameters(parameters or {}, profile, reports_dir, runs_dir)
    injected = dict(parameters, PROFILE=profile, **({"REPORTS_DIR": ""} if reports_dir else {}))
    check_parameters({n: available[n] for n in names}, injected)  # before anything runs or is written
    # the run store goes to the notebooks that train runs (they declare RUNS_DIR; the tour trains none)
    takes_runs = {n for n in names if "RUNS_DIR" in declared_parameters(available[n])}
    if runs_dir and not takes_runs:
        said = "; ".join(f"{n} declares {', '.join(declared_parameters(available[n])) or 'nothing'}" for n in names)
        raise ValueError(f"invalid --runs-dir (RUNS_DIR): none of the selected notebooks takes a run store ({said})")
    root = project_root()
    base = Path(reports_dir).resolve() if reports_dir else root / "reports"
    executed_dir = base / "executed" / profile
    for path in (base, executed_dir):
        check_out_dir(path, "--reports-dir")
    if runs_dir:
        check_out_dir(runs_dir, "--runs-dir")
    folder = reports_path(profile, str(base) if reports_dir else None)  # where the notebooks write their reports
    from .executors import ExecutorOptions, check

    check(ExecutorOptions(executor, ray_address, gpus_per_run, cpus_per_run), cli=True)  # the flags as given
    options = ExecutorOptions(executor, ray_address or (os.environ.get("RAY_ADDRESS") if executor == "ray" else None)
                              or None, gpus_per_run, cpus_per_run)
    if not os.environ.get("PEFTKIT_DATA_DIR") and (root.parent / "shared" / "data").is_dir():
        os.environ["PEFTKIT_DATA_DIR"] = str(root.parent / "shared" / "data")  # as the Makefile does
    if retrain_before is not None:
        now = time.strftime(TIME_FORMAT, time.gmtime())
        try:
            when = calendar.timegm(time.strptime(retrain_before, TIME_FORMAT))
        except ValueError:
            raise ValueError(f"invalid --retrain-before {retrain_before!r}: allowed a UTC time like {now}") from None
        if when > time.time():  # no run could finish before it yet, so none would ever count as done
            raise ValueError(f"invalid --retrain-before {retrain_before!r}: allowed a UTC time not in the future "
                             f"(now {now})")
        print(f"[reproduce] fresh rebuild: every run finished before {retrain_before} trains again; to resume it "
              f"after an interruption: peftkit reproduce ... --retrain-before {retrain_before}", flush=True)
    saved = os.environ.get(RETRAIN_BEFORE)
    if retrain_before is not None:
        os.environ[RETRAIN_BEFORE] = retrain_before  # the notebooks' kernels inherit it
    try:
        return _execute(names, available, profile, parameters, base, executed_dir, folder, root, takes_runs,
                        reports_dir, runs_dir, options, html, progress_bar, log_output)
    finally:
        if retrain_before is not None:
            os.environ.pop(RETRAIN_BEFORE) if saved is None else os.environ.__setitem__(RETRAIN_BEFORE, saved)


def _execute(names, available, profile, parameters, base, executed_dir, folder, root, takes_runs, reports_dir,
             runs_dir, options, html, progress_bar, log_output) -> list[Outcome]:
    import papermill as pm

    outcomes: list[Outcome] = []
    with grid_settings(options, profile) as runs:  # the Ray address and resources are checked here
        executed_dir.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names, 1):
            params = {"PROFILE": profile, **parameters}
            if reports_dir:
                params["REPORTS_DIR"] = str(base)
            if runs_dir and name in takes_runs:  # one run store for every study
                params["RUNS_DIR"] = str(Path(runs_dir).resolve())
            out = executed_dir / f"{name}.ipynb"
            running = executed_dir / f".{name}.running.ipynb"  # moved over `out` only when the notebook succeeds
            print(f"[reproduce] {i}/{len(names)} {name} (profile {profile}): started", flush=True)
            t0, c0 = time.time(), _children_cpu()
            guard = TreeGuard(folder, skip={"executed", *PROFILES} - {profile})
            try:
                pm.execute_notebook(str(available[name]), str(running), parameters=params, cwd=str(root),
                                    progress_bar=progress_bar, log_output=log_output, kernel_name="python3")
                guard.discard()
                os.replace(running, out)
                outcome = Outcome(name, True, time.time() - t0, out)
            except KeyboardInterrupt:
                kept = _set_aside(running, executed_dir / FAILED, name, guard, folder)
                print(f"[reproduce] {name}: interrupted; " + (f"its partial executed copy is {kept}" if kept else
                      "it had not started"), file=sys.stderr, flush=True)
                raise
            except Exception as e:  # noqa: BLE001 - every failure is reported at the end; the others still run
                cell, source, error = _failure(e, running)
                kept = _set_aside(running, executed_dir / FAILED, name, guard, folder)
                outcome = Outcome(name, False, time.time() - t0, kept or running, cell=cell, source=source,
                                  error=error)
            outcome.cpu_seconds = _children_cpu() - c0
            outcome.failed_runs = runs.drain()
            if html and outcome.executed.is_file():
                outcome.html = write_html(outcome.executed, root)
                if outcome.html is not None and outcome.ok:  # a failure's HTML stays beside its executed copy
                    _register_html(outcome.html, name, profile, folder)
            print(f"[reproduce] {i}/{len(names)} {name}: {'finished' if outcome.ok else 'FAILED'} in "
                  f"{outcome.seconds:.1f} s (kernel CPU {outcome.cpu_seconds:.1f} s) -> "
                  f"{outcome.executed if outcome.executed.is_file() else 'no executed copy'}", flush=True)
            outcomes.append(outcome)
    return outcomes


def _set_aside(running: Path, failed_dir: Path, name: str, guard: TreeGuard, folder: Path) -> Path | None:
    """After a failed or interrupted notebook: its reports folder put back as it was, its executed copy moved to
    ``failed_dir`` (returned; None when the notebook never started). The committed copies stay as they were."""
    undone = guard.restore()
    if undone:
        print(f"[reproduce] {name}: {len(undone)} report file(s) it had written or changed in {folder} were put "
              "back as they were", flush=True)
    if not running.is_file():
        return None
    failed_dir.mkdir(parents=True, exist_ok=True)
    kept = failed_dir / f"{name}.ipynb"
    os.replace(running, kept)
    return kept


def summary(outcomes: Sequence[Outcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    lines = [f"[reproduce] {len(outcomes) - len(failed)}/{len(outcomes)} notebooks finished "
             f"({sum(o.seconds for o in outcomes):.1f} s)"]
    for o in failed:
        where = f"cell {o.cell}" if o.cell is not None else "before any cell ran"
        see = f"see {o.executed}" if o.executed.is_file() else "no executed copy: its kernel never started"
        lines.append(f"[reproduce] FAILED {o.name}: {where}" + (f" `{o.source}`" if o.source else "")
                     + f": {o.error} ({see})")
    for o in outcomes:
        lines += [f"[reproduce] FAILED run of {o.name}: {line}" for line in o.failed_runs]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="peftkit reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", help=f"one of {', '.join(PROFILES)} (default cpu)")
    ap.add_argument("--only", help="comma-separated notebook names (e.g. 01_glue_main,05_ablation_bottleneck) "
                                   "or study names (glue_main); default: all")
    ap.add_argument("--reports-dir", help="REPORTS_DIR of every notebook; executed notebooks go to "
                                          "DIR/executed/<profile>/ (default: each notebook's own, reports/ for cpu, "
                                          "reports/<profile>/ otherwise; executed to reports/executed/<profile>/)")
    ap.add_argument("--runs-dir", help="the run store, every notebook's RUNS_DIR (default reports/runs/<profile>)")
    ap.add_argument("--executor", help="local (default: in the notebook's process, one run after "
                                                        "another) | ray (one Ray task per missing run)")
    ap.add_argument("--ray-address", help="join this Ray cluster (default $RAY_ADDRESS; else a local instance)")
    ap.add_argument("--gpus-per-run", type=float, help="GPUs per Ray task, fractional allowed (0.25: four runs per "
                                                       "GPU; default 1 where the cluster has GPUs, else 0)")
    ap.add_argument("--cpus-per-run", type=float, help="CPUs per Ray task (default 1; also its torch threads)")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="another notebook parameter (Python literal), repeatable, e.g. -p SEEDS=[42]")
    ap.add_argument("--notebooks-dir", help="where the notebooks are (default notebooks/)")
    ap.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print the notebooks' output (one line per "
                                                                       "run) as they execute")
    ap.add_argument("--list", action="store_true", help="list the notebooks (--only: the selected ones) and exit")
    fresh = ap.add_mutually_exclusive_group()
    fresh.add_argument("--fresh", action="store_true", help="retrain every run, the committed records included "
                       "(a fresh rebuild; it prints the --retrain-before time that resumes it)")
    fresh.add_argument("--retrain-before", metavar="UTC_TIME", help="retrain every run whose result finished before "
                       "this time (e.g. 2026-12-06T10:45:00Z): resumes a fresh rebuild")
    return ap


def _list_only(args) -> None:
    """--list lists notebooks: a flag about executing them would be ignored, so it is an error."""
    ignored = [flag for flag, value in (("--profile", args.profile), ("--reports-dir", args.reports_dir),
                                        ("--runs-dir", args.runs_dir), ("--executor", args.executor),
                                        ("--ray-address", args.ray_address), ("--gpus-per-run", args.gpus_per_run),
                                        ("--cpus-per-run", args.cpus_per_run), ("-p", args.param),
                                        ("--no-html", args.no_html), ("--verbose", args.verbose),
                                        ("--fresh", args.fresh), ("--retrain-before", args.retrain_before))
               if value not in (None, [], False)]
    if ignored:
        raise ValueError(f"invalid {ignored[0]} with --list: --list only lists the notebooks (with --only and "
                         "--notebooks-dir); leave --list out to execute them")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.list:
            _list_only(args)
            print("\n".join(select_notebooks(notebooks(args.notebooks_dir), args.only)))
            return 0
        params = dict(_parse_param(p) for p in args.param)
        if args.verbose:  # papermill logs the notebooks' output through the logging module
            import logging

            logging.basicConfig(level=logging.INFO, format="%(message)s")
        outcomes = reproduce(args.profile or "cpu", args.only, args.reports_dir, args.runs_dir, params,
                             args.notebooks_dir, html=not args.no_html, log_output=args.verbose,
                             executor=args.executor or "local", ray_address=args.ray_address,
                             gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                             retrain_before=(time.strftime(TIME_FORMAT, time.gmtime()) if args.fresh
                                             else args.retrain_before))
    except ValueError as e:
        print(f"peftkit reproduce: error: {e}", file=sys.stderr)
        return 2
    print(summary(outcomes), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
