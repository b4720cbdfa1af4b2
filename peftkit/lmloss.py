"""The causal LM loss, with the vocabulary projection computed only where a label is scored.

A causal LM's head projects every position onto the vocabulary (MiniLM: 30,522 words; GPT-2: 50,257), but the
NLG loss (the authors' and the Trainer's) scores only the positions whose *next* token is a target (label not
-100): the source, the separator and the padding are masked out. :func:`causal_lm_loss` runs the model with a
forward pre-hook on its output embedding (the final vocabulary projection) that keeps only those positions, so the
projection, the log-softmax and their backward cost what the targets cost. The loss and its gradients are those
of the full computation (``tests/test_lmloss.py`` checks both against the Trainer's ``LabelSmoother``): the same
mean over target tokens of ``(1 - eps) * NLL + eps * mean over the vocabulary of -log p``, in float32.

The model's ``logits`` come back as one row per scored position (``[N, vocab]``, in row-major order of the
``[batch, length]`` positions), not ``[batch, length, vocab]``.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def scored_positions(labels: torch.Tensor) -> torch.Tensor:
    """``[batch, length]`` bool: the positions whose next token's label is not -100 (the causal shift)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def scored_targets(labels: torch.Tensor) -> torch.Tensor:
    """The target ids of :func:`scored_positions`, in the same order (``[N]``)."""
    shifted = labels[:, 1:]
    return shifted[shifted != -100]


def smoothed_nll(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean over rows of ``(1 - eps) * -log p[target] + eps * mean_v(-log p[v])``; log-softmax in float32."""
    logp = F.log_softmax(logits.float(), -1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if smoothing:
        nll = (1.0 - smoothing) * nll + smoothing * (-logp.mean(-1))
    return nll.mean()


@contextlib.contextmanager
def project_only(model: torch.nn.Module, keep: torch.Tensor):
    """While active, the model's output embedding sees only the hidden states at ``keep`` (``[batch, length]``
    bool), so its logits are ``[keep.sum(), vocab]``."""
    head = getattr(model, "get_output_embeddings", lambda: None)()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embedding to restrict to the scored positions")

    def select(module, args):
        hidden = args[0]
        if hidden.shape[:2] != keep.shape:
            raise ValueError(f"the head's input has positions {tuple(hidden.shape[:2])}, the labels "
                             f"{tuple(keep.shape)}")
        return (hidden[keep],) + tuple(args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def causal_lm_loss(model: torch.nn.Module, inputs: dict, smoothing: float = 0.0):
    """(loss, outputs) of one forward: the label-smoothed next-token loss over the target tokens. ``inputs`` holds
    ``labels`` (``[batch, length]``, -100 where nothing is scored); the model is called without them."""
    labels = inputs["labels"]
    with project_only(unwrap(model), scored_positions(labels)):
        out = model(**{k: v for k, v in inputs.items() if k != "labels"})
    return smoothed_nll(out.logits, scored_targets(labels), smoothing), out


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model under a DistributedDataParallel wrapper (whose ``module`` carries the output embedding)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
