"""Training protocols: each paper's training settings and method defaults, as its authors' code ran them.

A protocol is a named preset. Every run trains under one (``RunSpec.protocol``; default: the protocol of the paper
whose published number the run is compared with, :func:`default_protocol`):

- ``adamix-glue``: AdaMix's GLUE scripts (``bert_base_mnli_expert_soup.sh``, ``roberta_large_mnli_expert_soup.sh``
  with ``examples/text-classification/run_glue.py``): batch 64, max length 128, BERT-base lr 4e-4 for 40 epochs,
  RoBERTa-large lr 3e-4 for 20 epochs, warmup ratio 0.06, weight decay 0.1, evaluation every epoch, no early
  stopping, the best epoch on dev (``load_best_model_at_end``). Method defaults: bottleneck 48 (BERT-base) / 16
  (RoBERTa-large). Consistency weight: 0 on BERT-family classifiers (the authors' ``BertForSequenceClassification``
  never computes it, although the BERT script passes ``--use_consistency_loss 1``), 1 on RoBERTa.
- ``unipelt-glue``: UniPELT's ``run_glue.py`` (Hugging Face defaults otherwise): batch 16, max length 128 with
  every input padded to it, 50 epochs, early stopping after 10 evaluations without improvement, no warmup, no
  weight decay, model selection on the first of f1, Matthews, Spearman, accuracy that the task reports. Learning
  rates per method (UniPELT's). The classifier stays frozen for the LoRA-only, prefix-only and BitFit runs
  (``freeze_params``).
- ``adamix-nlg``: AdaMix's NLG code (``NLG/src/gpt2_ft.py``, ``run_train_*.sh``, ``gpt2_beam.py``): batch 8, max
  length 512, lr 2e-4, weight decay 0.01, label smoothing 0.1, Adam eps 1e-6, no attention / residual / embedding
  dropout in the backbone (only LoRA dropout 0.1), inputs ``context eos " "completion eos``, beam search that also
  stops on GPT-2 token 628 ("\\n\\n"), and the final model evaluated (``model.final.pt``). Per task: E2E 20
  epochs with 2,000 warmup steps, WebNLG 25 with 2,500, DART 20 without label smoothing or weight decay.
- ``lmbff-fewshot``: LM-BFF's few-shot protocol (K = 16 per class, 5 data seeds): batch 8, 1,000 steps,
  evaluation on the K-shot dev split every 100 steps, best on dev, max length 128, no warmup, no weight decay.

The ``paper`` profile runs the protocols unscaled; ``cpu`` and ``smoke`` run the same protocols scaled only in data
(``max_train`` / ``max_eval`` / ``max_length``), length (epochs or steps) and backbone (see :data:`SCALING` and
``docs/protocols.md``). Learning rates are keyed by architecture family and size read from the model's config
(:func:`arch_key`), so a local path or ``FacebookAI/roberta-large`` gets RoBERTa-large's rate.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

NAMES = ("adamix-glue", "unipelt-glue", "adamix-nlg", "lmbff-fewshot")
#: UniPELT's selection order: the first metric the task reports
UNIPELT_SELECTION_ORDER = ("f1", "matthews_correlation", "spearmanr", "accuracy")
#: GPT-2's "\n\n": the authors' beam search stops on it as well as on eos (gpt2_beam.py --eos_token_id 628)
GPT2_DOUBLE_NEWLINE = 628

# UniPELT's per-method rates (BERT-base); prompt tuning is in neither paper (0.3: Lester et al.).
_UNIPELT_LR = {"full": 2e-5, "bitfit": 1e-4, "pfeiffer": 1e-4, "houlsby": 1e-4, "prefix": 2e-4, "lora": 5e-4,
               "unipelt": 5e-4, "adamix": 4e-4, "prompt": 3e-1}
#: AdaMix over prefix / prompt tuning (peftkit's extension, docs/adamix_prefix.md) has no rate of its own in any
#: paper: under every protocol it takes its base method's rate (key "adamix-<base>"), so that AdaMix-prefix and
#: prefix-tuning compared under one protocol differ only by the mixture. "adamix" alone keeps AdaMix's own rate,
#: tuned for its adapters and LoRA.
ADAMIX_EXTENSION_BASES = ("prefix", "prompt")


def _with_base_rates(lr: dict) -> dict:
    return {**lr, **{f"adamix-{b}": lr[b] for b in ADAMIX_EXTENSION_BASES}}


@dataclass(frozen=True)
class Protocol:
    """A named training protocol. ``training``: RunSpec fields; ``by_arch``: what differs per backbone
    (:func:`arch_key` -> fields); ``lr``: method -> rate (``lr_by_arch``: (method, arch key) -> rate first);
    ``method_options``: method -> options the protocol sets unless the run gives them (per arch key in
    ``method_options_by_arch``); ``by_task``: task -> fields (the paper profile only)."""

    name: str
    paper: str
    training: dict
    lr: dict
    lr_by_arch: dict = field(default_factory=dict)
    by_arch: dict = field(default_factory=dict)
    by_task: dict = field(default_factory=dict)
    method_options: dict = field(default_factory=dict)
    method_options_by_arch: dict = field(default_factory=dict)
    method_options_by_task: dict = field(default_factory=dict)  # task -> {method key: options}
    consistency_by_family: dict = field(default_factory=dict)  # classification: family -> w (default 1)
    frozen_head: tuple = ()  # methods whose task head stays frozen under this protocol (RunSpec.train_head=None)


# Fields every protocol states (RunSpec names). evaluate_model: best (dev-selected) | final. The optimiser step,
# sampler and precision are the authors' (docs/fidelity.md T1-T5): transformers 4.x AdamW with PyTorch 1.x's
# zero-filled gradients (peftkit.optim), the transformers Trainer's weight-decay groups, uniform random batches
# (RandomSampler), gradient clipping at 1.0 (the Trainer's default), fp32 (no fp16 / amp flag in any script).
_HF = dict(warmup_ratio=0.0, warmup_steps=None, weight_decay=0.0, adam_epsilon=1e-8, label_smoothing=0.0,
           backbone_dropout="checkpoint", nlg_format="plain", extra_eos=(), evaluate_model="best", eval_steps=None,
           pad_to_max_length=False, optimizer="hf-adamw", grad_reset="zero", weight_decay_scope="hf",
           sampler="random", max_grad_norm=1.0, drop_last=False, precision="fp32")

PROTOCOLS = {
    "adamix-glue": Protocol(
        "adamix-glue", "adamix",
        training={**_HF, "batch_size": 64, "max_length": 128, "epochs": 40, "patience": None, "warmup_ratio": 0.06,
                  "weight_decay": 0.1, "selection": "task"},
        lr=_with_base_rates({m: _UNIPELT_LR[m] for m in _UNIPELT_LR} | {"adamix": 4e-4}),
        lr_by_arch={("adamix", "roberta-large"): 3e-4},
        by_arch={"roberta-large": {"epochs": 20}},
        method_options_by_arch={"roberta-large": {"adamix": {"bottleneck": 16}}},
        consistency_by_family={"bert": 0.0, "roberta": 1.0},
    ),
    "unipelt-glue": Protocol(
        "unipelt-glue", "unipelt",
        # run_glue.py pads every input to max_length (128), and UniPELT's gates average over every position, padding
        # included (the method's default gate_average="all"), so the padding is part of the method's behaviour.
        training={**_HF, "batch_size": 16, "max_length": 128, "epochs": 50, "patience": 10, "selection": "unipelt",
                  "pad_to_max_length": True},
        lr=_with_base_rates(_UNIPELT_LR),
        # run_glue.py's freeze_params leaves the classifier frozen for the LoRA-only, prefix-only and BitFit runs
        # (BitFit still trains every bias, the classifier's included): those baselines train without the head.
        frozen_head=("lora", "prefix", "bitfit"),
        consistency_by_family={"bert": 0.0, "roberta": 1.0},  # AdaMix run under it (efficiency): its classifiers'
    ),
    "adamix-nlg": Protocol(
        "adamix-nlg", "adamix",
        training={**_HF, "batch_size": 8, "max_length": 512, "epochs": 20, "patience": None, "weight_decay": 0.01,
                  "label_smoothing": 0.1, "adam_epsilon": 1e-6, "backbone_dropout": 0.0, "nlg_format": "authors",
                  "extra_eos": (GPT2_DOUBLE_NEWLINE,), "evaluate_model": "final", "selection": "loss",
                  # gpt2_ft.py: --clip 0.0 (no clipping), DataLoader(drop_last=True), one weight-decay group
                  "max_grad_norm": 0.0, "drop_last": True, "weight_decay_scope": "all"},
        lr=_with_base_rates({m: 2e-4 for m in _UNIPELT_LR} | {"full": 2e-5, "prompt": 3e-1}),
        by_task={"e2e": {"epochs": 20, "warmup_steps": 2000}, "webnlg": {"epochs": 25, "warmup_steps": 2500},
                 "dart": {"epochs": 20, "warmup_steps": 2000, "label_smoothing": 0.0, "weight_decay": 0.0}},
        # AdaMix's NLG code is AdaMix over LoRA (base=lora, the adamix-lora label); its LoRA settings apply to the
        # LoRA runs only (keys: method, or adamix-<base>). The method's default base stays AdaMix's adapter, since
        # study grids drop options equal to the method's defaults from a run's spelling.
        # The adapter variant (model.py, adamix_only): ExpertSoup with a hard-coded bottleneck of 8, n_experts 8,
        # share_B 1 (one up-projection), GELU, after the MLP's c_proj.
        method_options={"lora": {"r": 4, "alpha": 32.0, "dropout": 0.1},
                        "adamix-lora": {"r": 4, "alpha": 32.0, "dropout": 0.1, "num_modules": 8, "share": "up"},
                        "adamix-adapter": {"bottleneck": 8, "num_modules": 8, "share": "up"}},
        # run_train_dart.sh: --lora_dropout 0.0
        method_options_by_task={"dart": {"lora": {"dropout": 0.0}, "adamix-lora": {"dropout": 0.0}}},
    ),
    "lmbff-fewshot": Protocol(
        "lmbff-fewshot", "lmbff",
        training={**_HF, "batch_size": 8, "max_length": 128, "max_steps": 1000, "eval_steps": 100, "patience": None,
                  "selection": "task"},
        lr=_with_base_rates(_UNIPELT_LR),
    ),
}

#: What each profile scales (data, length, backbone) per task kind; everything else is the protocol's.
SCALING = {
    "paper": {"glue": {"model": "bert-base-uncased"}, "fewshot": {"model": "roberta-large"},
              "nlg": {"model": "gpt2-medium"}},
    # cpu: every protocol whole; GLUE trains on UniPELT's low-resource K = 1,000 (a run's k overrides), NLG on 1,000
    # training examples with 20 test sources decoded; every task at its own token length (presets.TOKEN_LENGTH)
    "cpu": {"glue": {"model": "minilm", "k": 1000, "max_length": "task", "precision": "auto"},
            "fewshot": {"model": "minilm", "max_length": "task", "precision": "auto"},
            "nlg": {"model": "minilm", "max_train": 1000, "max_eval": 20, "max_length": "task",
                    "warmup_steps": None, "precision": "auto"}},
    "smoke": {"glue": {"model": "minilm", "max_steps": 8, "eval_steps": 4, "max_train": 64, "max_eval": 64,
                       "max_length": 64, "precision": "auto"},
              "fewshot": {"model": "minilm", "max_steps": 8, "eval_steps": 4, "max_eval": 64, "max_length": 64,
                          "precision": "auto"},
              "nlg": {"model": "minilm", "max_steps": 8, "eval_steps": 4, "max_train": 32, "max_eval": 3,
                      "max_length": 64, "warmup_steps": None, "precision": "auto"}},
}


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"invalid protocol={name!r}: allowed one of {', '.join(NAMES)}")
    return PROTOCOLS[name]


#: the kind of task each protocol trains (its paper's): a protocol applies to that kind only
KIND = {"adamix-glue": "glue", "unipelt-glue": "glue", "adamix-nlg": "nlg", "lmbff-fewshot": "fewshot"}


def check_kind(name: str, kind: str) -> None:
    """Raise ValueError when protocol ``name`` is not one for a ``kind`` task (e.g. unipelt-glue on E2E would
    freeze an untrained LM head, adamix-nlg on RTE would smooth its labels), naming the protocols that apply."""
    get(name)
    if KIND[name] != kind:
        fitting = [n for n in NAMES if KIND[n] == kind]
        raise ValueError(f"invalid protocol={name!r}: it trains {KIND[name]} tasks, not {kind} ones; allowed for a "
                         f"{kind} task: {', '.join(fitting)} (or none: the default)")


def default_protocol(kind: str, method: str) -> str:
    """The protocol of the paper a run's published counterpart comes from: AdaMix rows on GLUE train under
    AdaMix's protocol; every other GLUE row (UniPELT's tables, and the baselines AdaMix's BERT-base table quotes
    from UniPELT) under UniPELT's; NLG under AdaMix's; few-shot under LM-BFF's."""
    if kind == "glue":
        return "adamix-glue" if method == "adamix" else "unipelt-glue"
    return {"nlg": "adamix-nlg", "fewshot": "lmbff-fewshot"}[kind]


