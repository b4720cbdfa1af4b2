"""The public verbs: apply, merge / unmerge, save / load, parameter counts, gates and AdaMix routing controls."""
from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn

from .atomic import write_json, write_via
from .arch import detect, is_head_param, is_pooler_param, tied_to_embeddings
from .config import get_method, make_config
from .layers import Gate, PeftState, bind_call, parse_inference
from .validate import CONFIG_FILE, WEIGHTS_FILE, check_sizes, read_checkpoint  # noqa: F401 (file names: API)
from .version import __version__



def has_state(model: nn.Module) -> bool:
    """Whether a peftkit method is attached to this very module (not to a submodule: see consistency's search)."""
    return getattr(model, "_peftkit", None) is not None


def state_of(model: nn.Module) -> PeftState:
    """The peftkit state attached to ``model``; a ``ValueError`` if none is (the one public way to read it)."""
    st = getattr(model, "_peftkit", None)
    if st is None:
        raise ValueError("this model has no peftkit method attached: call peftkit.apply(model, method, ...) first")
    return st


def is_method_param(name: str, state: PeftState) -> bool:
    """Does the method own (train, save, count) this parameter? Decided by its name."""
    rule = getattr(state.config, "is_trainable", None)
    if rule is not None:
        return rule(name)
    return added_by_peftkit(name)


def added_by_peftkit(name: str) -> bool:
    """Is this parameter one a peftkit method added to the model (a ``pk_`` part in its name), not a backbone
    weight? (Full fine-tuning and BitFit train backbone weights too: :func:`is_method_param` decides training.)"""
    return any(part.startswith("pk_") for part in name.split("."))


def apply(model: nn.Module, method: str, *, train_head: bool = True, train_pooler: bool = False,
          seed: Optional[int] = None, **options: Any) -> nn.Module:
    """Attach ``method`` to ``model`` in place and freeze everything that is not the method's.

    The task head (parameters outside the base model, tied LM decoders excepted) stays trainable unless
    ``train_head=False`` (the UniPELT authors' LoRA-only, prefix-only and BitFit runs froze it). BERT's pooler
    stays frozen, as in both authors' codes, unless ``train_pooler=True`` (for a checkpoint that has no pooler
    weights; methods that train base weights, full fine-tuning and BitFit, train it by their own rule).
    ``seed`` seeds AdaMix routing (default: drawn from torch's global RNG, so
    ``torch.manual_seed`` / ``transformers.set_seed`` control it). Every option is validated, and the model
    is checked, before anything changes: a ``ValueError`` names the bad option and the allowed values.
    """
    if has_state(model):
        raise ValueError(f"a peftkit method ({state_of(model).method!r}) is already attached to this model")
    m = get_method(method)
    cfg = make_config(method, **options)
    if not isinstance(train_head, bool):
        raise ValueError(f"invalid option train_head={train_head!r}: allowed true, false")
    if not isinstance(train_pooler, bool):
        raise ValueError(f"invalid option train_pooler={train_pooler!r}: allowed true, false")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"invalid option seed={seed!r}: allowed a non-negative integer")
    if hasattr(model, "config"):
        check_sizes(cfg, model.config)  # absurd sizes fail here, before a huge allocation
    arch = detect(model)
    # torch's global CPU generator, also under a CUDA default device: the same torch.manual_seed gives the same seed
    seed = int(torch.randint(0, 2**62, (1,), device="cpu").item()) if seed is None else seed
    state = PeftState(method=method, config=cfg, arch=arch, train_head=train_head, train_pooler=train_pooler,
                      seed=seed)
    state.generator.manual_seed(seed)
    _preflight(model, m, cfg, arch)
    m.attach(model, cfg, arch, state)
    model._peftkit = state
    body = hook_target(model, arch)
    body.register_forward_pre_hook(functools.partial(_before_forward, state=state), with_kwargs=True, prepend=True)
    body.register_forward_hook(functools.partial(_after_forward, state=state))
    _freeze(model, state)
    return model


