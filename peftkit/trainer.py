"""``PeftTrainer``: a ``transformers.Trainer`` that knows AdaMix and UniPELT.

- AdaMix consistency regularisation (:mod:`peftkit.consistency`) as one batched forward over a doubled batch; its
  task loss carries the Trainer's ``label_smoothing_factor`` (the path bypasses the Trainer's label smoother).
- Evaluation in the inference form: merged (AdaMix weight average, LoRA folded) where the method can merge, or
  the configured AdaMix inference mode; UniPELT (APL) evaluates unmerged. Training resumes unmerged.
- UniPELT gate values are averaged over every evaluation batch (``gate_summary``).
- ``BestAndPatience``: keeps the best dev evaluation's trained parameters (``peftkit.save``, small) and stops
  after ``patience`` evaluations without improvement. It rebuilds its state from the log history on resume.
- :func:`save_routing_state` / :func:`restore_routing_state`: the AdaMix routing generator goes with every
  checkpoint, so a resumed run draws on.
- The optimiser is the authors' (:mod:`peftkit.optim`: transformers 4.x AdamW arithmetic, and PyTorch 1.x's
  zero-filled gradients, so AdaMix experts that were drawn once keep moving when not drawn), unless ``optim`` says
  otherwise.
- Checkpoints hold only what trains (``peftkit.save``: method parameters and head) plus the optimizer, scheduler
  and RNG state, not the frozen backbone, and are written complete or not at all (:mod:`peftkit.checkpoints`);
  a NaN or infinite loss stops the run (:class:`TrainingDiverged`) before anything non-finite is written, so the
  last checkpoint on disk is the last good one.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .atomic import write_json
from .checkpoints import STAGING, checkpoints, fsync_dir, retire
from .consistency import consistency_forward, find_peft_model
from .core import CONFIG_FILE, gate_values, load_weights, merged, save, state_of
from .lmloss import causal_lm_loss

ROUTING_FILE = "peftkit_routing.pt"
#: the run's wall time up to a checkpoint (earlier segments included), so a resumed run reports its whole time
CLOCK_FILE = "peftkit_clock.json"


class TrainingDiverged(RuntimeError):
    """The loss (or a trained parameter) became NaN or infinite: the run stops, keeping its last good checkpoint."""


class PeftTrainer(Trainer):
    def __init__(self, *args, consistency: float = 0.0, causal: bool = False, consistency_ce: str = "first",
                 optim: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.optim = dict(optim or {})  # peftkit.optim.build's settings; {} = the authors' defaults
        self.consistency = consistency
        self.consistency_ce = consistency_ce
        self.causal = causal
        self.model_accepts_loss_kwargs = False  # standard averaging over accumulation steps
        self._gates: dict = defaultdict(lambda: [0.0, 0])
        self.run_clock: tuple[float, float] | None = None  # (this segment's start, seconds of earlier segments)

    def create_optimizer(self, model=None):
        """The authors' AdamW (:func:`peftkit.optim.build`) over the trainable parameters, with the run's lr,
        weight decay, betas and epsilon."""
        if self.optimizer is None:
            from .optim import build

            a = self.args
            self.optimizer = build(self.model if model is None else model, lr=a.learning_rate,
                                   weight_decay=a.weight_decay, eps=a.adam_epsilon, betas=(a.adam_beta1, a.adam_beta2),
                                   **self.optim)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.consistency > 0 and model.training:
            loss, task, kl, out = consistency_forward(model, inputs, self.consistency, causal=self.causal,
                                                      smoothing=self.args.label_smoothing_factor,
                                                      ce=self.consistency_ce)
            return (loss, out) if return_outputs else loss
        if self.causal and inputs.get("labels") is not None:  # the projection only where a label is scored
            loss, out = causal_lm_loss(model, inputs, self.args.label_smoothing_factor)
            return (loss, out) if return_outputs else loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def get_eval_dataloader(self, eval_dataset=None):
        with self._keep_last_batch():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        with self._keep_last_batch():
            return super().get_test_dataloader(test_dataset)

    @contextlib.contextmanager
    def _keep_last_batch(self):
        """Evaluation sees every row: ``drop_last`` (AdaMix's NLG protocol) drops the last incomplete *training*
        batch only, as in gpt2_ft.py, whose validation loader keeps it (the Trainer would apply it to both, and a
        dev set smaller than one evaluation batch would be evaluated on nothing)."""
        drop = self.args.dataloader_drop_last
        self.args.dataloader_drop_last = False
        try:
            yield
        finally:
            self.args.dataloader_drop_last = drop

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss.detach()).all():
            self._diverged(f"the training loss is {float(loss.detach().float().mean())}")
        return loss

    def _diverged(self, what: str) -> None:
        from transformers.trainer_utils import get_last_checkpoint

        out = Path(self.args.output_dir)
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        raise TrainingDiverged(
            f"{what} at step {self.state.global_step + 1}: training stopped, no result was written. "
            + (f"The last good checkpoint is kept ({last}); " if last else "No checkpoint was written yet; ")
            + "lower the learning rate (or use --precision fp32) and rerun with --force to start over.")

    def _save(self, output_dir: Optional[str] = None, state_dict=None):
        """A checkpoint of what trains (like best/), never the frozen backbone; refuses non-finite weights."""
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        peft_model = find_peft_model(self.model)
        bad = [n for n, p in peft_model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        if bad:
            self._diverged(f"parameter {bad[0]} is no longer finite")
        save(peft_model, output_dir)
        torch.save(self.args, output_dir / "training_args.bin")

    def _get_output_dir(self, trial) -> str:
        """While a checkpoint is saved (:meth:`_save_checkpoint`): the staging folder it is written into."""
        root = super()._get_output_dir(trial)
        return os.path.join(root, STAGING) if getattr(self, "_pk_staging", False) else root

    def _save_checkpoint(self, model, trial) -> None:
        """Checkpoints are complete or absent: the Trainer writes one (weights, optimizer, scheduler, RNG, trainer
        state; here also the AdaMix routing state) into ``<checkpoints>/.saving/``, which is renamed into place
        only once every rank has written its part; the older ones are rotated out after that. A kill during the
        save leaves the last complete checkpoint as it was (:func:`peftkit.checkpoints.last_checkpoint` resumes
        from it)."""
        root = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(root / STAGING, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._pk_staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._pk_staging = False
        if self.args.should_save:
            save_routing_state(self.model, root / STAGING / name)
            if self.run_clock:
                start, before = self.run_clock
                write_json(root / STAGING / name / CLOCK_FILE, {"wall_time_s": before + time.time() - start})
        self.accelerator.wait_for_everyone()  # every rank's RNG state is in the staged checkpoint
        if self.args.should_save:
            retire(root / name)  # a checkpoint saved again at the same step
            os.replace(root / STAGING / name, root / name)
            fsync_dir(root)
            shutil.rmtree(root / STAGING, ignore_errors=True)
            complete = checkpoints(root)
            for old in complete[:-self.args.save_total_limit] if self.args.save_total_limit else []:
                retire(old)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if (Path(resume_from_checkpoint) / CONFIG_FILE).is_file():
            load_weights(find_peft_model(model if model is not None else self.model), resume_from_checkpoint)
            return None
        return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def evaluate(self, *args, **kwargs):
        peft_model = find_peft_model(self.model)
        with inference_form(peft_model):
            self._gates.clear()
            metrics = super().evaluate(*args, **kwargs)
        for cb in self.callback_handler.callbacks:  # save the best weights in the trainable (unmerged) form
            if isinstance(cb, BestAndPatience):
                cb.flush(peft_model)
        return metrics

    def predict(self, *args, **kwargs):
        peft_model = find_peft_model(self.model)
        with inference_form(peft_model):
            self._gates.clear()
            return super().predict(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        out = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        for name, g in gate_values(find_peft_model(self.model)).items():
            acc = self._gates[name]
            acc[0] += float(g.float().sum())
            acc[1] += g.numel()
        return out

    def gate_summary(self) -> Optional[dict]:
        return summarise_gates({n: s / c for n, (s, c) in self._gates.items() if c})


def inference_form(peft_model):
    """Merged while evaluating when the method merges (and AdaMix's mode is 'merged'), else as it is."""
    state = state_of(peft_model)
    gated = any(getattr(m, "_pk_gated", False) for m in peft_model.modules())
    if gated or state.inference != "merged" or state.method == "full":
        return contextlib.nullcontext()
    return merged(peft_model)


_GATE = re.compile(r"\.(?:layer|h)\.(\d+)\..*?(pk_adapter\.gate|pk_prefix_gate|query\.pk_lora\.gate|"
                   r"value\.pk_lora\.gate|pk_lora_q\.gate|pk_lora_v\.gate)$")
_COMPONENT = {"pk_adapter.gate": "adapter", "pk_prefix_gate": "prefix", "query.pk_lora.gate": "lora_query",
              "value.pk_lora.gate": "lora_value", "pk_lora_q.gate": "lora_query", "pk_lora_v.gate": "lora_value"}


def summarise_gates(means: dict) -> Optional[dict]:
    """{'layer': [0..L-1], 'adapter': [...], 'prefix': [...], 'lora_query': [...], 'lora_value': [...]}."""
    if not means:
        return None
    table: dict = defaultdict(dict)
    for name, value in means.items():
        m = _GATE.search(name)
        if m:
            table[_COMPONENT[m.group(2)]][int(m.group(1))] = round(value, 6)
    layers = sorted({i for comp in table.values() for i in comp})
    out = {"layer": layers}
    for comp in ("adapter", "prefix", "lora_query", "lora_value"):
        out[comp] = [table[comp].get(i) for i in layers] if comp in table else None
    return out


class BestAndPatience(TrainerCallback):
    """Track the best dev evaluation (saving the trained parameters) and stop after ``patience`` bad ones."""

    def __init__(self, metric: str, greater_is_better: bool, best_dir: Path, patience: Optional[int]):
        self.metric, self.greater, self.best_dir, self.patience = metric, greater_is_better, Path(best_dir), patience
        self.best: Optional[float] = None
        self.best_step: Optional[int] = None
        self.bad = 0
        self.pending = False

    def flush(self, peft_model) -> None:
        """Write the pending best weights (called by the trainer once the model is unmerged again)."""
        if self.pending:
            save(peft_model, self.best_dir)
            write_json(self.best_dir / "best.json", {"step": self.best_step, self.metric: self.best})
            self.pending = False

    def _better(self, value: float) -> bool:
        return self.best is None or (value > self.best if self.greater else value < self.best)

    def on_train_begin(self, args, state, control, **kwargs):
        self.best, self.best_step, self.bad = None, None, 0  # replay the history (a resumed run)
        for log in state.log_history:
            value = log.get("eval_" + self.metric)
            if value is None:
                continue
            if self._better(value):
                self.best, self.best_step, self.bad = value, log.get("step"), 0
            else:
                self.bad += 1

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = (metrics or {}).get("eval_" + self.metric)
        if value is None:
            return
        if self._better(value):
            self.best, self.best_step, self.bad = value, state.global_step, 0
            self.pending = True
        else:
            self.bad += 1
            if self.patience is not None and self.bad >= self.patience:
                control.should_training_stop = True


def save_routing_state(model, checkpoint: Path) -> None:
    """The AdaMix routing generator into a checkpoint (by :meth:`PeftTrainer._save_checkpoint`, into the staged
    checkpoint, so it is complete or absent with it)."""
    torch.save(state_of(find_peft_model(model)).generator.get_state(), Path(checkpoint) / ROUTING_FILE)


def wall_time_before(checkpoint) -> float:
    """Seconds the run had spent up to ``checkpoint`` (its earlier segments included; 0 for a checkpoint written
    before the clock was kept)."""
    import json

    path = Path(checkpoint) / CLOCK_FILE
    return float(json.loads(path.read_text())["wall_time_s"]) if path.is_file() else 0.0


def restore_routing_state(model, checkpoint: str) -> None:
    """The routing generator :func:`save_routing_state` wrote, loaded before resuming (nothing when absent)."""
    path = Path(checkpoint) / ROUTING_FILE
    if path.is_file():
        state_of(find_peft_model(model)).generator.set_state(torch.load(path))
