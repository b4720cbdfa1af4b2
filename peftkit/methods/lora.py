"""LoRA: W x + (alpha / r) * B A x on chosen projections (query and value by default).

A is random and B zero at init, so the model starts as the base model; ``r = 0`` attaches nothing. The delta
weight is computed once (:meth:`LoRAPart.delta_weight`) and both merge and unmerge use it. GPT-2's fused
``c_attn`` (a Conv1D producing query, key and value) gets LoRA on the query and value slices only, as in the
LoRA authors' GPT-2 code. The part holds lists of A and B so that AdaMix can mix M copies of either.

``fused_qv`` (GPT-2's ``c_attn``): ``shared`` (default) drops the input out once for the query and value slices and,
for AdaMix, draws one A (and one B) module for both -- the authors' ``MergedLinear`` / ``AdamixMergedLinear`` hold
one A of 2r rows behind one dropout and one expert index; ``independent`` gives each slice its own dropout mask and
its own draw (peftkit's former behaviour).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arch import DEFAULT_TARGETS
from ..config import MethodConfig, check_choice, check_float, check_int, check_targets, register
from ..layers import Gate, PeftState, class_forward, copy_first, mix, patch_forward, routed

FUSED_QV = ("shared", "independent")


class LoRAPart(nn.Module):
    """The low-rank delta of one (slice of a) projection, optionally a mixture and optionally gated."""

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float, dropout: float,
                 state: PeftState, num_a: int = 1, num_b: int = 1, gated: bool = False,
                 expert_init: str = "identical"):
        super().__init__()
        self.A = nn.ModuleList(nn.Linear(in_features, r, bias=False) for _ in range(num_a))
        self.B = nn.ModuleList(nn.Linear(r, out_features, bias=False) for _ in range(num_b))
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout)
        self.gate = Gate(in_features, state) if gated else None  # UniPELT: the gate replaces alpha / r
        self._state = state
        for a in self.A:
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
        for b in self.B:
            nn.init.zeros_(b.weight)
        if expert_init == "identical":  # AdaMix's NLG code: the M A's (and B's) are deep copies of one draw
            copy_first(self.A)
            copy_first(self.B)

    def averaged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) averaged over modules: AdaMix's weight averaging (identity for a single module)."""
        a = self.A[0].weight if len(self.A) == 1 else torch.stack([m.weight for m in self.A]).mean(0)
        b = self.B[0].weight if len(self.B) == 1 else torch.stack([m.weight for m in self.B]).mean(0)
        return a, b

    def delta_weight(self) -> torch.Tensor:
        """scaling * B A with the averaged modules, shape [out, in]: what merge adds and unmerge removes."""
        if self.gate is not None:
            raise ValueError("a gated LoRA (UniPELT) cannot be merged: its gate depends on the input")
        a, b = self.averaged()
        return self.scaling * (b @ a)

    def _one(self, x, i: int, j: int):  # x: after the dropout
        return self.B[j](self.A[i](x))

    def _merged(self, x):
        a, b = self.averaged()
        return F.linear(F.linear(x, a), b)

    def route(self):
        """One routing decision for this part's mixture (shared by the slices of a fused projection)."""
        return routed(self._state, len(self.A), len(self.B), self.training)

    def forward(self, x: torch.Tensor, dropped: Optional[torch.Tensor] = None, choice=None) -> torch.Tensor:
        """The delta for input ``x`` (the host's forward checks for a stale merge). ``dropped``: ``x`` after a
        dropout mask already drawn, ``choice``: a routing decision already drawn (both: a fused projection's
        slices sharing them)."""
        xd = self.dropout(x) if dropped is None else dropped
        out = mix(self._state, self, xd, len(self.A), len(self.B), self._one, self._merged, choice)
        if self.gate is not None:
            return out * self.gate(x).view(-1, *([1] * (out.dim() - 1)))
        return out.mul_(self.scaling)  # a fresh product that nothing saved for backward

    def inference_numel(self) -> int:
        one = self.A[0].weight.numel() + self.B[0].weight.numel()
        return one + (self.gate.inference_numel() if self.gate is not None else 0)


def _host_forward(m: nn.Module, x: torch.Tensor, *args, **kwargs):
    """Forward of a projection carrying LoRA parts: base output plus each part's delta on its slice.

    The deltas are added in place: the projection's fresh output is not saved for its backward (a linear map saves
    its input and weight), so this is autograd-safe and spares one output-sized allocation per part -- for GPT-2's
    fused ``c_attn`` it also spares concatenating the q, k, v slices again. The output keeps the projection's dtype.
    """
    out = class_forward(m, x, *args, **kwargs)
    m._pk_state.check_trainable_forward(m)
    if m._pk_state.merged and not m._pk_gated:
        return out  # the delta is already in the weight
    shared = slice_inputs(m, x)
    for attr, (start, stop) in m._pk_slices.items():
        delta = getattr(m, attr)(x, **shared)
        target = out if start == 0 and stop == out.shape[-1] else out[..., start:stop]
        target.add_(delta)
    return out


