"""The body of a run: data, model, ``PeftTrainer``, final evaluation on the reported set, the result record."""
from __future__ import annotations

import dataclasses
import platform
import resource
import shutil
import subprocess
import time
from pathlib import Path

import torch

from . import presets
from .core import apply, count_parameters, load_weights, save, set_inference, state_of
from .cpucost import epoch_steps
from .generate import scoring_label
from .layers import expert_spread
from .results import SCHEMA, TIME_FORMAT, write_json_atomic
from .version import __version__


def _datasets(spec, kind: str) -> dict:
    """Raw rows for train / dev (model selection) / eval (reported), with their split identities."""
    from .data import glue_task, load_glue, load_kshot, load_nlg, load_nlg_eval, low_resource_split, split_identity

    name = spec.task.split(":", 1)[-1]
    if kind == "glue":
        dev_split = "dev_matched" if glue_task(name).dir == "MNLI" else "dev"
        train = load_glue(name, "train", spec.data_dir)
        evaluation = load_glue(name, dev_split, spec.data_dir)
        if spec.k is not None:
            train, dev = low_resource_split(train, spec.k, spec.data_seed)
            parts = {"train": (train, "train"), "dev": (dev, "train-dev1000"), "eval": (evaluation, dev_split)}
        else:
            parts = {"train": (train, "train"), "dev": (evaluation, dev_split), "eval": (evaluation, dev_split)}
    elif kind == "fewshot":
        load = lambda split: load_kshot(name, split, k=spec.k, seed=spec.data_seed, data_dir=spec.data_dir)  # noqa
        test_split = "test_matched" if name.lower() == "mnli" else "test"
        parts = {"train": (load("train"), "train"), "dev": (load("dev"), "dev"), "eval": (load(test_split), test_split)}
    else:
        parts = {"train": (load_nlg(name, "train", spec.data_dir), "train"),
                 "dev": (load_nlg(name, "dev", spec.data_dir), "dev"),
                 "eval": (load_nlg_eval(name, "test", spec.data_dir), "test")}
    out = {}
    for role, (ds, split) in parts.items():
        limit = spec.max_train if role == "train" else spec.max_eval
        if limit is not None and len(ds) > limit:
            ds = ds.shuffle(seed=spec.seed).select(range(limit)) if role == "train" else ds.select(range(limit))
        out[role] = ds
        out[role + "_id"] = split_identity(ds, name, split, spec.k, spec.data_seed)
    return out


def _versions() -> dict:
    import datasets
    import numpy
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "numpy": numpy.__version__, "peftkit": __version__}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def use_bf16(precision: str) -> bool:
    """bf16 autocast: asked for, or 'auto' on a GPU or CPU with native bf16 (AVX512-BF16 / AMX: ~2.4x the fp32
    matmul rate on the development machine)."""
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str) -> None:
    """An explicit ``bf16`` needs what ``auto`` would pick bf16 on (:func:`use_bf16`): a CPU without native bf16
    would emulate it silently (slowly), a GPU without it would fail only after the model loads."""
    if precision == "bf16" and not use_bf16("auto"):
        why = (f"GPU {torch.cuda.get_device_name()} has no bf16 support" if torch.cuda.is_available() else
               "this CPU has no native bf16 (AVX512-BF16 or AMX), so autocast would emulate it, slowly")
        raise ValueError(f"invalid precision='bf16': {why}; allowed here: auto (bf16 where native, else fp32) or "
                         "fp32")


def _distributed() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak resident set of this process (Linux: KiB)


