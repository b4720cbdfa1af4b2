"""Where a grid's runs train: ``local`` (this process, one run after another) or ``ray`` (one Ray task per missing
run, on a local Ray instance or an existing cluster).

The run directory stays the single source of truth whichever executor trains it: a run is trained by
:func:`train_claimed`, which skips a run whose ``result.json`` exists, claims the run atomically (``.claim`` in its
directory, created with ``O_CREAT | O_EXCL``, holding pid, host and time, refreshed by a heartbeat) so that two
drivers on one grid never train the same run twice, writes the trainer's output to ``train.log`` beside it, and
releases the claim whatever happens. A claim whose process is gone (same host) or whose heartbeat stopped
(``PEFTKIT_CLAIM_STALE_S``, default 600 s) is stale and taken over; a killed run then resumes from its checkpoint.
``import ray`` happens only when the ``ray`` executor is used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

CLAIM_FILE = ".claim"
LOG_FILE = "train.log"
HEARTBEAT_S = 30.0
#: environment variables a Ray task inherits from the driver (data directory, offline switches, threads)
FORWARDED_ENV = ("PEFTKIT_DATA_DIR", "PEFTKIT_DEBUG", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
                 "HF_HOME", "HF_ENDPOINT", "TOKENIZERS_PARALLELISM", "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG")


def _stale_after() -> float:
    return float(os.environ.get("PEFTKIT_CLAIM_STALE_S", "600"))


@dataclass
class ExecutorOptions:
    """How :func:`peftkit.studies.run_specs` trains a grid. ``None`` fields come from the environment
    (``PEFTKIT_EXECUTOR``, ``RAY_ADDRESS``, ``PEFTKIT_GPUS_PER_RUN``, ``PEFTKIT_CPUS_PER_RUN``; ``peftkit reproduce``
    sets them for its notebooks)."""

    executor: str | None = None
    address: str | None = None
    gpus_per_run: float | None = None  # None: 1 where the Ray cluster has GPUs, else 0
    cpus_per_run: float | None = None  # None: 1

    def resolved(self) -> "ExecutorOptions":
        """The environment's values filled in (the Ray settings only for the ray executor: a ``RAY_ADDRESS``
        exported for other work does not turn a local grid into an error), then :func:`check`."""
        env = os.environ
        executor = self.executor or env.get("PEFTKIT_EXECUTOR") or "local"
        ray = executor == "ray"
        o = ExecutorOptions(executor, self.address or (env.get("RAY_ADDRESS") if ray else None) or None,
                            self.gpus_per_run if self.gpus_per_run is not None or not ray
                            else _float_env("PEFTKIT_GPUS_PER_RUN"),
                            self.cpus_per_run if self.cpus_per_run is not None or not ray
                            else _float_env("PEFTKIT_CPUS_PER_RUN"))
        check(o)
        return o


def check(o: ExecutorOptions, cli: bool = False) -> None:
    """Raise ValueError naming the field (``cli``: the flag) for a bad executor choice, before anything starts (see
    :func:`peftkit.capacity.check_options`; imported here, so that this module loads without the package for the
    claim tests)."""
    from .capacity import check_options

    check_options(o, cli)


def _float_env(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"invalid ${name}={value!r}: allowed a non-negative number") from None


# ---- claims ------------------------------------------------------------------------------------------------


@dataclass
class Claim:
    path: Path
    token: str
    _stop: threading.Event = field(default_factory=threading.Event)

    def start_heartbeat(self) -> None:
        def beat():
            while not self._stop.wait(HEARTBEAT_S):
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        threading.Thread(target=beat, daemon=True, name="peftkit-claim").start()

    def release(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            if json.loads(self.path.read_text()).get("token") == self.token:
                self.path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_holder(out: str | os.PathLike) -> dict | None:
    """Who holds the run's claim ({pid, host, since, token}), or None."""
    return claim_holder_file(Path(out) / CLAIM_FILE)


def claim_holder_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_stale(out: str | os.PathLike) -> bool:
    """A claim whose process is dead (same host) or whose heartbeat is older than ``PEFTKIT_CLAIM_STALE_S``."""
    path = Path(out) / CLAIM_FILE
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    holder = claim_holder(out)
    if holder is None:  # unreadable: being written right now, or garbage left by a crash
        return age > 5.0
    if holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1))):
        return True
    return age > _stale_after()


