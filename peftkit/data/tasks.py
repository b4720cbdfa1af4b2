"""Which loader serves a task name, and the list of known tasks."""

from __future__ import annotations

from typing import Literal

from ._common import DataError, norm_name
from .fewshot import FEWSHOT_TASKS
from .glue import GLUE_TASKS, glue_task
from .nlg import NLG_TASKS

Kind = Literal["glue", "fewshot", "nlg"]
KINDS: tuple[str, ...] = ("glue", "fewshot", "nlg")
_NAMES = {
    "glue": tuple(GLUE_TASKS),
    "fewshot": tuple(FEWSHOT_TASKS),
    "nlg": NLG_TASKS,
}


def list_tasks(kind: str | None = None) -> list[str]:
    """Canonical task names of one kind, or all of them as ``"kind:name"`` when ``kind`` is None."""
    if kind is None:
        return [f"{k}:{name}" for k in KINDS for name in _NAMES[k]]
    if kind not in _NAMES:
        raise DataError(f"kind={kind!r} is not a task kind; allowed: {', '.join(KINDS)}")
    return list(_NAMES[kind])


def task_kind(task: str) -> Kind:
    """``"glue"``, ``"fewshot"`` or ``"nlg"`` for a task name (case-insensitive).

    GLUE names (and aliases such as "SST-2") are "glue"; names only LM-BFF has (sst-5, mr, cr,
    mpqa, subj, trec, SNLI) are "fewshot". A ``"kind:"`` prefix forces the kind, e.g.
    ``"fewshot:SST-2"`` (the prefix's task must exist in that kind).
    """
    if not isinstance(task, str):
        raise DataError(f"task must be a string, got {task!r}")
    if ":" in task:
        kind, name = task.split(":", 1)
        if kind not in _NAMES:
            raise DataError(f"task={task!r}: {kind!r} is not a task kind; allowed: {', '.join(KINDS)}")
        if norm_name(name) not in {norm_name(n) for n in _NAMES[kind]} and not (
                kind == "glue" and _is_glue(name)):
            raise DataError(f"task={task!r}: {name!r} is not a {kind} task; allowed: {', '.join(_NAMES[kind])}")
        return kind  # type: ignore[return-value]
    if _is_glue(task):
        return "glue"
    for kind in ("fewshot", "nlg"):
        if norm_name(task) in {norm_name(n) for n in _NAMES[kind]}:
            return kind  # type: ignore[return-value]
    raise DataError(f"task={task!r} is not a known task; allowed: {', '.join(list_tasks())}")


def _is_glue(name: str) -> bool:
    try:
        glue_task(name)
    except DataError:
        return False
    return True
