"""``peftkit plan``: what a profile's grids cost before anything trains.

    peftkit plan [--profile paper] [--only NOTEBOOK[,NOTEBOOK]] [--gpu a100|h100|h200]

Per notebook: runs (and how many another notebook already trains: one run store serves every study), training
examples x epochs summed over its runs, and GPU-hours on one GPU from the throughput model below, as a range: the
low end stops every run at the earliest its patience allows (the best epoch is the first), the high end runs every
run to its full budget (no early stop). The paper profile's full task lists are counted whatever data is present.
The table is Markdown (the README's is this command's output, checked by a test). Nothing is downloaded: a
backbone's config is read where it is cached, else its name gives its family and size.

Throughput model (stated, not measured on a GPU here):

- training FLOPs per example = c x N x L: N the backbone's non-embedding parameters (BERT-base 85 M, RoBERTa-large
  302 M, GPT-2 medium 302 M), L the mean tokens per example after length grouping (:data:`TOKENS`, per task), c = 6
  for full fine-tuning and 4 for methods that freeze the backbone (no weight gradients), x2 for AdaMix's
  consistency loss (a doubled batch);
- the GPU sustains ``MFU`` (35 %) of its dense bf16 peak, but a step never takes less than :data:`STEP_FLOOR_S`
  (kernel launches and the optimizer at batch 8-16 of short sequences: at these sizes most runs sit on the floor);
- each evaluation is a forward pass (2 x N x L) over the dev set, batch 64; NLG adds beam-search decoding of the
  test sources at :data:`DECODE_S` seconds per source.

Calibration on CPU (MiniLM-L6, SST-2, 512 examples x 1 epoch, batch 16, one thread, bf16 autocast, on a shared
2-core machine): measured 38.0 examples/s for LoRA, 31.3 for AdaMix-LoRA (consistency on: a doubled batch), 52.2
for Pfeiffer and 14.3 for full fine-tuning. The two-term form fits LoRA and AdaMix-LoRA with a fixed 0.33 s a step
and 0.0056 s per example per unit of c (so the doubled batch costs 1.2x, not 2x: the runs sit near the floor, as
the model says small-batch runs do). Full fine-tuning is 2.6x slower than LoRA where c alone predicts 1.5x: the
other 0.65 s a step is AdamW over all 22.7 M weights on one CPU thread, which on a GPU (fused AdamW, HBM) is about
2 ms a step for BERT-base and is left out. The GPU constants (MFU, the step floor, decoding) are assumptions, not
measurements: no GPU was available to calibrate them.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass

from .cpucost import DEV_ROWS, FEWSHOT_CLASSES, TEST_SOURCES, TRAIN_ROWS, epoch_steps

#: mean tokens per example after length grouping (assumed from the tasks' mean lengths; few-shot adds the prompt)
TOKENS = {"cola": 16, "sst2": 32, "mrpc": 56, "stsb": 40, "rte": 80, "qnli": 56, "mnli": 48, "qqp": 40, "e2e": 64,
          "webnlg": 72, "dart": 72, "fewshot": 64}
#: backbone -> (non-embedding parameters, layers)
BACKBONES = {"bert-base-uncased": (85e6, 12), "roberta-large": (302e6, 24), "gpt2-medium": (302e6, 24),
             "minilm": (21e6, 6)}
#: dense bf16 peak FLOP/s
GPUS = {"a100": 312e12, "h100": 989e12, "h200": 989e12}
MFU = 0.35
STEP_FLOOR_S = {6: 0.015, 12: 0.030, 24: 0.060}
DECODE_S = 0.15
EVAL_BATCH = 64


@dataclass
class Row:
    notebook: str
    runs: int = 0
    shared: int = 0  # runs another notebook (earlier in order) also asks for: trained once
    examples_epochs: float = 0.0  # training examples seen, summed over runs (full budget)
    gpu_h_low: float = 0.0
    gpu_h_high: float = 0.0
    cpu_h: float = 0.0  # this machine: estimated wall hours with cpucost.SLOTS runs at a time (peftkit.cpucost)


def _backbone(model: str) -> tuple[float, int]:
    key = model.lower().rsplit("/", 1)[-1]
    for name, value in BACKBONES.items():
        if name in key:
            return value
    return BACKBONES["bert-base-uncased"]


def run_cost(spec, gpu: str = "a100") -> tuple[float, float, float]:
    """(examples seen at full budget, GPU-seconds low, GPU-seconds high) of one resolved RunSpec."""
    from .data import task_kind

    kind = task_kind(spec.task)
    name = spec.task.split(":", 1)[-1].lower().replace("-", "") if kind != "fewshot" else spec.task.split(":", 1)[-1]
    if kind == "fewshot":
        rows, tokens, dev = 16 * FEWSHOT_CLASSES.get(name.lower(), 2), TOKENS["fewshot"], 32 * 2
    else:
        rows = spec.k if spec.k else TRAIN_ROWS[name]
        tokens, dev = TOKENS[name], (1000 if spec.k else DEV_ROWS[name])
    if spec.max_train:
        rows = min(rows, spec.max_train)
    n, layers = _backbone(spec.model)
    c = (6 if spec.method == "full" else 4) * (2 if spec.method == "adamix" and spec.consistency else 1)
    rate = GPUS[gpu] * MFU
    floor = STEP_FLOOR_S[layers]
    steps_per_epoch = epoch_steps(rows, spec.batch_size, spec.drop_last)

    def seconds(epochs: float) -> float:
        steps = spec.max_steps if spec.max_steps else steps_per_epoch * epochs
        train = max(steps * spec.batch_size * c * n * tokens / rate, steps * floor)
        n_evals = (steps // spec.eval_steps if spec.eval_steps else (0 if spec.eval_steps == 0 else epochs)) + 1
        evals = n_evals * max(dev * 2 * n * tokens / rate, -(-dev // EVAL_BATCH) * floor / 3)
        decode = TEST_SOURCES.get(name, 0) * DECODE_S
        return train + evals + decode

    epochs = spec.epochs or 0
    full = seconds(epochs)
    early = epochs and spec.patience and spec.eval_steps is None and kind != "nlg"
    low = seconds(min(epochs, spec.patience + 1)) if early else full
    seen = (spec.max_steps * spec.batch_size) if spec.max_steps else rows * epochs
    return seen, low, full


def plan(profile: str = "paper", only: str | None = None, gpu: str = "a100") -> list[Row]:
    from .cpucost import wall_seconds
    from .experiment import resolve
    from .reproduce import select_notebooks
    from .studies import NOTEBOOKS, grid

    if gpu not in GPUS:
        raise ValueError(f"invalid --gpu {gpu!r}: allowed one of {', '.join(GPUS)}")
    names = select_notebooks(dict.fromkeys(NOTEBOOKS), only)
    seen: set[str] = set()
    rows = []
    with hub_offline():
        for nb in names:
            row = Row(nb)
            trained = []  # the resolved runs this notebook trains itself (not those an earlier one shares)
            for spec in grid(NOTEBOOKS[nb], profile, follow_data=False):
                row.runs += 1
                if spec.out in seen:
                    row.shared += 1
                    continue
                seen.add(spec.out)
                r = resolve(spec)
                ex, low, high = run_cost(r, gpu)
                trained.append(r)
                row.examples_epochs += ex
                row.gpu_h_low += low / 3600
                row.gpu_h_high += high / 3600
            row.cpu_h = wall_seconds(trained) / 3600
            rows.append(row)
    return rows


@contextlib.contextmanager
def hub_offline():
    """``HF_HUB_OFFLINE=1`` while a plan is counted: a backbone named by its hub id is looked up in the local cache
    only (:func:`peftkit.backbones.resolve`), never downloaded (weights included) nor waited for offline."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        os.environ.pop("HF_HUB_OFFLINE") if saved is None else os.environ.__setitem__("HF_HUB_OFFLINE", saved)


