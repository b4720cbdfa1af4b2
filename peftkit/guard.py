"""Put a folder back as it was: :class:`TreeGuard` copies every file under a folder before a notebook runs, and
after a failure or an interruption restores the changed and deleted files and removes the new ones (so a failed
notebook leaves the committed tables, figures and reports index exactly as they were).

Restoring a file is atomic (a copy beside it, then a rename), so a reader never sees half of one.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable


def _stamp(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_size, st.st_mtime_ns


class TreeGuard:
    """A copy of every file under ``root`` (``skip``: top-level names left out, e.g. other profiles' folders).
    Use :meth:`restore` to put the tree back, :meth:`discard` to keep it as it now is; either drops the copy."""

    def __init__(self, root: str | os.PathLike, skip: Iterable[str] = ()):
        self.root, self.skip = Path(root), set(skip)
        self.existed = self.root.is_dir()
        self.copy = Path(tempfile.mkdtemp(prefix="peftkit-guard-"))
        self.files: dict[str, tuple[int, int]] = {}
        self.dirs: set[str] = set()
        try:
            for p, rel in self._walk():
                if p.is_dir():
                    self.dirs.add(rel)
                elif p.is_file():
                    (self.copy / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p, self.copy / rel)
                    self.files[rel] = _stamp(p)
        except BaseException:
            self.discard()
            raise

    def _walk(self):
        if not self.root.is_dir():
            return
        for top in sorted(self.root.iterdir()):
            if top.name in self.skip:
                continue
            for p in [top, *sorted(top.rglob("*"))] if top.is_dir() and not top.is_symlink() else [top]:
                yield p, p.relative_to(self.root).as_posix()

    def changed(self) -> list[str]:
        """Files added, changed or deleted since the copy (relative paths)."""
        now = {rel: _stamp(p) for p, rel in self._walk() if p.is_file()}
        return sorted(rel for rel in set(now) | set(self.files) if now.get(rel) != self.files.get(rel))

    def restore(self) -> list[str]:
        """Put back every changed or deleted file, remove the new files and folders; returns what was undone."""
        undone = self.changed()
        try:
            for rel in undone:
                target = self.root / rel
                if rel not in self.files:
                    target.unlink(missing_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.restore")
                os.close(fd)
                shutil.copy2(self.copy / rel, tmp)
                os.replace(tmp, target)
            new_dirs = [p for p, rel in self._walk() if p.is_dir() and rel not in self.dirs]
            for d in sorted(new_dirs, key=lambda p: len(p.parts), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
            if not self.existed and self.root.is_dir() and not any(self.root.iterdir()):
                self.root.rmdir()
        finally:
            self.discard()
        return undone

    def discard(self) -> None:
        shutil.rmtree(self.copy, ignore_errors=True)
