"""From data rows to model inputs: classification, prompt-based MLM classification and causal-LM generation.

- classification: ``tokenizer(text_a, text_b)``; label ints, or floats for regression (STS-B).
- prompt: the task's LM-BFF template with the tokenizer's mask token; :class:`PromptClassifier` reads the
  masked-LM head at the mask position, restricted to the label words, as class logits.
- generation: ``source <sep> target <eos>``; labels are -100 on the source and separator, so training only
  learns the target. ``nlg_format="authors"`` (AdaMix's NLG data, ``gpt2_encode.py --add_bos --add_eos``)
  tokenizes the target with a leading space: ``context eos " "completion eos`` on GPT-2; ``plain`` without it.
  Decoding presets live in :mod:`peftkit.presets`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import DataError, get_prompt, render_prompt


def tokenize_classification(ds, tokenizer, max_length: int, regression: bool):
    def enc(batch):
        b = batch["text_b"] if batch["text_b"] and batch["text_b"][0] is not None else None
        out = tokenizer(batch["text_a"], b, truncation=True, max_length=max_length)
        out["labels"] = [float(x) for x in batch["label"]] if regression else list(batch["label"])
        return out
    return ds.map(enc, batched=True, remove_columns=ds.column_names, desc="tokenize")


def label_word_ids(task: str, tokenizer) -> list[int]:
    """One vocabulary id per class for the task's label words (leading space for BPE vocabularies)."""
    words = get_prompt(task).label_words
    ids = []
    for c in sorted(words):
        word = words[c]
        pieces = tokenizer.tokenize((" " if _is_bpe(tokenizer) else "") + word)
        if len(pieces) != 1:
            raise DataError(f"label word {word!r} of task {task!r} is not one token for this tokenizer: {pieces}")
        ids.append(tokenizer.convert_tokens_to_ids(pieces[0]))
    return ids


def _is_bpe(tokenizer) -> bool:
    return tokenizer.tokenize(" a")[0].startswith("Ġ")


def tokenize_prompt(ds, tokenizer, task: str, max_length: int):
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise DataError("prompt-based fine-tuning needs a tokenizer with a mask token (a masked-LM backbone)")

    def one(a: str, b: Optional[str]):
        words = a.split()
        while True:  # shorten the first sentence until the template (and its mask) fits
            ids = tokenizer(render_prompt(task, " ".join(words), b, tokenizer.mask_token), truncation=True,
                            max_length=max_length)["input_ids"]
            if mask_id in ids or len(words) <= 1:
                break
            words = words[: max(1, int(len(words) * 0.8))]
        if mask_id not in ids:
            raise DataError(f"the prompt of task {task!r} does not fit max_length={max_length}")
        return ids

    def enc(batch):
        b_col = batch["text_b"] if batch["text_b"] else [None] * len(batch["text_a"])
        ids = [one(a, b) for a, b in zip(batch["text_a"], b_col)]
        return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids],
                "mask_pos": [x.index(mask_id) for x in ids], "labels": list(batch["label"])}
    return ds.map(enc, batched=True, remove_columns=ds.column_names, desc="prompt")


class PromptClassifier(nn.Module):
    """Masked-LM backbone read at the mask position: class logits are the label words' vocabulary logits.

    Its state dict holds each tensor once: the MLM decoder (weight and bias) is tied to the word embeddings, and
    safetensors, the only checkpoint format of transformers 5, refuses tensors that share memory. The tied names
    are left out on save and filled from their source on load (``aliases``), so a checkpoint round-trips.
    """

    def __init__(self, mlm: nn.Module, word_ids: list[int]):
        super().__init__()
        self.mlm = mlm
        self.config = mlm.config
        self.register_buffer("word_ids", torch.tensor(word_ids), persistent=False)
        # shortcuts, not submodules: the weights are registered once, under mlm.* (no duplicate state_dict keys)
        self.__dict__["body"] = getattr(mlm, mlm.base_model_prefix)
        self.__dict__["head"] = mlm.cls if hasattr(mlm, "cls") else mlm.lm_head

    def aliases(self) -> dict[str, str]:
        """{later name: first name} for every parameter or buffer registered under more than one name."""
        first: dict[int, str] = {}
        out = {}
        named = [*self.named_parameters(remove_duplicate=False), *self.named_buffers(remove_duplicate=False)]
        for name, tensor in named:
            if id(tensor) in first:
                out[name] = first[id(tensor)]
            else:
                first[id(tensor)] = name
        return out

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        out = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        for alias in self.aliases():
            out.pop(prefix + alias, None)
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        full = dict(state_dict)
        for alias, source in self.aliases().items():
            if alias not in full and source in full:
                full[alias] = full[source]
        return super().load_state_dict(full, strict=strict, assign=assign)

    def forward(self, input_ids, attention_mask=None, mask_pos=None, labels=None, token_type_ids=None):
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        at_mask = hidden[torch.arange(hidden.shape[0], device=hidden.device), mask_pos]
        logits = self.head(at_mask)[:, self.word_ids]
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(loss=loss, logits=logits)


NLG_FORMATS = ("authors", "plain")


def generation_ids(tokenizer, source: str, target: Optional[str], max_length: int, nlg_format: str = "authors") -> dict:
    """``[bos] source sep target eos`` ids with labels -100 on the prompt part (target None: prompt only); the
    target is tokenized as ``" " + target`` with ``nlg_format="authors"``."""
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    eos = sep if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    start = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
    src = start + tokenizer(source, add_special_tokens=False)["input_ids"][: max_length // 2] + [sep]
    if target is None:
        return {"input_ids": src, "attention_mask": [1] * len(src)}
    text = " " + target if nlg_format == "authors" else target
    tgt = tokenizer(text, add_special_tokens=False)["input_ids"][: max_length - len(src) - 1] + [eos]
    ids = src + tgt
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(src) + tgt}


def tokenize_generation(ds, tokenizer, max_length: int, nlg_format: str = "authors"):
    def enc(batch):
        rows = [generation_ids(tokenizer, s, t, max_length, nlg_format)
                for s, t in zip(batch["source"], batch["target"])]
        return {k: [r[k] for r in rows] for k in ("input_ids", "attention_mask", "labels")}
    return ds.map(enc, batched=True, remove_columns=ds.column_names, desc="tokenize")


@dataclass
class PadCollator:
    """Right-pads input_ids / attention_mask / token_type_ids / labels (token labels with -100) to the longest row,
    or to ``pad_to`` tokens when given (rows are already truncated to it): the authors' ``pad_to_max_length``."""

    pad_id: int
    pad_to: Optional[int] = None

    def __call__(self, rows: list[dict]) -> dict:
        width = max([len(r["input_ids"]) for r in rows] + [self.pad_to or 0])
        out = {}
        for key in rows[0]:
            vals = [r[key] for r in rows]
            if isinstance(vals[0], list):
                fill = self.pad_id if key == "input_ids" else (-100 if key == "labels" else 0)
                out[key] = torch.tensor([v + [fill] * (width - len(v)) for v in vals])
            else:
                out[key] = torch.tensor(vals)
        return out
