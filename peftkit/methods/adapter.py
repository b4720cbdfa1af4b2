"""Bottleneck adapters: Houlsby (after attention and after the feed-forward block) and Pfeiffer (after FFN).

An adapter is down-projection, non-linearity, up-projection and a residual. The layer holds lists of down and
up projections so that AdaMix can mix M copies of either side; a plain adapter has one of each.

Initialisation (``init``): ``bert`` (default) draws every down- and up-projection weight from N(0, 0.02) with zero
biases -- AdapterHub's default ``init_weights="bert"``, the UniPELT fork's ``Adapter.init_bert_weights`` and, for
AdaMix, what the authors' ``BertPreTrainedModel._init_weights`` does to every expert Linear. ``zero_up`` is the
near-identity start (up-projections zero, so the adapted model starts as the base model).

Placement on post-LayerNorm encoders (BERT, RoBERTa), with h the sub-layer output after dropout and x the
sub-layer input:
- ``original_ln_before=False`` (Houlsby, and AdapterHub ``double_seq_bn``): LN(h + A(h) + x).
- ``original_ln_before=True`` (AdapterHub ``seq_bn``, the Pfeiffer config UniPELT's authors used):
  y = LN(h + x); LN(h + A(y) + x) -- the original LayerNorm is applied before and after the adapter.
- ``placement="adamix"`` (AdaMix's own adapter, the authors' ``BertOutput`` / ``RobertaOutput``): on the
  feed-forward output projection's result h *before* its dropout, no LayerNorm in front:
  LN(dropout(h + A(h)) + x).
On GPT-2 (pre-LayerNorm) the adapter sits on the sub-layer output before the residual add: h + A(h).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ACTIVATIONS, MethodConfig, check_choice, check_float, check_int, register
from ..layers import Gate, PeftState, class_forward, copy_first, mix, patch_forward

_ACT = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu, "tanh": torch.tanh}
INITS = ("bert", "zero_up")


class Bottleneck(nn.Module):
    """Adapter output A(x) = up(act(down(x))) (times a UniPELT gate), without the residual.

    ``num_down`` / ``num_up`` > 1 make it an AdaMix mixture: training draws one module per side per forward;
    outside training ``state.inference`` decides (merged = weight average, random, fixed-K, ensemble).
    """

    def __init__(self, hidden: int, bottleneck: int, activation: str, state: PeftState,
                 num_down: int = 1, num_up: int = 1, dropout: float = 0.0, gated: bool = False,
                 init: str = "bert", expert_init: str = "independent"):
        super().__init__()
        self.down = nn.ModuleList(nn.Linear(hidden, bottleneck) for _ in range(num_down))
        self.up = nn.ModuleList(nn.Linear(bottleneck, hidden) for _ in range(num_up))
        self.act = _ACT[activation]
        self.dropout = nn.Dropout(dropout)
        self.gate = Gate(hidden, state) if gated else None
        self._state = state
        self._avg: Optional[tuple] = None
        for lin in [*self.down, *self.up]:  # every module an independent draw (see the module docstring)
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)
        if init == "zero_up":  # near-identity start: the model begins as the base model
            for lin in self.up:
                nn.init.zeros_(lin.weight)
        if expert_init == "identical":
            copy_first(self.down)
            copy_first(self.up)

    def averaged(self) -> tuple:
        """(down W, down b, up W, up b) averaged over modules: AdaMix's merge. Cached while merged."""
        if self._avg is not None:
            return self._avg
        mean = lambda mods, a: torch.stack([getattr(m, a) for m in mods]).mean(0)  # noqa: E731
        return mean(self.down, "weight"), mean(self.down, "bias"), mean(self.up, "weight"), mean(self.up, "bias")

    def _one(self, x, i: int, j: int):
        d, u = self.down[i], self.up[j]
        return u(self.dropout(self.act(d(x))))

    def _merged(self, x):
        wd, bd, wu, bu = self.averaged()
        return F.linear(self.dropout(self.act(F.linear(x, wd, bd))), wu, bu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._state.check_trainable_forward(self)
        out = mix(self._state, self, x, len(self.down), len(self.up), self._one, self._merged)
        if self.gate is not None:
            out = out * self.gate(x).view(-1, *([1] * (out.dim() - 1)))
        return out

    def merge(self) -> None:
        if len(self.down) > 1 or len(self.up) > 1:
            with torch.no_grad():
                self._avg = tuple(t.detach().clone() for t in self.averaged())

    def unmerge(self) -> None:
        self._avg = None

    def inference_numel(self) -> int:
        one = sum(p.numel() for p in self.down[0].parameters()) + sum(p.numel() for p in self.up[0].parameters())
        return one + (self.gate.inference_numel() if self.gate is not None else 0)


def _post_ln_forward(m: nn.Module, hidden_states: torch.Tensor, input_tensor: torch.Tensor, *, ln_before: bool):
    """BertOutput / BertSelfOutput with an adapter (see the module docstring for the two placements)."""
    h = m.dropout(m.dense(hidden_states))
    if ln_before:
        s = h + input_tensor  # LN(h + A(LN(h + x)) + x), with h + x computed once
        return m.LayerNorm(s + m.pk_adapter(m.LayerNorm(s)))
    return m.LayerNorm(h + m.pk_adapter(h) + input_tensor)


def _adamix_forward(m: nn.Module, hidden_states: torch.Tensor, input_tensor: torch.Tensor):
    """BertOutput with AdaMix's adapter: LN(dropout(h + A(h)) + x), h the dense output before its dropout."""
    h = m.dense(hidden_states)
    return m.LayerNorm(m.dropout(h + m.pk_adapter(h)) + input_tensor)


def _residual_forward(m: nn.Module, x: torch.Tensor):
    """GPT-2 sub-layer output dropout followed by an adapter with its own residual."""
    h = class_forward(m, x)
    return h + m.pk_adapter(h)


def attach_bottleneck(model, arch, state: PeftState, placement: str, bottleneck: int, activation: str,
                      original_ln_before: bool, num_down: int = 1, num_up: int = 1,
                      dropout: float = 0.0, gated: bool = False, init: str = "bert",
                      expert_init: str = "independent") -> None:
    """Put a (mixture) bottleneck at every adapter site of every layer. Shared by pfeiffer/houlsby/AdaMix/UniPELT.

    ``placement``: ffn | attn+ffn | adamix (the ffn site, AdaMix's position before the output dropout)."""
    arch.require(("bert", "gpt2"), "adapters")
    if bottleneck == 0:
        return  # a disabled adapter: exactly the base model
    for i in range(arch.num_layers):
        for site in arch.adapter_sites(i, "ffn" if placement == "adamix" else placement):
            site.pk_adapter = Bottleneck(arch.hidden, bottleneck, activation, state, num_down, num_up, dropout, gated,
                                         init=init, expert_init=expert_init)
            if arch.family == "bert" and placement == "adamix":
                patch_forward(site, _adamix_forward)
            elif arch.family == "bert":
                patch_forward(site, functools.partial(_post_ln_forward, ln_before=original_ln_before))
            else:
                patch_forward(site, _residual_forward)


@dataclass
class PfeifferConfig(MethodConfig):
    """Pfeiffer adapter: one bottleneck after the feed-forward block of every layer."""

    name = "pfeiffer"
    placement = "ffn"
    bottleneck: int = 48
    activation: str = "relu"
    dropout: float = 0.0
    original_ln_before: bool = True
    init: str = "bert"

    def validate(self) -> None:
        check_int("bottleneck", self.bottleneck, 0)
        check_choice("init", self.init, INITS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_float("dropout", self.dropout, 0.0, 1.0)
        check_choice("original_ln_before", self.original_ln_before, (True, False))


@dataclass
class HoulsbyConfig(PfeifferConfig):
    """Houlsby adapter: a bottleneck after the attention output projection and after the feed-forward block."""

    name = "houlsby"
    placement = "attn+ffn"
    activation: str = "swish"
    original_ln_before: bool = False


def attach(model, cfg: PfeifferConfig, arch, state: PeftState) -> None:
    attach_bottleneck(model, arch, state, cfg.placement, cfg.bottleneck, cfg.activation,
                      cfg.original_ln_before, dropout=cfg.dropout, init=cfg.init)


register(PfeifferConfig, attach)
register(HoulsbyConfig, attach)