def _build(spec, kind: str, raw: dict):
    """(model, peft model, tokenizer, tokenised train/dev/eval, task info)."""
    from transformers import set_seed

    from . import backbones, features
    from .data import glue_task

    name = spec.task.split(":", 1)[-1]
    tok = backbones.load_tokenizer(spec.model)
    set_seed(spec.seed)
    info = {"regression": False, "metric_task": name, "causal": kind == "nlg", "train_pooler": False}
    dropout = None if spec.backbone_dropout in (None, "checkpoint") else float(spec.backbone_dropout)
    if spec.head == "causal":
        model = backbones.load_model(spec.model, "causal", dropout=dropout)
        peft_model = apply(model, spec.method, train_head=spec.train_head, seed=spec.seed, **spec.options)
        tokenize = lambda ds: features.tokenize_generation(ds, tok, spec.max_length, spec.nlg_format)  # noqa: E731
    elif spec.head == "prompt":
        mlm = backbones.load_model(spec.model, "mlm", dropout=dropout)
        peft_model = apply(mlm, spec.method, train_head=spec.train_head, seed=spec.seed, **spec.options)
        model = features.PromptClassifier(mlm, features.label_word_ids(name, tok))
        tokenize = lambda ds: features.tokenize_prompt(ds, tok, name, spec.max_length)  # noqa: E731
    else:
        labels = raw["train"].features["label"]
        regression = kind == "glue" and glue_task(name).label_names is None
        info["regression"] = regression
        model = backbones.load_model(spec.model, "classifier", 1 if regression else labels.num_classes,
                                     dropout=dropout)
        # BERT's pooler stays frozen (both authors' codes) unless the checkpoint has no pooler weights to keep
        train_pooler = not backbones.has_pooler_weights(spec.model)
        info["train_pooler"] = train_pooler
        peft_model = apply(model, spec.method, train_head=spec.train_head, train_pooler=train_pooler,
                           seed=spec.seed, **spec.options)
        tokenize = lambda ds: features.tokenize_classification(ds, tok, spec.max_length, regression)  # noqa: E731
    data = {role: tokenize(raw[role]) for role in ("train", "dev")}
    data["eval"] = tokenize(raw["eval"]) if kind != "nlg" else None
    info["new_head_weights"] = backbones.new_head_weights(spec.model, spec.head)  # a classifier is always new
    return model, peft_model, tok, data, info


def _compute_metrics(task: str, regression: bool):
    import numpy as np

    from . import metrics

    metric = metrics.load("glue", task)

    def compute(pred):
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        preds = logits.squeeze(-1) if regression else np.argmax(logits, axis=-1)
        out = metric.compute(predictions=preds, references=pred.label_ids)
        if not regression:  # 1 = a collapsed classifier (the same label for every example); reports flag it
            out["predicted_classes"] = float(len(np.unique(preds)))
        return out
    return compute


def _selection(kind: str, task: str, regression: bool, protocol: str | None = None) -> tuple[str, bool]:
    if kind == "nlg":
        return "loss", False
    from .metrics import primary_metric
    from .protocols import selection_metric

    return (selection_metric(protocol, task) if protocol else None) or primary_metric(task), True


def training_args(spec, ckpt_dir: Path, train_rows: int, progress: bool = False):
    """The ``TrainingArguments`` of a resolved run: the protocol's optimiser settings, schedule, sampler (uniformly
    random unless ``sampler="group_by_length"``), clipping (``max_grad_norm``; 0 = none), ``drop_last`` and
    precision, and the evaluation / checkpoint cadence."""
    from .compat import training_arguments
    from .data import task_kind

    steps_per_epoch = epoch_steps(train_rows, spec.batch_size, spec.drop_last)
    # eval_steps: None = evaluate (and checkpoint) every epoch; N = every N steps; 0 = no evaluation during
    # training (the final weights are scored), with a checkpoint every epoch so a killed run still resumes.
    strategy = "steps" if spec.eval_steps else "epoch"
    args = training_arguments(
        output_dir=str(ckpt_dir), per_device_train_batch_size=spec.batch_size, per_device_eval_batch_size=64,
        learning_rate=spec.lr, num_train_epochs=spec.epochs or 1, max_steps=spec.max_steps or -1,
        eval_strategy="no" if spec.eval_steps == 0 else strategy, save_strategy=strategy,
        eval_steps=spec.eval_steps or None, save_steps=spec.eval_steps or None,
        save_total_limit=1, logging_steps=max(1, min(50, steps_per_epoch)), seed=spec.seed, data_seed=spec.seed,
        warmup_ratio=spec.warmup_ratio, warmup_steps=spec.warmup_steps or 0, weight_decay=spec.weight_decay,
        adam_epsilon=spec.adam_epsilon,
        lr_scheduler_type="linear",
        label_smoothing_factor=spec.label_smoothing, report_to=[], disable_tqdm=not progress,
        prediction_loss_only=task_kind(spec.task) == "nlg",  # NLG scores decoded text, not gathered logits
        remove_unused_columns=False, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        bf16=use_bf16(spec.precision), group_by_length=spec.sampler == "group_by_length",
        max_grad_norm=spec.max_grad_norm, dataloader_drop_last=bool(spec.drop_last),
        ddp_find_unused_parameters=spec.method in ("adamix",),
        ddp_backend="gloo" if _distributed() and not torch.cuda.is_available() else None,
    )
    if args.n_gpu > 1 and not _distributed():  # several visible GPUs, no torchrun: one device, never nn.DataParallel
        args._n_gpu = 1  # (peftkit's routing state, gates and prefix encoder are per model, not per replica)
    return args


