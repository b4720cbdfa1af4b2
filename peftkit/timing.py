"""Interleaved timing and its robust statistics (used by the efficiency study and by ``bench``).

Timing: after ``warmup`` untimed rounds, every round runs each contender of a group once, in an order that rotates
from round to round (A,B,C / B,C,A / C,A,B ...), so slow drifts of the machine hit every contender alike. One
sample is the wall time of one step (``time.perf_counter``; on CUDA bracketed by ``torch.cuda.synchronize``).
The garbage collector is off inside a group and runs between rounds, outside the timed region.

Statistics: a contender's samples are summarised by their median and quartiles; a ratio between two contenders
of one group is the ratio of their medians, with the median and quartiles of the per-round (paired) ratios. An
A/A control (the same contender timed twice, as two separate objects) gives the ratio that noise alone produces.
"""
from __future__ import annotations

import gc
import time
from typing import Callable, Sequence

import numpy as np
import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on CPU."""
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
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                steps[i]()
                sync(device)
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
