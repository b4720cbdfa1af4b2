"""LM-BFF k-shot splits: loading, regenerating them from the original train file, and md5 checks.

Layout: ``<data_dir>/fewshot/k-shot/<TASK>/<K>-<SEED>/{train,dev,test}.{tsv,csv}`` with LM-BFF's
task directory names. Loaders return the GLUE columns (idx, text_a, text_b, label; see
:mod:`peftkit.data.glue`). For the CSV tasks (sst-5, mr, cr, mpqa, subj, trec) idx is the row
number and text_b is None. MNLI's k-shot dev file is ``dev_matched.tsv`` (split "dev") and its
test splits are ``test_matched`` / ``test_mismatched``.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

import datasets
import numpy as np

from ._common import DataError, check_int, lookup, missing_file, norm_name, resolve_data_dir, text_dataset
from .formats import TsvLayout, read_label_csv, read_tsv, write_label_csv
from .glue import GLUE_TASKS
from .prompts import PROMPTS, Prompt, get_prompt, render_prompt  # noqa: F401  (re-exported)

#: The LM-BFF k-shot seeds.
FEWSHOT_SEEDS: tuple[int, ...] = (13, 21, 42, 87, 100)
#: The order in which LM-BFF's generator ran its seeds (it matters for CoLA, see make_kshot_splits).
LMBFF_SEED_ORDER: tuple[int, ...] = (100, 13, 21, 42, 87)


@dataclass(frozen=True)
class FewshotTask:
    """One LM-BFF task. ``csv_labels`` is set for the ``label,text`` CSV tasks, ``layout`` for TSV
    ones. ``files`` maps split -> file stem; ``glue_eval`` maps test splits -> the GLUE dev file
    they copy; ``group_key`` gives LM-BFF's sampling label from a line's tab-split fields."""

    name: str
    label_names: tuple[str, ...] | None
    files: Mapping[str, str]
    layout: TsvLayout | None = None
    csv_labels: tuple[str, ...] | None = None
    glue_eval: Mapping[str, str] = field(default_factory=dict)
    group_key: Callable[[list[str]], object] | None = None

    @property
    def ext(self) -> str:
        return "csv" if self.csv_labels is not None else "tsv"


_STD_FILES = MappingProxyType({"train": "train", "dev": "dev", "test": "test"})


def _last(fields: list[str]) -> str:
    return fields[-1]


def _glue_style(name: str, glue: str, key: Callable[[list[str]], object] = _last,
                copies_glue_dev: bool = True) -> FewshotTask:
    spec = GLUE_TASKS[glue]
    if glue == "mnli":
        files = MappingProxyType({"train": "train", "dev": "dev_matched", "test_matched": "test_matched",
                                  "test_mismatched": "test_mismatched"})
        evals = {"test_matched": "glue/MNLI/dev_matched.tsv", "test_mismatched": "glue/MNLI/dev_mismatched.tsv"}
    else:
        files, evals = _STD_FILES, {"test": f"glue/{spec.dir}/dev.tsv"}
    if not copies_glue_dev:
        evals = {}
    return FewshotTask(name, spec.label_names, files, layout=spec.layout, glue_eval=MappingProxyType(evals),
                       group_key=key)


def _csv_task(name: str, label_names: tuple[str, ...]) -> FewshotTask:
    raw = tuple(str(i) for i in range(len(label_names)))
    return FewshotTask(name, label_names, _STD_FILES, csv_labels=raw)


_SENT2 = ("negative", "positive")
FEWSHOT_TASKS: Mapping[str, FewshotTask] = MappingProxyType({
    # LM-BFF's SST-2 is another text variant than GLUE's (SOURCES.md): no GLUE fallback for its test.
    "SST-2": _glue_style("SST-2", "sst2", copies_glue_dev=False),
    "sst-5": _csv_task("sst-5", ("very negative", "negative", "neutral", "positive", "very positive")),
    "mr": _csv_task("mr", _SENT2),
    "cr": _csv_task("cr", _SENT2),
    "mpqa": _csv_task("mpqa", _SENT2),
    "subj": _csv_task("subj", ("subjective", "objective")),
    "trec": _csv_task("trec", ("description", "entity", "abbreviation", "human", "location", "numeric")),
    "CoLA": _glue_style("CoLA", "cola", lambda f: f[1]),
    "MNLI": _glue_style("MNLI", "mnli"),
    "SNLI": FewshotTask(
        "SNLI", ("entailment", "neutral", "contradiction"), _STD_FILES,
        layout=TsvLayout("sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"),
                         idx="index", label_last=True),
        group_key=_last),
    "QNLI": _glue_style("QNLI", "qnli"),
    "RTE": _glue_style("RTE", "rte"),
    "MRPC": _glue_style("MRPC", "mrpc", lambda f: f[0]),
    "QQP": _glue_style("QQP", "qqp"),
    "STS-B": _glue_style("STS-B", "stsb", lambda f: 0 if float(f[-1]) < 2.5 else 1),
})
_NAMES = {norm_name(n): n for n in FEWSHOT_TASKS}


def fewshot_task(task: str) -> FewshotTask:
    """The spec of an LM-BFF task; names are case-insensitive ("sst2", "SST-2", "sts-b" ...)."""
    return FEWSHOT_TASKS[lookup("task", "an LM-BFF few-shot task", task, _NAMES, FEWSHOT_TASKS)]


def kshot_root(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """``<data_dir>/fewshot/k-shot``; few-shot splits exist only locally, so a data dir is required."""
    root = resolve_data_dir(data_dir)
    if root is None:
        raise DataError("few-shot splits are read from a local directory: set PEFTKIT_DATA_DIR (or pass "
                        "--data-dir / data_dir=) to a directory holding fewshot/k-shot/<TASK>/<K>-<SEED>/")
    return root / "fewshot" / "k-shot"


def load_kshot(task: str, split: str, k: int = 16, seed: int = 13,
               data_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """Load an LM-BFF k-shot split ("train", "dev", "test"; MNLI: "test_matched"/"test_mismatched").

    ``train``/``dev`` hold k examples per class (STS-B: per half, score < 2.5 or not). ``test`` is
    the full evaluation set; where its copy is absent from the seed folder (SOURCES.md: MNLI, QQP,
    SNLI) the identical GLUE dev file ``<data_dir>/glue/<TASK>/dev*.tsv`` is used if present
    (never for SST-2, whose LM-BFF text variant differs from GLUE's).
    """
    spec = fewshot_task(task)
    files = {norm_name(s): s for s in spec.files}
    files["validation"] = "dev"
    if spec.name == "MNLI":
        files["devmatched"] = "dev"
    split = lookup("split", f"a split of few-shot task {spec.name!r}", split, files, spec.files)
    check_int("k", k, 1)
    check_int("seed", seed, 0)
    data_root = resolve_data_dir(data_dir)
    setting = kshot_root(data_root) / spec.name / f"{k}-{seed}"
    if not setting.is_dir():
        have = sorted(p.name for p in setting.parent.glob("*-*")) if setting.parent.is_dir() else []
        raise DataError(f"{setting}: no k-shot split for k={k}, seed={seed}; available: {have or 'none'}")
    path = setting / f"{spec.files[split]}.{spec.ext}"
    if not path.is_file():
        fallback = data_root / spec.glue_eval[split] if split in spec.glue_eval else None
        if fallback is None or not fallback.is_file():
            also = f" (nor its identical copy {fallback})" if fallback else ""
            note = ("SOURCES.md lists MNLI test_*, QQP test and SNLI test as too large for the shared data; "
                    "each is a copy of the original dev set: put that file there.") if split.startswith("test") else ""
            raise missing_file(path, f"{spec.name} k-shot {split} file{also}", note)
        path = fallback
    if spec.csv_labels is not None:
        cols = read_label_csv(path, spec.csv_labels)
    else:
        cols = read_tsv(path, spec.layout)
    return text_dataset(cols, spec.label_names)


def _read_lines(path: pathlib.Path) -> list[str]:
    if not path.is_file():
        raise missing_file(path, "original train file")
    with open(path, encoding="utf-8") as f:  # universal newlines and a kept BOM, as LM-BFF read it
        lines = f.readlines()
    if not lines:
        raise DataError(f"{path}: empty file")
    return lines


def _tsv_entries(spec: FewshotTask, path: pathlib.Path) -> tuple[list[str], list[tuple[str, object]]]:
    """Split header from rows and compute each row's sampling group, checking labels as it goes."""
    lines = _read_lines(path)
    header, body, first = ([], lines, 1) if not spec.layout.has_header else (lines[:1], lines[1:], 2)
    allowed = set(spec.layout.labels or ())
    entries = []
    for line_no, line in enumerate(body, start=first):
        fields = line.strip().split("\t")
        try:
            key = spec.group_key(fields)
        except (IndexError, ValueError):
            raise DataError(f"{path}:{line_no}: cannot read the label of this line") from None
        if allowed and key not in allowed:
            raise DataError(f"{path}:{line_no}: unknown label {key!r}; expected one of {sorted(allowed)}")
        entries.append((line, key))
    return header, entries


def _csv_entries(spec: FewshotTask, path: pathlib.Path) -> list[tuple[list[str], object]]:
    cols = read_label_csv(path, spec.csv_labels)  # validates every row
    return [([spec.csv_labels[lab], text], spec.csv_labels[lab]) for lab, text in zip(cols["label"], cols["text_a"])]


def make_kshot_splits(task: str, original_train_path: str | os.PathLike, k: int = 16,
                      seeds: Iterable[int] = FEWSHOT_SEEDS, out_dir: str | os.PathLike = ".",
                      dev_multiple: int = 1) -> list[pathlib.Path]:
    """Write LM-BFF k-shot train/dev files to ``out_dir/<TASK>/<k>-<seed>/`` (SOURCES.md §2).

    For each seed: ``np.random.seed(seed)``-equivalent legacy shuffle of the original train rows
    (header removed), group them by label in order of first appearance, train = first ``k`` of
    each group, dev = the next ``dev_multiple * k`` (1: LM-BFF "k-shot", 10: "k-shot-10x").
    TSV lines are written back as read, so the files match LM-BFF's byte for byte; CSV rows are
    written like pandas' ``to_csv``. CoLA is shuffled in place in LM-BFF, so its shuffles
    accumulate: seeds run in LM-BFF's order (100, 13, 21, 42, 87, then any others as given) and a
    requested seed first replays the seeds before it. The test split (the original evaluation
    file, copied) is not written. Raises DataError when a label has fewer than
    ``(1 + dev_multiple) * k`` rows. Returns the written paths.
    """
    spec = fewshot_task(task)
    check_int("k", k, 1)
    check_int("dev_multiple", dev_multiple, 1)
    seeds = list(seeds)
    if not seeds:
        raise DataError("seeds must name at least one seed")
    for s in seeds:
        check_int("seed", s, 0)
    path = pathlib.Path(original_train_path)
    if spec.csv_labels is not None:
        header, entries = [], _csv_entries(spec, path)
    else:
        header, entries = _tsv_entries(spec, path)
    cumulative = spec.name == "CoLA"
    if cumulative:
        wanted = set(seeds)
        order = [s for s in LMBFF_SEED_ORDER] + [s for s in dict.fromkeys(seeds) if s not in LMBFF_SEED_ORDER]
        order = order[: max(order.index(s) for s in wanted) + 1]
    else:
        order = list(dict.fromkeys(seeds))
    written: list[pathlib.Path] = []
    work = list(entries)
    for seed in order:
        if not cumulative:
            work = list(entries)
        np.random.RandomState(seed).shuffle(work)  # legacy Mersenne Twister, as np.random.seed + shuffle
        if seed not in seeds:
            continue
        groups: dict[object, list] = {}
        for item, key in work:
            groups.setdefault(key, []).append(item)
        need = (1 + dev_multiple) * k
        for key, items in groups.items():
            if len(items) < need:
                raise DataError(f"k={k} is too large for {path}: label {key!r} has {len(items)} rows, but "
                                f"{need} are needed (k train + {dev_multiple}*k dev per label)")
        folder = pathlib.Path(out_dir) / spec.name / f"{k}-{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        parts = {"train": [x for g in groups.values() for x in g[:k]],
                 "dev": [x for g in groups.values() for x in g[k:need]]}
        for split, items in parts.items():
            target = folder / f"{spec.files[split]}.{spec.ext}"
            if spec.csv_labels is not None:
                write_label_csv(target, items)
            else:
                with open(target, "w", encoding="utf-8", newline="") as f:
                    f.writelines(header + items)
            written.append(target)
    return written


