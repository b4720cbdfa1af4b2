"""Blocks every method shares: the per-model state, stochastic routing over M modules, and the UniPELT gate.

Method-owned submodules are always registered under an attribute whose name starts with ``pk_``: that name
is what decides which parameters train, which are saved and which are counted.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

INFERENCE_MODES = ("merged", "random", "ensemble")  # plus "fixed-K"
EXPERT_INITS = ("independent", "identical")  # AdaMix: how the M modules of a mixture start


def parse_inference(value: Any, num_modules: int) -> None:
    """Validate an AdaMix inference mode: merged | random | ensemble | fixed-K (0 <= K < num_modules)."""
    allowed = f"one of merged, random, ensemble, fixed-K with 0 <= K < {num_modules}"
    if isinstance(value, str) and value in INFERENCE_MODES:
        return
    if isinstance(value, str) and value.startswith("fixed-") and value[6:].isdigit() and int(value[6:]) < num_modules:
        return
    raise ValueError(f"invalid option inference={value!r}: allowed {allowed}")


@dataclass
class PeftState:
    """What one peftkit-equipped model carries (``model._peftkit``): config, routing RNG, per-forward context."""

    method: str
    config: Any
    arch: Any
    train_head: bool = True
    train_pooler: bool = False
    seed: Optional[int] = None
    generator: torch.Generator = field(default_factory=torch.Generator)
    inference: str = "merged"  # AdaMix: how mixtures behave outside training
    groups: int = 1  # AdaMix consistency: number of independently routed batch chunks per forward
    merged: bool = False
    mask: Optional[torch.Tensor] = None  # [B, S] attention mask of the current forward (masked gate average)
    prefix_kv: Optional[torch.Tensor] = None  # [layers, 2, L, h] for the current forward
    before_forward: list = field(default_factory=list)  # callbacks(state) run by the model pre-hook

    def draw(self, n: int, groups: int = 1) -> list[int]:
        """``groups`` module indices in [0, n), uniform, from the model's routing generator. Drawn on the generator's
        own device (the CPU) whatever the default device (``torch.set_default_device("cuda")`` or a ``with
        torch.device(...)`` block), so a model routes the same on CPU and CUDA for the same seed."""
        return torch.randint(n, (groups,), generator=self.generator, device=self.generator.device).tolist()

    def check_trainable_forward(self, module: nn.Module) -> None:
        if module.training and self.merged:
            raise RuntimeError(
                "this model is merged (peftkit.merge); call peftkit.unmerge(model) before training it, "
                "so that training never sees a stale merged copy"
            )


def copy_first(modules: nn.ModuleList) -> None:
    """AdaMix ``expert_init="identical"``: every module of a mixture starts as a copy of the first."""
    with torch.no_grad():
        for m in list(modules)[1:]:
            for p, p0 in zip(m.parameters(), modules[0].parameters()):
                p.copy_(p0)


def patch_forward(module: nn.Module, fn: Callable) -> None:
    """Give ``module`` an instance-level forward ``fn(module, *args, **kw)``; parameter names stay unchanged."""
    module.forward = functools.partial(fn, module)


def class_forward(module: nn.Module, *args, **kwargs):
    """The module's own (class) forward, bypassing a peftkit patch."""
    return type(module).forward(module, *args, **kwargs)


INITS = ("bert", "pytorch")  # N(0, 0.02) weights and zero biases (BERT's init_weights) | PyTorch's defaults
GATE_AVERAGES = ("all", "masked")  # every position of the forward, padding included | the non-padding positions


def init_module(module: nn.Module, how: str = "bert") -> None:
    """(Re-)initialise every Linear / Embedding in ``module``: ``bert`` draws weights from N(0, 0.02) with zero
    biases, as BERT's ``init_weights`` does for every module the authors' forks added; ``pytorch`` restores
    PyTorch's own defaults (``reset_parameters``: Kaiming-uniform Linear, N(0, 1) Embedding)."""
    if how not in INITS:
        raise ValueError(f"invalid option init={how!r}: allowed one of {', '.join(INITS)}")
    for m in module.modules():
        if not isinstance(m, (nn.Linear, nn.Embedding)):
            continue
        if how == "pytorch":
            m.reset_parameters()
            continue
        nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


