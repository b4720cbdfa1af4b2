"""What ``peftkit reproduce`` sets up around the notebooks it executes: the executor settings their kernels
inherit (environment variables), one local Ray instance shared by all of them when ``--executor ray`` is asked
without an address, and the feed of run events the kernels append to (printed as each run ends)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path


class RunFeed:
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
def grid_settings(options, profile: str):
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

                ray, address = ray_start(options, cli=True)  # checked before any notebook starts
                os.environ["RAY_ADDRESS"] = address
                print(f"[reproduce] executor ray at {address}", flush=True)
            os.environ["PEFTKIT_PROGRESS_FILE"] = str(Path(tmp) / "events.jsonl")
            progress = RunFeed(Path(tmp) / "events.jsonl")
            yield progress
        finally:
            if progress is not None:
                progress.stop()
            if ray is not None:
                ray.shutdown()
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
