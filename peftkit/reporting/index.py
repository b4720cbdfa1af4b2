"""``reports/README.md``: one line per artifact (link, what it is, the command that rebuilt it), generated from
``reports/index.json``, to which every notebook or command registers its own artifacts without clobbering the
others' (read-modify-write under a lock, both files replaced atomically)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable

from ..results import write_json_atomic
from ..atomic import locked, write_text as write_text_atomic

INDEX = "index.json"
README = "README.md"
LOCK = ".index.lock"
HEADER = ("# Reports\n\n"
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


def read_index(reports_dir: str | os.PathLike) -> dict[str, dict]:
    """{relative path: {"description", "command", "updated"}} from ``index.json`` (empty when absent)."""
    f = Path(reports_dir) / INDEX
    if not f.is_file():
        return {}
    data = json.loads(f.read_text())
    return dict(data.get("artifacts", {}))


def render_readme(reports_dir: str | os.PathLike, artifacts: dict[str, dict]) -> str:
    lines = []
    for rel in sorted(artifacts):
        a = artifacts[rel]
        missing = "" if (Path(reports_dir) / rel).exists() else " *(not built yet)*"
        lines.append(f"- [{rel}]({rel}){missing}: {a['description']}. Rebuilt by `{a['command']}`.")
    return HEADER + "\n".join(lines) + ("\n" if lines else "")


def _update(reports_dir: Path, entries: Iterable[tuple[str | os.PathLike, str, str]], replace: bool) -> Path:
    with locked(reports_dir / LOCK):
        artifacts = {} if replace else read_index(reports_dir)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for path, description, command in entries:
            if not str(description).strip() or not str(command).strip():
                raise ValueError(f"artifact {path}: description and command must not be empty")
            artifacts[_key(reports_dir, path)] = {"description": str(description).strip().rstrip("."),
                                                  "command": str(command).strip(), "updated": stamp}
        write_json_atomic(reports_dir / INDEX, {"artifacts": artifacts})
        return write_text_atomic(reports_dir / README, render_readme(reports_dir, artifacts))


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
