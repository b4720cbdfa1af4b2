"""Tiny randomly initialised backbones shared by the method tests (CPU, seconds)."""
from __future__ import annotations

import copy
import hashlib
import os
import stat
from pathlib import Path

import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel,
                          RobertaConfig, RobertaForSequenceClassification)
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()

# The tests that train, tokenise or render from the shared data (../shared/data, which .ci/run and the Makefile
# point PEFTKIT_DATA_DIR at) are skipped where it is not set, and say so.
needs_data = pytest.mark.skipif(not os.environ.get("PEFTKIT_DATA_DIR"),
                                reason="PEFTKIT_DATA_DIR is unset: this test reads the shared data")

H, LAYERS, HEADS, VOCAB = 32, 2, 4, 99


def tiny(arch: str, seed: int = 0):
    """A tiny model of the named family: 'bert', 'roberta' (sequence classification), 'gpt2' (causal LM), 'bert-mlm'."""
    torch.manual_seed(seed)
    common = dict(num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=64, vocab_size=VOCAB,
                  hidden_size=H, max_position_embeddings=64)
    if arch == "bert":
        return BertForSequenceClassification(BertConfig(num_labels=3, **common)).eval()
    if arch == "bert-mlm":
        return BertForMaskedLM(BertConfig(**common)).eval()
    if arch == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(num_labels=3, pad_token_id=1, **common)).eval()
    if arch == "gpt2":
        cfg = GPT2Config(n_embd=H, n_layer=LAYERS, n_head=HEADS, vocab_size=VOCAB, n_positions=64)
        return GPT2LMHeadModel(cfg).eval()
    raise KeyError(arch)


def batch(arch: str, b: int = 3, t: int = 7, seed: int = 1) -> dict:
    """Token ids with right padding on some rows (so masks and prefix/gate handling are exercised)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    if b > 1:
        mask[1, -2:] = 0
    if b > 2:
        mask[2, -4:] = 0
    ids = ids.masked_fill(mask == 0, 1 if arch == "roberta" else 0)
    return {"input_ids": ids, "attention_mask": mask}


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def perturb(model, scale: float = 0.1, seed: int = 2) -> None:
    """Move every trainable parameter off its (often zero) init so equivalence checks are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def listing(root: Path) -> dict:
    """Every path under root with its size and content hash (a directory listing that sees edits too)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def one_line_error(capsys, prefix: str = "peftkit") -> str:
    """The command's stderr: one line, ``<prefix>: error: ...`` (no traceback)."""
    err = capsys.readouterr().err
    assert err.startswith(f"{prefix}: error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def no_backbone(monkeypatch):
    """Validation must happen before any weights load: loading one fails the test."""
    from peftkit import backbones

    def refuse(*a, **k):
        raise AssertionError("a backbone was loaded before the bad input was rejected")
    monkeypatch.setattr(backbones, "load_model", refuse)
    monkeypatch.setattr(backbones, "load_tokenizer", refuse)


@pytest.fixture
def readonly_dir(tmp_path):
    """An empty directory ``tmp_path/ro`` its owner may read but not write (r-x), for the "not writable"
    rejections; made writable again at teardown so that pytest can remove it. root writes into it all the same:
    a test that needs the refusal skips under root."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield d
    d.chmod(stat.S_IRWXU)


def pytest_ignore_collect(collection_path, config):
    """``pytest -m peers`` (``make test`` in the peers venv, which lacks the runtime's data and report packages)
    collects only the test files that hold peer tests, so the others' imports cannot fail there."""
    if config.getoption("markexpr", "") == "peers" and collection_path.name.startswith("test_") \
            and collection_path.suffix == ".py":
        return "pytest.mark.peers" not in collection_path.read_text()
    return None


@pytest.fixture
def make():
    return tiny


@pytest.fixture
def clone():
    return copy.deepcopy
