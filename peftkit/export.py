"""Export LoRA (and AdaMix-LoRA, weight-averaged) in peft's adapter format.

``peft.PeftModel.from_pretrained(base, dir)`` then gives the same outputs as the peftkit model. GPT-2's
query/value slices of the fused ``c_attn`` become one LoRA of rank 2r on ``c_attn`` whose B is block-shaped
(zeros on the key rows), with alpha doubled so that alpha / rank is unchanged: the product is exactly the
two slice deltas.
"""
from __future__ import annotations

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
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` for peft (LoRA and AdaMix-LoRA only)."""
    from safetensors.torch import save_file

    state = state_of(model)
    cfg = state.config
    if state.method not in ("lora", "adamix") or getattr(cfg, "base", "lora") != "lora":
        raise ValueError(f"export_peft supports method lora and adamix with base=lora (model has {state.method!r})")
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
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    write_via(d / "adapter_model.safetensors", lambda p: save_file(tensors, p))
    write_json(d / "adapter_config.json", config)
    return d
