"""``peftkit data fetch``: download the files the papers used into the layout ``PEFTKIT_DATA_DIR`` expects, each
verified against a digest before it appears.

    peftkit data fetch [--only GROUP|TASK[,...]] [--data-dir DIR] [--mirror URL] [--force] [--list]

The sources are ``peftkit/data_sources.tsv`` (group, path under the data directory, URL pinned to a commit, bytes,
digest): the LM-BFF k-shot splits (K=16, seeds 13/21/42/87/100; ``fewshot``), the E2E / WebNLG / DART files of the
LoRA repository and the official E2E CSVs (``nlg``), and the GLUE files in the ``glue_data`` layout that have a
published copy with a known digest (``glue``; GLUE as a whole also loads from the hub, ``nyu-mll/glue``, with no
data directory). The digests are the sha256 of the shared data's MANIFEST.tsv where we hold the file, LM-BFF's own
md5 list for the k-shot test files we do not hold, and the LoRA repository's git blob ids for DART train and test.

Each file downloads to ``.<name>.part`` beside its target, is verified, and only then renamed over the target. A
download cut short (the connection closed or failed mid-file: fewer bytes than the source announced) is an
interruption, not corruption: the partial file is kept and resumed from where it stopped (HTTP Range; a server
that cannot resume sends the file again), a few times within one command and again by the next one, each time
saying so. Only a complete download with the wrong digest is corrupt: it is deleted and reported, never left in
place. Files already present with the right digest are not downloaded again; a file present with another digest
stops the fetch before anything downloads unless ``--force`` (which replaces those files only, and is an error
when there are none). With the network unreachable the fetch stops at the first file, naming its URL, leaving no
folders behind. ``--mirror URL`` (or ``$PEFTKIT_DATA_MIRROR``) replaces ``https://raw.githubusercontent.com`` in
every URL (a local copy: ``file:///srv/mirror``; a plain path is refused with the ``file://`` URL it means).
A data directory that is a file, lies under a file or cannot be written, and a target path that is a directory,
are refused before anything downloads (exit status 2).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).with_name("data_sources.tsv")
UPSTREAM = "https://raw.githubusercontent.com"
GROUPS = ("fewshot", "nlg", "glue")
CHUNK = 1 << 20
TIMEOUT_S = 15
#: how many times one command resumes a download cut short before it stops (the next run resumes again)
RESUMES = 3


class FetchError(RuntimeError):
    """A file could not be fetched or failed its digest (names the URL and the path)."""


@dataclass(frozen=True)
class Source:
    group: str
    path: str  # under the data directory
    url: str
    size: int | None
    digest: str  # "sha256:<hex>" | "md5:<hex>" | "gitblob:<sha1 of the git blob>"

    @property
    def task(self) -> str:
        parts = self.path.split("/")
        return parts[2] if parts[0] == "fewshot" else parts[1]


def sources(mirror: str | None = None) -> list[Source]:
    out = []
    with open(SOURCES, encoding="utf-8") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        for r in rows:
            url = r["url"] if not mirror else mirror.rstrip("/") + r["url"][len(UPSTREAM):]
            out.append(Source(r["group"], r["path"], url, None if r["bytes"] == "-" else int(r["bytes"]),
                              r["digest"]))
    return out


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def select(all_sources: list[Source], only: str | None) -> list[Source]:
    """``only``: comma-separated groups (fewshot, nlg, glue) or task names (e2e, webnlg, dart, sst-2, mrpc, ...)."""
    if not only:
        return all_sources
    names = [n for n in (_norm(x) for x in only.split(",")) if n]
    tasks = sorted({s.task for s in all_sources}, key=str.lower)
    allowed = {_norm(g) for g in GROUPS} | {_norm(t) for t in tasks}
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"invalid --only {', '.join(bad)}: allowed {', '.join(GROUPS)} or a task: "
                         f"{', '.join(tasks)}")
    return [s for s in all_sources if _norm(s.group) in names or _norm(s.task) in names]


class _Hasher:
    def __init__(self, digest: str):
        self.kind, self.expected = digest.split(":", 1)
        if self.kind not in ("sha256", "md5", "gitblob"):
            raise ValueError(f"unknown digest kind {self.kind!r}")
        self.chunks = hashlib.sha256() if self.kind == "sha256" else hashlib.md5() if self.kind == "md5" else None

    def check(self, path: Path) -> bool:
        h = self.chunks.copy() if self.chunks else hashlib.sha1(b"blob %d\0" % path.stat().st_size)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
        return h.hexdigest() == self.expected


def verify(path: str | os.PathLike, digest: str) -> bool:
    """Whether the file at ``path`` has ``digest`` ("sha256:..." | "md5:..." | "gitblob:...")."""
    return _Hasher(digest).check(Path(path))


def open_range(url: str, start: int):
    """(body, resumed, total): the body from byte ``start`` (HTTP Range; file:// seeks), whether it starts there,
    and the whole file's size where the source says (None otherwise). The one place bytes come from the network:
    public so that a test can replace it (an interrupted transfer) without reaching into the module."""
    if url.startswith("file://"):
        f = open(urllib.request.url2pathname(url[len("file://"):]), "rb")
        f.seek(start)
        return f, start > 0, os.fstat(f.fileno()).st_size
    req = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    resumed = start > 0 and getattr(resp, "status", 200) == 206
    whole = (resp.headers.get("Content-Range") or "").rpartition("/")[2] if resumed else \
        resp.headers.get("Content-Length")
    return resp, resumed, int(whole) if whole and whole.isdigit() else None


def _mkdirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the ones created (deepest first)."""
    created = []
    p = folder
    while not p.exists():
        created.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _download(src: Source, part: Path, start: int) -> tuple[bool, int, int | None, str | None, list[Path]]:
    """Append the source from byte ``start`` to ``part`` (or rewrite it when the server cannot resume). Returns
    (resumed, bytes in part, the file's size if known, why it stopped short or None, folders created)."""
    try:
        body, resumed, total = open_range(src.url, start)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise FetchError(f"cannot fetch {src.url} (for {src.path}): {getattr(e, 'reason', e)}") from None
    created = _mkdirs(part.parent)  # only once the source answers: an offline fetch leaves no folders behind
    got, cut = (start if resumed else 0), None
    with body, open(part, "ab" if resumed else "wb") as out:
        try:
            for block in iter(lambda: body.read(CHUNK), b""):
                out.write(block)
                got += len(block)
        except (OSError, http.client.HTTPException) as e:  # the partial file stays: it is resumed
            cut = f"{type(e).__name__}: {e}"
    total = total or src.size
    if cut is None and total is not None and got < total:
        cut = "the connection closed early"  # a short read: http.client returns b"" instead of raising
    elif cut is not None and total is not None and got >= total:
        cut = None  # every byte arrived before the connection failed
    return resumed, got, total, cut, created


def fetch_one(src: Source, data_dir: Path, force: bool = False, log=print) -> str:
    """Fetch one file; returns "present" | "fetched" | "resumed". A download cut short (the connection closed or
    failed mid-file) is resumed from its partial file, up to :data:`RESUMES` times, saying so; only a complete file
    with the wrong digest is corrupt (deleted). Raises FetchError (the target untouched)."""
    target = data_dir / src.path
    hasher = _Hasher(src.digest)
    if target.is_file() and not force:
        if hasher.check(target):
            return "present"
        raise FetchError(f"{target} exists but does not match {src.digest} (from {src.url}); move it away or "
                         "pass --force to replace it")
    part = target.with_name(f".{target.name}.part")
    resumed_any, fresh_tries, cuts = False, 0, 0
    while True:
        start = part.stat().st_size if part.is_file() else 0
        resumed, got, total, cut, created = _download(src, part, start)
        resumed_any |= resumed
        of = f"{got:,} of {total:,} bytes" if total else f"{got:,} bytes"
        if cut is not None:
            cuts += 1
            if cuts > RESUMES:
                raise FetchError(f"fetch of {src.url} interrupted after {of} ({cut}), {RESUMES} times; the partial "
                                 f"file {part} is kept: run the same command again to resume it")
            log(f"[data] {src.path}: {cut} after {of}; resuming from there")
            continue
        if hasher.check(part) and (src.size is None or part.stat().st_size == src.size):
            os.replace(part, target)
            return "resumed" if resumed_any else "fetched"
        part.unlink()
        if not resumed or fresh_tries:  # a complete download that fails its digest: corrupt at the source or on the way
            for d in created:
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise FetchError(f"{src.url} does not match {src.digest} ({of}, complete): deleted, {target} not "
                             "written")
        fresh_tries, resumed_any = 1, False  # the partial file it resumed was not a prefix of the file: start over
        log(f"[data] {src.path}: the partial file did not continue into the right file; fetching it again")


def default_data_dir() -> Path:
    env = os.environ.get("PEFTKIT_DATA_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "peftkit" / "data"


def check_mirror(mirror: str | None, flag: str = "--mirror") -> str | None:
    """A mirror is a URL: a plain path is refused with the ``file://`` URL it probably means."""
    if mirror is None:
        return None
    scheme = mirror.split("://", 1)[0].lower() if "://" in mirror else ""
    if scheme not in ("http", "https", "file"):
        hint = f"; for a local copy: {flag} {Path(mirror).expanduser().absolute().as_uri()}" if not scheme else ""
        raise ValueError(f"invalid {flag} {mirror!r}: allowed an http://, https:// or file:// URL{hint}")
    return mirror


def check_targets(chosen: list[Source], root: Path, flag: str = "--data-dir") -> None:
    """Every file can be written where it goes: the data directory is one, no target is a directory, no folder on
    the way is a file (checked before anything downloads)."""
    from .validate import check_out_dir, existing_parent

    check_out_dir(root, flag)
    for src in chosen:
        target = root / src.path
        if target.exists() and not target.is_file():
            raise ValueError(f"invalid {flag} {str(root)!r}: {target} is a directory where the file {src.path} goes; "
                             "move it away")
        parent = existing_parent(target.parent)
        if not parent.is_dir():
            raise ValueError(f"invalid {flag} {str(root)!r}: {parent} is a file where a folder of {src.path} goes; "
                             "move it away")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"invalid {flag} {str(root)!r}: {parent} is not writable")


def fetch(only: str | None = None, data_dir: str | os.PathLike | None = None, mirror: str | None = None,
          force: bool = False, log=print) -> dict[str, str]:
    """Fetch the selected files into ``data_dir`` (default ``$PEFTKIT_DATA_DIR``, else ~/.cache/peftkit/data);
    returns {path: status}. Everything that can be checked is checked before the first download: the mirror, the
    folders, the files already present (one with another digest stops the fetch unless ``force``, which replaces
    only those, and is an error when there are none). Stops at the first file that cannot be fetched
    (FetchError)."""
    mirror = check_mirror(mirror) if mirror else check_mirror(os.environ.get("PEFTKIT_DATA_MIRROR") or None,
                                                              "$PEFTKIT_DATA_MIRROR")
    chosen = select(sources(mirror), only)
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    check_targets(chosen, root)
    verifies = {s.path: _Hasher(s.digest).check(root / s.path) for s in chosen if (root / s.path).is_file()}
    other = [s for s in chosen if verifies.get(s.path) is False]
    if force and not other:
        raise ValueError(f"invalid --force: no file of the selection is present with another digest "
                         f"({sum(verifies.values())} verify, {len(chosen) - len(verifies)} missing), so it has nothing "
                         "to replace; files that verify are never downloaded again: leave --force out")
    if other and not force:
        raise FetchError(f"{root / other[0].path} exists but does not match {other[0].digest} (from {other[0].url})"
                         + (f", and {len(other) - 1} more files" if len(other) > 1 else "")
                         + "; move them away or pass --force to replace them")
    done = {}
    for i, src in enumerate(chosen, 1):
        done[src.path] = "present" if verifies.get(src.path) else fetch_one(src, root, force=force, log=log)
        if done[src.path] != "present":
            log(f"[data] {i}/{len(chosen)} {src.path}: {done[src.path]} ({src.digest.split(':')[0]} verified)"
                + (" replacing the file with another digest" if src in other else ""))
    counts = {s: sum(v == s for v in done.values()) for s in ("fetched", "resumed", "present")}
    log(f"[data] {len(done)} files in {root}: {counts['fetched']} fetched, {counts['resumed']} resumed, "
        f"{counts['present']} already present; use it with: export PEFTKIT_DATA_DIR={root}")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="peftkit data", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download and verify the papers' data files")
    f.add_argument("--only", help=f"comma-separated groups ({', '.join(GROUPS)}) or tasks (e2e, sst-2, ...)")
    f.add_argument("--data-dir", help="where to lay them out (default $PEFTKIT_DATA_DIR, else ~/.cache/peftkit/data)")
    f.add_argument("--mirror", help="replaces https://raw.githubusercontent.com in every URL (e.g. file:///srv/m)")
    f.add_argument("--force", action="store_true", help="replace the files present with another digest (only those)")
    f.add_argument("--list", action="store_true", help="list the selected files and their URLs, fetch nothing")
    args = ap.parse_args(argv)
    try:
        if args.list:
            ignored = [flag for flag, v in (("--data-dir", args.data_dir), ("--force", args.force)) if v]
            if ignored:
                raise ValueError(f"invalid {ignored[0]} with --list: --list only lists the sources (with --only and "
                                 "--mirror); leave --list out to fetch")
            for s in select(sources(check_mirror(args.mirror)), args.only):
                print(f"{s.path}\t{s.url}\t{s.digest}")
            return 0
        fetch(args.only, args.data_dir, args.mirror, args.force)
    except ValueError as e:
        print(f"peftkit data: error: {e}", file=sys.stderr)
        return 2
    except FetchError as e:
        print(f"peftkit data: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if os.environ.get("PEFTKIT_DEBUG"):
            raise
        print("\npeftkit data: interrupted. Verified files are in place; a download cut short is kept as its "
              ".part file, and the same command resumes it.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
