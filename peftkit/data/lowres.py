"""UniPELT's low-resource protocol and a fingerprint that pins down which rows a split holds."""

from __future__ import annotations

import hashlib
import json

import datasets

from ._common import DataError, check_int

#: The five data seeds of UniPELT's low-resource runs.
LOW_RESOURCE_SEEDS: tuple[int, ...] = (111, 222, 333, 444, 555)
#: Size of the dev set carved from the shuffled training set for early stopping.
LOW_RESOURCE_DEV_SIZE = 1000


def low_resource_split(train: datasets.Dataset, k: int, data_seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """UniPELT low-resource split: ``train.shuffle(seed=data_seed)``, first ``k`` rows, next 1,000.

    The shuffle is datasets' own (as in the authors' code), so the rows depend only on the input
    order and the seed. The dev set has ``min(1000, len(train) - k)`` rows: fewer than 1,000 when
    the training set is smaller than ``k + 1000``. ``k`` must be in ``1 .. len(train) - 1`` (the dev
    set may not be empty); results are then reported on the task's GLUE dev set.
    """
    check_int("k", k, 1)
    check_int("data_seed", data_seed, 0)
    n = len(train)
    if k >= n:
        raise DataError(f"k={k} is too large: the training set has {n} rows and k must be at most {n - 1} "
                        "so that the dev split is not empty")
    shuffled = train.shuffle(seed=data_seed)
    return shuffled.select(range(k)), shuffled.select(range(k, min(n, k + LOW_RESOURCE_DEV_SIZE)))


def split_identity(ds: datasets.Dataset, task: str, split: str, k: int | None = None,
                   data_seed: int | None = None) -> dict:
    """Describe a split for a result file: task, split, k, data_seed, rows, ``ids_sha256`` and ``content_sha256``.

    ``ids_sha256`` is the sha256 of the ``idx`` values written in decimal, in row order, joined
    by newlines: within one source file, equal hashes mean the same rows in the same order. Row
    numbers repeat across files (each LM-BFF seed's train.tsv and dev.tsv start at 0), so
    ``content_sha256`` hashes the rows themselves: every column but ``idx``, in column-name order,
    each as the JSON list of its values in row order. Equal content hashes mean the same examples
    in the same order, whatever file they came from.
    """
    if "idx" not in ds.column_names:
        raise DataError(f"split_identity needs an 'idx' column; the dataset has {ds.column_names}")
    ids = "\n".join(str(i) for i in ds["idx"])
    return {
        "task": task,
        "split": split,
        "k": k,
        "data_seed": data_seed,
        "rows": len(ds),
        "ids_sha256": hashlib.sha256(ids.encode("utf-8")).hexdigest(),
        "content_sha256": content_sha256(ds),
    }


def content_sha256(ds: datasets.Dataset) -> str:
    """sha256 of the rows' values (all columns but ``idx``), column by column in name order."""
    h = hashlib.sha256()
    for column in sorted(c for c in ds.column_names if c != "idx"):
        h.update(json.dumps(column).encode("utf-8") + b"\n")
        h.update(json.dumps(ds[column], ensure_ascii=False, default=str).encode("utf-8") + b"\n")
    return h.hexdigest()
