"""Contenders: a method implemented by peftkit or by a peer (peft, AdapterHub ``adapters``, plain PyTorch), built
on a fresh copy of the backbone, with the one step the bench times.

A training step is ``zero_grad(set_to_none=True)``, forward with labels (the model's own loss), backward and
``AdamW.step()`` over the parameters that require grad (method + task head, as each library leaves them). An
inference step is one ``model.eval()`` forward under ``torch.no_grad()``. On CUDA both run under bf16 autocast
(``--precision auto``); ``--precision bf16`` does the same on CPU, ``fp32`` turns it off.
"""
from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

BOTTLENECK = 48  # the papers' adapter size; AdapterHub takes it as reduction_factor = hidden / 48


@dataclass(frozen=True)
class Spec:
    impl: str  # peftkit | peft | adapters | torch
    method: str  # lora | pfeiffer | houlsby | prefix | unipelt | adamix | full | bitfit | base
    options: tuple = ()  # peftkit options as (key, value) pairs (hashable)
    mode: str = "train"  # train | infer
    merged: bool = False  # infer: call peftkit.merge first
    consistency: bool = False  # train: peftkit.consistency.consistency_forward, weight 1.0
    replica: int = 0  # > 0: a second, identical contender of an A/A control group (built and timed separately)

    @property
    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        tags = (["merged"] if self.merged else []) + (["consistency"] if self.consistency else [])
        mode = "@infer" if self.mode == "infer" else ""
        copy_tag = f"#{self.replica + 1}" if self.replica else ""
        return (f"{self.impl}:{self.method}" + (f"({opts})" if opts else "") + "".join(f"+{t}" for t in tags) + mode
                + copy_tag)


def pk(method: str, mode: str = "train", merged: bool = False, consistency: bool = False, **options) -> Spec:
    return Spec("peftkit", method, tuple(sorted(options.items())), mode, merged, consistency)


def _targets(family: str) -> list[str]:
    return ["c_attn"] if family == "gpt2" else ["query", "value"]


def _peft(model: nn.Module, spec: Spec, bb) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    if spec.method != "lora":
        raise ValueError(f"no peft contender for {spec.method!r}")
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=_targets(bb.family),
                     fan_in_fan_out=bb.family == "gpt2", task_type="SEQ_CLS")
    return get_peft_model(model, cfg)


def _adapters(model: nn.Module, spec: Spec, bb) -> nn.Module:
    import adapters
    from adapters import DoubleSeqBnConfig, PrefixTuningConfig, SeqBnConfig, UniPELTConfig

    configs = {"pfeiffer": lambda: SeqBnConfig(reduction_factor=bb.hidden / BOTTLENECK),
               "houlsby": lambda: DoubleSeqBnConfig(reduction_factor=bb.hidden / BOTTLENECK),
               "prefix": lambda: PrefixTuningConfig(prefix_length=10),
               "unipelt": lambda: UniPELTConfig()}
    if spec.method not in configs:
        raise ValueError(f"no adapters contender for {spec.method!r}")
    logging.getLogger("adapters").setLevel(logging.ERROR)  # "none are activated" before train_adapter
    adapters.init(model)
    model.add_adapter("peer", config=configs[spec.method]())
    model.train_adapter("peer")  # freezes the backbone, trains the adapter (the task head stays trainable)
    return model


def head_names(model: nn.Module) -> set[str]:
    """Names of the task-head parameters that peftkit trains with every method (``peftkit.arch.is_head_param``:
    everything outside the base model; BERT's pooler stays frozen, as in the authors' codes and adapters)."""
    from peftkit.arch import detect, is_head_param, tied_to_embeddings

    arch, tied = detect(model), tied_to_embeddings(model)
    return {n for n, p in model.named_parameters() if is_head_param(model, arch, n) and id(p) not in tied}


def match_head(model: nn.Module, heads: set[str]) -> nn.Module:
    """Make a peer train the same task head as peftkit (peft's ``base_model.model.`` prefix stripped)."""
    for name, p in model.named_parameters():
        if name.removeprefix("base_model.model.") in heads:
            p.requires_grad_(True)
    return model


def _torch(model: nn.Module, spec: Spec, bb) -> nn.Module:
    """Plain PyTorch: the base model as is (full fine-tuning / inference) or BitFit's freezing done by hand."""
    if spec.method in ("full", "base"):
        return model
    if spec.method == "bitfit":
        heads = head_names(model)
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith(".bias") or name in heads)
        return model
    raise ValueError(f"no plain-PyTorch contender for {spec.method!r}")


def _peftkit(model: nn.Module, spec: Spec, bb) -> nn.Module:
    import peftkit

    peftkit.apply(model, spec.method, seed=0, **dict(spec.options))
    if spec.merged:
        peftkit.merge(model)
    return model


BUILDERS = {"peftkit": _peftkit, "peft": _peft, "adapters": _adapters, "torch": _torch}


def build(spec: Spec, bb) -> nn.Module:
    """A fresh deep copy of the backbone with ``spec`` applied, in train or eval mode. A peer's trainable task head
    is matched to peftkit's, so that both sides of a ratio train the same parameters."""
    model = BUILDERS[spec.impl](copy.deepcopy(bb.model), spec, bb)
    if spec.impl in ("peft", "adapters") and spec.mode == "train":
        match_head(model, head_names(bb.model))
    return model.train(spec.mode == "train")


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast on CUDA and fp32 on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"invalid precision {precision!r}: allowed {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast on the bench device (CUDA, or CPU with --precision bf16), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Runner:
    """One built contender and its step; ``step()`` is what gets timed."""

    def __init__(self, spec: Spec, bb, batch: dict, device: torch.device, precision: str = "fp32"):
        self.spec, self.device, self.precision = spec, device, precision
        self.model = build(spec, bb)
        self.batch = batch
        self.inputs = {k: v for k, v in batch.items() if k != "labels"}
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-5) if spec.mode == "train" else None

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.params) if self.opt is not None else 0

    def clear(self) -> None:
        """Drop gradients (so a memory measurement starts from the same state as every step)."""
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.opt is None:
            with torch.no_grad(), autocast(self.device, self.precision):
                self.model(**self.inputs)
            return
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            if self.spec.consistency:
                from peftkit.consistency import consistency_forward

                loss = consistency_forward(self.model, self.batch, weight=1.0)[0]
            else:
                loss = self.model(**self.batch).loss
        loss.backward()
        self.opt.step()

    def static_bytes(self) -> int:
        """Bytes of the distinct storages of parameters, buffers, gradients and optimizer state (now)."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        tensors += [p.grad for p in self.model.parameters() if p.grad is not None]
        if self.opt is not None:
            tensors += [t for st in self.opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
        seen, total = set(), 0
        for t in tensors:
            s = t.untyped_storage()
            if s.data_ptr() not in seen:
                seen.add(s.data_ptr())
                total += s.nbytes()
        return total