# ---- architecture keys ----------------------------------------------------------------------------------------

_FAMILY = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta",
           "electra": "bert", "gpt2": "gpt2", "llama": "llama"}
_SIZES = {"bert": {768: "base", 1024: "large"}, "roberta": {768: "base", 1024: "large"},
          "gpt2": {768: "small", 1024: "medium", 1280: "large", 1600: "xl"}}


def _config_of(model: str) -> Optional[dict]:
    from . import backbones

    try:
        path = Path(backbones.resolve(model))
    except Exception:  # noqa: BLE001 - offline hub names: fall back to the name
        return None
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None


def arch_key(model: str) -> tuple[str, str]:
    """(family, size) of a backbone from its config: ("bert", "base"), ("roberta", "large"), ("gpt2", "medium"),
    ("bert", "384") for MiniLM-L6 (a BERT of hidden size 384). Falls back to the name when the config cannot be
    read (a hub name offline): "roberta-large" -> ("roberta", "large")."""
    cfg = _config_of(model)
    if cfg is not None:
        family = _FAMILY.get(cfg.get("model_type", ""), cfg.get("model_type", "other"))
        hidden = cfg.get("hidden_size") or cfg.get("n_embd") or 0
        return family, _SIZES.get(family, {}).get(hidden, str(hidden))
    name = model.lower().rsplit("/", 1)[-1]
    family = "roberta" if "roberta" in name else "gpt2" if "gpt2" in name else "bert" if "bert" in name else "other"
    size = next((s for s in ("large", "medium", "base", "xl") if re.search(rf"\b{s}\b", name.replace("-", " "))),
                "base" if family in ("bert", "roberta") else "small" if family == "gpt2" else "")
    return family, size


