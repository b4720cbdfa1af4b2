"""The papers' published numbers (``paper_numbers.csv``, shipped with the package) and how to look them up.

Tables (``paper``, ``table``, backbones):

- ``unipelt``: ``low-resource`` (Table 1, K = 100/500/1000), ``full`` (Table 3), ``efficiency`` (Table 4; the
  "task" is the measure: trainable_pct, train_time_vs_ft, inference_time_vs_ft); all BERT-base.
- ``adamix``: ``glue`` (BERT-base and RoBERTa-large tables), ``nlg`` (GPT-2 medium; tasks e2e, webnlg, dart).

Values are as printed: percentages; NIST and CIDEr raw; TER a fraction; efficiency ratios x full FT.
"""
from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

from .names import method_key, task_key

PAPERS = ("adamix", "unipelt")
TABLE_ALIASES = {("unipelt", "table1"): "low-resource", ("unipelt", "table3"): "full",
                 ("unipelt", "table4"): "efficiency", ("unipelt", "lowres"): "low-resource",
                 ("adamix", "e2e"): "nlg", ("adamix", "webnlg"): "nlg", ("adamix", "dart"): "nlg"}
BACKBONE_ALIASES = {"bert-base-uncased": "bert-base", "bert-base-cased": "bert-base", "bert": "bert-base",
                    "roberta": "roberta-large", "gpt2-m": "gpt2-medium"}


@functools.lru_cache(maxsize=1)
def _numbers() -> pd.DataFrame:
    text = resources.files(__package__).joinpath("paper_numbers.csv").read_text(encoding="utf-8")
    from io import StringIO

    df = pd.read_csv(StringIO(text), comment="#", dtype={"method_label": str, "trainable_params": str,
                                                        "note": str, "k": "Int64"}, keep_default_na=False,
                     na_values={"k": [""], "value": [""]})
    df["value"] = df["value"].astype(float)
    return df


def paper_numbers() -> pd.DataFrame:
    """Every transcribed cell: paper, table, backbone, row, method_label, trainable_params, task, k, metric,
    value, source (the reference CSV it came from), note."""
    return _numbers().copy()


def _table(paper: str, table: str) -> tuple[str, str, pd.DataFrame]:
    paper = str(paper).strip().lower()
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of {list(PAPERS)}")
    table = TABLE_ALIASES.get((paper, str(table).strip().lower()), str(table).strip().lower())
    df = _numbers()
    rows = df[(df["paper"] == paper) & (df["table"] == table)]
    if rows.empty:
        tables = sorted(df.loc[df["paper"] == paper, "table"].unique())
        raise ValueError(f"{paper} has no table {table!r}; its tables are {tables}")
    return paper, table, rows


def table_backbone(paper: str, table: str, backbone: str | None = None) -> str:
    """The backbone of a paper table: ``backbone`` checked against it, or the table's only one."""
    paper, table, rows = _table(paper, table)
    have = sorted(rows["backbone"].unique())
    if backbone is None:
        if len(have) > 1:
            raise ValueError(f"{paper} {table} has several backbones {have}: pass backbone=")
        return have[0]
    key = str(backbone).strip().lower()
    key = BACKBONE_ALIASES.get(key, key)
    if key not in have:
        raise ValueError(f"{paper} {table} reports no backbone {backbone!r}; it has {have}")
    return key


def paper_row(paper: str, table: str, method_label: str, backbone: str | None = None) -> str | None:
    """The paper's row name for a peftkit ``method_label`` (None when the table has no such method).

    e.g. "pfeiffer" -> "Adapter" (UniPELT tables), "Adapter (Pfeiffer placement)" (AdaMix BERT-base),
    "Pfeiffer adapter" (AdaMix RoBERTa-large, its 0.8M row); "adamix-adapter" -> "AdaMix (adapter)".
    """
    paper, table, rows = _table(paper, table)
    bb = table_backbone(paper, table, backbone)
    hit = rows[(rows["backbone"] == bb) & (rows["method_label"] == method_key(method_label))]
    return str(hit["row"].iloc[0]) if len(hit) else None


def method_rows(paper: str, table: str, backbone: str | None = None) -> dict[str, str]:
    """{method_label: paper row name} for every row of a table that a peftkit method is compared with."""
    paper, table, rows = _table(paper, table)
    bb = table_backbone(paper, table, backbone)
    sub = rows[(rows["backbone"] == bb) & (rows["method_label"] != "")]
    return dict(zip(sub["method_label"], sub["row"]))


