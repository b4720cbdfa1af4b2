"""Profile one contender: where its training (or inference) step spends time, by op and by Python function.

``python -m bench --profile peftkit:lora --backbone minilm`` prints torch.profiler's op table (self CPU / CUDA
time) and cProfile's top Python functions over a few steps, after warm-up. Used to find the cause of a missed goal.
"""
from __future__ import annotations

import cProfile
import io
import pstats
import sys

import torch

from . import backbones as bbs
from .contenders import Runner
from .suite import groups, select


def find_spec(key: str, hidden: int, names: list[str]):
    specs = {s.key: s for g in groups(hidden) if g.name in names for s in g.members}
    if key not in specs:
        raise ValueError(f"unknown contender {key!r}; known: {', '.join(sorted(specs))}")
    return specs[key]


def profile_contender(key: str, backbone: str, device: torch.device, batch_size: int, seq_len: int,
                      only: list[str] | None, steps: int = 3, rows: int = 25, precision: str = "fp32") -> int:
    bb = bbs.load(backbone, device)
    batch = bbs.make_batch(bb, batch_size, seq_len, device)
    try:
        names = select(backbone, only, device) if only else [g.name for g in groups(bb.hidden)]
        spec = find_spec(key, bb.hidden, names)
    except ValueError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    runner = Runner(spec, bb, batch, device, precision)
    for _ in range(2):
        runner.step()
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            runner.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"# torch.profiler: {spec.key} on {backbone}, {steps} steps, batch {batch_size} x {seq_len}")
    print(prof.key_averages().table(sort_by=sort, row_limit=rows))
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        runner.step()
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(rows)
    print(f"# cProfile (tottime): {spec.key}")
    print(buf.getvalue())
    return 0
