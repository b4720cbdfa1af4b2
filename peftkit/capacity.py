"""What a Ray grid may ask for, checked before anything is submitted: the cluster address answers, and one run's
``gpus_per_run`` / ``cpus_per_run`` fit on a node (Ray itself would retry a dead address for minutes and hold an
infeasible task forever, silently). Every error is one line naming the flag (or field), what was asked and what
is available.

Standard library only at import time (torch and ray are imported where a check needs them).
"""
from __future__ import annotations

import math
import os
import socket

EXECUTORS = ("local", "ray")
#: how long the address check waits for a TCP connection (a live Ray head answers at once)
CONNECT_TIMEOUT_S = 2.0
#: addresses Ray resolves itself (a running local instance): nothing to connect to beforehand
RAY_KEYWORDS = ("auto", "local")


def name(field: str, value, cli: bool) -> str:
    """How a message names a setting: ``--gpus-per-run 1`` (command line) or ``gpus_per_run=1`` (Python)."""
    return f"--{field.replace('_', '-')} {value!r}" if cli else f"{field}={value!r}"


def check_amount(field: str, value, cli: bool = False, zero: bool = True) -> None:
    """A finite number >= 0 (``zero=False``: > 0); GPUs above 1 must be whole."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if zero else value > 0)
    if not ok:
        raise ValueError(f"invalid {name(field, value, cli)}: allowed a finite {'non-negative' if zero else 'positive'}"
                         f" number{' (fractions pack runs)' if field == 'gpus_per_run' else ''}")
    if field == "gpus_per_run" and value > 1 and not float(value).is_integer():
        raise ValueError(f"invalid {name(field, value, cli)}: above 1 it must be a whole number")


def parse_address(address: str, cli: bool = False) -> tuple[str, int] | None:
    """(host, port) of a Ray address (``HOST:PORT`` or ``ray://HOST:PORT``); None for ``auto`` / ``local``."""
    text = address.strip()
    if text in RAY_KEYWORDS:
        return None
    body = text.split("://", 1)[1] if "://" in text else text
    host, _, port = body.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid {name('ray_address', address, cli)}: allowed HOST:PORT (e.g. 10.0.0.1:6379, "
                         "ray://10.0.0.1:10001) or auto")
    return host, int(port)


def check_address(address: str, cli: bool = False, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail at once when nothing listens at ``address`` (instead of Ray's minutes of retries)."""
    where = parse_address(address, cli)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout):
            pass
    except OSError as e:
        reason = "no answer" if isinstance(e, (TimeoutError, socket.timeout)) else (e.strerror or str(e)).lower()
        raise ValueError(f"invalid {name('ray_address', address, cli)}: nothing answers at {where[0]}:{where[1]} "
                         f"({reason} within {timeout:g} s); start the cluster there (ray start --head), or leave "
                         "the address out for a local Ray instance") from None


def local_offer() -> dict:
    """What a Ray instance started on this machine would offer: its usable CPUs and visible GPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    import torch

    return {"CPU": float(cpus), "GPU": float(torch.cuda.device_count() if torch.cuda.is_available() else 0)}


def cluster_offer(ray) -> list[dict]:
    """The resources of each live node of the cluster ``ray`` is connected to."""
    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive", n.get("alive", True))]


def check_fits(gpus: float | None, cpus: float | None, nodes: list[dict], where: str, cli: bool = False) -> None:
    """A run asks for ``gpus`` GPUs and ``cpus`` CPUs (None: not given); Ray places a task on one node, so some
    node must offer both. ``where`` names the cluster in the message."""
    best_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    best_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    for field, asked, best, unit in (("gpus_per_run", gpus, best_gpu, "GPU"), ("cpus_per_run", cpus, best_cpu, "CPU")):
        if asked is not None and asked > best:
            count = f"{len(nodes)} live node{'s' if len(nodes) != 1 else ''}"
            raise ValueError(f"invalid {name(field, asked, cli)}: a run would ask for {asked:g} {unit}s, and {where} "
                             f"offers at most {best:g} on one node ({count}); allowed at most {best:g} there"
                             + (" (or leave it out: 1 where the cluster has GPUs, else 0)" if unit == "GPU" else ""))
    if gpus is not None and cpus is not None and not any(n.get("GPU", 0.0) >= gpus and n.get("CPU", 0.0) >= cpus
                                                         for n in nodes):
        raise ValueError(f"invalid {name('gpus_per_run', gpus, cli)} with {name('cpus_per_run', cpus, cli)}: no "
                         f"node of {where} offers both at once")


def check_options(o, cli: bool = False) -> None:
    """Raise ValueError naming the field (``cli``: the flag) for a bad choice in the
    :class:`peftkit.executors.ExecutorOptions` ``o``, before anything starts: an unknown executor, a Ray setting
    given to the local executor (it would be ignored), a negative or non-finite amount, zero CPUs."""
    if o.executor not in EXECUTORS:
        raise ValueError(f"invalid {name('executor', o.executor, cli)}: allowed one of {', '.join(EXECUTORS)}")
    if o.executor != "ray":
        given = [f for f in ("address", "gpus_per_run", "cpus_per_run") if getattr(o, f) is not None]
        if given:
            field = "ray_address" if given[0] == "address" else given[0]
            raise ValueError(f"invalid {name(field, getattr(o, given[0]), cli)} with "
                             f"{name('executor', o.executor, cli)}: it applies to the ray executor only (the local "
                             "executor trains in this process, one run after another); add "
                             f"{'--executor ray' if cli else 'executor=ray'} or leave it out")
    if o.gpus_per_run is not None:
        check_amount("gpus_per_run", o.gpus_per_run, cli)
    if o.cpus_per_run is not None:
        check_amount("cpus_per_run", o.cpus_per_run, cli, zero=False)
    if o.address is not None and (not isinstance(o.address, str) or not o.address.strip()):
        raise ValueError(f"invalid {name('ray_address', o.address, cli)}: allowed HOST:PORT or auto")
