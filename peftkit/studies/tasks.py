"""Which tasks a study's grid runs: the papers' full task lists under the paper profile, less the tasks whose data
cannot be loaded here (a local data directory without their files, or no data directory and the hub switched off).
Files and settings only: nothing is downloaded or opened.
"""
from __future__ import annotations

import os

#: The papers' full task lists: under the paper profile a study whose TASKS is None runs every one of them that the
#: user's data can load (:func:`missing_data`), not a list fixed by what one data directory happens to hold.
PAPER_TASKS = {"glue_main": ("mnli", "qnli", "sst2", "qqp", "mrpc", "cola", "rte", "stsb"),
               "low_resource": ("sst2", "mrpc", "cola", "rte", "qnli", "stsb", "mnli", "qqp"),
               "unipelt_gates": ("sst2", "mrpc", "cola", "rte", "qnli", "stsb", "mnli", "qqp"),
               "nlg": ("e2e", "webnlg", "dart")}
_NLG_TRAIN = {"e2e": ("nlg/e2e/lora/train.txt", "nlg/e2e/train.csv"), "webnlg": ("nlg/webnlg/train.json",),
              "dart": ("nlg/dart/dart-v1.1.1-full-train.json",)}


def missing_data(task: str) -> str | None:
    """None when ``task``'s data can be loaded here (the data directory has its files, or with no data directory
    the hub serves it), else why not and how to get it. Looks at files and settings only (no network)."""
    from ..data import DataError, glue_task, resolve_data_dir, task_kind
    from ..data.glue import glue_path

    try:
        root = resolve_data_dir()
    except DataError as e:
        return str(e)
    kind = task_kind(task)
    if kind == "glue":
        spec = glue_task(task)
        if root is None:
            off = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
                   if os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}]
            return f"{off[0]} is set and no data directory is given (PEFTKIT_DATA_DIR)" if off else None
        absent = [glue_path(spec, split, root) for split in spec.splits if not glue_path(spec, split, root).is_file()]
        return (f"{absent[0]} is missing (unset PEFTKIT_DATA_DIR to load {spec.name} from the hub, or put the file "
                "there)") if absent else None
    if kind == "nlg":
        name = task.split(":", 1)[-1].lower()
        if root is None:
            return f"{name} is read from a data directory: peftkit data fetch --only {name}, then set PEFTKIT_DATA_DIR"
        if not any((root / rel).is_file() for rel in _NLG_TRAIN.get(name, ())):
            return f"{root / _NLG_TRAIN[name][0]} is missing (peftkit data fetch --only {name})"
    return None


def grid_tasks(study: str, profile: str, given, default) -> tuple:
    """The grid's tasks: the given ones (each must be loadable), else the profile's default; under the paper profile
    the paper's full list, less (and saying so) the tasks whose data cannot be loaded here."""
    if given is not None:
        for task in given:
            why = missing_data(task)
            if why:
                raise ValueError(f"invalid task {task!r} in TASKS: its data cannot be loaded: {why}")
        return given
    if profile != "paper" or study not in PAPER_TASKS:
        return default
    kept = []
    for task in PAPER_TASKS[study]:
        why = missing_data(task)
        if why:
            print(f"[studies] {study}: {task} left out: {why}", flush=True)
        else:
            kept.append(task)
    return tuple(kept)
