"""The one place that knows how the supported transformers releases (4.57 to 5.x) differ. The rest of peftkit calls
these helpers instead of testing versions itself.

What differs, and what peftkit does about it:

- ``TrainingArguments``: 5.0 dropped ``save_safetensors`` (checkpoints are always safetensors; peftkit asks for them
  on 4.57 too: ``save_pretrained`` drops tied weights, and ``features.PromptClassifier``, not a ``PreTrainedModel``,
  saves its tied decoder once); ``group_by_length`` became ``train_sampling_strategy="group_by_length"``;
  ``warmup_ratio`` went away and ``warmup_steps`` takes a float below 1 as a ratio of the training steps (both
  releases round ``ceil(steps * ratio)``, so the schedule is the same).
- Attention modules get the layer's KV cache as ``cache=`` (5.x; ``past_key_values`` is deprecated) where 4.57
  passed ``past_key_values`` / ``past_key_value`` (BERT-like) or ``layer_past`` (older GPT-2).

The differences are detected from what the installed release accepts (its ``TrainingArguments`` fields, the keyword
the cache arrives under), not from version numbers.
"""
from __future__ import annotations

import dataclasses
import functools

CACHE_KWARGS = ("cache", "past_key_values", "past_key_value", "layer_past")  # newest name first


@functools.lru_cache(maxsize=None)
def _training_fields() -> frozenset:
    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments))


def training_arguments(*, warmup_ratio: float = 0.0, warmup_steps: int = 0, group_by_length: bool = False,
                       **kwargs):
    """``transformers.TrainingArguments`` from release-independent names.

    ``warmup_steps`` > 0 wins over ``warmup_ratio`` (as in 4.57); ``warmup_ratio`` must lie in [0, 1).
    ``group_by_length`` batches examples of similar length. Every other keyword goes through unchanged.
    """
    from transformers import TrainingArguments

    fields = _training_fields()
    if not 0 <= (warmup_ratio or 0.0) < 1:
        raise ValueError(f"invalid warmup_ratio={warmup_ratio!r}: allowed a number in [0, 1)")
    if warmup_steps and (int(warmup_steps) != warmup_steps or warmup_steps < 0):
        raise ValueError(f"invalid warmup_steps={warmup_steps!r}: allowed a whole number >= 0")
    if "warmup_ratio" in fields:
        kwargs.update(warmup_ratio=warmup_ratio or 0.0, warmup_steps=int(warmup_steps or 0))
    else:  # 5.20+: one field, a float below 1 is a ratio
        kwargs["warmup_steps"] = int(warmup_steps) if warmup_steps else float(warmup_ratio or 0.0)
    if "group_by_length" in fields:
        kwargs["group_by_length"] = group_by_length
    elif group_by_length:
        kwargs["train_sampling_strategy"] = "group_by_length"
    if "save_safetensors" in fields:
        kwargs["save_safetensors"] = True  # the 5.x behaviour, on every release
    return TrainingArguments(**kwargs)


def layer_cache(kwargs: dict):
    """The KV cache an attention module was called with (any release's keyword), or None.

    An encoder-decoder cache gives its self-attention part (prefix-tuning patches self-attention only).
    """
    for name in CACHE_KWARGS:
        cache = kwargs.get(name)
        if cache is not None:
            return getattr(cache, "self_attention_cache", cache)
    return None


def cache_update(cache, key, value, layer_idx: int, kwargs: dict):
    """Append this step's keys and values [B, heads, T, d] to the layer's cache; returns all keys and values."""
    return cache.update(key, value, layer_idx, {"cache_position": kwargs.get("cache_position")})