def _keys(model: str) -> list[str]:
    family, size = arch_key(model)
    return [f"{family}-{size}", family]


def _first(table: dict, keys: list, default=None):
    return next((table[k] for k in keys if k in table), default)


def settings(name: str, model: str, task: str | None = None, with_tasks: bool = True) -> dict:
    """The protocol's training settings for ``model`` (and ``task``'s own, when ``with_tasks``)."""
    p = get(name)
    out = {**p.training, **_first(p.by_arch, _keys(model), {})}
    if with_tasks and task:
        out.update(p.by_task.get(task.split(":", 1)[-1].lower(), {}))
    return out


def _adamix_base(method: str, options: dict | None) -> str | None:
    if method != "adamix":
        return None
    from .config import make_config

    return (options or {}).get("base") or make_config("adamix").base


def learning_rate(name: str, method: str, model: str, options: dict | None = None) -> float:
    """The protocol's rate for ``method`` (with ``options``: AdaMix over prefix / prompt takes its base method's
    rate, key "adamix-<base>", :data:`ADAMIX_EXTENSION_BASES`) on ``model`` (per arch key first)."""
    p = get(name)
    base = _adamix_base(method, options)
    key = f"adamix-{base}" if base in ADAMIX_EXTENSION_BASES else method
    rate = _first({k[1]: v for k, v in p.lr_by_arch.items() if k[0] == key}, _keys(model))
    return rate if rate is not None else p.lr[key]


