"""What peftkit needs to know about a backbone: its family, its layers and where each method attaches.

Supported families: BERT-like post-LayerNorm encoders (bert, roberta, xlm-roberta, camembert, electra),
GPT-2 (fused ``c_attn`` Conv1D), and LLaMA-style decoders (``q_proj``/``v_proj``; LoRA, BitFit and full
fine-tuning only). Any other model can still use LoRA by naming its Linear modules in ``targets``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

BERT_LIKE = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
GPT2_LIKE = ("gpt2",)
LLAMA_LIKE = ("llama", "mistral", "qwen2")

DEFAULT_TARGETS = {"bert": ["query", "value"], "gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"]}


@dataclass
class Arch:
    family: str  # "bert" | "gpt2" | "llama" | "other"
    model_type: str
    hidden: int
    num_layers: int
    num_heads: int
    base_prefix: str  # attribute holding the base model, e.g. "bert"; "" when the model is the base model
    layers: list = field(default_factory=list)  # the transformer blocks, in order
    classifier: bool = False  # a sequence-classification head sits on top

    @property
    def is_decoder(self) -> bool:
        return self.family in ("gpt2", "llama")

    def require(self, family: tuple[str, ...], what: str) -> None:
        if self.family not in family:
            raise ValueError(
                f"{what} is not supported on model_type {self.model_type!r}: supported families are "
                f"{', '.join(family)}. LoRA works on any model if you name its Linear modules, "
                f"e.g. targets=['q_proj', 'v_proj']."
            )

    # --- per-family attachment sites -------------------------------------------------------------
    def attention(self, i: int) -> nn.Module:
        """The self-attention module of block ``i`` (the one whose forward prefix-tuning replaces)."""
        block = self.layers[i]
        return block.attention.self if self.family == "bert" else block.attn

    def adapter_sites(self, i: int, placement: str) -> list[nn.Module]:
        """Modules after which an adapter goes: 'ffn' or 'attn+ffn' (Houlsby)."""
        block = self.layers[i]
        if self.family == "bert":
            sites = [block.attention.output, block.output]
        else:  # gpt2: the dropout at the end of each sub-layer, before the residual add
            sites = [block.attn.resid_dropout, block.mlp.dropout]
        return sites if placement == "attn+ffn" else sites[1:]


def _find_layers(model: nn.Module, family: str, base: nn.Module) -> list:
    if family == "bert":
        return list(base.encoder.layer)
    if family == "gpt2":
        return list(base.h)
    if family == "llama":
        return list(base.layers)
    return []


def detect(model: nn.Module) -> Arch:
    """Describe ``model`` (a Hugging Face PreTrainedModel). Raises ValueError for non-transformers objects."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "model_type"):
        raise ValueError(
            f"model must be a Hugging Face transformers model with a .config (got {type(model).__name__})"
        )
    mt = config.model_type
    family = ("bert" if mt in BERT_LIKE else "gpt2" if mt in GPT2_LIKE else "llama" if mt in LLAMA_LIKE else "other")
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or not isinstance(getattr(model, prefix, None), nn.Module):
        prefix = ""  # a bare base model (BertModel, GPT2Model): it has no task head
    base = getattr(model, prefix) if prefix else model
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    found = _find_layers(model, family, base) if family != "other" else []
    classifier = bool(prefix) and any(hasattr(model, h) for h in ("classifier", "score"))
    return Arch(family, mt, int(hidden or 0), int(layers or 0), int(heads or 0), prefix, found, classifier)


def is_head_param(model: nn.Module, arch: Arch, name: str) -> bool:
    """Task-head parameters: outside the base model (classifier, MLM transform, ...). BERT's pooler is part of
    the base model (see :func:`is_pooler_param`): both authors' codes keep it frozen."""
    if not arch.base_prefix:
        return False
    return not name.startswith(arch.base_prefix + ".")


def is_pooler_param(model: nn.Module, arch: Arch, name: str) -> bool:
    """BERT's pooler (dense + tanh over [CLS]) under a classifier that reads it. The authors' codes freeze it
    (UniPELT's fork: ``train_adapter`` / ``freeze_params`` freeze all of ``bert.*``; AdaMix: every ``bert.*``
    parameter but the adapters); ``peftkit.apply(..., train_pooler=True)`` trains it with the head, which a
    checkpoint without pooler weights needs (a newly initialised pooler would otherwise stay random)."""
    return bool(arch.base_prefix) and arch.classifier and name.startswith(arch.base_prefix + ".pooler.")


def tied_to_embeddings(model: nn.Module) -> set[int]:
    """ids of parameters that share storage with the input embeddings (tied LM decoders)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None:
        return set()
    return {id(emb.weight)}