def claim(out: str | os.PathLike) -> Claim | None:
    """Claim the run directory ``out`` atomically; None when another live process holds it. A stale claim is
    removed and claimed again (only one of several contenders wins: the rename of the stale file is atomic)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CLAIM_FILE
    token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            judged = claim_holder(out)
            if not is_stale(out):
                return None
            grave = out / f"{CLAIM_FILE}.stale.{os.getpid()}"
            try:
                os.rename(path, grave)  # one contender moves it; the others find it gone and retry the O_EXCL
            except FileNotFoundError:
                continue
            moved = claim_holder_file(grave)
            if judged is not None and (moved or {}).get("token") != judged.get("token"):
                with contextlib.suppress(FileExistsError):  # a fresh claim made meanwhile: put it back, give way
                    os.link(grave, path)
                grave.unlink()
                return None
            grave.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "token": token}, f)
        c = Claim(path, token)
        c.start_heartbeat()
        return c
    return None


# ---- one run -----------------------------------------------------------------------------------------------


def train_claimed(spec, force: bool = False, verbose: bool = False) -> dict:
    """Train ``spec`` under a claim. Returns an outcome: ``status`` trained | skipped | busy | failed, ``out``,
    ``seconds``, ``result`` (trained/skipped), ``error`` and ``log`` (failed), ``holder`` (busy). Never raises for
    a failing run."""
    from .experiment import run
    from .results import has_result, read_result

    out = Path(spec.out)
    base = {"out": str(out), "log": str(out / LOG_FILE)}
    if has_result(out) and not force:
        return {**base, "status": "skipped", "seconds": 0.0, "result": read_result(out)}
    c = claim(out)
    if c is None:
        return {**base, "status": "busy", "seconds": 0.0, "holder": claim_holder(out)}
    t0 = time.time()
    try:
        if has_result(out) and not force:  # finished by another driver between the check and the claim
            return {**base, "status": "skipped", "seconds": 0.0, "result": read_result(out)}
        if verbose:
            result = run(spec, force=force, progress=True)
        else:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / LOG_FILE, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
                    contextlib.redirect_stderr(log):
                try:
                    result = run(spec, force=force, progress=True)
                except BaseException:
                    traceback.print_exc(file=log)
                    raise
        return {**base, "status": "trained", "seconds": time.time() - t0, "result": result}
    except Exception as e:  # noqa: BLE001 - a failed run is reported, the grid goes on
        return {**base, "status": "failed", "seconds": time.time() - t0, "error": f"{type(e).__name__}: {e}"}
    finally:
        c.release()


def _task(spec_fields: dict, force: bool, env: dict, threads: int, gpus: float) -> dict:
    """The body of a Ray task: one device per process, the driver's data settings, then :func:`train_claimed`."""
    os.environ.update(env)
    if not gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # asked for no GPU: never pick one up
    import torch

    torch.set_num_threads(max(1, threads))
    from .experiment import RunSpec

    return train_claimed(RunSpec(**spec_fields), force=force)


# ---- grids -------------------------------------------------------------------------------------------------

Report = Callable[[dict, int, int], None]


def _wait_for_busy(specs, outcomes: dict, record, submit: Callable[[list], list], poll_s: float) -> None:
    """Runs claimed by another driver: wait until each has a result (read it) or its claim turns stale (train it
    here)."""
    from .results import has_result, read_result

    pending = [s for s in specs if outcomes[s.out]["status"] == "busy"]
    while pending:
        time.sleep(poll_s)
        retry, still = [], []
        for s in pending:
            if has_result(s.out):
                record(s, {"out": s.out, "status": "skipped", "seconds": 0.0, "log": str(Path(s.out) / LOG_FILE),
                           "result": read_result(s.out), "elsewhere": True})
            elif not (Path(s.out) / CLAIM_FILE).exists() or is_stale(s.out):
                retry.append(s)
            else:
                still.append(s)
        for s, o in zip(retry, submit(retry) if retry else []):
            record(s, o)
            if o["status"] == "busy":
                still.append(s)
        pending = still


