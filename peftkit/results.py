"""Experiments are data: one ``result.json`` per run, written atomically; tables and figures read only these.

Schema (``schema`` = 1); every key is always present, ``null`` where it does not apply:

- ``run_id`` (str, the run directory's name), ``status`` ("finished")
- ``task`` (e.g. "rte", "sst-2", "e2e"), ``task_kind`` ("glue" | "fewshot" | "nlg"),
  ``protocol`` ("full" | "low-resource" | "fewshot" | "nlg"), ``k`` (int or null), ``data_seed`` (int or null)
- ``method`` (registry name), ``method_label`` (e.g. "adamix-lora", "unipelt-APL", "lora"), ``method_config`` (dict)
- ``model`` (name or path), ``head`` ("classifier" | "prompt" | "causal"), ``profile``, ``new_head_weights``
  (bool: the head starts from weights the checkpoint does not hold: always for a classifier; for prompt and causal
  heads when the checkpoint lacks the head transform, e.g. MiniLM's; false for GPT-2's LM head, tied to wte)
- ``training``: lr, batch_size, epochs, max_steps, max_length, warmup_ratio, weight_decay, consistency (weight),
  patience, eval_steps, label_smoothing, max_train, max_eval, bf16, pad_to_max_length (every batch padded to
  max_length), train_head, train_pooler (BERT's pooler trained; only when the checkpoint has no pooler weights),
  world_size (processes under torchrun, else 1),
  effective_batch_size (batch_size x world_size x accumulation), precision (the run's setting: fp32 | bf16 |
  auto; ``bf16`` says what ran), optimizer, grad_reset, weight_decay_scope, sampler, max_grad_norm, drop_last
  (the optimiser step and sampler, :mod:`peftkit.optim`; absent in runs written before them)
- ``seeds``: {"seed": int, "data_seed": int or null, "routing_seed": int}
- ``data``: {"train": split identity, "dev": ..., "eval": ...} (task, split, k, data_seed, rows, ids_sha256,
  content_sha256: the rows' values, different for different data seeds and splits)
- ``evaluations``: [{"step", "epoch", "<metric>": float, "loss": float}, ...] on the dev (model-selection) set
- ``best_metrics``: {metric name: float} on the reported set (GLUE dev, few-shot test, NLG test), fractions, with
  the metric names of the evaluate modules (accuracy, f1, matthews_correlation, pearson, spearmanr, bleu, ...);
  classification also "predicted_classes" (distinct labels predicted: 1 means the run collapsed)
- ``selection_metric`` (str), ``best_step`` (int)
- ``inference_modes``: AdaMix only, {"merged": {...}, "random": {...}, "fixed-0": {...}, "ensemble": {...}}:
  metrics of the same trained model under each inference mode, else null; AdaMix over prefix also "merged-kv" and
  "merged-weights" (the same model merged under each of its two merge options; the model's own option is a copy of
  "merged", evaluated once since this was written: earlier records evaluated it a second time, to the same numbers)
- ``expert_spread``: AdaMix only, {"mixtures", "mean_pairwise_distance", "mean_norm"} of the scored weights'
  down-projections (LoRA: A matrices) before merging (:func:`peftkit.layers.expert_spread`), else null; absent in
  runs written before it
- ``gates``: UniPELT only, {"layer": [..], "adapter": [..], "prefix": [..], "lora_query": [..], "lora_value": [..]}
  mean gate value per layer over the reported set, else null
- ``samples``: NLG only, a few generated texts beside their references, else null
- ``generations``: NLG only, {"sources", "distinct_sources", "empty", "distinct_nonempty"} counted over every
  generation on the reported set (the reports' collapse rule reads it), else null; absent in runs written before it
- ``scoring``: NLG only, how ``best_metrics`` were scored (``peftkit.generate.scoring_label``), else null;
  WebNLG adds ``<metric>_seen`` / ``<metric>_unseen`` to ``best_metrics`` (plain keys: all)
- ``parameters``: {"trainable", "inference", "head", "total"}
- ``wall_time_s``, ``train_time_s``, ``train_examples_per_s``, ``eval_examples_per_s``, ``peak_memory_mb``;
  ``wall_time_s`` is the whole run's, the segments before a resume included (each checkpoint keeps the time so
  far); ``train_time_s`` and the throughputs are the last segment's
- ``resumed``: null, or {"from": the checkpoint the last segment resumed from, "wall_time_before_s"}; absent in
  runs written before it
- ``peftkit_version``, ``git_commit``, ``versions`` (torch, transformers, ...), ``device``, ``finished_at``
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from .atomic import write_json

SCHEMA = 1
RESULT_FILE = "result.json"


def write_json_atomic(path: str | os.PathLike, data: dict) -> Path:
    """Write JSON so that readers never see half a file (see :mod:`peftkit.atomic`)."""
    return write_json(path, data)


def result_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / RESULT_FILE


#: a fresh rebuild (``peftkit reproduce --fresh``): results finished before this UTC time (ISO 8601, e.g.
#: 2026-12-06T10:45:00Z) count as missing, so every run trains again once, and a rerun with the same time resumes
RETRAIN_BEFORE = "PEFTKIT_RETRAIN_BEFORE"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # result.json's finished_at


def has_result(out_dir: str | os.PathLike) -> bool:
    """Whether the run in ``out_dir`` has finished (and, during a fresh rebuild, finished after it began)."""
    p = result_path(out_dir)
    if not p.is_file():
        return False
    since = os.environ.get(RETRAIN_BEFORE)
    if not since:
        return True
    try:
        finished = json.loads(p.read_text()).get("finished_at") or ""
    except ValueError:
        return False
    return finished >= since  # the same ISO format: text order is time order


def read_result(out_dir: str | os.PathLike) -> dict:
    """One run's result, with its ``path`` (the file it was read from): a run store that was moved or copied
    still finds its runs' files (``spec.out`` inside keeps the directory the run trained in)."""
    p = result_path(out_dir)
    return {**json.loads(p.read_text()), "path": str(p)}


def load_results(roots: Iterable[str | os.PathLike] | str | os.PathLike) -> list[dict]:
    """Every finished run's result under ``roots`` (searched recursively), each with its ``path``."""
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    out = []
    for root in roots:
        for p in sorted(Path(root).rglob(RESULT_FILE)):
            data = json.loads(p.read_text())
            if data.get("schema") == SCHEMA and data.get("status") == "finished":
                data["path"] = str(p)
                out.append(data)
    return out
