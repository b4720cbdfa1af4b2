"""Offline ``evaluate`` metrics for peftkit.

Every metric is an ``evaluate`` module script inside this package (one folder per module),
loaded by path, so nothing is fetched from the Hugging Face Hub::

    from peftkit import metrics
    glue = metrics.load("glue", "mrpc")
    glue.compute(predictions=[1, 0, 1], references=[1, 1, 1])  # {"accuracy": ..., "f1": ...}

Modules (output keys; fractions unless said otherwise):

- ``glue`` (config = task): cola ``matthews_correlation``; stsb ``pearson``, ``spearmanr``;
  mrpc, qqp ``accuracy``, ``f1``; sst2, mnli, mnli_mismatched, qnli, rte, wnli and the few-shot
  sst5, mr, cr, mpqa, subj, trec, snli ``accuracy``.
- ``accuracy``, ``f1``, ``matthews_correlation``, ``pearsonr``, ``spearmanr``: one key each,
  named like the module.
- ``e2e``: ``bleu`` (0-1), ``nist`` (raw), ``meteor``, ``rouge_l`` (0-1), ``cider`` (raw);
  the official E2E scorer's definitions (needs Java for the last three).
- ``webnlg``, ``dart``: ``bleu``, ``meteor``, ``ter`` (0-1) as the LoRA/AdaMix evaluation computed them
  (``scoring="lora"``, default; WebNLG with ``seen=`` adds ``*_seen`` / ``*_unseen``), or raw-text sacrebleu
  ``bleu`` and ``ter`` (``scoring="sacrebleu"``); see peftkit/metrics/_lora_eval.py.

Helpers: :func:`glue_metric_names`, :func:`primary_metric`, :func:`paper_metric`,
:func:`normalize_task`, :func:`group_references` (E2E references by MR).
"""

from __future__ import annotations

import os

from peftkit.metrics._glue_tasks import (
    FEWSHOT_TASKS,
    GLUE_TASKS,
    TASKS,
    glue_metric_names,
    normalize_task,
    paper_metric,
    primary_metric,
)
from peftkit.metrics._nlg import group_references

METRIC_NAMES = (
    "glue", "accuracy", "f1", "matthews_correlation", "pearsonr", "spearmanr",
    "e2e", "webnlg", "dart",
)
MODULE_DIR = os.path.dirname(os.path.abspath(__file__))

__all__ = [
    "METRIC_NAMES", "GLUE_TASKS", "FEWSHOT_TASKS", "TASKS", "load", "module_path",
    "glue_metric_names", "primary_metric", "paper_metric", "normalize_task",
    "group_references",
]


def module_path(name: str) -> str:
    """Folder of the evaluate module *name* inside the package (ValueError if unknown)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; expected one of {list(METRIC_NAMES)}")
    return os.path.join(MODULE_DIR, name)


def load(name: str, config_name: str | None = None, **kwargs):
    """``evaluate.load`` of the packaged module *name*; works offline.

    *config_name* is the task for ``glue`` (required there; aliases such as ``"SST-2"`` are
    normalised). Extra keyword arguments go to ``evaluate.load`` (e.g. ``keep_in_memory``).
    """
    path = module_path(name)
    if name == "glue":
        if config_name is None:
            raise ValueError(f"glue needs config_name, one of {list(TASKS)}")
        config_name = normalize_task(config_name)
    import evaluate

    return evaluate.load(path, config_name, **kwargs)
