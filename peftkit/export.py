"""Export LoRA (and AdaMix-LoRA, weight-averaged) and prefix-tuning (and AdaMix-prefix, merged) in peft's format.

LoRA: ``peft.PeftModel.from_pretrained(base, dir)`` then gives the same outputs as the peftkit model. GPT-2's
query/value slices of the fused ``c_attn`` become one LoRA of rank 2r on ``c_attn`` whose B is block-shaped
(zeros on the key rows), with alpha doubled so that alpha / rank is unchanged: the product is exactly the
two slice deltas.

Prefix: a merged prefix is L fixed key/value vectors per layer, which peft's prefix-tuning format holds exactly
(``prefix_projection=False``: ``prompt_embeddings`` [L, layers x 2 x h], layer l's keys at 2l and values at 2l + 1).
Two limits come from how peft runs it, not from the format. (1) peft hands the prefix to the model as
``past_key_values``; for a sequence classifier (BERT, RoBERTa, GPT-2 heads) peft 0.21 first checks that the
model's or its backbone's forward takes that argument, which transformers 5 renamed to ``cache``, and raises "Model
does not support past key values" on every forward: the export refuses those models and says so. Causal LMs
(GPT-2) run.
(2) The model then numbers the input's positions from L (peft adds L to ``position_ids`` a caller passes), while
peftkit's prefix, like the UniPELT authors' fork and AdapterHub, prepends the prefix inside attention and leaves
the positions at 0..T-1: the peft model gives peftkit's logits when called with ``position_ids = arange(T) - L``
(:func:`peft_position_ids`), and differs without them.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
import torch.nn as nn

from .arch import tied_to_embeddings
from .atomic import write_json, write_via
from .core import state_of, trains_with_head
from .methods.lora import host_shape, is_conv1d, lora_hosts


def _host_ab(host: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """One (A [rank, in], B [out, rank]) for the host, combining its slices."""
    parts = list(host._pk_slices.items())
    _, fout = host_shape(host)
    a_list, b_blocks = [], []
    for attr, _ in parts:
        a, b = getattr(host, attr).averaged()
        a_list.append(a.detach())
        b_blocks.append(b.detach())
    a = torch.cat(a_list, 0)
    b = torch.zeros(fout, a.shape[0], dtype=b_blocks[0].dtype)
    col = 0
    for (attr, (start, stop)), blk in zip(parts, b_blocks):
        b[start:stop, col:col + blk.shape[1]] = blk
        col += blk.shape[1]
    return a.contiguous(), b.contiguous()


def export_peft(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` for peft: LoRA and AdaMix-LoRA (weight
    average), prefix-tuning and AdaMix-prefix (merged: see the module docstring for the positions)."""
    state = state_of(model)
    cfg = state.config
    if state.method == "prefix" or (state.method == "adamix" and cfg.base == "prefix"):
        return _export_prefix(model, Path(directory))
    if state.method not in ("lora", "adamix") or getattr(cfg, "base", "lora") != "lora":
        raise ValueError(f"export_peft supports lora, prefix and adamix with base=lora or base=prefix (model has "
                         f"{state.method!r}{' base=' + cfg.base if state.method == 'adamix' else ''})")
    hosts = [(n, m) for n, m in model.named_modules() if m in set(lora_hosts(model))]
    if not hosts:
        raise ValueError("nothing to export: the LoRA is disabled (r=0)")
    if any(m._pk_gated for _, m in hosts):
        raise ValueError("a gated LoRA cannot be exported to peft")
    tensors, ranks = {}, {}
    for name, host in hosts:
        a, b = _host_ab(host)
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
        tensors[f"base_model.model.{name}.lora_B.weight"] = b
        ranks[name] = a.shape[0]
    head_modules = set()
    tied = tied_to_embeddings(model)
    for n, p in model.named_parameters():
        if trains_with_head(model, state, n) and id(p) not in tied:
            tensors[f"base_model.model.{n}"] = p.detach().cpu().contiguous()
            parts = n.split(".")
            head_modules.add(parts[1] if parts[0] == state.arch.base_prefix else parts[0])  # pooler / classifier
    r = cfg.r
    alpha = cfg.alpha
    config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": getattr(model.config, "_name_or_path", None),
        "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none", "inference_mode": True,
        "fan_in_fan_out": any(is_conv1d(m) for _, m in hosts),
        "target_modules": sorted({n.split(".")[-1] for n, _ in hosts}),
        # a host whose rank differs from r (GPT-2's fused q/v: 2r) gets its own rank and alpha, same alpha / rank
        "rank_pattern": {n: k for n, k in ranks.items() if k != r},
        "alpha_pattern": {n: alpha * k / r for n, k in ranks.items() if k != r},
        "modules_to_save": sorted(head_modules) or None,
        "init_lora_weights": True, "use_rslora": False, "use_dora": False, "layers_to_transform": None,
    }
    return _write_adapter(Path(directory), tensors, config)