def method_options(name: str, method: str, model: str, given: dict | None = None, task: str | None = None) -> dict:
    """The options of a run: what the protocol sets for ``method`` on ``model`` (keys ``method`` and, for AdaMix,
    ``adamix-<base>``) and for ``task``, overridden by the run's own ``given`` options. The key "adamix" holds
    AdaMix's own settings (its adapter and LoRA runs); AdaMix over prefix / prompt takes only "adamix-<base>"."""
    p, given = get(name), dict(given or {})
    per_arch = _first(p.method_options_by_arch, _keys(model), {})
    per_task = p.method_options_by_task.get((task or "").split(":", 1)[-1].lower(), {})
    base = _adamix_base(method, given)
    keys = [method] if base not in ADAMIX_EXTENSION_BASES else []
    if base is not None:
        keys.append(f"adamix-{base}")
    out = {}
    for table in (p.method_options, per_arch, per_task):
        for key in keys:
            out.update(table.get(key, {}))
    return {**out, **given}


def consistency_weight(name: str, model: str, kind: str, regression: bool) -> float:
    """AdaMix's consistency weight: 100 for generation, 0 for regression, per family for classification."""
    if kind == "nlg":
        return 100.0
    if regression:
        return 0.0
    return get(name).consistency_by_family.get(arch_key(model)[0], 1.0)


def selection_metric(name: str, task: str) -> Optional[str]:
    """The dev metric a protocol selects on for a GLUE / few-shot task (None: the kit's per-task default)."""
    if get(name).training.get("selection") != "unipelt":
        return None
    from .metrics import glue_metric_names

    names = glue_metric_names(task)
    return next(m for m in UNIPELT_SELECTION_ORDER + tuple(names) if m in names)
