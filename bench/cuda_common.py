"""What every section of ``bench.cuda_check`` shares: the sizes of a run (paper-size on a GPU, tiny in ``--dry``
mode), the time budget, the backbones built once and reused, and the section result record."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import backbones as bbs

STATUSES = ("pass", "fail", "skipped")
TIME_BUDGET = "skipped: time budget"


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU check and its ``--dry`` rehearsal on CPU (the code paths do not)."""

    tiny: bool  # tiny_config backbones (2 layers, hidden 32) instead of the paper sizes
    batch: int = 8  # methods, routing: one fixed batch of batch x seq_len tokens, repeated
    seq_len: int = 64
    steps: int = 20  # training steps per method and precision
    full_lr: float = 1e-5  # AdamW rate of full fine-tuning (a random 355M model spikes at 1e-4); the rest: 1e-3
    bench_batch: int = 16  # the timing section: bench's default batch (16 x 128 tokens)
    bench_seq_len: int = 128
    bench_rounds: tuple = (50, 5)  # timed rounds, warm-up rounds (bench.suite.CUDA_REPEATS' training numbers)
    gen_profile: str = "paper"  # peftkit.presets.generation_settings profile: beams, length penalty, n-gram block
    gen_max_new_tokens: int = 32
    pack_runs: int = 4  # the Ray section: how many runs share the GPU
    pack_steps: int = 200  # training steps per packed run
    pack_dims: tuple = (768, 12, 12, 3072)  # hidden, layers, heads, FFN of the saved random BERT (BERT-base)
    pack_max_length: int = 64
    budget_s: float = 420.0  # the whole check (+ at most 30 s overrun, + start-up: under 8 minutes)


PAPER = Sizes(tiny=False)
DRY = Sizes(tiny=True, batch=4, seq_len=16, steps=10, full_lr=1e-3, bench_batch=4, bench_seq_len=16,
            bench_rounds=(2, 1), gen_profile="smoke", gen_max_new_tokens=8, pack_runs=2, pack_steps=6,
            pack_dims=(32, 2, 4, 64), pack_max_length=32, budget_s=600.0)


def log(msg: str) -> None:
    print(f"[cuda-check] {msg}", file=sys.stderr, flush=True)


@dataclass
class Budget:
    """The check's clock: a global deadline, and per section a deadline no later than it."""

    total_s: float
    start: float = field(default_factory=time.perf_counter)
    section_end: float = float("inf")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left to the current section (its cap, or the global deadline if that comes first)."""
        return min(self.start + self.total_s, self.section_end) - time.perf_counter()

    def left_total(self) -> float:
        return self.start + self.total_s - time.perf_counter()

    def open_section(self, cap_s: float) -> None:
        self.section_end = time.perf_counter() + cap_s


@dataclass
class Context:
    """What a section function receives."""

    device: torch.device
    sizes: Sizes
    budget: Budget
    tmp: Path  # a scratch directory of this run (removed at the end)
    dry: bool
    options: dict = field(default_factory=dict)  # command-line switches a section reads (e.g. dry_ray)
    _models: dict = field(default_factory=dict)

    def backbone(self, name: str, head: str = "classifier") -> bbs.Backbone:
        """A pristine backbone, built once on the device (sections deep-copy it, never train it)."""
        key = (name, head)
        if key not in self._models:
            t0 = time.perf_counter()
            self._models[key] = bbs.build(name, self.device, tiny=self.sizes.tiny, head=head)
            log(f"built {name} ({head}, {self._models[key].params:,} parameters) in {time.perf_counter() - t0:.1f} s")
        return self._models[key]

    def release(self, keep: tuple = ()) -> None:
        """Drop the cached backbones not named in ``keep`` and give their memory back."""
        for key in [k for k in self._models if k[0] not in keep]:
            del self._models[key]
        free_memory(self.device)


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def result(status: str, summary: str, details=None, reason: str | None = None) -> dict:
    """A section's record: ``status`` pass | fail | skipped, a one-line ``summary`` with its key numbers, the
    ``details`` (rows or numbers) and, when skipped or failed, the ``reason``."""
    if status not in STATUSES:
        raise ValueError(f"invalid status {status!r}: allowed {', '.join(STATUSES)}")
    return {"status": status, "summary": summary, "details": details, "reason": reason}


def skipped(reason: str) -> dict:
    return result("skipped", reason, reason=reason)


def verdict(ok: list) -> str:
    """pass when every item that ran passed, fail otherwise; a section that ran nothing is skipped."""
    if not ok:
        return "skipped"
    return "pass" if all(ok) else "fail"


def partial_note(ran: int, total: int) -> str:
    return "" if ran == total else f" (partial: {total - ran} of {total} not run, time budget)"


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def train_steps(opt: torch.optim.Optimizer, steps: int, loss_of, precision) -> tuple[list[float], float]:
    """``steps`` optimiser steps of the loss ``loss_of()`` computes (its forward run under ``precision()``, an
    autocast context or none): the training loop the methods and DDP sections share. Returns (the loss of every
    step, the seconds they took)."""
    losses, t0 = [], time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with precision():
            loss = loss_of()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, time.perf_counter() - t0