def verify_kshot(root: str | os.PathLike, checksum_path: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Check k-shot files against LM-BFF's md5 list; only files present are compared.

    ``root`` is a k-shot folder (holding ``<TASK>/<K>-<SEED>/``) or a data dir holding
    ``fewshot/k-shot``. ``checksum_path`` defaults to ``<data_dir>/fewshot/k-shot/checksum``
    (``$PEFTKIT_DATA_DIR`` when ``root`` has none). Returns ``{"ok", "mismatch", "absent"}``,
    each a list of paths relative to the k-shot folder, in checksum-file order.
    """
    root = pathlib.Path(root)
    if (root / "fewshot" / "k-shot").is_dir():
        root = root / "fewshot" / "k-shot"
    if checksum_path is None:
        checksum_path = root / "checksum"
        if not checksum_path.is_file():
            checksum_path = kshot_root(None) / "checksum"
    checksum_path = pathlib.Path(checksum_path)
    if not checksum_path.is_file():
        raise missing_file(checksum_path, "k-shot checksum file", "It is LM-BFF's data/k-shot/checksum.")
    result: dict[str, list[str]] = {"ok": [], "mismatch": [], "absent": []}
    with open(checksum_path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split(None, 1)
            if len(parts) != 2 or len(parts[0]) != 32 or any(c not in "0123456789abcdef" for c in parts[0]):
                raise DataError(f"{checksum_path}:{line_no}: expected '<32 hex md5>  <path>', got {line.rstrip()!r}")
            expected, rel = parts[0], parts[1].lstrip("*")
            target = root / rel
            if not target.is_file():
                result["absent"].append(rel)
                continue
            digest = hashlib.md5(target.read_bytes()).hexdigest()
            result["ok" if digest == expected else "mismatch"].append(rel)
    return result