def _preflight(model, m, cfg, arch) -> None:
    """Attach to a throw-away meta-device copy of the structure so that errors surface before any change."""
    try:
        with torch.device("meta"):
            skeleton = type(model)(model.config)
    except Exception:  # noqa: BLE001 - exotic constructors: fall back to checks inside attach
        return
    m.attach(skeleton, cfg, detect(skeleton), PeftState(method=m.name, config=cfg, arch=detect(skeleton)))


def hook_target(model: nn.Module, arch) -> nn.Module:
    """The base model (``model.bert``, ``model.transformer``...): every forward, head or not, goes through it."""
    return getattr(model, arch.base_prefix) if arch.base_prefix else model


def _before_forward(model, args, kwargs, *, state: PeftState):
    call = bind_call(type(model).forward, (model, *args), kwargs)
    mask = call.get("attention_mask")
    state.mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
    for fn in state.before_forward:
        fn(state)
    return None


def _after_forward(model, args, output, *, state: PeftState):
    state.mask = None
    state.prefix_kv = None  # do not keep the graph alive between forwards
    return None


def trains_with_head(model: nn.Module, state: PeftState, name: str) -> bool:
    """Does this parameter train as part of the task head (head itself, or BERT's pooler when asked)?"""
    if state.train_pooler and is_pooler_param(model, state.arch, name):
        return True
    return state.train_head and is_head_param(model, state.arch, name)


def _freeze(model: nn.Module, state: PeftState) -> None:
    tied = tied_to_embeddings(model)
    for name, p in model.named_parameters():
        head = trains_with_head(model, state, name) and id(p) not in tied
        p.requires_grad_(is_method_param(name, state) or head)


def _blocks(model: nn.Module) -> list:
    """Method blocks with their own merge/unmerge (AdaMix adapters, prefix encoder), listed before any change."""
    return [m for m in model.modules() if hasattr(m, "merge") and hasattr(m, "inference_numel")]


def merge(model: nn.Module) -> nn.Module:
    """Put the model in its inference form: LoRA folded into W, AdaMix modules averaged, prefix MLP dropped.

    Explicit (never a side effect of ``.eval()``). Gated components (UniPELT) refuse with a ValueError, before
    anything changes. While merged, a forward in training mode raises, so training never sees a stale copy.
    """
    from .methods.lora import fold, lora_hosts

    state = state_of(model)
    if state.merged:
        return model
    gated = [m for m in lora_hosts(model) if m._pk_gated]
    if gated:
        raise ValueError("cannot merge: a gated LoRA (UniPELT APL) depends on the input through its gate; "
                         "evaluate UniPELT unmerged")
    for block in _blocks(model):
        block.merge()
    for host in lora_hosts(model):
        fold(host, +1.0)
    state.merged = True
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Undo :func:`merge`: base weights restored (to float rounding), AdaMix averages and prefix MLP back."""
    from .methods.lora import fold, lora_hosts

    state = state_of(model)
    if not state.merged:
        return model
    for host in lora_hosts(model):
        fold(host, -1.0)
    for block in _blocks(model):
        block.unmerge()
    state.merged = False
    return model


@contextlib.contextmanager
def merged(model: nn.Module) -> Iterator[nn.Module]:
    """``with peftkit.merged(model):`` evaluate in the merged form, then return to the trainable form."""
    was = state_of(model).merged
    merge(model)
    try:
        yield model
    finally:
        if not was:
            unmerge(model)


def set_inference(model: nn.Module, mode: str) -> None:
    """AdaMix inference mode outside training: merged | random | ensemble | fixed-K."""
    state = state_of(model)
    if state.method != "adamix":
        raise ValueError(f"set_inference applies to AdaMix only (inference modes route between its modules); "
                         f"this model carries {state.method!r}")
    n = getattr(state.config, "num_modules", 1)
    parse_inference(mode, n)
    state.inference = mode


@contextlib.contextmanager
def route_groups(model: nn.Module, groups: int) -> Iterator[None]:
    """Route ``groups`` equal batch chunks independently within each forward (AdaMix consistency passes)."""
    state = state_of(model)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"invalid groups={groups!r}: allowed a positive integer (the batch splits into that many "
                         "equal, independently routed chunks)")
    old, state.groups = state.groups, groups
    try:
        yield
    finally:
        state.groups = old


def gate_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """Last forward's UniPELT gate values, {module name: tensor [batch]}, e.g. 'bert.encoder.layer.0.output...'."""
    return {n: g.last for n, g in model.named_modules() if isinstance(g, Gate) and g.last is not None}