def execute(spec, out: Path, *, progress: bool, started: float, label: str, world_rank: int) -> dict:
    from .checkpoints import last_checkpoint
    from .data import task_kind
    from .features import PadCollator
    from .trainer import BestAndPatience, PeftTrainer, restore_routing_state, wall_time_before

    kind = task_kind(spec.task)
    if not progress:
        import datasets

        datasets.disable_progress_bars()
    say = (lambda msg: print(f"[peftkit] {msg}", flush=True)) if progress and world_rank == 0 else (lambda msg: None)
    raw = _datasets(spec, kind)
    say(f"{spec.task} {label}: {len(raw['train'])} train / {len(raw['dev'])} dev / {len(raw['eval'])} eval rows")
    model, peft_model, tok, data, info = _build(spec, kind, raw)
    name = spec.task.split(":", 1)[-1]
    sel, greater = _selection(kind, name, info["regression"], spec.protocol)
    ckpt_dir, best_dir = out / "checkpoints", out / "best"
    args = training_args(spec, ckpt_dir, len(data["train"]), progress)
    best = BestAndPatience(sel, greater, best_dir, spec.patience)
    # pad_to_max_length: every batch padded to max_length (UniPELT's run_glue.py default, which its gates average
    # over); otherwise to the longest row of the batch
    pad_to = spec.max_length if spec.pad_to_max_length else None
    trainer = PeftTrainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["dev"],
                          data_collator=PadCollator(tok.pad_token_id, pad_to), consistency=spec.consistency,
                          consistency_ce=spec.consistency_ce,
                          optim={"optimizer": spec.optimizer, "grad_reset": spec.grad_reset,
                                 "weight_decay_scope": spec.weight_decay_scope},
                          causal=info["causal"], callbacks=[best],
                          compute_metrics=None if kind == "nlg" else _compute_metrics(name, info["regression"]))
    if not progress:  # quiet: no per-log dict printing (the trainer adds a printer when tqdm is off)
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    last = last_checkpoint(ckpt_dir)  # the newest complete one; what a kill during a save left is removed
    before = 0.0  # wall time of the segments before a resume (the record's wall_time_s is the whole run's)
    if last:
        say(f"resuming from {last}")
        restore_routing_state(model, last)
        before = wall_time_before(last)
    trainer.run_clock = (started, before)
    t0 = time.time()
    train_out = trainer.train(resume_from_checkpoint=last)
    train_time = time.time() - t0
    if spec.evaluate_model == "best" and (best_dir / "peftkit_config.json").is_file():
        load_weights(peft_model, best_dir)
    elif world_rank == 0:  # the final weights are scored (nothing was evaluated, or the protocol scores the last)
        shutil.rmtree(best_dir, ignore_errors=True)
        save(peft_model, best_dir)
    spread = expert_spread(peft_model)  # the scored weights' modules before any merge (AdaMix)
    say("final evaluation")
    final, modes, gates, decoded, eval_rate = _final(spec, kind, trainer, model, peft_model, tok, data, raw, name)
    decoded = decoded or {}
    evaluations = [{k[5:] if k.startswith("eval_") else k: v for k, v in log.items()}
                   for log in trainer.state.log_history if any(k.startswith("eval_") for k in log)]
    result = {
        "schema": SCHEMA, "status": "finished", "run_id": out.name, "task": name, "task_kind": kind,
        "protocol": {"glue": "low-resource" if spec.k else "full", "fewshot": "fewshot", "nlg": "nlg"}[kind],
        "training_protocol": spec.protocol,
        "k": spec.k, "data_seed": spec.data_seed, "method": spec.method, "method_label": label,
        "method_config": state_of(peft_model).config.to_dict(), "model": spec.model, "head": spec.head,
        "new_head_weights": info["new_head_weights"], "profile": spec.profile,
        "training": {**{f: getattr(spec, f) for f in ("lr", "batch_size", "epochs", "max_steps", "max_length",
                                                      "warmup_ratio", "warmup_steps", "weight_decay", "consistency",
                                                      "patience", "eval_steps", "label_smoothing", "max_train",
                                                      "max_eval", "protocol", "adam_epsilon", "backbone_dropout",
                                                      "nlg_format", "extra_eos", "evaluate_model", "consistency_ce",
                                                      "precision", "optimizer", "grad_reset", "weight_decay_scope",
                                                      "sampler", "max_grad_norm", "drop_last")},
                     "bf16": use_bf16(spec.precision), "pad_to_max_length": pad_to is not None,
                     "train_head": spec.train_head, "train_pooler": info["train_pooler"],
                     "world_size": args.world_size,
                     "effective_batch_size": spec.batch_size * args.world_size * args.gradient_accumulation_steps},
        "seeds": {"seed": spec.seed, "data_seed": spec.data_seed, "routing_seed": state_of(peft_model).seed},
        "data": {r: raw[r + "_id"] for r in ("train", "dev", "eval")},
        "evaluations": evaluations, "best_metrics": final, "selection_metric": sel, "best_step": best.best_step,
        "inference_modes": modes, "gates": gates, "expert_spread": spread, "samples": decoded.get("samples"),
        "generations": decoded.get("generations"),
        "scoring": scoring_label(name) if kind == "nlg" else None,
        "parameters": count_parameters(peft_model), "wall_time_s": round(time.time() - started + before, 2),
        "resumed": {"from": Path(last).name, "wall_time_before_s": round(before, 2)} if last else None,
        "train_time_s": round(train_time, 2),
        "train_examples_per_s": round(train_out.metrics.get("train_samples_per_second", 0.0), 3),
        "eval_examples_per_s": eval_rate, "peak_memory_mb": round(_peak_memory_mb(), 1),
        "peftkit_version": __version__, "git_commit": _git_commit(), "versions": _versions(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()})",
        "finished_at": time.strftime(TIME_FORMAT, time.gmtime()),
        "spec": dataclasses.asdict(spec),
    }
    if world_rank == 0:
        write_json_atomic(out / "result.json", result)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the best trained parameters stay in best/
        say(f"done: {final} -> {out / 'result.json'}")
    return result


