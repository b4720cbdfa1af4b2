"""``peftkit reproduce``: execute the notebooks headlessly with papermill and rebuild every report.

    peftkit reproduce [--profile cpu|smoke|paper] [--only NAME[,NAME]] [--reports-dir DIR] [--runs-dir DIR]
                      [-p NAME=VALUE ...] [--executor local|ray] [--ray-address ADDR] [--gpus-per-run F]
                      [--cpus-per-run N]

Each notebook in ``notebooks/`` runs with ``PROFILE`` (and ``REPORTS_DIR`` / ``RUNS_DIR`` / ``-p`` values)
injected; the executed copy goes to ``<reports>/executed/<profile>/<name>.ipynb`` and ``.html`` (``<reports>`` is
``--reports-dir``, else ``reports/``), never into ``notebooks/``. Finished runs are skipped (their result files
exist), so a rerun only trains what is missing. A failing notebook does not stop the others; at the end each
failure is listed with its cell, and the exit status is 1. Bad arguments exit with status 2.

``--executor ray`` trains each notebook's missing runs as Ray tasks (see :mod:`peftkit.executors`): on the cluster
at ``--ray-address`` / ``$RAY_ADDRESS``, else on one local Ray instance started here for all the notebooks, with
``--gpus-per-run`` (fractional packs several runs on one GPU) and ``--cpus-per-run`` per task. Every run that ends
prints one line (wall time, a bar for its grid); the failed runs are listed at the end with their error and log.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .render import write_html
from .studies import NOTEBOOKS, PROFILES, command, project_root, reports_path


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


def declared_parameters(path: str | os.PathLike) -> list[str]:
    """The names assigned in a notebook's cell tagged ``parameters`` (papermill injects values for these)."""
    import json

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
              cpus_per_run: float | None = None) -> list[Outcome]:
    """Execute the selected notebooks in order; returns one :class:`Outcome` per notebook (never raises for a
    failing notebook). ``runs_dir``: every notebook's RUNS_DIR (the shared run store)."""
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"invalid --profile {profile!r}: allowed one of {', '.join(PROFILES)}")
    available = notebooks(notebooks_dir)
    if not available:
        raise ValueError(f"no notebooks in {notebooks_dir or project_root() / 'notebooks'}")
    names = select_notebooks(available, only)
    injected = dict(parameters or {}, PROFILE=profile, **({"REPORTS_DIR": ""} if reports_dir else {}))
    check_parameters({n: available[n] for n in names}, injected)  # before anything runs or is written
    # the run store goes to the notebooks that train runs (they declare RUNS_DIR; the tour trains none)
    takes_runs = {n for n in names if "RUNS_DIR" in declared_parameters(available[n])}
    if runs_dir and not takes_runs:
        said = "; ".join(f"{n} declares {', '.join(declared_parameters(available[n])) or 'nothing'}" for n in names)
        raise ValueError(f"invalid --runs-dir (RUNS_DIR): none of the selected notebooks takes a run store ({said})")
    root = project_root()
    base = Path(reports_dir).resolve() if reports_dir else root / "reports"
    executed_dir = base / "executed" / profile
    executed_dir.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("PEFTKIT_DATA_DIR") and (root.parent / "shared" / "data").is_dir():
        os.environ["PEFTKIT_DATA_DIR"] = str(root.parent / "shared" / "data")  # as the Makefile does
    from .executors import ExecutorOptions, check

    options = ExecutorOptions(executor, ray_address or os.environ.get("RAY_ADDRESS") or None, gpus_per_run,
                              cpus_per_run)
    check(options)
    outcomes: list[Outcome] = []
    with _grid_settings(options, profile) as runs:
        for i, name in enumerate(names, 1):
            params = {"PROFILE": profile, **(parameters or {})}
            if reports_dir:
                params["REPORTS_DIR"] = str(base)
            if runs_dir and name in takes_runs:  # one run store for every study
                params["RUNS_DIR"] = str(Path(runs_dir).resolve())
            out = executed_dir / f"{name}.ipynb"
            print(f"[reproduce] {i}/{len(names)} {name} (profile {profile}): started", flush=True)
            t0, c0 = time.time(), _children_cpu()
            try:
                pm.execute_notebook(str(available[name]), str(out), parameters=params, cwd=str(root),
                                    progress_bar=progress_bar, log_output=log_output, kernel_name="python3")
                outcome = Outcome(name, True, time.time() - t0, out)
            except Exception as e:  # noqa: BLE001 - every failure is reported at the end; the others still run
                cell, source, error = _failure(e, out)
                outcome = Outcome(name, False, time.time() - t0, out, cell=cell, source=source, error=error)
            outcome.cpu_seconds = _children_cpu() - c0
            outcome.failed_runs = runs.drain()
            if html and out.is_file():
                outcome.html = write_html(out, root)
                if outcome.html is not None:
                    _register_html(outcome.html, name, profile, reports_path(profile, str(base) if reports_dir
                                                                             else None))
            print(f"[reproduce] {i}/{len(names)} {name}: {'finished' if outcome.ok else 'FAILED'} in "
                  f"{outcome.seconds:.1f} s (kernel CPU {outcome.cpu_seconds:.1f} s) -> {out}", flush=True)
            outcomes.append(outcome)
    return outcomes


