"""GLUE / few-shot task names and which metric each paper reports.

Pure Python (no third-party imports) so that it is cheap to import anywhere.

Metric names are the output keys of the ``glue`` evaluate module:
``accuracy``, ``f1``, ``matthews_correlation``, ``pearson``, ``spearmanr``.
"""

from __future__ import annotations

GLUE_TASKS = (
    "cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli_matched",
    "mnli_mismatched", "qnli", "rte", "wnli",
)
FEWSHOT_TASKS = ("sst5", "mr", "cr", "mpqa", "subj", "trec", "snli")
TASKS = GLUE_TASKS + FEWSHOT_TASKS
PAPERS = ("adamix", "unipelt")
BACKBONES = ("bert-base", "roberta-large")

_METRICS = {
    "cola": ["matthews_correlation"],
    "stsb": ["pearson", "spearmanr"],
    "mrpc": ["accuracy", "f1"],
    "qqp": ["accuracy", "f1"],
}

# Spellings seen in data folders and the papers, mapped to the canonical name.
_ALIASES = {
    "sst": "sst2", "sts": "stsb", "mnlim": "mnli_matched", "mnlimm": "mnli_mismatched",
    "mnlimatched": "mnli_matched", "mnlimismatched": "mnli_mismatched",
}

# Tasks in UniPELT Tables 1 and 3 (BERT-base): CoLA Matthews, MRPC/QQP F1, STS-B Spearman.
_UNIPELT = {"cola": "matthews_correlation", "mrpc": "f1", "qqp": "f1", "stsb": "spearmanr",
            "sst2": "accuracy", "rte": "accuracy", "qnli": "accuracy", "mnli": "accuracy"}


def normalize_task(task: str) -> str:
    """Canonical task name: lower case, ``-``/space removed (``"SST-2"`` -> ``"sst2"``).

    Raises ValueError naming the allowed tasks when the name is unknown.
    """
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, one of {list(TASKS)}; got {task!r}")
    key = task.strip().lower().replace("-", "").replace(" ", "")
    if key not in TASKS:
        key = _ALIASES.get(key.replace("_", ""), key)
    if key not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    return key


def glue_metric_names(task: str) -> list[str]:
    """Output keys of ``load("glue", task).compute(...)`` for *task*.

    CoLA: matthews_correlation; STS-B: pearson, spearmanr; MRPC, QQP: accuracy, f1;
    every other task (including the few-shot ones): accuracy.
    """
    return list(_METRICS.get(normalize_task(task), ["accuracy"]))


def paper_metric(task: str, paper: str, backbone: str = "bert-base") -> str:
    """The metric behind *paper*'s table column for *task* (see shared/reference/README.md).

    - ``unipelt`` (BERT-base only): CoLA matthews_correlation, MRPC/QQP f1, STS-B spearmanr,
      SST-2/RTE/QNLI/MNLI accuracy. Other tasks are not in its tables: ValueError.
    - ``adamix`` with ``backbone="bert-base"`` (default): CoLA matthews_correlation, MRPC/QQP
      f1, STS-B pearson (AdaMix's STS-B convention; note that the baseline rows it quotes
      from UniPELT are Spearman values), others accuracy.
    - ``adamix`` with ``backbone="roberta-large"`` (main table): CoLA matthews_correlation,
      STS-B pearson, everything else accuracy (MRPC and QQP included).

    MNLI is matched accuracy. Few-shot tasks (sst5, mr, cr, mpqa, subj, trec, snli) are
    accuracy for AdaMix.
    """
    task = normalize_task(task)
    paper = str(paper).strip().lower()
    backbone = str(backbone).strip().lower()
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of {list(PAPERS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {list(BACKBONES)}")
    if task == "mnli_matched":
        task = "mnli"
    if paper == "unipelt":
        if backbone != "bert-base" or task not in _UNIPELT:
            raise ValueError(
                f"UniPELT reports no {task!r} column for {backbone}; "
                f"its BERT-base tables cover {sorted(_UNIPELT)}")
        return _UNIPELT[task]
    if task == "wnli" or task == "mnli_mismatched":
        raise ValueError(f"AdaMix reports no {task!r} column")
    if task == "cola":
        return "matthews_correlation"
    if task == "stsb":
        return "pearson"
    if task in ("mrpc", "qqp"):
        return "f1" if backbone == "bert-base" else "accuracy"
    return "accuracy"


def primary_metric(task: str, paper: str | None = None, backbone: str = "bert-base") -> str:
    """The single metric used for model selection / early stopping on *task*.

    With *paper* given this is :func:`paper_metric` (select on what the table reports).
    Without it the kit's default is: CoLA matthews_correlation, STS-B pearson (AdaMix's
    convention), MRPC/QQP f1 (what both papers' BERT-base tables report), others accuracy.
    Pass ``paper="unipelt"`` to select STS-B on spearmanr as UniPELT reports it.
    """
    if paper is not None:
        return paper_metric(task, paper, backbone)
    task = normalize_task(task)
    return {"cola": "matthews_correlation", "stsb": "pearson",
            "mrpc": "f1", "qqp": "f1"}.get(task, "accuracy")
