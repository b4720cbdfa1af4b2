"""One run = one ``RunSpec`` -> one ``result.json``. ``run`` is what ``peftkit train`` and the notebooks call.

A run whose result exists is skipped (unless ``force``); a killed run resumes from its last checkpoint; the
result is written atomically at the very end, so a sweep interrupted anywhere loses no finished run and redoes
none. Bad input fails in :func:`resolve`, before anything is written.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import presets, protocols
from .config import make_config
from .consistency import CE_MODES
from .runchecks import check_applies, check_same_run
from .validate import MIN_MAX_LENGTH, check_number, check_out_dir, check_sizes, check_trains_something

PROTOCOL_DEFAULTS = {"glue": "classifier", "fewshot": "prompt", "nlg": "causal"}
SAMPLERS = ("random", "group_by_length")


@dataclass
class RunSpec:
    """Everything that defines a run. ``None`` fields take the protocol's setting scaled by the profile (see
    :mod:`peftkit.protocols` and :mod:`peftkit.presets`); ``options`` are completed with the protocol's method
    defaults."""

    task: str
    method: str
    out: str
    options: dict = field(default_factory=dict)
    profile: str = "cpu"
    protocol: Optional[str] = None  # adamix-glue | unipelt-glue | adamix-nlg | lmbff-fewshot (None: by task+method)
    model: Optional[str] = None
    head: Optional[str] = None  # classifier | prompt | causal (default from the task kind)
    k: Optional[int] = None
    data_seed: Optional[int] = None
    seed: int = 42
    epochs: Optional[float] = None
    epoch_fraction: Optional[float] = None  # epochs = the protocol's x this, rounded up (a profile's length scaling)
    max_steps: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    max_length: Optional[int] = None
    eval_steps: Optional[int] = None  # None: every epoch; N: every N steps; 0: only after training
    patience: Optional[int] = None
    warmup_ratio: Optional[float] = None
    warmup_steps: Optional[int] = None  # overrides warmup_ratio when set (AdaMix's NLG protocol)
    weight_decay: Optional[float] = None
    consistency: Optional[float] = None  # AdaMix: None = the protocol's weight (task type, architecture), 0 = off
    consistency_ce: str = "first"  # AdaMix consistency: task loss of the first pass (authors') | mean of both
    label_smoothing: Optional[float] = None
    adam_epsilon: Optional[float] = None
    backbone_dropout: Optional[object] = None  # "checkpoint" (the config's dropouts) | a probability for all of them
    nlg_format: Optional[str] = None  # authors: context eos " "completion eos | plain: source sep completion eos
    extra_eos: Optional[list] = None  # GPT-2 token ids that also end a beam (adamix-nlg: [628])
    evaluate_model: Optional[str] = None  # best (dev-selected weights) | final (the last weights)
    max_train: Optional[int] = None
    max_eval: Optional[int] = None
    inference_modes: bool = False  # AdaMix: also evaluate random / fixed-K / ensemble routing at the end
    data_dir: Optional[str] = None
    train_head: Optional[bool] = None  # None: the protocol's (frozen for UniPELT's LoRA / prefix / BitFit runs)
    pad_to_max_length: Optional[bool] = None  # pad every batch to max_length (None: the protocol's)
    # None: the protocol's (fp32, as the authors trained), scaled by the profile (see peftkit.protocols.SCALING)
    precision: Optional[str] = None  # auto (bf16 autocast where the hardware has native bf16) | bf16 | fp32
    # The optimiser step and sampler (peftkit.optim; None: the protocol's, i.e. the authors'):
    optimizer: Optional[str] = None  # hf-adamw (transformers 4.x AdamW, the authors') | torch-adamw
    grad_reset: Optional[str] = None  # zero (torch < 2: drawn-once experts keep stepping) | none (torch >= 2)
    weight_decay_scope: Optional[str] = None  # hf (no decay for biases / LayerNorm) | all (AdaMix's NLG code)
    sampler: Optional[str] = None  # random (both authors' codes) | group_by_length (faster, not the authors')
    max_grad_norm: Optional[float] = None  # gradient clipping; 0 = none (AdaMix's NLG scripts, --clip 0.0)
    drop_last: Optional[bool] = None  # drop the last incomplete training batch (AdaMix's NLG loader)


def _positive(name: str, value, kind=int, allow_none=True, zero=False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if zero else value > 0)
    if not ok or (kind is int and not float(value).is_integer()):
        raise ValueError(f"invalid {name}={value!r}: allowed a {'non-negative' if zero else 'positive'} "
                         f"{'integer' if kind is int else 'number'}")


def resolve(spec: RunSpec) -> RunSpec:
    """Validate ``spec`` and fill every preset; raises ValueError / DataError naming the field. Writes nothing."""
    from .data import DataError, resolve_data_dir, task_kind

    _check_types(spec)
    if spec.profile not in presets.PROFILES:
        raise ValueError(f"invalid profile={spec.profile!r}: allowed one of {', '.join(presets.PROFILES)}")
    kind = task_kind(spec.task)
    cfg = make_config(spec.method, **spec.options)  # validates method and options
    check_trains_something(cfg)
    if spec.protocol is not None:
        protocols.check_kind(spec.protocol, kind)  # a protocol applies to its own kind of task only
    head = spec.head or PROTOCOL_DEFAULTS[kind]
    allowed_heads = {"glue": ("classifier",), "fewshot": ("prompt", "classifier"), "nlg": ("causal",)}[kind]
    if head not in allowed_heads:
        raise ValueError(f"invalid head={head!r} for a {kind} task: allowed {', '.join(allowed_heads)}")
    if spec.epochs is not None and spec.max_steps is not None:
        raise ValueError("give either epochs or max_steps, not both")
    for name in ("max_steps", "batch_size", "max_length", "patience", "max_train", "max_eval", "k"):
        _positive(name, getattr(spec, name))
    _positive("eval_steps", spec.eval_steps, zero=True)  # 0: no evaluation during training
    _positive("warmup_steps", spec.warmup_steps, zero=True)
    _positive("adam_epsilon", spec.adam_epsilon, float)
    _check_protocol_fields(spec)
    _check_ranges(spec)  # lr, epochs, warmup_ratio, weight_decay, consistency, label_smoothing
    _positive("seed", spec.seed, zero=True, allow_none=False)
    if spec.precision not in (None, "auto", "bf16", "fp32"):
        raise ValueError(f"invalid precision={spec.precision!r}: allowed auto, bf16, fp32")
    _positive("data_seed", spec.data_seed, zero=True)
    if kind == "nlg" and spec.k is not None:
        raise ValueError("invalid k: the NLG tasks train on their full training sets")
    if spec.data_dir is not None:
        resolve_data_dir(spec.data_dir)  # a missing directory fails here
    check_out_dir(spec.out)
    base = presets.profile_settings(spec.profile, kind, spec.task, spec.protocol, spec.method, spec.model)
    options = protocols.method_options(base["protocol"], spec.method, base["model"], spec.options, spec.task)
    cfg = make_config(spec.method, **options)
    filled = dataclasses.replace(spec, head=head, model=base["model"], protocol=base["protocol"], options=options)
    for name in _FILLED:
        if getattr(filled, name) is None:
            value = base.get(name)
            setattr(filled, name, list(value) if isinstance(value, tuple) else value)
    if spec.epoch_fraction is not None:
        if spec.epochs is not None or spec.max_steps is not None:
            raise ValueError(f"invalid epoch_fraction={spec.epoch_fraction!r} with epochs or max_steps set: "
                             "give one of epochs, max_steps, epoch_fraction")
        full = protocols.settings(filled.protocol, filled.model, spec.task).get("epochs")
        if not full:
            raise ValueError(f"invalid epoch_fraction={spec.epoch_fraction!r}: protocol {filled.protocol} counts "
                             "steps, not epochs (give max_steps)")
        # resolved to whole epochs, so that a run asked for by fraction and by epochs is the same run
        filled.epochs, filled.epoch_fraction = float(math.ceil(full * spec.epoch_fraction - 1e-9)), None
    if filled.epochs is None and filled.max_steps is None:
        if base.get("max_steps"):
            filled.max_steps = base["max_steps"]
        else:
            filled.epochs = base["epochs"]
    if filled.lr is None:
        filled.lr = protocols.learning_rate(filled.protocol, spec.method, filled.model, options)
    if filled.train_head is None:
        filled.train_head = spec.method not in protocols.get(filled.protocol).frozen_head
    if kind == "fewshot" and filled.k is None:
        filled.k = 16
    if kind == "glue" and filled.k is None:
        filled.k = base.get("k")  # the cpu profile's low-resource K (UniPELT's Table 1 protocol)
    if filled.k is not None and filled.data_seed is None:
        from .data import FEWSHOT_SEEDS, LOW_RESOURCE_SEEDS

        filled.data_seed = (FEWSHOT_SEEDS if kind == "fewshot" else LOW_RESOURCE_SEEDS)[0]
    if kind == "fewshot" and filled.k != 16:
        raise DataError(f"invalid k={filled.k}: the LM-BFF splits in the data directory have k=16")
    if filled.consistency is None:
        filled.consistency = (default_consistency(filled.protocol, filled.model, kind, spec.task)
                              if cfg.name == "adamix" else 0.0)
    elif filled.consistency > 0 and cfg.name != "adamix":
        raise ValueError(f"invalid consistency={filled.consistency}: only AdaMix has stochastic routing")
    check_applies(spec, filled, kind)  # a field given that cannot apply to this run is an error, not ignored
    return filled


# RunSpec fields that take the protocol's (scaled) value when left at None
_FILLED = ("batch_size", "max_length", "eval_steps", "patience", "warmup_ratio", "warmup_steps", "weight_decay",
           "max_train", "max_eval", "label_smoothing", "adam_epsilon", "backbone_dropout", "nlg_format", "extra_eos",
           "evaluate_model", "pad_to_max_length", "precision", "optimizer", "grad_reset", "weight_decay_scope",
           "sampler", "max_grad_norm", "drop_last")


def _check_protocol_fields(spec: RunSpec) -> None:
    if spec.consistency_ce not in CE_MODES:
        raise ValueError(f"invalid consistency_ce={spec.consistency_ce!r}: allowed one of {', '.join(CE_MODES)}")
    if spec.nlg_format not in (None, "authors", "plain"):
        raise ValueError(f"invalid nlg_format={spec.nlg_format!r}: allowed authors, plain")
    if spec.evaluate_model not in (None, "best", "final"):
        raise ValueError(f"invalid evaluate_model={spec.evaluate_model!r}: allowed best, final")
    d = spec.backbone_dropout
    if d is not None and d != "checkpoint" and not (isinstance(d, (int, float)) and not isinstance(d, bool)
                                                      and 0 <= d < 1):
        raise ValueError(f"invalid backbone_dropout={d!r}: allowed 'checkpoint' or a probability in [0, 1)")
    from .optim import DECAY_SCOPES, GRAD_RESETS, OPTIMIZERS

    for name, allowed in (("optimizer", OPTIMIZERS), ("grad_reset", GRAD_RESETS),
                          ("weight_decay_scope", DECAY_SCOPES), ("sampler", SAMPLERS)):
        value = getattr(spec, name)
        if value is not None and value not in allowed:
            raise ValueError(f"invalid {name}={value!r}: allowed one of {', '.join(allowed)}")
    if spec.max_grad_norm is not None:
        check_number("max_grad_norm", spec.max_grad_norm, 0.0, 1e6)
    e = spec.extra_eos
    if e is not None and (isinstance(e, (str, bytes)) or not all(isinstance(i, int) and i >= 0 for i in e)):
        raise ValueError(f"invalid extra_eos={e!r}: allowed a list of token ids, e.g. [628]")


_TYPES = {"task": str, "method": str, "out": (str, os.PathLike), "options": dict, "profile": str,
          "model": (str, type(None)), "head": (str, type(None)), "data_dir": (str, os.PathLike, type(None)),
          "inference_modes": bool, "train_head": (bool, type(None)), "pad_to_max_length": (bool, type(None)),
          "protocol": (str, type(None)), "precision": (str, type(None)), "drop_last": (bool, type(None))}


def _check_types(spec: RunSpec) -> None:
    for name, typ in _TYPES.items():
        value = getattr(spec, name)
        if not isinstance(value, typ):
            names = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
            raise ValueError(f"invalid {name}={value!r}: allowed a {names.replace('NoneType', 'None')}")
    bad = [k for k in spec.options if not isinstance(k, str)]
    if bad:
        raise ValueError(f"invalid options key {bad[0]!r}: option names are strings")


def _check_ranges(spec: RunSpec) -> None:
    """Values that pass the type checks but cannot make a sensible run (NaN, inf, 1e-9 epochs...)."""
    if spec.lr is not None:
        check_number("lr", spec.lr, 0.0, 10.0, low_open=True)
    if spec.epochs is not None:
        check_number("epochs", spec.epochs, 0.01, 10000.0)
    if spec.epoch_fraction is not None:
        check_number("epoch_fraction", spec.epoch_fraction, 0.0, 1.0, low_open=True)
    if spec.label_smoothing is not None:
        check_number("label_smoothing", spec.label_smoothing, 0.0, 1.0, high_open=True)
    for name, high in (("weight_decay", 1.0), ("consistency", 1e6)):
        if getattr(spec, name) is not None:
            check_number(name, getattr(spec, name), 0.0, high)
    if spec.warmup_ratio is not None:
        check_number("warmup_ratio", spec.warmup_ratio, 0.0, 1.0, high_open=True)
    if spec.max_length is not None and spec.max_length < MIN_MAX_LENGTH:
        raise ValueError(f"invalid max_length={spec.max_length!r}: allowed an integer >= {MIN_MAX_LENGTH} (and at "
                         "most the model's positions)")


def preflight(spec: RunSpec) -> RunSpec:
    """:func:`resolve`, then the checks that need the model's config (not its weights): max_length within its
    positions, method sizes against its hidden size. Cheap (reads config.json); raises before any work."""
    from transformers import AutoConfig

    from . import backbones
    from .runner import check_precision
    from .validate import model_sizes

    spec = resolve(spec)
    check_precision(spec.precision)  # an explicit bf16 needs the hardware for it, checked before the model loads
    config = AutoConfig.from_pretrained(backbones.resolve(spec.model))
    check_sizes(make_config(spec.method, **spec.options), config)
    _, positions = model_sizes(config)
    if positions:
        room = positions - (make_config(spec.method, **spec.options).to_dict().get("prompt_length", 0)
                            if spec.method == "prompt" else 0)
        if spec.max_length > room:
            raise ValueError(f"invalid max_length={spec.max_length}: allowed an integer in [{MIN_MAX_LENGTH}, {room}] "
                             f"for model {spec.model!r} ({positions} position embeddings"
                             + (", less the prompt tokens)" if room < positions else ")"))
    return spec


def default_consistency(protocol: str, model: str, kind: str, task: str) -> float:
    """AdaMix's consistency weight under ``protocol`` (see :func:`peftkit.protocols.consistency_weight`)."""
    from .data import glue_task

    regression = kind == "glue" and glue_task(task).label_names is None
    return protocols.consistency_weight(protocol, model, kind, regression)


