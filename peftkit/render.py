"""Executed notebooks as HTML a reader can open without running anything (``peftkit reproduce`` writes one beside
each executed copy): widgets and progress redraws dropped, the machine's paths left out, everything else kept."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

#: outputs that only a live Jupyter front end can draw (ipywidgets: progress bars and the like); the HTML copy
#: would show their text fallback, e.g. "HBox(children=(FloatProgress(...)))", so it leaves them out
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _local_paths(root: Path) -> list[tuple[str, str]]:
    """(absolute prefix, what a reader sees instead), longest first: the checkout prints as relative paths, the
    Python environment as ``<python>``, so a rendered notebook names no directory of the machine that ran it."""
    pairs = {str(root) + os.sep: "", str(root): ".", sys.prefix: "<python>",
             os.path.expanduser("~") + os.sep: "~" + os.sep}
    return sorted(((k, v) for k, v in pairs.items() if len(k) > 1), key=lambda kv: -len(kv[0]))


def _relative(value, paths):
    if isinstance(value, str):
        for prefix, shown in paths:
            value = value.replace(prefix, shown)
        return value
    if isinstance(value, list):
        return [_relative(v, paths) for v in value]
    return value


def _assignments(source: str) -> dict | None:
    """{name: value} of a parameters cell's ``NAME = <literal>`` lines, None when it holds anything else."""
    import ast

    try:
        body = ast.parse(source).body
        return {t.id: ast.literal_eval(node.value) for node in body for t in node.targets}
    except (SyntaxError, ValueError, AttributeError, TypeError):
        return None


def _tagged(nb, tag: str) -> list:
    return [c for c in nb.cells if tag in (c.get("metadata") or {}).get("tags", [])]


def one_parameters_cell(nb):
    """``nb`` without papermill's injected-parameters cell when every value it injects is the default the
    notebook's own parameters cell already shows (``peftkit reproduce --profile cpu`` injects PROFILE = "cpu"), so
    the parameters appear once; an injected cell that changes a value stays, right after the defaults, since it is
    what the notebook ran with."""
    own, injected = _tagged(nb, "parameters"), _tagged(nb, "injected-parameters")
    if len(own) != 1 or len(injected) != 1:
        return nb
    defaults, given = _assignments(own[0].get("source", "")), _assignments(injected[0].get("source", ""))
    if defaults is not None and given is not None and all(k in defaults and defaults[k] == v
                                                          for k, v in given.items()):
        nb.cells = [c for c in nb.cells if c is not injected[0]]
    return nb


def readable(nb, root: Path | None = None):
    """``nb`` as a reader should see it: the parameters once (:func:`one_parameters_cell`), widget outputs
    dropped, consecutive stream outputs merged and progress lines rewritten in place (carriage returns) reduced to
    their last state; with ``root`` (the checkout), paths under it printed relative to it and the Python
    environment's as ``<python>`` (see :func:`_local_paths`). Everything else is kept."""
    paths = _local_paths(root) if root is not None else []
    nb = one_parameters_cell(nb)
    for cell in nb.cells:
        cell["source"] = _relative(cell.get("source", ""), paths)
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if WIDGET_MIME in (out.get("data") or {}):
                continue
            if kept and out.get("output_type") == "stream" and kept[-1].get("output_type") == "stream" \
                    and kept[-1].get("name") == out.get("name"):
                kept[-1]["text"] += out["text"]
                continue
            kept.append(out)
        for out in kept:
            if out.get("output_type") == "stream" and "\r" in out["text"]:
                out["text"] = re.sub(r"[^\n]*\r(?=[^\n])", "", out["text"]).replace("\r", "")
            if "text" in out:
                out["text"] = _relative(out["text"], paths)
            for mime, value in (out.get("data") or {}).items():
                if mime.startswith("text/"):
                    out["data"][mime] = _relative(value, paths)
            if "traceback" in out:
                out["traceback"] = _relative(out["traceback"], paths)
        cell["outputs"] = kept
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def write_html(executed: Path, root: Path | None = None) -> Path | None:
    """The executed notebook as a standalone HTML page beside it, written atomically, as :func:`readable` shows it
    (paths under ``root``, the checkout, relative to it). None, with a line saying why, when it cannot be made."""
    import nbformat
    from nbconvert import HTMLExporter

    from .atomic import write_text

    try:
        nb = readable(nbformat.read(executed, as_version=4), root)
        body, _ = HTMLExporter().from_notebook_node(nb)
    except Exception as e:  # noqa: BLE001 - the executed notebook is what matters; say why the HTML is missing
        print(f"[reproduce] {executed.name}: no HTML ({type(e).__name__}: {e})", flush=True)
        return None
    return write_text(executed.with_suffix(".html"), body)
