"""Full fine-tuning: every weight of the backbone trains."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import MethodConfig, register


@dataclass
class FullConfig(MethodConfig):
    """Full fine-tuning (no options)."""

    name = "full"

    def is_trainable(self, name: str) -> bool:
        return True


def attach(model, cfg: FullConfig, arch, state) -> None:
    return None  # nothing to attach: the rule above makes every parameter trainable


register(FullConfig, attach)
