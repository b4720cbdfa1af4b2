"""Shared pieces of the data layer: the error type, the data-directory rule and column schemas."""

from __future__ import annotations

import os
import pathlib
from typing import Iterable, Mapping, Sequence

import datasets

DATA_DIR_ENV = "PEFTKIT_DATA_DIR"


class DataError(ValueError):
    """A data problem: a missing or malformed file, or a bad argument.

    Messages name the file and 1-based line (``path:line: ...``) where one applies, and for a bad
    argument the argument's name and its allowed values.
    """


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Return the local data directory, or None to mean "use the Hugging Face hub by name".

    Order: the explicit ``data_dir``, else ``$PEFTKIT_DATA_DIR`` (empty counts as unset), else None.
    A directory given either way that does not exist raises DataError.
    """
    if data_dir is not None:
        path = pathlib.Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataError(f"data_dir {str(path)!r} does not exist or is not a directory")
        return path
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if not env:
        return None
    path = pathlib.Path(env).expanduser()
    if not path.is_dir():
        raise DataError(f"${DATA_DIR_ENV}={env!r} does not exist or is not a directory")
    return path


def norm_name(name: str) -> str:
    """Lower-case a task or split name and drop '-' and '_' ("STS-B" -> "stsb")."""
    return name.strip().lower().replace("-", "").replace("_", "")


def lookup(arg: str, what: str, value: object, table: Mapping[str, str], allowed: Iterable[str]) -> str:
    """Map ``value`` through ``table`` (keys are normalised names), else DataError naming the argument.

    The message reads ``task='wnli' is not a GLUE task; allowed: cola, sst2, ...``.
    """
    if not isinstance(value, str) or norm_name(value) not in table:
        raise DataError(f"{arg}={value!r} is not {what}; allowed: {', '.join(allowed)}")
    return table[norm_name(value)]


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise DataError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def text_features(label_names: Sequence[str] | None) -> datasets.Features:
    """Columns of every classification/regression set: idx, text_a, text_b, label.

    ``label`` is a ClassLabel with ``label_names`` in class-index order, or float32 when None
    (regression, STS-B).
    """
    label = datasets.Value("float32") if label_names is None else datasets.ClassLabel(names=list(label_names))
    return datasets.Features(
        {
            "idx": datasets.Value("int64"),
            "text_a": datasets.Value("string"),
            "text_b": datasets.Value("string"),
            "label": label,
        }
    )


def text_dataset(columns: Mapping[str, list], label_names: Sequence[str] | None) -> datasets.Dataset:
    """Build the idx/text_a/text_b/label Dataset from column lists."""
    return datasets.Dataset.from_dict(dict(columns), features=text_features(label_names))


def missing_file(path: pathlib.Path, what: str, note: str = "") -> DataError:
    """The DataError for a local file that is not there (``note`` says what to do about it)."""
    msg = f"{path}: {what} not found"
    return DataError(f"{msg}. {note}" if note else msg)
