"""Peak-memory accounting; the interleaved timing and its statistics come from :mod:`peftkit.timing` (``time_group``,
``summary``, ``ratio``: contenders timed in rotating order after warm-up, GC off; medians, quartiles, paired ratios).

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
from typing import Callable

import torch

from peftkit.timing import ratio, summary, sync, time_group

__all__ = ["MEMORY_METHOD", "peak_memory", "ratio", "summary", "time_group"]

MEMORY_METHOD = (
    "peak = static + transient. static: distinct storages of parameters, buffers and AdamW state when the step "
    "starts (gradients set to None), counted tensor by tensor. transient: high-water mark above the level at the "
    "start of one extra untimed step of the bytes allocated during it (activations, temporaries, gradients, "
    "optimizer temporaries) -- on CUDA torch.cuda.max_memory_allocated() minus memory_allocated() at step start; "
    "on CPU the running sum of PyTorch CPU-allocator alloc/free events recorded by torch.profiler "
    "(profile_memory=True). Excludes allocator slack/fragmentation, Python objects and library scratch "
    "allocated outside PyTorch's allocator (e.g. oneDNN)."
)


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
        sync(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        runner.step()
        sync(device)
        transient = torch.cuda.max_memory_allocated(device) - start
    else:
        transient = _cpu_transient(runner.step)
    return {"static_bytes": static, "transient_bytes": int(transient), "peak_bytes": int(static + transient)}
