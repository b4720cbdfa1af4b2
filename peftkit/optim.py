"""The optimiser step as the authors' code ran it (docs/fidelity.md, rows T1-T2).

Both authors' codes step with the AdamW of transformers 4.x (AdaMix's GLUE fork, ``optimization.AdamW``; UniPELT's
adapter-transformers fork, the same class; AdaMix's NLG code, a copy of it in ``NLG/src/optimizer.py`` run with
``--correct_bias``), which differs from ``torch.optim.AdamW`` in two places:

- epsilon is added to sqrt(v) *before* the bias correction: the update is
  ``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``
  (torch: ``lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)``);
- the decoupled weight decay is applied *after* the Adam update, to the updated weight: ``p -= lr * wd * p``
  (torch shrinks the weight first).

And they ran on PyTorch 1.9 (GLUE) and 1.7.1 (NLG), where ``zero_grad()`` fills gradients with zeros instead of
setting them to None. An AdaMix expert that has been drawn once therefore keeps a (zero) gradient for the rest of
training, and every later step still moves it: its moments decay, its momentum carries it on, and the weight
decay shrinks it, for all M experts at every step. Under torch >= 2 the gradients become None and both optimisers
skip the undrawn experts. ``grad_reset="zero"`` reproduces the old semantics inside the optimiser: a parameter that
has optimiser state (it had a gradient at some earlier step) and has none now is stepped with a zero gradient.

Options (RunSpec fields, the protocol's defaults in :mod:`peftkit.protocols`): ``optimizer`` ``hf-adamw`` (the
authors') | ``torch-adamw`` (``torch.optim.AdamW``'s arithmetic), ``grad_reset`` ``zero`` (torch < 2, the
authors') | ``none`` (torch >= 2: untouched parameters skipped), ``weight_decay_scope`` ``hf`` (every parameter but
biases and LayerNorm weights, the transformers Trainer's groups) | ``all`` (AdaMix's NLG code: one group).
"""
from __future__ import annotations

import math
import torch
import torch.nn as nn

OPTIMIZERS = ("hf-adamw", "torch-adamw")
GRAD_RESETS = ("zero", "none")
DECAY_SCOPES = ("hf", "all")


class AdamW(torch.optim.Optimizer):
    """AdamW with the authors' arithmetic (``variant="hf"``) or torch's (``variant="torch"``), and their
    gradient-reset semantics (``step_zero_grads=True``: a parameter with state but no gradient steps on zeros)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 variant: str = "hf", step_zero_grads: bool = True):
        if variant not in ("hf", "torch"):
            raise ValueError(f"invalid variant={variant!r}: allowed hf, torch")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.variant = variant
        self.step_zero_grads = step_zero_grads

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                state = self.state[p]
                grad = p.grad
                if grad is None:
                    if not (self.step_zero_grads and state):
                        continue
                    grad = torch.zeros_like(p)
                if grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                m.mul_(b1).add_(grad, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
                bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
                if self.variant == "hf":
                    p.addcdiv_(m, v.sqrt().add_(eps), value=-lr * math.sqrt(bc2) / bc1)
                    if wd > 0.0:
                        p.add_(p, alpha=-lr * wd)
                else:
                    if wd > 0.0:
                        p.mul_(1.0 - lr * wd)
                    p.addcdiv_(m, (v.sqrt() / math.sqrt(bc2)).add_(eps), value=-lr / bc1)
        return loss


def decay_parameter_names(model: nn.Module, scope: str = "hf") -> set[str]:
    """Names of the parameters that get weight decay: ``hf`` every parameter whose name has no ``bias`` and that
    does not belong to a LayerNorm (the transformers Trainer's groups, in the authors' forks and today); ``all``
    every parameter (AdaMix's NLG code builds one group without ``--no_decay_bias``)."""
    if scope not in DECAY_SCOPES:
        raise ValueError(f"invalid weight_decay_scope={scope!r}: allowed one of {', '.join(DECAY_SCOPES)}")
    names = set()
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if scope == "all" or ("bias" not in full and not isinstance(mod, nn.LayerNorm)):
                names.add(full)
    return names


def build(model: nn.Module, *, lr: float, weight_decay: float, eps: float, betas=(0.9, 0.999),
          optimizer: str = "hf-adamw", grad_reset: str = "zero", weight_decay_scope: str = "hf") -> AdamW:
    """The optimiser of a run over ``model``'s trainable parameters, in two groups (decayed, not decayed)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"invalid optimizer={optimizer!r}: allowed one of {', '.join(OPTIMIZERS)}")
    if grad_reset not in GRAD_RESETS:
        raise ValueError(f"invalid grad_reset={grad_reset!r}: allowed one of {', '.join(GRAD_RESETS)}")
    decay = decay_parameter_names(model, weight_decay_scope)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
              {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
    return AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, eps=eps,
                 variant="hf" if optimizer == "hf-adamw" else "torch", step_zero_grads=grad_reset == "zero")
