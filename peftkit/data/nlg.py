"""E2E, WebNLG 2017 and DART from ``<data_dir>/nlg/`` (layout and provenance: SOURCES.md §3).

``load_nlg`` gives one row per (source, reference) pair, for training: ``idx`` (row number),
``source`` (the linearised input), ``target`` (one reference) and ``references`` (every reference
of that source in the split, in file order). ``load_nlg_eval`` gives one row per unique source
(first-appearance order) with ``idx``, ``source`` and ``references`` (+ ``category``, ``seen`` for WebNLG):
E2E's official scorer and LoRA's WebNLG/DART evaluation both group references by identical source. E2E
references for scoring default to LoRA's tokenised ones (``e2e_references="lora"``), the row-aligned
tokenised text of the CSV's references that the LoRA/AdaMix numbers were scored against.

Sources, as LoRA (microsoft/LoRA ``examples/NLG/src/format_converting_*.py``) builds them:

- E2E: the MR string as in the official CSV (``name[The Vaults], eatType[pub], ...``), or with
  ``e2e_format="lora"`` the Prefix-tuning/LoRA files ``nlg/e2e/lora/*.txt``
  (``name : The Vaults | Type : pub | ...``, tokenised references, each line stripped).
- WebNLG: ``"subject : property : object"`` per triple of ``modifiedtripleset``, joined by
  ``" | "``, text as in the JSON (underscores and quotes kept); only lexicalisations with
  comment "good" are references. Rows also carry ``category`` and ``seen`` (category is one of
  LoRA's ten seen categories).
- DART: the same ``" : "`` / ``" | "`` scheme with the relation lower-cased; all annotations are
  references. DART train is absent (SOURCES.md); DART test comes from
  ``dart-v1.1.1-full-test.json`` if present, else from the 2021 test XML that SOURCES.md says
  stands in for it (same triples and texts as the JSON).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import xml.etree.ElementTree as ET
from typing import Callable

import datasets

from ._common import DataError, lookup, missing_file, norm_name, resolve_data_dir

NLG_TASKS: tuple[str, ...] = ("e2e", "webnlg", "dart")
NLG_SPLITS: tuple[str, ...] = ("train", "dev", "test")
#: WebNLG 2017 categories seen in training (LoRA's list); the test set adds five unseen ones.
WEBNLG_SEEN_CATEGORIES: frozenset[str] = frozenset({
    "Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food", "Monument", "SportsTeam",
    "University", "WrittenWork"})

_SPLIT_ALIASES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "test": "test"}
_E2E_FORMATS = ("official", "lora")
_DART_NOTE = ("SOURCES.md: DART train (json and xml) and the test JSON LoRA uses were over the size limit and "
              "are not in the shared data; put Yale-LILY/dart data/v1.1.1/{name} there.")

Entry = tuple[str, list[str], dict]  # source, references, extra columns


def _linearise(triples: list[tuple[str, str, str]]) -> str:
    return " | ".join(f"{s} : {p} : {o}" for s, p, o in triples)


def _read_e2e_csv(path: pathlib.Path) -> list[Entry]:
    entries: list[Entry] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected the header 'mr,ref')")
        if "mr" not in header or "ref" not in header:
            raise DataError(f"{path}:1: header lacks column 'mr' or 'ref'; header is {header!r}")
        i_mr, i_ref = header.index("mr"), header.index("ref")
        line = reader.line_num + 1
        for row in reader:
            if len(row) != len(header):
                raise DataError(f"{path}:{line}: expected {len(header)} fields, found {len(row)}")
            entries.append((row[i_mr], [row[i_ref]], {}))
            line = reader.line_num + 1
    return entries


def _read_e2e_lora(path: pathlib.Path) -> list[Entry]:
    entries: list[Entry] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.strip().split("||")
            if len(parts) != 2:
                raise DataError(f"{path}:{line_no}: expected 'source||reference', found {len(parts) - 1} '||'")
            entries.append((parts[0], [parts[1]], {}))
    return entries


def _load_json(path: pathlib.Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def _read_webnlg(path: pathlib.Path) -> list[Entry]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise DataError(f"{path}: expected an object with an 'entries' list (LoRA's WebNLG layout)")
    entries: list[Entry] = []
    for n, wrapped in enumerate(data["entries"], start=1):
        try:
            entry = wrapped[str(n)]
            triples = [(t["subject"], t["property"], t["object"]) for t in entry["modifiedtripleset"]]
            refs = [lex["lex"] for lex in entry["lexicalisations"] if lex["comment"] == "good"]
            category = entry["category"]
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}: entry {n} lacks {e} (LoRA's WebNLG layout)") from None
        if refs:  # LoRA drops entries without a "good" lexicalisation
            entries.append((_linearise(triples), refs,
                            {"category": category, "seen": category in WEBNLG_SEEN_CATEGORIES}))
    return entries


def _read_dart_json(path: pathlib.Path) -> list[Entry]:
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of entries (DART JSON layout)")
    entries: list[Entry] = []
    for n, entry in enumerate(data, start=1):
        try:
            triples = [(s, p.lower(), o) for s, p, o in entry["tripleset"]]
            refs = [a["text"] for a in entry["annotations"]]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: entry {n} is malformed ({e!r}; DART JSON layout)") from None
        entries.append((_linearise(triples), refs, {}))
    return entries


def _read_dart_xml(path: pathlib.Path) -> list[Entry]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}:{e.position[0]}: invalid XML ({e})") from None
    entries: list[Entry] = []
    for n, entry in enumerate(root.iter("entry"), start=1):
        triples = []
        for m in entry.iter("mtriple"):
            parts = (m.text or "").split(" | ")
            if len(parts) != 3:
                raise DataError(f"{path}: entry {n} ({entry.get('eid')}): mtriple {m.text!r} is not 's | p | o'")
            triples.append((parts[0], parts[1].lower(), parts[2]))
        entries.append((_linearise(triples), [lex.text or "" for lex in entry.iter("lex")], {}))
    return entries


def _source(task: str, split: str, root: pathlib.Path, e2e_format: str) -> tuple[pathlib.Path, Callable]:
    nlg = root / "nlg"
    if task == "e2e":
        if e2e_format == "lora":
            return nlg / "e2e" / "lora" / f"{'valid' if split == 'dev' else split}.txt", _read_e2e_lora
        return nlg / "e2e" / f"{split}.csv", _read_e2e_csv
    if task == "webnlg":
        return nlg / "webnlg" / f"{split}.json", _read_webnlg
    path = nlg / "dart" / f"dart-v1.1.1-full-{split}.json"
    xml = path.with_suffix(".xml")
    if not path.is_file() and split == "test" and xml.is_file():
        return xml, _read_dart_xml
    return path, _read_dart_json


def _entries(task: str, split: str, data_dir, e2e_format: str) -> tuple[str, list[Entry]]:
    task = lookup("task", "an NLG task", task, {norm_name(t): t for t in NLG_TASKS}, NLG_TASKS)
    split = lookup("split", f"a split of NLG task {task!r}", split, _SPLIT_ALIASES, NLG_SPLITS)
    if e2e_format not in _E2E_FORMATS:
        raise DataError(f"e2e_format must be one of {list(_E2E_FORMATS)}, got {e2e_format!r}")
    root = resolve_data_dir(data_dir)
    if root is None:
        raise DataError("NLG data is read from a local directory: set PEFTKIT_DATA_DIR (or pass --data-dir / "
                        "data_dir=) to a directory holding nlg/e2e, nlg/webnlg and nlg/dart (see SOURCES.md)")
    path, reader = _source(task, split, root, e2e_format)
    if not path.is_file():
        note = _DART_NOTE.format(name=path.name) if task == "dart" else "SOURCES.md §3 says what belongs there."
        raise missing_file(path, f"{task} {split} file", note)
    try:
        entries = reader(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e})") from None
    except csv.Error as e:
        raise DataError(f"{path}: {e}") from None
    if not entries:
        raise DataError(f"{path}: no examples")
    return task, entries


def _group(entries: list[Entry]) -> dict[str, list[str]]:
    refs: dict[str, list[str]] = {}
    for source, targets, _ in entries:
        refs.setdefault(source, []).extend(targets)
    return refs


def load_nlg(task: str, split: str, data_dir: str | os.PathLike | None = None,
             e2e_format: str = "official") -> datasets.Dataset:
    """One row per (source, reference): idx, source, target, references (+ category, seen for WebNLG)."""
    task, entries = _entries(task, split, data_dir, e2e_format)
    refs = _group(entries)
    cols: dict[str, list] = {"idx": [], "source": [], "target": [], "references": []}
    extra_keys = list(entries[0][2])
    for key in extra_keys:
        cols[key] = []
    for source, targets, extra in entries:
        for target in targets:
            cols["idx"].append(len(cols["idx"]))
            cols["source"].append(source)
            cols["target"].append(target)
            cols["references"].append(refs[source])
            for key in extra_keys:
                cols[key].append(extra[key])
    features = {"idx": datasets.Value("int64"), "source": datasets.Value("string"),
                "target": datasets.Value("string"), "references": datasets.List(datasets.Value("string"))}
    if extra_keys:
        features |= {"category": datasets.Value("string"), "seen": datasets.Value("bool")}
    return datasets.Dataset.from_dict(cols, features=datasets.Features(features))


def _swap_e2e_references(entries: list[Entry], split: str, data_dir, fmt: str) -> list[Entry]:
    """E2E rows with the references of the other format's file (the two files are row-aligned: same MRs, same
    reference order; the LoRA file holds the tokenised text of the same references)."""
    _, other = _entries("e2e", split, data_dir, fmt)
    if len(other) != len(entries):
        raise DataError(f"e2e {split}: the official CSV and the LoRA file differ in rows ({len(entries)} vs "
                        f"{len(other)}); e2e_references can only swap references between row-aligned files")
    letters = lambda text: "".join(ch for ch in text.lower() if ch.isalnum())  # noqa: E731
    for row, ((_, mine, _), (_, theirs, _)) in enumerate(zip(entries, other), start=1):
        if letters(mine[0]) != letters(theirs[0]):
            raise DataError(f"e2e {split} row {row}: the CSV and LoRA references differ beyond tokenisation "
                            f"({mine[0]!r} vs {theirs[0]!r}); the files are not row-aligned")
    return [(source, targets, extra) for (source, _, extra), (_, targets, _) in zip(entries, other)]


def load_nlg_eval(task: str, split: str, data_dir: str | os.PathLike | None = None,
                  e2e_format: str = "official", e2e_references: str = "lora") -> datasets.Dataset:
    """One row per unique source (first-appearance order): idx, source, references (in file order), and for
    WebNLG category and seen (the source's category is one of the 10 training categories).

    E2E: *e2e_format* picks the sources, *e2e_references* the references scored against: "lora" (default; the
    tokenised references of LoRA's ``data/e2e/{split}.txt`` that the LoRA/AdaMix numbers were scored against) or
    "official" (the raw text of the challenge CSV).
    """
    if e2e_references not in _E2E_FORMATS:
        raise DataError(f"e2e_references must be one of {list(_E2E_FORMATS)}, got {e2e_references!r}")
    task, entries = _entries(task, split, data_dir, e2e_format)
    if task == "e2e" and e2e_references != e2e_format:
        entries = _swap_e2e_references(entries, split, data_dir, e2e_references)
    refs = _group(entries)
    cols = {"idx": list(range(len(refs))), "source": list(refs), "references": list(refs.values())}
    features = {"idx": datasets.Value("int64"), "source": datasets.Value("string"),
                "references": datasets.List(datasets.Value("string"))}
    if task == "webnlg":
        extra = {}
        for source, _, columns in entries:
            extra.setdefault(source, columns)
        cols |= {"category": [extra[s]["category"] for s in refs], "seen": [extra[s]["seen"] for s in refs]}
        features |= {"category": datasets.Value("string"), "seen": datasets.Value("bool")}
    return datasets.Dataset.from_dict(cols, features=datasets.Features(features))