def routing(model: nn.Module) -> dict[str, Any]:
    """Last forward's AdaMix routing, {mixture module name: choice}: a list of (down, up) -- LoRA: (A, B) --
    module indices, one pair per independently routed batch chunk (two under :func:`route_groups`), or the
    string "merged" / "ensemble" for the eval modes that do not pick a module. AdaMix over prefix draws per layer
    and reports each layer's (embedding, MLP) pair under that layer's self-attention module's name; over prompt,
    (prompt, 0) under the prompt module's."""
    state_of(model)
    return {n: m.last_route for n, m in model.named_modules() if getattr(m, "last_route", None) is not None}


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``trainable`` (method only, no head), ``head``, ``inference`` (method size in merged form), ``total``."""
    state = state_of(model)
    trainable = head = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        pooler = is_pooler_param(model, state.arch, name) and not is_method_param(name, state)  # train_pooler
        if (is_head_param(model, state.arch, name) or pooler) and not added_by_peftkit(name):
            head += p.numel()
        else:
            trainable += p.numel()
    rule = getattr(state.config, "is_trainable", None)
    if rule is not None:  # bitfit / full: the method's parameters are base parameters
        inference = sum(p.numel() for n, p in model.named_parameters()
                        if rule(n) and not is_head_param(model, state.arch, n))
    else:
        inference = sum(m.inference_numel() for n, m in model.named_modules() if n.split(".")[-1].startswith("pk_"))
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "head": head, "inference": inference, "total": total}


def describe(model: nn.Module) -> str:
    """Which modules the method touched and how many parameters train."""
    state = state_of(model)
    touched = sorted({n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad})
    counts = count_parameters(model)
    lines = [f"peftkit method {state.method}: {json.dumps(state.config.to_dict(), sort_keys=True)}",
             f"trainable (method) {counts['trainable']:,}  head {counts['head']:,}  inference {counts['inference']:,}  "
             f"total {counts['total']:,}", "trainable modules:"] + [f"  {t}" for t in touched]
    return "\n".join(lines)


# --- save / load ---------------------------------------------------------------------------------------
def _trained_names(model: nn.Module) -> list[str]:
    state = state_of(model)
    tied = tied_to_embeddings(model)
    return [name for name, p in model.named_parameters()
            if is_method_param(name, state) or (trains_with_head(model, state, name) and id(p) not in tied)]


def _trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {name: params[name].detach().cpu().contiguous() for name in _trained_names(model)}


def save(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write only what was trained (method parameters and head) as safetensors, plus the config as JSON."""
    from safetensors.torch import save_file

    state = state_of(model)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = _trained_state(model)
    meta = {"peftkit_version": __version__, "method": state.method, "options": _options(state.config),
            "train_head": state.train_head, "train_pooler": state.train_pooler, "seed": state.seed,
            "merged": state.merged,
            "model_type": state.arch.model_type, "parameters": sorted(tensors)}
    write_via(d / WEIGHTS_FILE, lambda p: save_file(tensors, p))
    write_json(d / CONFIG_FILE, meta)
    return d


def _options(cfg) -> dict:
    opts = cfg.to_dict()
    opts.pop("method")
    return opts


