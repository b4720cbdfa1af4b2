"""peftkit's data layer: GLUE, UniPELT's low-resource splits, LM-BFF few-shot splits and prompts,
and the E2E / WebNLG / DART generation sets.

Local files come from ``data_dir`` or ``$PEFTKIT_DATA_DIR`` (layout: the shared data's
SOURCES.md); every problem raises :class:`DataError`.
"""

from ._common import DataError, resolve_data_dir
from .fewshot import (
    FEWSHOT_SEEDS,
    FEWSHOT_TASKS,
    LMBFF_SEED_ORDER,
    fewshot_task,
    load_kshot,
    make_kshot_splits,
    verify_kshot,
)
from .glue import GLUE_TASKS, GlueTask, glue_task, load_glue
from .lowres import LOW_RESOURCE_SEEDS, low_resource_split, split_identity
from .nlg import NLG_TASKS, WEBNLG_SEEN_CATEGORIES, load_nlg, load_nlg_eval
from .prompts import PROMPTS, Prompt, get_prompt, render_prompt
from .tasks import list_tasks, task_kind

__all__ = [
    "DataError",
    "resolve_data_dir",
    "GLUE_TASKS",
    "GlueTask",
    "glue_task",
    "load_glue",
    "LOW_RESOURCE_SEEDS",
    "low_resource_split",
    "split_identity",
    "FEWSHOT_SEEDS",
    "FEWSHOT_TASKS",
    "LMBFF_SEED_ORDER",
    "fewshot_task",
    "load_kshot",
    "make_kshot_splits",
    "verify_kshot",
    "PROMPTS",
    "Prompt",
    "get_prompt",
    "render_prompt",
    "NLG_TASKS",
    "WEBNLG_SEEN_CATEGORIES",
    "load_nlg",
    "load_nlg_eval",
    "list_tasks",
    "task_kind",
]
