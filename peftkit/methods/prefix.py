"""Prefix-tuning (Li & Liang): L trainable key and value vectors per layer, prepended inside self-attention.

While training the prefixes come from a reparameterisation: an embedding of L positions, Linear(h, 512), tanh,
Linear(512, layers * 2 * h). ``peftkit.merge`` computes the prefixes once, keeps them as a parameter
``kv`` [layers, 2, L, h] and drops the MLP (L * layers * 2 * h parameters remain: 184,320 on BERT-base with
L = 10); ``unmerge`` brings the MLP back. peftkit replaces the forward of each self-attention module with its
own (scaled dot-product attention over [prefix; keys]); supported: BERT-like encoders and GPT-2, KV cache included.

Initialisation (``init``): ``bert`` (default) draws the embedding and both MLP weights from N(0, 0.02) with zero
biases, as the UniPELT authors' fork leaves them (its ``init_weights`` re-draws every Linear and Embedding the
model holds, the prefix ones included); the initial prefix keys and values then have a standard deviation of about
0.02 * sqrt(512 * 768 * 0.02^2 * 0.02^2) = 0.005 on BERT-base. ``pytorch`` keeps PyTorch's defaults (N(0, 1)
embedding, Kaiming-uniform Linear layers: initial keys and values of std about 0.27).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..compat import cache_update, layer_cache
from ..config import MethodConfig, check_choice, check_int, register
from ..layers import INITS, Gate, PeftState, init_module, patch_forward


class MergesToKV(nn.Module):
    """Prefixes held by a reparameterisation (the submodules named in ``reparameterisation``) until merged: then one
    plain parameter ``kv`` [layers, 2, L, h] (:meth:`merged_kv`) and the reparameterisation set aside, brought back
    by ``unmerge``. Subclasses set ``length``, ``hidden``, ``num_layers``, ``kv = None`` and ``_stash = None``."""

    reparameterisation: tuple = ()

    def merged_kv(self) -> torch.Tensor:
        raise NotImplementedError

    def merge(self) -> None:
        with torch.no_grad():
            kv = self.merged_kv().detach().clone()
        self._stash = tuple(getattr(self, name) for name in self.reparameterisation)
        for name in self.reparameterisation:
            delattr(self, name)
        self.kv = nn.Parameter(kv, requires_grad=False)

    def unmerge(self) -> None:
        if self._stash is None:
            return
        for name, module in zip(self.reparameterisation, self._stash):
            setattr(self, name, module)
        self._stash = None
        del self.kv
        self.kv = None

    def inference_numel(self) -> int:
        return self.num_layers * 2 * self.length * self.hidden


class PrefixEncoder(MergesToKV):
    """All layers' prefixes. Reparameterised while unmerged; a plain parameter once merged."""

    reparameterisation = ("embedding", "mlp")

    def __init__(self, length: int, hidden: int, num_layers: int, mlp_hidden: int, state: PeftState,
                 init: str = "bert"):
        super().__init__()
        self.length, self.hidden, self.num_layers = length, hidden, num_layers
        self.embedding = nn.Embedding(length, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.Tanh(),
                                 nn.Linear(mlp_hidden, num_layers * 2 * hidden))
        if init == "bert":  # "pytorch": the constructors above already drew PyTorch's defaults
            init_module(self, "bert")
        self.kv: Optional[nn.Parameter] = None
        self._stash: Optional[tuple] = None
        self._state = state

    def compute(self) -> torch.Tensor:
        if self.kv is not None:
            return self.kv
        out = self.mlp(self.embedding.weight)  # [L, layers * 2 * h]
        return out.view(self.length, self.num_layers, 2, self.hidden).permute(1, 2, 0, 3)

    def merged_kv(self) -> torch.Tensor:
        return self.compute()


def _mask_for(mask, b: int, t: int, s: int, causal: bool, device, dtype):
    """Normalise the attention mask the layer was given to something SDPA takes, [B or 1, 1, T, S] or None."""
    if mask is not None and mask.dim() == 2:  # [B, S] padding mask (1 = keep)
        mask = mask[:, None, None, :].bool()
    if causal:
        keep = torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)
        if mask is None:
            mask = keep[None, None]
        elif mask.dtype == torch.bool:
            mask = mask & keep
        elif mask.shape[-2] == 1:
            mask = mask.masked_fill(~keep, torch.finfo(mask.dtype).min)
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(dtype)
    return mask


