"""BitFit (Ben Zaken et al.): only the bias terms of the backbone train (plus the task head)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import MethodConfig, register


@dataclass
class BitFitConfig(MethodConfig):
    """BitFit (no options). On BERT-base 102,912 biases train (the pooler's included)."""

    name = "bitfit"

    def is_trainable(self, name: str) -> bool:
        return name.endswith(".bias") or name == "bias"


def attach(model, cfg: BitFitConfig, arch, state) -> None:
    return None  # nothing to attach: the rule above picks the biases


register(BitFitConfig, attach)