def method_label(method: str, options: dict) -> str:
    """Short name used in tables: adamix-adapter, adamix-pfeiffer, adamix-lora, unipelt-APL, lora, ..."""
    cfg = make_config(method, **options)
    if method == "adamix":
        return f"adamix-{cfg.base}"
    if method == "unipelt":
        return f"unipelt-{cfg.variant}" + ("" if cfg.gates else "-nogates")
    return method


def run(spec: RunSpec, force: bool = False, progress: bool = True) -> dict:
    """Train and evaluate one run, or return its existing result. See the module docstring."""
    import json

    from .results import has_result, result_path

    spec = preflight(spec)
    out = Path(spec.out)
    if has_result(out) and not force:
        check_same_run(out, spec)  # another run's result in out is an error, not a silent skip
        if progress:
            print(f"[peftkit] {out}: result exists, skipped (force to rerun)")
        return json.loads(result_path(out).read_text())
    if force:
        for sub in ("checkpoints", "best", "result.json"):
            p = out / sub
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    from .runner import execute

    return execute(spec, out, progress=progress, started=time.time(), label=method_label(spec.method, spec.options),
                   world_rank=int(os.environ.get("RANK", "0")))


def sweep(specs: list[RunSpec], force: bool = False, progress: bool = True) -> list[dict]:
    """Run specs in order; finished runs are skipped, an interrupted one resumes. Every spec is validated first."""
    for s in specs:
        preflight(s)
    results = []
    for i, s in enumerate(specs, 1):
        if progress:
            print(f"[peftkit] sweep {i}/{len(specs)}: {s.task} {s.method} -> {s.out}", flush=True)
        results.append(run(s, force=force, progress=progress))
    return results
