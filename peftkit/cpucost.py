"""What a run costs on a CPU: the estimate behind ``peftkit plan --profile cpu`` and the ETA of a grid's progress.

A run's time on one CPU thread is modelled from what its resolved spec says it will do:

- training: ``steps x (STEP_S + batch x (tokens x TOKEN_S x c + targets x LM_TOKEN_S))``, tokens = the run's max
  length (UniPELT's protocol pads every batch to it; the other protocols' random batches of 8-64 reach about it;
  NLG: its rows' padded length, :data:`NLG_TOKENS`), ``c`` = the method's cost per token relative to a
  frozen-backbone method (:data:`METHOD_COST`; AdaMix with consistency doubles its batch), targets = NLG's target
  tokens per row, the only positions its LM head projects onto the vocabulary (:data:`LM_TOKEN_S`; 0 elsewhere);
- evaluation: every evaluation during training scores the selection split (``rows x tokens x EVAL_TOKEN_S``), the
  final one the reported set (x4 with AdaMix's inference modes); generation adds ``DECODE_S`` per decoded source;
- length under early stopping: the protocol's patience counts from the best evaluation, assumed to come after
  :data:`BEST_STEP` optimiser steps (a method learns over steps, not epochs: at K = 1,000 an epoch is 63 steps) but
  by :data:`BEST_EPOCH_MAX` epochs at the latest (at K = 100 an epoch is 7 steps, and a run either learns within
  its first dozen epochs or sits at the selection split's majority class until patience ends it), so a run trains
  ``min(epochs, min(ceil(BEST_STEP / steps per epoch), BEST_EPOCH_MAX) + patience)`` epochs; without patience, all
  of them.

A notebook's wall time is the sum over the runs it trains divided by the runs that share the machine at a time
(:data:`SLOTS`: two, one thread each, as ``peftkit reproduce --executor ray --cpus-per-run 1`` runs them on 2
cores). The constants are a calibration: :data:`CALIBRATION` says on which runs it was measured, and
docs/protocols.md puts each notebook's estimate beside its measured wall time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

#: training rows per task (GLUE train sets, NLG training references); low-resource runs train on K rows, few-shot on
#: 16 per class.
TRAIN_ROWS = {"cola": 8551, "sst2": 67349, "mrpc": 3668, "stsb": 5749, "rte": 2490, "qnli": 104743, "mnli": 392702,
              "qqp": 363846, "e2e": 42061, "webnlg": 18102, "dart": 62659}
#: evaluation rows per evaluation during training (GLUE dev; low-resource: its 1,000-row dev split)
DEV_ROWS = {"cola": 1043, "sst2": 872, "mrpc": 408, "stsb": 1500, "rte": 277, "qnli": 5463, "mnli": 19647,
            "qqp": 40430, "e2e": 4672, "webnlg": 2268, "dart": 6980}
#: NLG test sources decoded once at the end
TEST_SOURCES = {"e2e": 630, "webnlg": 1862, "dart": 5097}
#: classes per few-shot task (16 training examples per class)
FEWSHOT_CLASSES = {"sst-2": 2, "sst-5": 5, "mr": 2, "cr": 2, "mpqa": 2, "subj": 2, "trec": 6, "cola": 2, "mrpc": 2,
                   "qnli": 2, "rte": 2, "snli": 3, "mnli": 3, "qqp": 2, "sts-b": 2}
#: NLG rows under the cpu profile (MiniLM's tokenizer, the 1,000 training references a run draws with seed 42,
#: random batches of 8): tokens per row of a batch padded to its longest row, and target tokens per row (the
#: positions the LM head projects onto the vocabulary and the loss scores, peftkit.lmloss). E2E's batches reach 81
#: of their 95-token max length, WebNLG's 131 of 187.
NLG_TOKENS = {"e2e": (81.4, 24.0), "webnlg": (130.9, 27.9)}
#: seconds per optimiser step (fixed part: the optimiser, the data collation, Python)
STEP_S = 0.12
#: seconds per training token of a frozen-backbone method (forward and backward, bf16 autocast, one thread)
TOKEN_S = 1.67e-4
#: seconds per evaluated token (forward only, batch 64)
EVAL_TOKEN_S = 9.1e-5
#: seconds per decoded source (beam search; the cpu profile's beam 5, 48 new tokens, MiniLM as a decoder)
DECODE_S = 3.0
#: seconds per target token of a causal LM's head in training: the projection onto MiniLM's 30,522 words, its
#: backward and the float32 log-softmax (AdaMix's consistency batch projects both passes)
LM_TOKEN_S = 1.35e-3
#: cost per token relative to a frozen-backbone adapter (full fine-tuning: weight gradients and the update of every
#: weight; prefix-tuning: the prefix keys in every attention; UniPELT: its three modules and gates; AdaMix: the
#: routing and the M experts' optimiser state, more with a larger bottleneck, which the model leaves out)
METHOD_COST = {"full": 2.6, "prefix": 3.4, "unipelt": 3.2, "adamix": 1.15}
#: optimiser steps until the best evaluation of an early-stopped run (prefix-tuning learns slowest, then Pfeiffer)
BEST_STEP = {"prefix": 1700, "pfeiffer": 700}
BEST_STEP_DEFAULT = 400
#: the latest epoch of that best evaluation (what bounds it at K = 100 and 500, where BEST_STEP is 15-60 epochs)
BEST_EPOCH_MAX = {"prefix": 20}
BEST_EPOCH_MAX_DEFAULT = 13
#: runs sharing the machine at a time (2 cores, one thread each)
SLOTS = 2
#: the runs these constants were fitted on
CALIBRATION = ("notebook 01's 27 runs (SST-2, K = 1,000, max length 44, bf16 autocast, one thread each, two at a "
               "time, partly beside other jobs): seconds per epoch at batch 16 (63 steps) and at batch 64 (AdaMix, "
               "16 steps) give the fixed cost of a step and of a token; full fine-tuning and prefix-tuning their "
               "median cost per epoch over a frozen-backbone adapter's; the best epochs of the early-stopped runs "
               "their median step. Refitted after 02 (35 runs at K = 100, which the step rule put at 50 epochs and "
               "which stopped after 11-50, median 25): the latest best epoch and UniPELT's cost per token, chosen so "
               "that 01's, 02's and 07's summed run times (70 runs at K = 100, 500 and 1,000) are each within 10%. "
               "Refitted after 05 (its 24 runs took 1.35 of their estimate): Pfeiffer's best step, the median of its "
               "15 early-stopped runs at K = 1,000 in 01 and 05 (693; they trained 15-36 epochs where 400 steps "
               "allowed 17), "
               "and AdaMix's cost per token, the median over its 61 runs in 01, 05, 06 and 08 (1.16) "
               "(docs/protocols.md, 'Estimate against measured'). "
               "NLG's LM head (LM_TOKEN_S) was fitted after 04 on its 4 E2E runs' summed run time (7,138 s; the "
               "runs 0.77-1.17 of their estimates), with NLG_TOKENS counted on their training rows")


def _train_rows(spec) -> int:
    name = spec.task.split(":", 1)[-1]
    if spec.task.startswith("fewshot:"):
        return 16 * FEWSHOT_CLASSES.get(name.lower(), 2)
    rows = spec.k or TRAIN_ROWS.get(name.lower().replace("-", ""), 1000)
    return min(rows, spec.max_train) if spec.max_train else rows


def _eval_rows(spec) -> tuple[int, int]:
    """(selection rows per evaluation during training, reported rows at the end)."""
    name = spec.task.split(":", 1)[-1].lower().replace("-", "")
    if spec.task.startswith("fewshot:"):
        return 32 * 2, 872
    if name in TEST_SOURCES:  # NLG: the dev loss on max_eval rows, then decoding
        n = spec.max_eval or DEV_ROWS[name]
        return n, 0
    dev = 1000 if spec.k else DEV_ROWS.get(name, 1000)
    return (min(dev, spec.max_eval) if spec.max_eval else dev), DEV_ROWS.get(name, 1000)


def epochs_trained(spec) -> float:
    """Epochs a run is expected to train: all of them, or under early stopping the epoch of its best evaluation
    (:data:`BEST_STEP`, at most :data:`BEST_EPOCH_MAX`) plus the patience."""
    if not spec.epochs:
        return 0.0
    if spec.patience and spec.eval_steps is None:
        best = min(math.ceil(BEST_STEP.get(spec.method, BEST_STEP_DEFAULT) / steps_per_epoch(spec)),
                   BEST_EPOCH_MAX.get(spec.method, BEST_EPOCH_MAX_DEFAULT))
        return float(min(spec.epochs, best + spec.patience))
    return float(spec.epochs)


def epoch_steps(rows: int, batch_size: int, drop_last: bool | None = False) -> int:
    """Optimiser steps in one epoch of ``rows`` training examples: the last incomplete batch is a step unless
    ``drop_last``; at least one step. The trainer's schedule (``runner.training_args``) and both plans use this."""
    return max(1, rows // batch_size if drop_last else -(-rows // batch_size))


def steps_per_epoch(spec) -> int:
    """Optimiser steps in one epoch of a resolved run."""
    return epoch_steps(_train_rows(spec), spec.batch_size, spec.drop_last)


def run_seconds(spec) -> float:
    """Estimated seconds of one resolved run on one CPU thread (see the module docstring)."""
    per_epoch = steps_per_epoch(spec)
    epochs = epochs_trained(spec)
    steps = spec.max_steps or per_epoch * epochs
    doubled = 2.0 if spec.method == "adamix" and spec.consistency else 1.0
    c = METHOD_COST.get(spec.method, 1.0) * doubled
    padded, scored = NLG_TOKENS.get(spec.task.lower(), (spec.max_length, 0.0))
    tokens = min(padded, spec.max_length)
    train = steps * (STEP_S + spec.batch_size * (tokens * TOKEN_S * c + scored * LM_TOKEN_S * doubled))
    sel, reported = _eval_rows(spec)
    if spec.eval_steps == 0:
        n_evals = 0
    elif spec.eval_steps:
        n_evals = steps // spec.eval_steps
    else:
        n_evals = epochs
    final = reported * (4 if spec.inference_modes else 1)
    evals = (n_evals * sel + final) * tokens * EVAL_TOKEN_S
    decode = (spec.max_eval or 0) * DECODE_S if not reported and spec.task.split(":")[0] not in ("fewshot",) else 0
    return train + evals + decode


def wall_seconds(specs, slots: int = SLOTS) -> float:
    """A grid's estimated wall time with ``slots`` runs at a time (resolved specs)."""
    return sum(run_seconds(s) for s in specs) / max(1, slots)


@dataclass
class Eta:
    """The ETA of a grid in progress: the estimates of the runs still to train, scaled by how the finished ones
    compared with their estimates, over the runs that share the machine."""

    estimates: dict  # run directory -> estimated seconds
    slots: int = SLOTS
    spent: float = 0.0
    estimated_done: float = 0.0
    started: float = field(default_factory=time.time)

    def finished(self, out: str, seconds: float) -> None:
        est = self.estimates.pop(out, None)
        if est is not None:
            self.spent += seconds
            self.estimated_done += est

    def text(self) -> str:
        left = sum(self.estimates.values())
        if not left:
            return ""
        ratio = self.spent / self.estimated_done if self.estimated_done else 1.0
        minutes = left * ratio / max(1, self.slots) / 60
        return f", ETA ~{minutes:.0f} min" if minutes >= 1 else ", ETA < 1 min"