def _pad_prefix(mask, length: int):
    """Let every query attend to the L prefix positions (prepended on the key axis)."""
    if mask is None:
        return None
    fill = True if mask.dtype == torch.bool else 0.0
    pad = torch.full((*mask.shape[:-1], length), fill, dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


def prefix_attention(m: nn.Module, hidden_states: torch.Tensor, *args, layer: int, family: str, **kwargs):
    """Self-attention with prefixes, for BERT-like and GPT-2 attention modules; returns (output, None)."""
    state: PeftState = m._pk_state
    if kwargs.get("encoder_hidden_states") is not None:
        raise NotImplementedError("prefix-tuning does not support cross-attention")
    mask = kwargs.get("attention_mask", args[0] if args and family == "bert" else None)
    cache = layer_cache(kwargs)
    b, t, _ = hidden_states.shape
    if family == "bert":
        heads, d = m.num_attention_heads, m.attention_head_size
        q, k, v = m.query(hidden_states), m.key(hidden_states), m.value(hidden_states)
        p_drop = getattr(m, "dropout_prob", None) or m.dropout.p
        scale = 1.0 / math.sqrt(d)
    else:
        heads, d = m.num_heads, m.head_dim
        q, k, v = m.c_attn(hidden_states).split(m.split_size, dim=2)
        p_drop = m.attn_dropout.p
        scale = (1.0 / math.sqrt(d)) if m.scale_attn_weights else 1.0
        if getattr(m, "scale_attn_by_inverse_layer_idx", False):
            scale /= float(m.layer_idx + 1)
    q, k, v = (x.view(b, t, heads, d).transpose(1, 2) for x in (q, k, v))
    if cache is not None:
        k, v = cache_update(cache, k, v, m.layer_idx, kwargs)
    enc = m._pk_prefix_encoder
    kv = state.prefix_kv if state.prefix_kv is not None else enc.compute()
    entry = kv[layer]  # [2, L, h]; AdaMix (methods/adamix_prefix.py): [G, 2, L, h], G routing groups or M experts
    gate = m.pk_prefix_gate(hidden_states).to(k.dtype).view(b, 1, 1, 1) \
        if getattr(m, "pk_prefix_gate", None) is not None else None
    attn_mask = _mask_for(mask, b, t, k.shape[2], family == "gpt2", q.device, q.dtype)
    attend = functools.partial(_attend, q, k, v, gate=gate, attn_mask=attn_mask,
                               dropout_p=p_drop if m.training else 0.0, scale=scale)
    if entry.dim() == 4 and getattr(enc, "averages_outputs", False):  # AdaMix ensemble: mean of the M attentions
        out = sum(attend(e) for e in entry) / entry.shape[0]
    else:
        out = attend(entry)
    out = out.transpose(1, 2).reshape(b, t, heads * d)
    if family == "gpt2":
        out = m.resid_dropout(m.c_proj(out))
    return out, None


def _attend(q, k, v, entry: torch.Tensor, *, gate, attn_mask, dropout_p: float, scale: float) -> torch.Tensor:
    """SDPA of queries ``q`` over [prefix; keys]. ``entry``: one layer's prefix, [2, L, h] for the whole batch or
    [G, 2, L, h] for G equal batch chunks (AdaMix's routing groups: one prefix per chunk)."""
    b, heads, _, d = q.shape
    if entry.dim() == 3:
        pk, pv = (x.to(k.dtype).view(1, -1, heads, d).transpose(1, 2).expand(b, -1, -1, -1) for x in entry)
    else:
        if b % entry.shape[0]:
            raise ValueError(f"batch of {b} cannot be split into {entry.shape[0]} routing groups")
        rows = entry.repeat_interleave(b // entry.shape[0], dim=0)  # [b, 2, L, h]
        pk, pv = (rows[:, i].to(k.dtype).view(b, -1, heads, d).transpose(1, 2) for i in (0, 1))
    if gate is not None:
        pk, pv = pk * gate, pv * gate
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2),
                                          attn_mask=_pad_prefix(attn_mask, pk.shape[2]), dropout_p=dropout_p,
                                          scale=scale)


def _compute_prefix(enc: nn.Module, state: PeftState) -> None:
    state.prefix_kv = enc.compute()  # once per model forward, shared by all layers


def attach_prefix(model, arch, state: PeftState, length: int, mlp_hidden: int, gated: bool = False,
                  init: str = "bert", encoder: Optional[nn.Module] = None) -> None:
    """Prefix-tuning on every layer. Shared by prefix, UniPELT (which adds a gate per layer) and AdaMix over prefix
    (which passes its mixture as ``encoder``: anything whose ``compute()`` gives the forward's key/values)."""
    arch.require(("bert", "gpt2"), "prefix-tuning")
    pet = getattr(model.config, "position_embedding_type", "absolute")
    if pet not in (None, "absolute"):
        raise ValueError(f"prefix-tuning needs absolute position embeddings (model has {pet!r})")
    enc = encoder if encoder is not None else PrefixEncoder(length, arch.hidden, arch.num_layers, mlp_hidden, state,
                                                            init)
    model.pk_prefix = enc
    state.before_forward.append(functools.partial(_compute_prefix, enc))
    for i in range(arch.num_layers):
        attn = arch.attention(i)
        attn._pk_state = state
        object.__setattr__(attn, "_pk_prefix_encoder", enc)  # not a submodule: registered once, on the model
        if gated:
            attn.pk_prefix_gate = Gate(arch.hidden, state)
        patch_forward(attn, functools.partial(prefix_attention, layer=i, family=arch.family))


@dataclass
class PrefixConfig(MethodConfig):
    """Prefix-tuning: ``prefix_length`` L (default 10), reparameterisation MLP hidden size 512, ``init`` bert
    (N(0, 0.02), zero biases: the authors' fork) | pytorch (PyTorch's defaults)."""

    name = "prefix"
    prefix_length: int = 10
    prefix_hidden: int = 512
    init: str = "bert"

    def validate(self) -> None:
        check_int("prefix_length", self.prefix_length, 1)
        check_int("prefix_hidden", self.prefix_hidden, 1)
        check_choice("init", self.init, INITS)


def attach(model, cfg: PrefixConfig, arch, state: PeftState) -> None:
    attach_prefix(model, arch, state, cfg.prefix_length, cfg.prefix_hidden, init=cfg.init)


register(PrefixConfig, attach)
