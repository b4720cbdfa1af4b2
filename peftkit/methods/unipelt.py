"""UniPELT (Mao et al., ACL 2022): a gated union of a Pfeiffer adapter, prefix-tuning and LoRA.

A composition of the three component configs, with a gate on each (``gates=False`` is the paper's ablation):
- adapter gate: from the adapter's input, scales the adapter's output before the residual;
- prefix gate: from the input of the attention block, multiplies the prefix keys and values;
- LoRA gates: from the input of the query (and, separately, value) projection; they replace alpha / r.
Each gate is sigmoid(Linear(h, 1)) averaged over the non-padding positions (the authors' code averages over
padding too; see :class:`peftkit.layers.Gate`). ``peftkit.gate_values(model)`` returns the last values.
Variants: ``AP`` (adapter + prefix) and ``APL`` (all three). Gated LoRA cannot be merged into the weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import MethodConfig, check_choice, check_int, register
from ..layers import PeftState
from .adapter import PfeifferConfig, attach_bottleneck
from .lora import LoRAConfig, attach_lora
from .prefix import PrefixConfig, attach_prefix


@dataclass
class UniPELTConfig(MethodConfig):
    """UniPELT: ``variant`` AP | APL, ``gates`` true | false; components at the paper's settings by default."""

    name = "unipelt"
    variant: str = "APL"
    gates: bool = True
    bottleneck: int = PfeifferConfig.bottleneck
    prefix_length: int = PrefixConfig.prefix_length
    r: int = LoRAConfig.r
    alpha: float = LoRAConfig.alpha  # only used when gates=False (a gated LoRA is scaled by its gate)

    def components(self) -> tuple[PfeifferConfig, PrefixConfig, LoRAConfig | None]:
        adapter = PfeifferConfig(bottleneck=self.bottleneck)
        prefix = PrefixConfig(prefix_length=self.prefix_length)
        lora = LoRAConfig(r=self.r, alpha=self.alpha) if self.variant == "APL" else None
        return adapter, prefix, lora

    def validate(self) -> None:
        check_choice("variant", self.variant, ("AP", "APL"))
        check_choice("gates", self.gates, (True, False))
        check_int("bottleneck", self.bottleneck, 1)  # a disabled component is not UniPELT
        if self.variant == "APL":
            check_int("r", self.r, 1)
        self.components()  # validates bottleneck, prefix_length, r and alpha with the components' own rules


def attach(model, cfg: UniPELTConfig, arch, state: PeftState) -> None:
    arch.require(("bert", "gpt2"), "UniPELT")
    adapter, prefix, lora = cfg.components()
    attach_bottleneck(model, arch, state, adapter.placement, adapter.bottleneck, adapter.activation,
                      adapter.original_ln_before, gated=cfg.gates)
    attach_prefix(model, arch, state, prefix.prefix_length, prefix.prefix_hidden, gated=cfg.gates)
    if lora is not None:
        attach_lora(model, arch, state, lora.r, lora.alpha, lora.dropout, lora.targets, gated=cfg.gates)


register(UniPELTConfig, attach)
