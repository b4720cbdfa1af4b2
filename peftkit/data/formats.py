"""Parsers for the GLUE-style TSV files and the LM-BFF ``label,text`` CSV files.

Both return plain column lists (idx, text_a, text_b, label) for :func:`_common.text_dataset`.
Every malformed row raises DataError as ``path:line: what is wrong``, with 1-based file lines
(the header is line 1).
"""

from __future__ import annotations

import csv
import math
import pathlib
from dataclasses import dataclass
from typing import Sequence

from ._common import DataError, missing_file

Column = str | int  # a header name, or a 0-based position in a headerless file


@dataclass(frozen=True)
class TsvLayout:
    """How to read one TSV format.

    Columns are header names when the file has a header (``n_columns`` is None) and 0-based
    positions when it has none (then every row must have exactly ``n_columns`` fields).
    ``labels`` lists the raw label strings in class-index order; None means a float score in
    ``score_range`` (STS-B). ``idx`` names an integer id column; None means the 0-based row number.
    ``label_last`` (SNLI): rows may carry more fields than the header (annotator labels
    label2..label5 that the header does not name); the label is then the last field.
    """

    text_a: Column
    text_b: Column | None
    label: Column
    labels: tuple[str, ...] | None
    idx: Column | None = None
    n_columns: int | None = None
    score_range: tuple[float, float] = (0.0, 5.0)
    label_last: bool = False

    @property
    def has_header(self) -> bool:
        return self.n_columns is None


def _header_positions(path: pathlib.Path, header: list[str], layout: TsvLayout) -> list[int | None]:
    wanted = [layout.idx, layout.text_a, layout.text_b, layout.label]
    missing = [c for c in wanted if c is not None and c not in header]
    if missing:
        raise DataError(
            f"{path}:1: header lacks column(s) {', '.join(map(repr, missing))}; header is {header!r}"
        )
    return [None if c is None else header.index(c) for c in wanted]


def _label_parser(path: pathlib.Path, layout: TsvLayout, label_col: Column):
    if layout.labels is None:
        lo, hi = layout.score_range

        def parse(raw: str, line: int) -> float:
            try:
                value = float(raw)
            except ValueError:
                raise DataError(f"{path}:{line}: score {raw!r} in column {label_col!r} is not a number") from None
            if not (math.isfinite(value) and lo <= value <= hi):
                raise DataError(f"{path}:{line}: score {raw!r} in column {label_col!r} is outside [{lo}, {hi}]")
            return value

        return parse
    index = {raw: i for i, raw in enumerate(layout.labels)}

    def parse(raw: str, line: int) -> int:
        try:
            return index[raw]
        except KeyError:
            raise DataError(
                f"{path}:{line}: unknown label {raw!r} in column {label_col!r}; expected one of {list(layout.labels)}"
            ) from None

    return parse


def read_tsv(path: str | pathlib.Path, layout: TsvLayout) -> dict[str, list]:
    """Parse a tab-separated GLUE-style file (no quoting: GLUE text contains bare quotes).

    A UTF-8 byte-order mark (MRPC) is dropped. Raises DataError for a missing or empty file, a
    header without the needed columns, a row with the wrong number of columns, an unknown label,
    a bad score, or a bad or repeated id.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise missing_file(path, "file")
    parse_label = _label_parser(path, layout, layout.label)
    out: dict[str, list] = {"idx": [], "text_a": [], "text_b": [], "label": []}
    seen_ids: set[int] = set()
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            if layout.has_header:
                header = next(reader, None)
                if header is None:
                    raise DataError(f"{path}: empty file (expected a header line)")
                i_id, i_a, i_b, i_lab = _header_positions(path, header, layout)
                n_cols = len(header)
            else:
                i_id, i_a, i_b, i_lab = layout.idx, layout.text_a, layout.text_b, layout.label
                n_cols = layout.n_columns
            for row_no, row in enumerate(reader):
                line = reader.line_num
                if len(row) != n_cols and not (layout.label_last and len(row) > n_cols):
                    at_least = "at least " if layout.label_last else ""
                    raise DataError(
                        f"{path}:{line}: expected {at_least}{n_cols} tab-separated columns, found {len(row)}")
                if layout.label_last:
                    i_lab = len(row) - 1
                if i_id is None:
                    ident = row_no
                else:
                    try:
                        ident = int(row[i_id])
                    except ValueError:
                        raise DataError(f"{path}:{line}: id {row[i_id]!r} is not an integer") from None
                    if ident in seen_ids:
                        raise DataError(f"{path}:{line}: id {ident} appears twice")
                    seen_ids.add(ident)
                out["idx"].append(ident)
                out["text_a"].append(row[i_a])
                out["text_b"].append(None if i_b is None else row[i_b])
                out["label"].append(parse_label(row[i_lab], line))
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: {e}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-8 ({e})") from None
    if not out["idx"]:
        raise DataError(f"{path}: empty file (no data rows)")
    return out


def read_label_csv(path: str | pathlib.Path, labels: Sequence[str]) -> dict[str, list]:
    """Parse an LM-BFF headerless ``label,text`` CSV (sst-5, mr, cr, mpqa, subj, trec).

    ``labels`` lists the raw label strings in class-index order; idx is the 0-based row number
    and text_b is None.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise missing_file(path, "file")
    index = {raw: i for i, raw in enumerate(labels)}
    out: dict[str, list] = {"idx": [], "text_a": [], "text_b": [], "label": []}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        line = 1
        try:
            for row in reader:
                if len(row) != 2:
                    raise DataError(f"{path}:{line}: expected 2 comma-separated fields (label,text), found {len(row)}")
                if row[0] not in index:
                    raise DataError(f"{path}:{line}: unknown label {row[0]!r}; expected one of {list(labels)}")
                out["idx"].append(len(out["idx"]))
                out["text_a"].append(row[1])
                out["text_b"].append(None)
                out["label"].append(index[row[0]])
                line = reader.line_num + 1  # a quoted field may span lines: report where a row starts
        except csv.Error as e:
            raise DataError(f"{path}:{line}: {e}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-8 ({e})") from None
    if not out["idx"]:
        raise DataError(f"{path}: empty file (no data rows)")
    return out


def write_label_csv(path: pathlib.Path, rows: Sequence[Sequence[str]]) -> None:
    """Write rows the way pandas' ``to_csv(header=False, index=False)`` does (minimal quoting, '\\n')."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