def total(rows: list[Row]) -> Row:
    """The sum of the rows (the table's last line)."""
    return Row("total", sum(r.runs for r in rows), sum(r.shared for r in rows), sum(r.examples_epochs for r in rows),
               sum(r.gpu_h_low for r in rows), sum(r.gpu_h_high for r in rows), sum(r.cpu_h for r in rows))


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 10 else f"{h:.1f}"


def table(rows: list[Row], profile: str, gpu: str) -> str:
    """The plan as Markdown; the scaled profiles (cpu, smoke) add this machine's estimated wall time
    (:mod:`peftkit.cpucost`, its calibration stated there)."""
    here = profile != "paper"
    lines = [f"| notebook ({profile} profile) | runs | of which trained by an earlier notebook | training examples "
             f"x epochs | GPU-hours on one {gpu.upper()} (early stop .. full budget) |"
             + (" wall time here, 2 runs at a time (estimate) |" if here else ""),
             "|---|---:|---:|---:|---:|" + ("---:|" if here else "")]
    for r in rows:
        lines.append(f"| {r.notebook} | {r.runs:,} | {r.shared:,} | {r.examples_epochs / 1e6:,.1f} M | "
                     f"{_hours(r.gpu_h_low)} .. {_hours(r.gpu_h_high)} |" + (f" {_minutes(r.cpu_h)} |" if here else ""))
    tot = total(rows)
    lines.append(f"| **total** | **{tot.runs:,}** ({tot.runs - tot.shared:,} to train) | {tot.shared:,} | "
                 f"{tot.examples_epochs / 1e6:,.1f} M | **{tot.gpu_h_low:,.0f} .. {tot.gpu_h_high:,.0f}** |"
                 + (f" **{_minutes(tot.cpu_h)}** |" if here else ""))
    return "\n".join(lines)


def _minutes(hours: float) -> str:
    return f"{hours * 60:,.0f} min" if hours < 2 else f"{hours:.1f} h"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="peftkit plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="paper", help="smoke | cpu | paper (default paper)")
    ap.add_argument("--only", help="comma-separated notebook or study names (default: all)")
    ap.add_argument("--gpu", default="a100", help=f"one of {', '.join(GPUS)} (the throughput model's peak)")
    args = ap.parse_args(argv)
    try:
        from .studies import PROFILES

        if args.profile not in PROFILES:
            raise ValueError(f"invalid --profile {args.profile!r}: allowed one of {', '.join(PROFILES)}")
        rows = plan(args.profile, args.only, args.gpu)
    except ValueError as e:
        print(f"peftkit plan: error: {e}", file=sys.stderr)
        return 2
    print(table(rows, args.profile, args.gpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