def paper_cell(paper: str, table: str, method_label: str, task: str, k: int | None = None,
               backbone: str | None = None, metric: str | None = None, params: str | None = None) -> dict | None:
    """The transcribed cell as a dict (row, value, metric, note, source, ...) or None when the paper has none.

    ``method_label``: a peftkit label (or alias), or a paper row name verbatim (with ``params``, e.g. "3.0M", to
    pick one of two rows of the same name). ``k``: required for UniPELT's low-resource table. ``metric``: required
    where a cell has several (NLG); when given, a cell in another metric counts as missing.
    """
    paper, table, rows = _table(paper, table)
    bb = table_backbone(paper, table, backbone)
    rows = rows[rows["backbone"] == bb]
    ks = sorted(int(v) for v in rows["k"].dropna().unique())
    if ks and k is None:
        raise ValueError(f"{paper} {table} reports K = {ks}: pass k=")
    rows = rows[rows["k"] == int(k)] if ks else rows
    if ks and rows.empty:
        return None
    label = method_key(method_label)
    by_label = rows[rows["method_label"] == label]
    if by_label.empty:
        by_label = rows[rows["row"] == str(method_label)]
        if params is not None:
            by_label = by_label[by_label["trainable_params"] == str(params)]
        if by_label.empty:
            from .names import METHOD_NAMES

            if label not in METHOD_NAMES:
                known = sorted(set(rows["row"]))
                raise ValueError(f"unknown method {method_label!r}: not a peftkit method_label "
                                 f"({sorted(METHOD_NAMES)}) nor a row of {paper} {table} ({known})")
            return None  # a peftkit method the paper's table does not have
        if by_label["trainable_params"].nunique() > 1:
            raise ValueError(f"{paper} {table} has several {method_label!r} rows "
                             f"({sorted(by_label['trainable_params'].unique())}): pass params=")
    cells = by_label[by_label["task"].isin({task_key(task), str(task)})]
    if metric is not None:
        cells = cells[cells["metric"] == metric]
    elif cells["metric"].nunique() > 1:
        raise ValueError(f"{paper} {table} {task!r} has several metrics {sorted(cells['metric'].unique())}: "
                         f"pass metric=")
    if cells.empty:
        return None
    return cells.iloc[0].to_dict()


def paper_value(paper: str, table: str, method_label: str, task: str, k: int | None = None,
                backbone: str | None = None, metric: str | None = None, params: str | None = None) -> float | None:
    """A published number, e.g. ``paper_value("unipelt", "low-resource", "pfeiffer", "sst2", k=100)`` -> 80.48.

    None when the paper has no such cell (or has it in another metric than ``metric``). See :func:`paper_cell`.
    """
    cell = paper_cell(paper, table, method_label, task, k=k, backbone=backbone, metric=metric, params=params)
    return None if cell is None else float(cell["value"])


def paper_metric_of(paper: str, table: str, task: str, method_label: str | None = None, k: int | None = None,
                    backbone: str | None = None) -> str | None:
    """Which metric the paper's cell (or, without ``method_label``, most of the column) is in."""
    paper, table, rows = _table(paper, table)
    bb = table_backbone(paper, table, backbone)
    if method_label is not None:
        cell = paper_cell(paper, table, method_label, task, k=k, backbone=bb)
        return None if cell is None else str(cell["metric"])
    col = rows[(rows["backbone"] == bb) & (rows["task"] == task_key(task))]
    return None if col.empty else str(col["metric"].mode().iloc[0])


def table_metrics(paper: str, table: str, task: str, backbone: str | None = None) -> list[str]:
    """The metrics a paper table prints for ``task`` (any row), in the order transcribed; e.g. AdaMix's NLG table
    prints BLEU and TER for WebNLG and DART, five metrics for E2E."""
    paper, table, rows = _table(paper, table)
    bb = table_backbone(paper, table, backbone)
    col = rows[(rows["backbone"] == bb) & (rows["task"] == task_key(task))]
    return list(dict.fromkeys(col["metric"]))


def parse_params(text: str) -> float | None:
    """'110M' -> 1.1e8, '103K' -> 1.03e5 (the papers' trainable-parameter strings)."""
    text = str(text or "").strip().upper()
    if not text:
        return None
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}.get(text[-1], 1.0)
    return float(text.rstrip("KMB")) * scale
