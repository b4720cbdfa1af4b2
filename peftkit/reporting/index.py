"""``reports/README.md``: a short summary of what was found (each notebook's closing finding,
:mod:`peftkit.reporting.findings`: its runs, headline numbers, claims' verdicts and what the scale means), then one
line per artifact (link, what it is, the command that rebuilt it). Both are
generated from ``reports/index.json``, to which every notebook or command registers its own artifacts and
findings without clobbering the others' (read-modify-write under a lock, both files replaced atomically)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..results import write_json_atomic
from ..atomic import locked, write_text as write_text_atomic

INDEX = "index.json"
README = "README.md"
LOCK = ".index.lock"
HEADER = "# Reports\n\n"
NOTEBOOKS = ("## The notebooks, executed\n\n"
             "Each notebook as `peftkit reproduce` last executed it, outputs included, rendered as HTML: read the "
             "tables and figures in context without running anything.\n\n")
FILES = ("## Files\n\n"
         "The notebooks' tables, figures and claim checks are functions of the runs' `result.json` files (they "
         "never train); the parameter counts and benchmarks come from their own commands. Each line: the "
         "artifact, what it is, and the command that rebuilt it.\n\n")


def _key(reports_dir: Path, path: str | os.PathLike) -> str:
    """The artifact's path relative to ``reports_dir`` (POSIX). A relative ``path`` is taken relative to
    ``reports_dir``, unless it names a file under ``reports_dir`` from the working directory
    ("reports/tables/x.md")."""
    p, root = Path(path), reports_dir.resolve()
    if not p.is_absolute():
        from_cwd = p.resolve()
        if (reports_dir / p).exists() or not from_cwd.is_relative_to(root):
            return p.as_posix()
        p = from_cwd
    p = p.resolve()
    if p.is_relative_to(root):
        return p.relative_to(root).as_posix()
    return Path(os.path.relpath(p, root)).as_posix()


def _read(reports_dir: str | os.PathLike) -> dict:
    f = Path(reports_dir) / INDEX
    return json.loads(f.read_text()) if f.is_file() else {}


def read_index(reports_dir: str | os.PathLike) -> dict[str, dict]:
    """{relative path: {"description", "command", "updated"}} from ``index.json`` (empty when absent)."""
    return dict(_read(reports_dir).get("artifacts", {}))


def read_findings(reports_dir: str | os.PathLike) -> dict[str, dict]:
    """{key: {"text", "kind" ("notebook" | "claim" | "delta"), "caveat"}} registered by :func:`register_finding`."""
    return dict(_read(reports_dir).get("findings", {}))


KINDS = ("notebook", "claim", "delta")


def render_summary(findings: dict[str, dict]) -> str:
    """"What was found": each notebook's closing finding under its name (in notebook order), then any single claim
    or delta lines registered without one, then their scale caveats (each once)."""
    if not findings:
        return ""
    out = ["## What was found\n"]
    for key in sorted(k for k in findings if findings[k].get("kind") == "notebook"):
        out += [f"### {key}\n", findings[key]["text"], ""]
    for kind, heading in (("claim", "Claims of the papers, checked on our runs"),
                          ("delta", "Our numbers against the papers' (Δ = ours − paper)")):
        lines = [f"- {findings[k]['text']}" for k in sorted(findings) if findings[k].get("kind") == kind]
        if lines:
            out += [f"{heading}:\n", *lines, ""]
    caveats = list(dict.fromkeys(f["caveat"] for f in findings.values() if f.get("caveat")))
    if caveats:
        out += ["Scale: " + " ".join(caveats), ""]
    return "\n".join(out) + "\n"


def is_rendered_notebook(rel: str) -> bool:
    """An executed notebook's HTML copy (``executed/<profile>/<name>.html``, see :mod:`peftkit.reproduce`)."""
    p = PurePosixPath(rel)
    return p.suffix == ".html" and "executed" in p.parts


