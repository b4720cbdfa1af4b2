"""GLUE from a local ``glue_data`` tree (``<data_dir>/glue/<TASK>/<split>.tsv``) or the hub.

Every loader returns a ``datasets.Dataset`` with the columns

- ``idx`` (int64): the row's own id column where the file has one (``index`` for STS-B, MNLI,
  QNLI, RTE; ``id`` for QQP), else the 0-based data-row number (CoLA, SST-2, MRPC). From the
  hub it is the hub's ``idx``.
- ``text_a`` / ``text_b`` (string): text as in the file, unstripped; ``text_b`` is None for the
  single-sentence tasks (CoLA, SST-2) and always a string for sentence-pair tasks.
- ``label``: ClassLabel in the order of ``GLUE_TASKS[task].label_names`` (the same order as the
  hub's ``nyu-mll/glue``), or float32 for STS-B.
"""

from __future__ import annotations

import os
import pathlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import datasets

from ._common import DataError, lookup, missing_file, norm_name, resolve_data_dir, text_dataset
from .formats import TsvLayout, read_tsv

HUB_DATASET = "nyu-mll/glue"
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_HUB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its files live, how to parse them, and its labels.

    ``splits`` maps each split name to its file stem in ``glue/<dir>/``; ``hub_splits`` maps it to
    the split of ``nyu-mll/glue``. ``hub_text`` names the hub's text_a and text_b columns.
    """

    name: str
    dir: str
    layout: TsvLayout
    label_names: tuple[str, ...] | None
    hub_config: str
    hub_text: tuple[str, str | None]
    splits: Mapping[str, str]
    hub_splits: Mapping[str, str]

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return self.layout.text_b is not None


_TRAIN_DEV = MappingProxyType({"train": "train", "dev": "dev"})
_TRAIN_DEV_HUB = MappingProxyType({"train": "train", "dev": "validation"})
_BINARY = ("0", "1")


def _task(name, dir, layout, label_names, hub_text, splits=_TRAIN_DEV, hub_splits=_TRAIN_DEV_HUB):
    return GlueTask(name, dir, layout, label_names, name, hub_text, splits, hub_splits)


GLUE_TASKS: Mapping[str, GlueTask] = MappingProxyType({
    # CoLA: no header, 4 columns: source code, label, original mark ("*" or ""), sentence.
    "cola": _task("cola", "CoLA", TsvLayout(3, None, 1, _BINARY, n_columns=4),
                  ("unacceptable", "acceptable"), ("sentence", None)),
    "sst2": _task("sst2", "SST-2", TsvLayout("sentence", None, "label", _BINARY),
                  ("negative", "positive"), ("sentence", None)),
    # MRPC: UTF-8 BOM, then "Quality  #1 ID  #2 ID  #1 String  #2 String"; no single id column.
    "mrpc": _task("mrpc", "MRPC", TsvLayout("#1 String", "#2 String", "Quality", _BINARY),
                  ("not_equivalent", "equivalent"), ("sentence1", "sentence2")),
    "stsb": _task("stsb", "STS-B", TsvLayout("sentence1", "sentence2", "score", None, idx="index"),
                  None, ("sentence1", "sentence2")),
    "qqp": _task("qqp", "QQP", TsvLayout("question1", "question2", "is_duplicate", _BINARY, idx="id"),
                 ("not_duplicate", "duplicate"), ("question1", "question2")),
    "mnli": _task("mnli", "MNLI",
                  TsvLayout("sentence1", "sentence2", "gold_label",
                            ("entailment", "neutral", "contradiction"), idx="index"),
                  ("entailment", "neutral", "contradiction"), ("premise", "hypothesis"),
                  MappingProxyType({"train": "train", "dev_matched": "dev_matched",
                                    "dev_mismatched": "dev_mismatched"}),
                  MappingProxyType({"train": "train", "dev_matched": "validation_matched",
                                    "dev_mismatched": "validation_mismatched"})),
    "qnli": _task("qnli", "QNLI",
                  TsvLayout("question", "sentence", "label", ("entailment", "not_entailment"), idx="index"),
                  ("entailment", "not_entailment"), ("question", "sentence")),
    "rte": _task("rte", "RTE",
                 TsvLayout("sentence1", "sentence2", "label", ("entailment", "not_entailment"), idx="index"),
                 ("entailment", "not_entailment"), ("sentence1", "sentence2")),
})

_TASK_ALIASES = {norm_name(n): n for n in GLUE_TASKS} | {norm_name(t.dir): n for n, t in GLUE_TASKS.items()}


def glue_task(task: str) -> GlueTask:
    """Return the spec of a GLUE task; names are case-insensitive ("SST-2", "sst2", "STS-B" ...)."""
    return GLUE_TASKS[lookup("task", "a GLUE task", task, _TASK_ALIASES, GLUE_TASKS)]


def glue_split(spec: GlueTask, split: str) -> str:
    """Canonical split name: "validation*" is accepted for "dev*" (MNLI has dev_matched/dev_mismatched)."""
    table = {norm_name(s): s for s in spec.splits}
    table |= {norm_name(h): s for s, h in spec.hub_splits.items()}
    return lookup("split", f"a split of GLUE task {spec.name!r}", split, table, spec.splits)


def glue_path(spec: GlueTask, split: str, data_dir: pathlib.Path) -> pathlib.Path:
    """Where the file of ``split`` lives under ``data_dir``."""
    return data_dir / "glue" / spec.dir / f"{spec.splits[split]}.tsv"


def _data_dir_hint(spec: GlueTask) -> str:
    files = " and ".join(f"glue/{spec.dir}/{stem}.tsv" for stem in spec.splits.values())
    return (f"Set PEFTKIT_DATA_DIR (or pass --data-dir / data_dir=) to a directory holding {files} "
            "in the glue_data layout (see SOURCES.md).")


def load_glue(task: str, split: str, data_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """Load one GLUE split as idx/text_a/text_b/label (see the module docstring).

    With a data directory (argument or ``$PEFTKIT_DATA_DIR``) the file must be there, else
    DataError says which file to put where; SOURCES.md lists MNLI, QQP and QNLI-train as absent
    from the shared data. Without one, ``nyu-mll/glue`` is loaded from the hub; offline
    (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``) or with the hub unreachable it fails at once.
    """
    spec = glue_task(task)
    split = glue_split(spec, split)
    root = resolve_data_dir(data_dir)
    if root is None:
        return _load_from_hub(spec, split)
    path = glue_path(spec, split, root)
    if not path.is_file():
        raise missing_file(
            path, f"GLUE {spec.dir} {split} file",
            f"Put glue_data/{spec.dir}/{path.name} (as written by GLUE's download_glue_data.py) there; "
            "SOURCES.md lists MNLI, QQP and QNLI-train.tsv as not in the shared data. "
            "To use the Hugging Face hub instead, unset PEFTKIT_DATA_DIR and pass no data_dir.")
    return text_dataset(read_tsv(path, spec.layout), spec.label_names)


def _env_true(var: str) -> bool:
    return os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def require_hub(what: str, hint: str) -> None:
    """Fail at once (DataError) when the hub is switched off or does not answer within a few seconds."""
    for var in _OFFLINE_VARS:
        if _env_true(var):
            raise DataError(f"cannot load {what}: {var} is set, so the Hugging Face hub is off. {hint}")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=_HUB_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        pass  # the server answered; that is all this checks
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load {what}: the Hugging Face hub ({endpoint}) is unreachable ({e}). {hint}") from None


def _load_from_hub(spec: GlueTask, split: str) -> datasets.Dataset:
    hub_split = spec.hub_splits[split]
    what = f"{HUB_DATASET} ({spec.hub_config}, {hub_split})"
    require_hub(what, _data_dir_hint(spec))
    try:
        ds = datasets.load_dataset(HUB_DATASET, spec.hub_config, split=hub_split)
    except Exception as e:  # network and hub errors come in many types; all mean "not loaded"
        raise DataError(f"could not load {what} from the Hugging Face hub: {e}. {_data_dir_hint(spec)}") from e
    return from_hub_columns(ds, spec)


def from_hub_columns(ds: datasets.Dataset, spec: GlueTask) -> datasets.Dataset:
    """Map a ``nyu-mll/glue`` split onto idx/text_a/text_b/label, checking the label order."""
    col_a, col_b = spec.hub_text
    needed = ["idx", col_a, "label"] + ([col_b] if col_b else [])
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise DataError(f"{HUB_DATASET} ({spec.hub_config}) lacks column(s) {missing}; has {ds.column_names}")
    if spec.label_names is not None:
        names = getattr(ds.features["label"], "names", None)
        if names is not None and tuple(names) != spec.label_names:
            raise DataError(f"{HUB_DATASET} ({spec.hub_config}) label order {names} != {list(spec.label_names)}")
    cols = ds.select_columns(needed).to_dict()
    return text_dataset(
        {"idx": cols["idx"], "text_a": cols[col_a],
         "text_b": cols[col_b] if col_b else [None] * len(ds), "label": cols["label"]},
        spec.label_names,
    )
