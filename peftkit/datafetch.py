"""``peftkit data fetch``: download the files the papers used into the layout ``PEFTKIT_DATA_DIR`` expects, each
verified against a digest before it appears.

    peftkit data fetch [--only GROUP|TASK[,...]] [--data-dir DIR] [--mirror URL] [--force] [--list]

The sources are ``peftkit/data_sources.tsv`` (group, path under the data directory, URL pinned to a commit, bytes,
digest): the LM-BFF k-shot splits (K=16, seeds 13/21/42/87/100; ``fewshot``), the E2E / WebNLG / DART files of the
LoRA repository and the official E2E CSVs (``nlg``), and the GLUE files in the ``glue_data`` layout that have a
published copy with a known digest (``glue``; GLUE as a whole also loads from the hub, ``nyu-mll/glue``, with no
data directory). The digests are the sha256 of the shared data's MANIFEST.tsv where we hold the file, LM-BFF's own
md5 list for the k-shot test files we do not hold, and the LoRA repository's git blob ids for DART train and test.

Each file downloads to ``.<name>.part`` beside its target, resumes from there when a previous fetch was interrupted,
is verified, and only then renamed over the target: a corrupted or truncated download is deleted and reported,
never left in place. Files already present with the right digest are not downloaded again. With the network
unreachable the fetch stops at the first file, naming its URL. ``--mirror URL`` (or ``$PEFTKIT_DATA_MIRROR``)
replaces ``https://raw.githubusercontent.com`` in every URL (a local copy: ``file:///srv/mirror``).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
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


def _open(url: str, start: int):
    """(response, resumed): the body from byte ``start`` (HTTP Range; file:// seeks)."""
    if url.startswith("file://"):
        f = open(urllib.request.url2pathname(url[len("file://"):]), "rb")
        f.seek(start)
        return f, start > 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    return resp, start > 0 and getattr(resp, "status", 200) == 206


def fetch_one(src: Source, data_dir: Path, force: bool = False) -> str:
    """Fetch one file; returns "present" | "fetched" | "resumed". Raises FetchError (the target untouched)."""
    target = data_dir / src.path
    hasher = _Hasher(src.digest)
    if target.is_file() and not force:
        if hasher.check(target):
            return "present"
        raise FetchError(f"{target} exists but does not match {src.digest} (from {src.url}); move it away or "
                         "pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    for attempt in (0, 1):
        start = part.stat().st_size if part.is_file() else 0
        try:
            body, resumed = _open(src.url, start)
        except (urllib.error.URLError, OSError) as e:
            raise FetchError(f"cannot fetch {src.url} (for {src.path}): {getattr(e, 'reason', e)}") from None
        with body, open(part, "ab" if resumed else "wb") as out:
            try:
                for block in iter(lambda: body.read(CHUNK), b""):
                    out.write(block)
            except OSError as e:  # the partial file stays: the next fetch resumes from it
                raise FetchError(f"fetch of {src.url} interrupted ({e}); run the same command again to resume") \
                    from None
        if hasher.check(part) and (src.size is None or part.stat().st_size == src.size):
            os.replace(part, target)
            return "resumed" if resumed else "fetched"
        part.unlink()
        if not resumed:  # a fresh download that fails its digest: corrupt at the source or on the way
            raise FetchError(f"{src.url} does not match {src.digest}: deleted, {target} not written")
        # a resumed download that fails: the partial file was bad; start over once
    raise FetchError(f"{src.url} does not match {src.digest}: deleted, {target} not written")  # pragma: no cover


def default_data_dir() -> Path:
    env = os.environ.get("PEFTKIT_DATA_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "peftkit" / "data"


def fetch(only: str | None = None, data_dir: str | os.PathLike | None = None, mirror: str | None = None,
          force: bool = False, log=print) -> dict[str, str]:
    """Fetch the selected files into ``data_dir`` (default ``$PEFTKIT_DATA_DIR``, else ~/.cache/peftkit/data);
    returns {path: status}. Stops at the first file that cannot be fetched (FetchError)."""
    mirror = mirror or os.environ.get("PEFTKIT_DATA_MIRROR") or None
    chosen = select(sources(mirror), only)
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    done = {}
    for i, src in enumerate(chosen, 1):
        done[src.path] = fetch_one(src, root, force=force)
        if done[src.path] != "present":
            log(f"[data] {i}/{len(chosen)} {src.path}: {done[src.path]} ({src.digest.split(':')[0]} verified)")
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
    f.add_argument("--force", action="store_true", help="replace files present with another digest")
    f.add_argument("--list", action="store_true", help="list the selected files and their URLs, fetch nothing")
    args = ap.parse_args(argv)
    try:
        if args.list:
            for s in select(sources(args.mirror), args.only):
                print(f"{s.path}\t{s.url}\t{s.digest}")
            return 0
        fetch(args.only, args.data_dir, args.mirror, args.force)
    except ValueError as e:
        print(f"peftkit data: error: {e}", file=sys.stderr)
        return 2
    except FetchError as e:
        print(f"peftkit data: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