def _line(reports_dir, rel: str, a: dict) -> str:
    missing = "" if (Path(reports_dir) / rel).exists() else " *(not built yet)*"
    return f"- [{rel}]({rel}){missing}: {a['description']}. Rebuilt by `{a['command']}`."


def render_readme(reports_dir: str | os.PathLike, artifacts: dict[str, dict],
                  findings: dict[str, dict] | None = None) -> str:
    """The summary, the executed notebooks (HTML, first: what a reader opens without running anything), then every
    other artifact."""
    rendered = [_line(reports_dir, rel, artifacts[rel]) for rel in sorted(artifacts) if is_rendered_notebook(rel)]
    lines = [_line(reports_dir, rel, artifacts[rel]) for rel in sorted(artifacts) if not is_rendered_notebook(rel)]
    notebooks = NOTEBOOKS + "\n".join(rendered) + "\n\n" if rendered else ""
    return HEADER + render_summary(findings or {}) + notebooks + FILES + "\n".join(lines) + ("\n" if lines else "")


def _update(reports_dir: Path, entries: Iterable[tuple[str | os.PathLike, str, str]], replace: bool,
            findings: dict[str, dict] | None = None, supersede: str | None = None) -> Path:
    with locked(reports_dir / LOCK):
        data = _read(reports_dir)
        artifacts = {} if replace else dict(data.get("artifacts", {}))
        known = {} if replace else dict(data.get("findings", {}))
        if supersede:  # a notebook's closing finding replaces the single lines it registered before
            known = {k: v for k, v in known.items() if not k.startswith((supersede + "_", supersede + ":"))}
        known.update(findings or {})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for path, description, command in entries:
            if not str(description).strip() or not str(command).strip():
                raise ValueError(f"artifact {path}: description and command must not be empty")
            artifacts[_key(reports_dir, path)] = {"description": str(description).strip().rstrip("."),
                                                  "command": str(command).strip(), "updated": stamp}
        write_json_atomic(reports_dir / INDEX, {"artifacts": artifacts, **({"findings": known} if known else {})})
        return write_text_atomic(reports_dir / README, render_readme(reports_dir, artifacts, known))


def register_finding(reports_dir: str | os.PathLike, key: str, text: str, kind: str,
                     caveat: str | None = None) -> Path:
    """Add or replace one entry of the README's summary: ``kind`` "notebook" (a notebook's closing finding, keyed by
    the notebook's name; it replaces that notebook's earlier single lines), "claim" (a verdict) or "delta" (a
    headline difference from the paper); ``caveat``: the scale caveat it comes with (printed once). Returns the
    README."""
    if kind not in KINDS:
        raise ValueError(f"invalid kind={kind!r}: allowed {', '.join(KINDS)}")
    if not str(text).strip():
        raise ValueError(f"finding {key}: text must not be empty")
    return _update(Path(reports_dir), [], replace=False,
                   findings={key: {"text": str(text).strip(), "kind": kind, "caveat": caveat}},
                   supersede=key if kind == "notebook" else None)


def register_artifact(reports_dir: str | os.PathLike, path: str | os.PathLike, description: str,
                      command: str) -> Path:
    """Add or update one artifact in ``index.json`` and regenerate ``README.md`` (other entries are kept).
    ``path`` may be absolute or relative to ``reports_dir``. Returns the README path."""
    return _update(Path(reports_dir), [(path, description, command)], replace=False)


def write_index(reports_dir: str | os.PathLike, entries: Iterable, replace: bool = False) -> Path:
    """Register several artifacts at once and rewrite ``README.md``. ``entries``: (path, description, command)
    tuples or dicts with those keys; ``replace=True`` drops the entries registered before."""
    rows = [(e["path"], e["description"], e["command"]) if isinstance(e, dict) else tuple(e) for e in entries]
    return _update(Path(reports_dir), rows, replace=replace)
