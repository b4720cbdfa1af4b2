"""AdaMix consistency regularisation: two stochastic passes, one batched forward.

The batch is doubled and the two halves are routed independently (``peftkit.route_groups(model, 2)``), dropout
being independent per example anyway. The loss is the task loss averaged over both passes plus
``w * 0.5 * [KL(p2 || p1) + KL(p1 || p2)]``, where in each term the target distribution is detached.
Classification: w = 1, KL per example, mean over the batch. Generation: w = 100, KL per target token (positions
whose label is not -100, shifted for causal LMs), mean over those tokens. Regression: w = 0 (one pass).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .core import route_groups


def find_peft_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module carrying the peftkit state (the model itself, or the backbone inside a wrapper / DDP)."""
    for m in model.modules():
        if getattr(m, "_peftkit", None) is not None:
            return m
    raise ValueError("no peftkit method is attached to this model")


def symmetric_kl(logits1: torch.Tensor, logits2: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """0.5 * [KL(p2.detach() || p1) + KL(p1.detach() || p2)], per row (last dim = classes), averaged over rows
    (or over the rows where ``mask`` is true)."""
    lp1, lp2 = F.log_softmax(logits1.float(), -1), F.log_softmax(logits2.float(), -1)
    kl_1 = (lp2.detach().exp() * (lp2.detach() - lp1)).sum(-1)  # KL(p2 || p1), p2 the target
    kl_2 = (lp1.detach().exp() * (lp1.detach() - lp2)).sum(-1)  # KL(p1 || p2), p1 the target
    per_row = 0.5 * (kl_1 + kl_2)
    if mask is None:
        return per_row.mean()
    mask = mask.to(per_row.dtype)
    return (per_row * mask).sum() / mask.sum().clamp(min=1.0)


def double(inputs: dict) -> dict:
    return {k: torch.cat([v, v], 0) if isinstance(v, torch.Tensor) and v.dim() > 0 else v for k, v in inputs.items()}


def consistency_forward(model: torch.nn.Module, inputs: dict, weight: float, causal: bool = False):
    """Two independently routed passes in one forward. Returns (loss, task_loss, kl, outputs of the doubled batch).

    ``inputs`` must hold ``labels``; the model computes the task loss over the doubled batch, which is the
    average of the two passes' losses.
    """
    peft_model = find_peft_model(model)
    with route_groups(peft_model, 2):
        out = model(**double(inputs))
    l1, l2 = out.logits.chunk(2, dim=0)
    mask = None
    if l1.dim() == 3:  # token-level: only target tokens count
        labels = inputs["labels"]
        if causal:
            l1, l2, labels = l1[:, :-1], l2[:, :-1], labels[:, 1:]
        mask = labels != -100
    kl = symmetric_kl(l1, l2, mask)
    return out.loss + weight * kl, out.loss.detach(), kl.detach(), out
