"""Timing (interleaved rounds), robust statistics and peak-memory accounting.

Timing: after ``warmup`` untimed rounds, every round runs each contender of a group once, in an order that rotates
from round to round (A,B,C / B,C,A / C,A,B ...), so slow drifts of the machine hit every contender alike. One
sample is the wall time of one step (``time.perf_counter``; on CUDA bracketed by ``torch.cuda.synchronize``).
The garbage collector is off inside a group and runs between rounds, outside the timed region.

Peak memory: one extra, untimed step per contender, after its timed ones. Reported as
``peak = static + transient`` where
- ``static``: bytes of the distinct storages held by the model and optimizer when the step starts (parameters,
  buffers, AdamW state; gradients were set to None just before), counted tensor by tensor;
- ``transient``: the high-water mark, above the level at the start of the step, of bytes allocated during the step
  (activations kept for backward, temporaries, gradients, optimizer temporaries). On CUDA:
  ``torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()`` after ``reset_peak_memory_stats``. On
  CPU: the running sum of the allocation and free events of PyTorch's CPU allocator recorded by
  ``torch.profiler`` (``profile_memory=True``). Not included: allocator slack / fragmentation (CUDA caching,
  glibc), Python objects, and scratch space a library allocates outside PyTorch's allocator (e.g. oneDNN).
"""
from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from typing import Callable, Sequence

import numpy as np
import torch

MEMORY_METHOD = (
    "peak = static + transient. static: distinct storages of parameters, buffers and AdamW state when the step "
    "starts (gradients set to None), counted tensor by tensor. transient: high-water mark above the level at the "
    "start of one extra untimed step of the bytes allocated during it (activations, temporaries, gradients, "
    "optimizer temporaries) -- on CUDA torch.cuda.max_memory_allocated() minus memory_allocated() at step start; "
    "on CPU the running sum of PyTorch CPU-allocator alloc/free events recorded by torch.profiler "
    "(profile_memory=True). Excludes allocator slack/fragmentation, Python objects and library scratch "
    "allocated outside PyTorch's allocator (e.g. oneDNN)."
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_group(steps: Sequence[Callable[[], None]], rounds: int, warmup: int, device: torch.device,
               on_round: Callable[[int], None] | None = None) -> tuple[list[list[float]], list[list[float]]]:
    """Interleaved, rotating rounds. Returns (wall, cpu): per contender, ``rounds`` step times in seconds, as wall
    time and as this process's CPU time (``time.process_time``, all threads; less sensitive than wall time to other
    processes on a shared CPU, meaningless for GPU work)."""
    n = len(steps)
    samples: list[list[float]] = [[] for _ in range(n)]
    cpu: list[list[float]] = [[] for _ in range(n)]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(warmup + rounds):
            gc.collect()
            for j in range(n):
                i = (r + j) % n
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                steps[i]()
                _sync(device)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if r >= warmup:
                    samples[i].append(dt)
                    cpu[i].append(dc)
            if on_round is not None:
                on_round(r)
    finally:
        if enabled:
            gc.enable()
    return samples, cpu


def summary(samples: Sequence[float]) -> dict:
    """median, quartiles (linear interpolation) and IQR of ``samples``."""
    a = np.asarray(samples, dtype=float)
    q1, med, q3 = (float(x) for x in np.percentile(a, [25, 50, 75]))
    return {"median": med, "q1": q1, "q3": q3, "iqr": q3 - q1, "min": float(a.min()), "n": int(a.size)}


def ratio(num: dict, den: dict) -> dict:
    """Ratio of medians (wall time, and CPU time when given), plus median and IQR of the per-round (paired) wall
    time ratios when both have samples."""
    out = {"ratio": num["median"] / den["median"]}
    if num.get("cpu_median") and den.get("cpu_median"):
        out["cpu_ratio"] = num["cpu_median"] / den["cpu_median"]
    a, b = num.get("samples"), den.get("samples")
    if a and b and len(a) == len(b):
        paired = summary([x / y for x, y in zip(a, b)])
        out.update(paired_median=paired["median"], paired_q1=paired["q1"], paired_q3=paired["q3"])
    return out


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the C++ profiler's start/stop lines on file descriptor 2 (Python exceptions still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_transient(step: Callable[[], None]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak


def peak_memory(runner, device: torch.device) -> dict:
    """Static, transient and peak bytes of one untimed step of ``runner`` (see the module docstring)."""
    runner.clear()
    gc.collect()
    static = runner.static_bytes()
    if device.type == "cuda":
        _sync(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        runner.step()
        _sync(device)
        transient = torch.cuda.max_memory_allocated(device) - start
    else:
        transient = _cpu_transient(runner.step)
    return {"static_bytes": static, "transient_bytes": int(transient), "peak_bytes": int(static + transient)}