def token_mean(values: torch.Tensor, state: Optional[PeftState]) -> torch.Tensor:
    """Mean of ``values`` [B, T, 1] over the non-padding positions of the current forward -> [B]."""
    mask = state.mask if state is not None else None
    b, t = values.shape[0], values.shape[1]
    if mask is None or mask.dim() != 2 or mask.shape[0] != b or mask.shape[1] < t:
        return values.mean(dim=(1, 2))
    m = mask[:, -t:].to(values.dtype).unsqueeze(-1)
    return (values * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp(min=1.0)


class Gate(nn.Module):
    """UniPELT gate: the per-position sigmoid(Linear(h, 1)), averaged over positions: one scalar per example.

    ``average="all"`` (default, the authors' fork: ``torch.mean(torch.sigmoid(gate(x)), dim=1)``) averages over
    every position of the forward, padding included, so a gate depends on how far the batch is padded (the
    authors padded every input to 128 tokens); ``average="masked"`` averages over the positions the attention
    mask keeps, so that padding does not change it. The projection starts as N(0, 0.02) with a zero bias (the
    fork's ``init_weights``). The last value is kept (detached) in ``self.last`` so gates can be logged.
    """

    def __init__(self, hidden: int, state: PeftState, average: str = "all"):
        super().__init__()
        if average not in GATE_AVERAGES:
            raise ValueError(f"invalid option gate_average={average!r}: allowed one of {', '.join(GATE_AVERAGES)}")
        self.proj = nn.Linear(hidden, 1)
        init_module(self.proj, "bert")
        self.average = average
        self._state = state
        self.last: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.proj(x))
        g = token_mean(s, self._state) if self.average == "masked" else s.mean(dim=(1, 2))
        self.last = g.detach()
        return g

    def inference_numel(self) -> int:
        return sum(p.numel() for p in self.parameters())


def routed(state: PeftState, n_first: int, n_second: int, training: bool):
    """Decide the (first, second) module indices of a two-sided mixture for one forward.

    Returns a list of (first, second) pairs, one per batch chunk (training with ``state.groups`` > 1), or the
    string "merged" / "ensemble" for the eval modes that do not pick one module.
    """
    groups = state.groups if training else 1
    mode = "random" if training else state.inference
    if mode in ("merged", "ensemble"):
        return mode
    if mode.startswith("fixed-"):
        k = int(mode[6:])
        return [(k % n_first, k % n_second)]
    firsts = state.draw(n_first, groups) if n_first > 1 else [0] * groups
    seconds = state.draw(n_second, groups) if n_second > 1 else [0] * groups
    return list(zip(firsts, seconds))


def mix(state: PeftState, module: nn.Module, x: torch.Tensor, first: int, second: int, one: Callable,
        merged: Callable, choice=None) -> torch.Tensor:
    """Output of a two-sided mixture (adapter down/up, LoRA A/B) for one forward: the single module, the merged
    (weight-averaged) module, the ensemble mean, or ``one(chunk, i, j)`` with routed indices per batch chunk.
    ``choice``: a routing decision already drawn (:func:`routed`) for mixtures that share one draw."""
    if first == 1 and second == 1:
        return one(x, 0, 0)
    if choice is None:
        choice = routed(state, first, second, module.training)
    module.last_route = choice  # what this forward used (peftkit.routing reads it)
    if choice == "merged":
        return merged(x)
    if choice == "ensemble":
        n = max(first, second)
        return sum(one(x, i % first, i % second) for i in range(n)) / n
    return run_chunks(x, choice, one)


def run_chunks(x: torch.Tensor, pairs: list, fn: Callable) -> torch.Tensor:
    """Apply ``fn(chunk, first, second)`` to equal batch chunks, one routing pair each."""
    if len(pairs) == 1:
        return fn(x, *pairs[0])
    chunks = x.chunk(len(pairs), dim=0)
    if len(chunks) != len(pairs):
        raise ValueError(f"batch of {x.shape[0]} cannot be split into {len(pairs)} routing groups")
    return torch.cat([fn(c, a, b) for c, (a, b) in zip(chunks, pairs)], dim=0)


@functools.lru_cache(maxsize=None)
def _signature(fn: Callable) -> inspect.Signature:
    return inspect.signature(fn)


def bind_call(fn: Callable, args: tuple, kwargs: dict) -> dict:
    """Map a call's positional and keyword arguments to parameter names (for model-level hooks)."""
    bound = _signature(fn).bind_partial(*args, **kwargs)
    out = dict(bound.arguments)
    extra = out.pop("kwargs", None)
    if isinstance(extra, dict):
        out.update(extra)
    return out


def expert_spread(model: nn.Module) -> Optional[dict]:
    """How far apart an AdaMix model's M modules are: over every mixture with several down-projections (LoRA: A
    matrices; prefix: embeddings; prompt: prompts), the mean pairwise Frobenius distance between them and their
    mean norm, averaged over mixtures (``result["expert_spread"]``); None when the model has no such mixture.
    Weight averaging merges them, so the spread says how much the merge averages away."""
    distances, norms = [], []
    for m in model.modules():
        # the per-module side: adapter down-projections, LoRA A, AdaMix-prefix embeddings, AdaMix-prompt prompts
        experts = next((getattr(m, a) for a in ("down", "A", "embeddings", "tables")
                        if isinstance(getattr(m, a, None), nn.ModuleList)), None)
        if experts is None or len(experts) < 2:
            continue
        w = torch.stack([e.weight.detach().float().flatten() for e in experts])
        distances.append(float(torch.pdist(w).mean()))
        norms.append(float(w.norm(dim=1).mean()))
    if not distances:
        return None
    return {"mixtures": len(distances), "mean_pairwise_distance": sum(distances) / len(distances),
            "mean_norm": sum(norms) / len(norms)}