def summary(outcomes: Sequence[Outcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    lines = [f"[reproduce] {len(outcomes) - len(failed)}/{len(outcomes)} notebooks finished "
             f"({sum(o.seconds for o in outcomes):.1f} s)"]
    for o in failed:
        where = f"cell {o.cell}" if o.cell is not None else "before any cell ran"
        lines.append(f"[reproduce] FAILED {o.name}: {where}" + (f" `{o.source}`" if o.source else "")
                     + f": {o.error} (see {o.executed})")
    for o in outcomes:
        lines += [f"[reproduce] FAILED run of {o.name}: {line}" for line in o.failed_runs]
    return "\n".join(lines)


class _Progress:
    """Prints the run events the notebooks' kernels append to ``path`` (one JSON line per run that ends, see
    :func:`peftkit.studies.run_specs`) as they arrive, and keeps the failed ones."""

    def __init__(self, path: Path):
        self.path, self.pos, self.failed = path, 0, []
        self._stop, self._mutex = threading.Event(), threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="peftkit-progress")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.poll()

    def poll(self) -> None:
        with self._mutex:
            try:
                with open(self.path, encoding="utf-8") as f:
                    f.seek(self.pos)
                    chunk = f.read()
            except FileNotFoundError:
                return
            lines = chunk.split("\n")
            self.pos += len(chunk) - len(lines[-1])
            for line in lines[:-1]:
                if line.strip():
                    event = json.loads(line)
                    print(f"[reproduce]   {event['line']}", flush=True)
                    if event["status"] == "failed":
                        self.failed.append(f"{event['run']}: {event['error']} (log: {event['log']})")

    def drain(self) -> list[str]:
        self.poll()
        failed, self.failed = self.failed, []
        return failed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


#: what the notebooks' kernels inherit so that the executed copies carry results, not the environment's notices:
#: tqdm's "IProgress not found" (no ipywidgets in a headless kernel), transformers' "Loading weights" bars (through
#: huggingface_hub's switch) and the FutureWarnings of transformers' deprecated aliases (e.g. peft reading
#: ``is_gradient_checkpointing``). Other warnings, stderr and errors stay. Ray's ipywidgets notice is a log line,
#: quieted where the kernel imports Ray (:func:`peftkit.executors.ray_start`).
QUIET_WARNINGS = ("ignore:IProgress not found:Warning", "ignore::FutureWarning:transformers.modeling_utils")
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def quiet_kernel_env(environ=os.environ) -> dict[str, str]:
    """The environment variables :data:`QUIET_WARNINGS` and :data:`QUIET_ENV` add for the kernels (any
    ``PYTHONWARNINGS`` of the caller's is kept, after ours)."""
    mine = ",".join(QUIET_WARNINGS)
    theirs = environ.get("PYTHONWARNINGS")
    return {"PYTHONWARNINGS": f"{mine},{theirs}" if theirs else mine, **QUIET_ENV}


@contextlib.contextmanager
def _grid_settings(options, profile: str):
    """The executor settings for the notebooks' kernels (environment variables they inherit, the quiet ones of
    :func:`quiet_kernel_env` included), one local Ray instance for all of them when ``ray`` is asked without an
    address, and the run-event feed; all undone afterwards."""
    keys = ("PEFTKIT_EXECUTOR", "RAY_ADDRESS", "PEFTKIT_GPUS_PER_RUN", "PEFTKIT_CPUS_PER_RUN", "PEFTKIT_PROGRESS_FILE",
            "PYTHONWARNINGS", *QUIET_ENV)
    saved = {k: os.environ.get(k) for k in keys}
    ray = None
    with tempfile.TemporaryDirectory(prefix="peftkit-progress-") as tmp:
        progress = None
        try:
            os.environ.update(quiet_kernel_env())
            os.environ["PEFTKIT_EXECUTOR"] = options.executor
            for key, value in (("PEFTKIT_GPUS_PER_RUN", options.gpus_per_run),
                               ("PEFTKIT_CPUS_PER_RUN", options.cpus_per_run)):
                if value is not None:
                    os.environ[key] = str(value)
            if options.executor == "ray":
                from .executors import ray_start

                ray, address = ray_start(options)
                os.environ["RAY_ADDRESS"] = address
                print(f"[reproduce] executor ray at {address}", flush=True)
            os.environ["PEFTKIT_PROGRESS_FILE"] = str(Path(tmp) / "events.jsonl")
            progress = _Progress(Path(tmp) / "events.jsonl")
            yield progress
        finally:
            if progress is not None:
                progress.stop()
            if ray is not None:
                ray.shutdown()
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="peftkit reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu", help=f"one of {', '.join(PROFILES)} (default cpu)")
    ap.add_argument("--only", help="comma-separated notebook names (e.g. 01_glue_main,05_ablation_bottleneck) "
                                   "or study names (glue_main); default: all")
    ap.add_argument("--reports-dir", help="REPORTS_DIR of every notebook; executed notebooks go to "
                                          "DIR/executed/<profile>/ (default: each notebook's own, reports/ for cpu, "
                                          "reports/<profile>/ otherwise; executed to reports/executed/<profile>/)")
    ap.add_argument("--runs-dir", help="the run store, every notebook's RUNS_DIR (default reports/runs/<profile>)")
    ap.add_argument("--executor", default="local", help="local (default: in the notebook's process, one run after "
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
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.list:
            print("\n".join(notebooks(args.notebooks_dir)))
            return 0
        params = dict(_parse_param(p) for p in args.param)
        if args.verbose:  # papermill logs the notebooks' output through the logging module
            import logging

            logging.basicConfig(level=logging.INFO, format="%(message)s")
        outcomes = reproduce(args.profile, args.only, args.reports_dir, args.runs_dir, params, args.notebooks_dir,
                             html=not args.no_html, log_output=args.verbose, executor=args.executor,
                             ray_address=args.ray_address, gpus_per_run=args.gpus_per_run,
                             cpus_per_run=args.cpus_per_run)
    except ValueError as e:
        print(f"peftkit reproduce: error: {e}", file=sys.stderr)
        return 2
    print(summary(outcomes), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