def slice_inputs(m: nn.Module, x: torch.Tensor) -> dict:
    """What the LoRA slices of host ``m`` share in one forward: for a fused projection (``fused_qv="shared"``) the
    input after one dropout mask and one routing draw (keyword arguments of :meth:`LoRAPart.forward`), else {}."""
    if not (m._pk_fused and len(m._pk_slices) > 1):
        return {}
    first = getattr(m, next(iter(m._pk_slices)))
    return {"dropped": first.dropout(x), "choice": first.route() if len(first.A) * len(first.B) > 1 else None}


def is_conv1d(m: nn.Module) -> bool:
    """Whether ``m`` is transformers' Conv1D (GPT-2's projections, weight stored [in, out])."""
    return type(m).__name__ == "Conv1D"  # transformers' GPT-2 projection: weight is [in, out]


def host_shape(m: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a LoRA host, Linear or Conv1D."""
    return (m.weight.shape[0], m.weight.shape[1]) if is_conv1d(m) else (m.in_features, m.out_features)


def find_targets(model: nn.Module, arch, targets: Optional[list]) -> list[tuple[str, nn.Module]]:
    """(name, module) of every projection named by ``targets`` (suffixes of module names)."""
    if targets is None:
        if arch.family not in DEFAULT_TARGETS:
            raise ValueError(
                f"no default LoRA targets for model_type {arch.model_type!r}: name the projections, e.g. "
                f"targets=['q_proj', 'v_proj']; Linear modules here: {', '.join(linear_names(model)[:12])}"
            )
        targets = DEFAULT_TARGETS[arch.family]
    found = []
    for t in targets:
        hits = [(n, m) for n, m in model.named_modules()
                if (n == t or n.endswith("." + t)) and (isinstance(m, nn.Linear) or is_conv1d(m))]
        if not hits:
            raise ValueError(f"invalid option targets: no Linear module named {t!r}; allowed names in this model: "
                             f"{', '.join(linear_names(model))}")
        found += hits
    return found


def linear_names(model: nn.Module) -> list[str]:
    names = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear) or is_conv1d(m)}
    return sorted(names)


def attach_lora(model, arch, state: PeftState, r: int, alpha: float, dropout: float, targets: Optional[list],
                num_a: int = 1, num_b: int = 1, gated: bool = False, expert_init: str = "identical",
                fused_qv: str = "shared") -> None:
    """Attach LoRA parts to every target projection. Shared by lora, AdaMix-LoRA and UniPELT. ``fused_qv``: see
    the module docstring."""
    hosts = find_targets(model, arch, targets)
    if r == 0:
        return  # a disabled LoRA: exactly the base model
    for name, m in hosts:
        fin, fout = host_shape(m)
        if arch.family == "gpt2" and name.endswith("c_attn") and fout == 3 * arch.hidden:
            h = arch.hidden
            slices = {"pk_lora_q": (0, h), "pk_lora_v": (2 * h, 3 * h)}
        else:
            slices = {"pk_lora": (0, fout)}
        for attr, (start, stop) in slices.items():
            setattr(m, attr, LoRAPart(fin, stop - start, r, alpha, dropout, state, num_a, num_b, gated, expert_init))
        m._pk_slices, m._pk_state, m._pk_gated = slices, state, gated
        m._pk_fused = fused_qv == "shared"
        patch_forward(m, _host_forward)


def lora_hosts(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "_pk_slices")]


def fold(m: nn.Module, sign: float) -> None:
    """Add (sign=+1) or remove (sign=-1) every part's delta weight into the host's weight."""
    with torch.no_grad():
        for attr, (start, stop) in m._pk_slices.items():
            dw = getattr(m, attr).delta_weight().to(m.weight.dtype)
            if is_conv1d(m):
                m.weight[:, start:stop] += sign * dw.T
            else:
                m.weight[start:stop] += sign * dw


@dataclass
class LoRAConfig(MethodConfig):
    """LoRA (Hu et al.). Defaults: r 8 on query and value, alpha 16 (the LoRA and UniPELT authors' code)."""

    name = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: Optional[list] = field(default=None)
    fused_qv: str = "shared"  # GPT-2 c_attn: one dropout mask for the q and v slices (the LoRA authors')

    def validate(self) -> None:
        check_int("r", self.r, 0)
        check_float("alpha", self.alpha, 0.0, low_open=True)
        check_float("dropout", self.dropout, 0.0, 1.0)
        check_targets(self.targets)
        check_choice("fused_qv", self.fused_qv, FUSED_QV)


def attach(model, cfg: LoRAConfig, arch, state: PeftState) -> None:
    attach_lora(model, arch, state, cfg.r, cfg.alpha, cfg.dropout, cfg.targets, fused_qv=cfg.fused_qv)


register(LoRAConfig, attach)
