"""UniPELT (Mao et al., ACL 2022): a gated union of a Pfeiffer adapter, prefix-tuning and LoRA.

A composition of the three component configs, with a gate on each (``gates=False`` is the paper's ablation):
- adapter gate: from the adapter's input, scales the adapter's output before the residual;
- prefix gate: from the input of the attention block, multiplies the prefix keys and values;
- LoRA gates: from the input of the query (and, separately, value) projection; they replace alpha / r.
Each gate is the per-position sigmoid(Linear(h, 1)) averaged over positions, one scalar per example and layer.
``gate_average="all"`` (default) averages over every position, padding included, as the authors' fork does
(``torch.mean(torch.sigmoid(gate(x)), dim=1)``, on inputs padded to 128 tokens: pad to the maximum length to
reproduce it); ``"masked"`` averages over the non-padding positions only, so padding cannot move a gate.
``peftkit.gate_values(model)`` returns the last values.

Initialisation (``init``): ``bert`` (default) is what the fork's ``init_weights`` leaves: the prefix embedding and
MLP, every gate and both adapter projections drawn from N(0, 0.02) with zero biases; LoRA keeps A
Kaiming-uniform and B zero. ``pytorch`` is peftkit's earlier start: PyTorch's defaults for prefix and gates and a
zero adapter up-projection (near-identity).
Variants: ``AP`` (adapter + prefix) and ``APL`` (all three). Gated LoRA cannot be merged into the weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..config import MethodConfig, check_choice, check_int, register
from ..layers import GATE_AVERAGES, INITS, Gate, PeftState, init_module
from .adapter import PfeifferConfig, attach_bottleneck
from .lora import LoRAConfig, attach_lora
from .prefix import PrefixConfig, attach_prefix


@dataclass
class UniPELTConfig(MethodConfig):
    """UniPELT: ``variant`` AP | APL, ``gates`` true | false, ``gate_average`` all | masked, ``init`` bert |
    pytorch; components at the paper's settings by default."""

    name = "unipelt"
    variant: str = "APL"
    gates: bool = True
    bottleneck: int = PfeifferConfig.bottleneck
    prefix_length: int = PrefixConfig.prefix_length
    r: int = LoRAConfig.r
    alpha: float = LoRAConfig.alpha  # only used when gates=False (a gated LoRA is scaled by its gate)
    gate_average: str = "all"
    init: str = "bert"

    def components(self) -> tuple[PfeifferConfig, PrefixConfig, LoRAConfig | None]:
        adapter = PfeifferConfig(bottleneck=self.bottleneck)
        prefix = PrefixConfig(prefix_length=self.prefix_length, init=self.init)
        lora = LoRAConfig(r=self.r, alpha=self.alpha) if self.variant == "APL" else None
        return adapter, prefix, lora

    def validate(self) -> None:
        check_choice("variant", self.variant, ("AP", "APL"))
        check_choice("gates", self.gates, (True, False))
        check_choice("gate_average", self.gate_average, GATE_AVERAGES)
        check_choice("init", self.init, INITS)
        check_int("bottleneck", self.bottleneck, 1)  # a disabled component is not UniPELT
        if self.variant == "APL":
            check_int("r", self.r, 1)
        self.components()  # validates bottleneck, prefix_length, r and alpha with the components' own rules


def _initialise(model: nn.Module, cfg: UniPELTConfig) -> None:
    """Gates (average mode and init) and adapter projections as ``cfg`` asks; the prefix did its own."""
    for name, m in model.named_modules():  # parents first: an adapter's gate is set after its adapter
        if isinstance(m, Gate):
            m.average = cfg.gate_average
            init_module(m.proj, cfg.init)
        elif name.split(".")[-1] == "pk_adapter":
            init_module(m, "bert")  # down and up N(0, 0.02), zero biases (AdapterHub's init_bert_weights)
            if cfg.init == "pytorch":
                for up in m.up:  # peftkit's earlier near-identity start
                    nn.init.zeros_(up.weight)


def attach(model, cfg: UniPELTConfig, arch, state: PeftState) -> None:
    arch.require(("bert", "gpt2"), "UniPELT")
    adapter, prefix, lora = cfg.components()
    attach_bottleneck(model, arch, state, adapter.placement, adapter.bottleneck, adapter.activation,
                      adapter.original_ln_before, gated=cfg.gates)
    attach_prefix(model, arch, state, prefix.prefix_length, prefix.prefix_hidden, gated=cfg.gates, init=cfg.init)
    if lora is not None:
        attach_lora(model, arch, state, lora.r, lora.alpha, lora.dropout, lora.targets, gated=cfg.gates)
    _initialise(model, cfg)


register(UniPELTConfig, attach)
