"""Prefix attention builds its mask once per forward (the first layer builds it, the others reuse it); outputs are
checked against the per-layer construction elsewhere (tests/test_methods.py, tests/test_fidelity_unipelt.py)."""
from __future__ import annotations

import pytest

import peftkit
from conftest import LAYERS, batch, logits, perturb, tiny
from peftkit.methods import prefix as prefix_module

ARCHS = ["bert", "roberta", "gpt2"]


def _prefix_model(arch: str):
    model = peftkit.apply(tiny(arch), "prefix", seed=0, prefix_length=3, prefix_hidden=16)
    perturb(model)
    return model.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_mask_is_built_once_per_forward(arch, monkeypatch):
    """Every layer of a forward reuses the first layer's mask; the next forward builds its own (its batch may
    differ), and nothing is kept once the forward returns."""
    calls = []
    real = prefix_module._mask_for

    def counting(*args, **kwargs):
        calls.append(args[1:4])
        return real(*args, **kwargs)

    monkeypatch.setattr(prefix_module, "_mask_for", counting)
    model = _prefix_model(arch)
    assert LAYERS > 1
    logits(model, batch(arch, b=3, t=7))
    assert len(calls) == 1
    logits(model, batch(arch, b=2, t=5, seed=3))
    assert len(calls) == 2 and calls[1][:2] == (2, 5)
    assert model._peftkit.prefix_mask is None
