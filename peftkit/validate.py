"""Checks shared by the API, ``peftkit train`` and ``RunSpec``: sizes against the model, run settings, output dirs.

Everything here runs before any work (no model weights are loaded, nothing is written) and raises ``ValueError``
naming the field, the value and what is allowed.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

CONFIG_FILE = "peftkit_config.json"  # a checkpoint: its config (JSON) and trained weights (safetensors)
WEIGHTS_FILE = "peftkit_weights.safetensors"

#: An adapter bottleneck may be at most this many times the hidden size (the papers use 8..256 on 768).
BOTTLENECK_PER_HIDDEN = 8
#: The prefix reparameterisation MLP's width: at most this many times the hidden size (or 4096 on tiny models).
PREFIX_HIDDEN_PER_HIDDEN = 16
#: AdaMix: at most this many modules per projection (the paper uses 2..8).
MAX_MODULES = 64
#: The shortest max_length a run accepts: a [CLS] / [SEP] pair plus a few tokens.
MIN_MAX_LENGTH = 8


def fail(field: str, value: Any, allowed: str) -> None:
    raise ValueError(f"invalid option {field}={value!r}: allowed {allowed}")


def model_sizes(config) -> tuple[int | None, int | None]:
    """(hidden size, number of positions) of a transformers config; ``None`` where the config does not say."""
    hidden = next((getattr(config, a) for a in ("hidden_size", "n_embd", "d_model") if hasattr(config, a)), None)
    positions = next((getattr(config, a) for a in ("max_position_embeddings", "n_positions")
                      if isinstance(getattr(config, a, None), int)), None)
    if positions is not None and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= (getattr(config, "pad_token_id", 1) or 1) + 1  # RoBERTa's positions start after padding_idx
    return hidden, positions


def check_sizes(cfg, config) -> None:
    """Method sizes against the model: bottleneck <= 8 x hidden, r <= hidden, prefix / prompt <= positions."""
    hidden, positions = model_sizes(config)
    where = f"for this model (hidden size {hidden}, {positions} positions)"
    values = cfg.to_dict()
    adamix_base = values["base"] if cfg.name == "adamix" else None
    uses_adapter = cfg.name in ("pfeiffer", "houlsby", "unipelt") or adamix_base in ("adapter", "pfeiffer", "houlsby")
    uses_lora = cfg.name == "lora" or (cfg.name == "adamix" and values["base"] == "lora") or \
        (cfg.name == "unipelt" and values["variant"] == "APL")
    if hidden:
        if uses_adapter and values["bottleneck"] > BOTTLENECK_PER_HIDDEN * hidden:
            fail("bottleneck", values["bottleneck"], f"an integer <= {BOTTLENECK_PER_HIDDEN * hidden} "
                 f"({BOTTLENECK_PER_HIDDEN} x the hidden size) {where}")
        if uses_lora and values["r"] > hidden:
            fail("r", values["r"], f"an integer <= {hidden} (the hidden size; a larger rank is not low-rank) {where}")
        limit = max(4096, PREFIX_HIDDEN_PER_HIDDEN * hidden)
        if values.get("prefix_hidden", 0) > limit:
            fail("prefix_hidden", values["prefix_hidden"], f"an integer <= {limit} {where}")
    if positions:
        for name in ("prefix_length", "prompt_length"):
            applies = cfg.name in ("prefix", "prompt", "unipelt") or f"{adamix_base}_length" == name
            if applies and values.get(name, 0) > positions:
                fail(name, values[name], f"an integer <= {positions} (the model's positions) {where}")
    if cfg.name == "adamix" and values["num_modules"] > MAX_MODULES:
        fail("num_modules", values["num_modules"], f"an integer <= {MAX_MODULES}")


def check_trains_something(cfg) -> None:
    """A run must train its method: r=0 / bottleneck=0 is a disabled layer (fine in the API, not as a run)."""
    values = cfg.to_dict()
    for name in ("r", "bottleneck"):
        if values.get(name) == 0 and cfg.name in ("lora", "pfeiffer", "houlsby"):
            fail(name, 0, f"an integer >= 1 ({name}=0 disables {cfg.name}: the run would train 0 method "
                          "parameters under its name)")


def check_number(field: str, value: Any, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    """A finite number in the interval (``low_open`` / ``high_open`` exclude the ends)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"invalid {field}={value!r}: allowed a finite number in {interval}")


def check_out_dir(out: Any, field: str = "out") -> Path:
    """A run directory that can be created and written: not a file, not under a file, writable, name not too long.
    ``field``: how the messages name it (``out``, or a flag such as ``--reports-dir``)."""
    label = (lambda v: f"{field} {v!r}") if field.startswith("-") else (lambda v: f"{field}={v!r}")
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise ValueError(f"invalid {label(out)}: allowed a directory path (it is created if missing)")
    path = Path(out).expanduser()
    name_max = 255
    try:
        name_max = os.pathconf(existing_parent(path), "PC_NAME_MAX")
    except (OSError, ValueError):
        pass
    long = [p for p in path.parts if len(os.fsencode(p)) > name_max]
    if long:
        raise ValueError(f"invalid {label(str(out))}: the name {long[0][:40]!r}... is {len(os.fsencode(long[0]))} "
                         f"bytes long; allowed at most {name_max} bytes per path component")
    if len(os.fsencode(str(path.absolute()))) > 4000:
        raise ValueError(f"invalid {label(str(out)[:60])}...: the path is too long (allowed up to 4000 bytes)")
    if path.exists() and not path.is_dir():
        raise ValueError(f"invalid {label(str(out))}: it is an existing file; allowed a directory (new or existing)")
    parent = existing_parent(path)
    if not parent.is_dir():
        raise ValueError(f"invalid {label(str(out))}: {parent} is a file, so the directory cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"invalid {label(str(out))}: {parent} is not writable; allowed a directory you can write to")
    return path


def existing_parent(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest existing ancestor (which may be a file)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


_META_FIELDS = {"method": str, "options": dict, "train_head": bool, "seed": int, "merged": bool, "model_type": str}


def read_checkpoint(d: Path) -> tuple[dict, dict]:
    """(config, tensors) of a checkpoint directory, each field checked; a ValueError names the file and field."""
    from safetensors.torch import load_file

    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{d} is not a peftkit checkpoint: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        meta = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{d / CONFIG_FILE} is not valid JSON ({e}): the checkpoint is corrupt; save it again "
                         "with peftkit.save") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{d / CONFIG_FILE}: expected a JSON object with fields {', '.join(_META_FIELDS)}")
    for name, typ in _META_FIELDS.items():
        if name not in meta:
            raise ValueError(f"{d / CONFIG_FILE}: field {name!r} is missing (required: {', '.join(_META_FIELDS)}); "
                             "the file was not written by peftkit.save or was edited")
        ok = isinstance(meta[name], typ) and not (typ is int and isinstance(meta[name], bool))
        if not ok or (name == "seed" and meta[name] < 0):
            raise ValueError(f"{d / CONFIG_FILE}: field {name}={meta[name]!r} is invalid: allowed a "
                             f"{'non-negative integer' if name == 'seed' else typ.__name__}")
    try:
        tensors = load_file(str(d / WEIGHTS_FILE))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types (SafetensorError, OSError...)
        raise ValueError(f"{d / WEIGHTS_FILE} cannot be read ({type(e).__name__}: {e}): the file is truncated or "
                         "corrupt; save the checkpoint again with peftkit.save") from None
    return meta, tensors