def execute_grid(specs: Sequence, options: ExecutorOptions, force: bool = False, verbose: bool = False,
                 report: Report | None = None, poll_s: float = 2.0) -> list[dict]:
    """Train every spec missing its result with the chosen executor; returns one outcome per spec, in order.
    ``report(outcome, n_done, n_total)`` is called as each run ends (trained, failed, or finished by another
    driver); a failed run never stops the others."""
    from .results import has_result

    report = report or (lambda o, i, n: None)
    options = options.resolved()
    todo = [s for s in specs if force or not has_result(s.out)]
    todo_outs = {s.out for s in todo}
    outcomes = {s.out: train_claimed(s) for s in specs if s.out not in todo_outs}  # done: read their results
    counter = {"done": 0}

    def record(s, o) -> None:
        outcomes[s.out] = o
        if o["status"] != "busy":
            counter["done"] += 1
            report(o, counter["done"], len(todo))

    if options.executor == "local":
        def submit(batch):
            return [train_claimed(s, force=force, verbose=verbose) for s in batch]

        for s in todo:
            record(s, submit([s])[0])
        _wait_for_busy(todo, outcomes, record, submit, poll_s)
        return [outcomes[s.out] for s in specs]

    ray, started = _ray_init(options)
    try:
        remote, gpus = _remote(ray, options)
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        threads = int(max(1, options.cpus_per_run or 1))

        def launch(batch):
            return {remote.remote(dataclasses.asdict(s), force, env, threads, gpus): s for s in batch}

        def submit(batch):
            return [_get(ray, r, s) for r, s in launch(batch).items()]

        refs = launch(todo)
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            s = refs.pop(ready[0])
            record(s, _get(ray, ready[0], s))
        _wait_for_busy(todo, outcomes, record, submit, poll_s)
    finally:
        if started:
            ray.shutdown()
    return [outcomes[s.out] for s in specs]


def _get(ray, ref, spec) -> dict:
    try:
        return ray.get(ref)
    except Exception as e:  # noqa: BLE001 - the worker died (out of memory, killed): report, go on
        return {"out": spec.out, "status": "failed", "seconds": 0.0, "log": str(Path(spec.out) / LOG_FILE),
                "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}


def _ray_init(options: ExecutorOptions, cli: bool = False):
    """(ray, started): join ``options.address`` (or ``RAY_ADDRESS``), reuse a running ``ray.init`` of this process,
    or start a local instance with the machine's CPUs and GPUs. ``started``: this call started it (shut it down).
    Before Ray is touched, the address must answer and, for a local instance, one run's GPUs and CPUs must fit
    this machine (see :mod:`peftkit.capacity`)."""
    import logging

    from .capacity import check_address, check_fits, local_offer
    # Ray logs "Missing packages: ['ipywidgets'] ..." when imported in a notebook kernel: not a result of the run
    logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)
    try:
        import ray
    except ImportError:
        raise ValueError("executor='ray' needs the ray package: pip install 'ray==2.60.0'") from None
    if ray.is_initialized():
        return ray, False
    if options.address:
        check_address(options.address, cli)
    else:
        check_fits(options.gpus_per_run, options.cpus_per_run, [local_offer()],
                   "a local Ray instance on this machine", cli)
    package_root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    kwargs = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=False,
                  runtime_env={"env_vars": {"PYTHONPATH": path}})
    if options.address:
        ray.init(address=options.address, **kwargs)
    else:
        ray.init(**kwargs)
    return ray, True


def ray_start(options: ExecutorOptions, cli: bool = False):
    """(ray, address) for several drivers to share: a local Ray instance started here, or the cluster at
    ``options.address``, joined to check that one run fits a node before any notebook starts (the caller shuts
    ``ray`` down: the local instance stops, a cluster is only left)."""
    ray, started = _ray_init(options, cli)
    try:
        check_cluster(ray, options, cli)
        address = ray.get_runtime_context().gcs_address
    except BaseException:
        if started:
            ray.shutdown()
        raise
    return (ray if started else None), (options.address or address)


def check_cluster(ray, options: ExecutorOptions, cli: bool = False) -> None:
    """One run's ``gpus_per_run`` / ``cpus_per_run`` fit some live node of the connected cluster (else Ray would
    hold the task as infeasible, silently, forever)."""
    from .capacity import check_fits, cluster_offer

    where = f"the Ray cluster at {options.address}" if options.address else "the Ray instance"
    check_fits(options.gpus_per_run, options.cpus_per_run, cluster_offer(ray), where, cli)


def _remote(ray, options: ExecutorOptions):
    check_cluster(ray, options)
    gpus = options.gpus_per_run
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    cpus = options.cpus_per_run if options.cpus_per_run is not None else 1.0
    return ray.remote(_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0), gpus


class GridError(RuntimeError):
    """Some runs of a grid failed (the others finished); ``failed``: their outcomes (error, log path)."""

    def __init__(self, failed: list[dict]):
        self.failed = failed
        lines = [f"{len(failed)} run(s) failed:"] + [f"  {Path(o['out']).name}: {o['error']} (log: {o['log']})"
                                                      for o in failed]
        super().__init__("\n".join(lines))


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """A text bar for a grid: [####......] done/total."""
    filled = round(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