def load(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Attach the saved method to a fresh base ``model`` and load its weights; outputs match the saved model.

    All or nothing: the config, the weights file, the parameter names and every shape are checked (on a
    meta-device copy of the model) before the model is touched, so a failed load leaves it exactly as it was.
    """
    d = Path(directory)
    meta, tensors = read_checkpoint(d)
    if has_state(model):
        raise ValueError(f"a peftkit method ({state_of(model).method!r}) is already attached to this model: "
                         f"load {d} into a fresh base model")
    if meta["model_type"] != getattr(model.config, "model_type", None):
        raise ValueError(f"{d / CONFIG_FILE}: model_type is {meta['model_type']!r} but the model is "
                         f"{getattr(model.config, 'model_type', None)!r}; load it into a {meta['model_type']} model")
    options = dict(train_head=meta["train_head"], train_pooler=meta.get("train_pooler", False), seed=meta["seed"],
                   **meta["options"])
    try:
        make_config(meta["method"], **meta["options"])
    except ValueError as e:
        raise ValueError(f"{d / CONFIG_FILE}: {e}") from None
    merge_first = _check_against(model, d, meta, tensors, options)
    apply(model, meta["method"], **options)
    if merge_first:
        merge(model)
    _copy_in(model, tensors)
    if meta["merged"] and not merge_first:
        merge(model)
    return model


def _check_against(model: nn.Module, d: Path, meta: dict, tensors: dict, options: dict) -> bool:
    """Attach the method to a structural copy (meta device) and check every name and shape; True when the
    checkpoint's parameters exist only in the merged form (prefix key/values)."""
    try:
        with torch.device("meta"):
            skeleton = type(model)(model.config)
    except Exception:  # noqa: BLE001 - exotic constructors: a real copy
        import copy

        skeleton = copy.deepcopy(model)
    apply(skeleton, meta["method"], **options)
    names = dict(skeleton.named_parameters())
    merge_first = meta["merged"] and not set(tensors) <= set(names)
    if merge_first:
        merge(skeleton)
        names = dict(skeleton.named_parameters())
    unknown = sorted(set(tensors) - set(names))
    if unknown:
        raise ValueError(f"{d / WEIGHTS_FILE}: {len(unknown)} parameters are not in the model with method "
                         f"{meta['method']!r}, e.g. {unknown[:3]}; was it saved from another architecture?")
    missing = sorted(set(_trained_names(skeleton)) - set(tensors))
    if missing:
        raise ValueError(f"{d / WEIGHTS_FILE}: {len(missing)} trained parameters are missing, e.g. {missing[:3]}; "
                         "the checkpoint is incomplete")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(names[k].shape):
            labels = is_head_param(skeleton, state_of(skeleton).arch, k) and v.shape[1:] == names[k].shape[1:]
            hint = (f" (the head: the checkpoint has {v.shape[0]} labels, the model {names[k].shape[0]}; build the "
                    f"model with num_labels={v.shape[0]})") if labels else ""
            raise ValueError(f"{d / WEIGHTS_FILE}: parameter {k} has shape {tuple(v.shape)} but the model's is "
                             f"{tuple(names[k].shape)}{hint}")
        if not (v.is_floating_point() or v.is_complex()) and names[k].is_floating_point():
            raise ValueError(f"{d / WEIGHTS_FILE}: parameter {k} has dtype {v.dtype}; allowed a floating dtype")
    return merge_first


def _copy_in(model: nn.Module, tensors: dict) -> None:
    names = dict(model.named_parameters())
    missing = sorted(set(tensors) - set(names))
    if missing:
        raise ValueError(f"checkpoint parameters not found in the model: {missing[:5]}")
    with torch.no_grad():
        for k, v in tensors.items():
            names[k].copy_(v.to(device=names[k].device, dtype=names[k].dtype))


def load_weights(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Copy a checkpoint's trained parameters into a model that already carries the same (unmerged) method."""
    state = state_of(model)
    d = Path(directory)
    meta, tensors = read_checkpoint(d)
    if meta["method"] != state.method or meta["merged"] or state.merged:
        raise ValueError("load_weights needs the same method, unmerged on both sides; use peftkit.load otherwise")
    names = dict(model.named_parameters())
    bad = [k for k, v in tensors.items() if k not in names or tuple(v.shape) != tuple(names[k].shape)]
    if bad:
        raise ValueError(f"{d / WEIGHTS_FILE}: parameter {bad[0]} is not in the model or has another shape "
                         f"({len(bad)} such); nothing was loaded")
    _copy_in(model, tensors)
    return model
