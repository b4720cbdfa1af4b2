"""AdaMix consistency regularisation: two stochastic passes, one batched forward.

The batch is doubled and the two halves are routed independently (``peftkit.route_groups(model, 2)``), dropout
being independent per example anyway. As in the authors' code (``RobertaForSequenceClassification.forward`` for
GLUE, ``GPT2LMModel.forward`` for NLG), the loss is the task loss of the *first* pass plus
``w * 0.5 * [KL(p2 || p1) + KL(p1 || p2)]``, where in each term the target distribution is detached
(``consistency_ce="mean"``: the task loss averaged over both passes instead). The task loss carries the
configured label smoothing (the authors' NLG loss: (1 - eps) * NLL + eps * mean over the vocabulary of -log p).
Classification: KL per example, mean over the batch. Generation: KL per target token (positions whose label is not
-100, shifted for causal LMs), mean over those tokens; a causal LM projects onto the vocabulary only at those positions
(:mod:`peftkit.lmloss`), so its ``logits`` are ``[2N, vocab]``: the first pass's N scored positions, then the
second's. Regression: MSE task loss (the KL of a 1-logit output is 0).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .core import has_state, route_groups
from .lmloss import project_only, scored_positions, scored_targets, smoothed_nll, unwrap

CE_MODES = ("first", "mean")


def find_peft_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module carrying the peftkit state (the model itself, or the backbone inside a wrapper / DDP)."""
    for m in model.modules():
        if has_state(m):
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


def task_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0, causal: bool = False):
    """Mean task loss of one pass: MSE for one float output (regression), else cross-entropy with label smoothing
    ``smoothing`` over the positions whose label is not -100 (labels shifted by one for causal LMs)."""
    if logits.shape[-1] == 1 and labels.is_floating_point():
        return F.mse_loss(logits.float().view(-1), labels.float().view(-1))
    if causal:
        logits, labels = logits[..., :-1, :], labels[..., 1:]
    logp = F.log_softmax(logits.float(), -1).reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    keep = labels != -100
    logp, labels = logp[keep], labels[keep]
    nll = -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if smoothing:
        nll = (1.0 - smoothing) * nll + smoothing * (-logp.mean(-1))
    return nll.mean()


def double(inputs: dict) -> dict:
    return {k: torch.cat([v, v], 0) if isinstance(v, torch.Tensor) and v.dim() > 0 else v for k, v in inputs.items()}


def consistency_forward(model: torch.nn.Module, inputs: dict, weight: float, causal: bool = False,
                        smoothing: float = 0.0, ce: str = "first"):
    """Two independently routed passes in one forward. Returns (loss, task_loss, kl, outputs of the doubled batch).

    ``inputs`` must hold ``labels``. ``ce``: ``first`` (the authors': the first pass's task loss) or ``mean``
    (both passes'). ``smoothing``: label smoothing of the task loss (the Trainer's ``label_smoothing_factor``).
    """
    if ce not in CE_MODES:
        raise ValueError(f"invalid consistency_ce={ce!r}: allowed one of {', '.join(CE_MODES)}")
    peft_model = find_peft_model(model)
    labels = inputs["labels"]
    doubled = {k: v for k, v in double(inputs).items() if k != "labels"}
    if causal:  # the vocabulary projection only at the scored positions (peftkit.lmloss): rows [pass 1; pass 2]
        keep = scored_positions(labels)
        with route_groups(peft_model, 2), project_only(unwrap(model), torch.cat([keep, keep])):
            out = model(**doubled)
        l1, l2 = out.logits.chunk(2, dim=0)
        targets = scored_targets(labels)
        task = smoothed_nll(l1, targets, smoothing)
        if ce == "mean":
            task = 0.5 * (task + smoothed_nll(l2, targets, smoothing))
        kl = symmetric_kl(l1, l2)
        return task + weight * kl, task.detach(), kl.detach(), out
    with route_groups(peft_model, 2):
        out = model(**doubled)
    l1, l2 = out.logits.chunk(2, dim=0)
    task = task_loss(l1, labels, smoothing)
    if ce == "mean":
        task = 0.5 * (task + task_loss(l2, labels, smoothing))
    mask = (labels != -100) if l1.dim() == 3 else None  # token-level: only target tokens count
    kl = symmetric_kl(l1, l2, mask)
    return task + weight * kl, task.detach(), kl.detach(), out