def generation_stats(sources: list, predictions: list) -> dict:
    """How varied a generator's outputs on the reported set are (``result["generations"]``, read by the reports'
    collapse rule, :func:`peftkit.reporting.frame.collapse_reason`): the number of sources, of distinct sources, of
    empty generations and of distinct non-empty ones."""
    texts = [str(p).strip() for p in predictions]
    return {"sources": len(texts), "distinct_sources": len(set(map(str, sources))),
            "empty": sum(not t for t in texts), "distinct_nonempty": len({t for t in texts if t})}


def _final(spec, kind, trainer, model, peft_model, tok, data, raw, name):
    """Metrics on the reported set (+ AdaMix inference modes, UniPELT gates, NLG samples and generation counts)."""
    if kind == "nlg":
        from .generate import generate, score
        from .trainer import inference_form

        if trainer.args.process_index != 0:  # under torchrun only rank 0 decodes (and writes the result)
            return {}, None, None, None, 0.0

        t0 = time.time()
        with inference_form(peft_model):
            preds = generate(model, tok, list(raw["eval"]["source"]), spec.max_length,
                             presets.generation_settings(spec.profile), nlg_format=spec.nlg_format,
                             extra_eos=spec.extra_eos, show=not trainer.args.disable_tqdm)
        rate = round(len(preds) / max(time.time() - t0, 1e-9), 3)
        refs = list(raw["eval"]["references"])
        sources = list(raw["eval"]["source"])
        samples = [{"source": s, "prediction": p, "reference": r[0]} for s, p, r in list(zip(sources, preds, refs))[:5]]
        seen = list(raw["eval"]["seen"]) if "seen" in raw["eval"].column_names else None
        return score(name, preds, refs, seen=seen), None, None, {"samples": samples,
                                                                 "generations": generation_stats(sources, preds)}, rate

    def evaluate() -> tuple[dict, float]:
        m = trainer.evaluate(data["eval"], metric_key_prefix="test")
        rate = m.get("test_samples_per_second", 0.0)
        return {k[5:]: v for k, v in m.items() if k.startswith("test_") and not k.endswith(
            ("_runtime", "_per_second", "loss"))}, rate

    final, rate = evaluate()
    gates = trainer.gate_summary()
    modes = None
    if spec.inference_modes and spec.method == "adamix":
        cfg = state_of(peft_model).config
        modes = {"merged": final}
        for mode in ["random", "ensemble"] + [f"fixed-{i}" for i in range(cfg.num_modules)]:
            set_inference(peft_model, mode)
            modes[mode] = evaluate()[0]
        set_inference(peft_model, "merged")
        if cfg.base == "prefix":  # both merge options of the same model (06 measures them)
            from .methods.adamix_prefix import DEFAULT_MERGE, MERGES, merging_by

            own = cfg.merge or DEFAULT_MERGE
            for how in MERGES:
                if how == own and cfg.inference == "merged":  # what the reported evaluation already scored
                    modes[f"merged-{how}"] = dict(final)
                    continue
                with merging_by(peft_model, how):
                    modes[f"merged-{how}"] = evaluate()[0]
    return final, modes, gates, None, round(rate, 3)