def _write_adapter(d: Path, tensors: dict, config: dict) -> Path:
    """Write a peft adapter directory (LoRA and prefix-tuning alike): the weights, each file atomically, then the
    config, so that a directory with a config always has its weights."""
    from safetensors.torch import save_file

    d.mkdir(parents=True, exist_ok=True)
    write_via(d / "adapter_model.safetensors", lambda p: save_file(tensors, p))
    write_json(d / "adapter_config.json", config)
    return d


_TASK_TYPES = (("ForSequenceClassification", "SEQ_CLS"), ("LMHeadModel", "CAUSAL_LM"), ("ForCausalLM", "CAUSAL_LM"))


def _head_tensors(model: nn.Module, state) -> tuple[dict, set]:
    """The trained task head as peft stores it for a prompt-learning model (``base_model.<name>``), and its modules."""
    tied, tensors, modules = tied_to_embeddings(model), {}, set()
    for n, p in model.named_parameters():
        if trains_with_head(model, state, n) and id(p) not in tied and not n.startswith("pk_"):
            tensors[f"base_model.{n}"] = p.detach().cpu().contiguous()
            parts = n.split(".")
            modules.add(parts[1] if parts[0] == state.arch.base_prefix else parts[0])
    return tensors, modules


def _export_prefix(model: nn.Module, d: Path) -> Path:
    state = state_of(model)
    task_type = next((t for suffix, t in _TASK_TYPES if type(model).__name__.endswith(suffix)), None)
    if task_type is None:
        raise ValueError(f"cannot export prefix-tuning on {type(model).__name__} to peft: allowed a sequence "
                         "classifier or a causal LM (peft's task types SEQ_CLS, CAUSAL_LM)")
    backbone = getattr(model, state.arch.base_prefix) if state.arch.base_prefix else model
    if task_type == "SEQ_CLS" and not any("past_key_values" in inspect.signature(type(m).forward).parameters
                                          for m in (model, backbone)):  # the check peft's classifier forward makes
        raise ValueError(f"cannot export prefix-tuning on {type(model).__name__} to peft: peft runs a prefix as "
                         "past_key_values, and runs a sequence classifier only when its forward (or its backbone's) "
                         "takes that argument, which transformers 5 renamed to cache; peft would load the file but "
                         "fail on every forward. A causal LM (e.g. GPT2LMHeadModel) exports")
    enc = model.pk_prefix
    with torch.no_grad():
        kv = enc.kv if enc.kv is not None else getattr(enc, "merged_kv", enc.compute)()  # AdaMix: its merge
    layers, _, length, hidden = kv.shape
    tensors, head_modules = _head_tensors(model, state)
    tensors["prompt_embeddings"] = kv.detach().permute(2, 0, 1, 3).reshape(length, -1).cpu().contiguous()
    config = {
        "peft_type": "PREFIX_TUNING", "task_type": task_type,
        "base_model_name_or_path": getattr(model.config, "_name_or_path", None), "num_virtual_tokens": length,
        "token_dim": hidden, "num_transformer_submodules": 1, "num_attention_heads": model.config.num_attention_heads,
        "num_layers": layers, "encoder_hidden_size": hidden, "prefix_projection": False, "inference_mode": True,
        "modules_to_save": sorted(head_modules) or None,
    }
    return _write_adapter(d, tensors, config)


def peft_position_ids(input_ids: torch.Tensor, prefix_length: int) -> torch.Tensor:
    """The ``position_ids`` that make a peft prefix-tuning model number the input's positions 0..T-1 as peftkit's
    prefix does: arange(T) - L per row (peft adds L to the positions a caller passes)."""
    b, t = input_ids.shape
    return (torch.arange(t, device=input_ids.device) - prefix_length).expand(b, t)
