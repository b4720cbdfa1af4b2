"""``peftkit data fetch`` against a file:// mirror built from a few files of the shared data: digests verified, a
corrupted file rejected with nothing written, an interrupted fetch resumed, an unreachable source named (a server
that closes the connection mid-file, and bad data directories: tests/test_bad_inputs_cli.py)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from peftkit import datafetch
from peftkit.cli import main

DATA = os.environ.get("PEFTKIT_DATA_DIR")
pytestmark = pytest.mark.skipif(not DATA, reason="PEFTKIT_DATA_DIR is unset: the mirror is built from the shared data")


def _mirror(tmp_path: Path, picked) -> str:
    """A copy of upstream's URL layout under tmp_path/mirror holding the shared data's copies of ``picked``."""
    root = tmp_path / "mirror"
    for s in picked:
        dest = root / s.url[len(datafetch.UPSTREAM) + 1:]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(DATA) / s.path, dest)
    return root.as_uri()


def _source(path: str, mirror: str) -> datafetch.Source:
    return next(s for s in datafetch.sources(mirror) if s.path == path)


def test_fetch_lays_out_and_verifies_then_skips_what_is_present(tmp_path, capsys):
    picked = datafetch.select(datafetch.sources(), "rte")
    assert {s.group for s in picked} == {"fewshot", "glue"} and len(picked) == 17
    mirror = _mirror(tmp_path, picked)
    out = tmp_path / "data"
    assert main(["data", "fetch", "--only", "rte", "--data-dir", str(out), "--mirror", mirror]) == 0
    assert "17 fetched" in capsys.readouterr().out
    for s in picked:
        assert (out / s.path).read_bytes() == (Path(DATA) / s.path).read_bytes()
    assert not list(out.rglob("*.part"))
    assert main(["data", "fetch", "--only", "rte", "--data-dir", str(out), "--mirror", mirror]) == 0
    assert "0 fetched, 0 resumed, 17 already present" in capsys.readouterr().out


def test_a_corrupted_file_is_rejected_and_nothing_is_written(tmp_path):
    src = _source("glue/RTE/dev.tsv", "")
    mirror = _mirror(tmp_path, [src])
    served = tmp_path / "mirror" / src.url[len(datafetch.UPSTREAM) + 1:]
    blob = bytearray(served.read_bytes())
    blob[100] ^= 1  # one flipped bit
    served.write_bytes(bytes(blob))
    with pytest.raises(datafetch.FetchError, match="does not match sha256"):
        datafetch.fetch_one(_source(src.path, mirror), tmp_path / "data")
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]  # no target, no partial file


def test_an_interrupted_fetch_resumes_from_its_partial_file(tmp_path, monkeypatch):
    src = _source("nlg/e2e/lora/valid.txt", "")  # 1.2 MB: more than one chunk
    mirror = _mirror(tmp_path, [src])
    src = _source(src.path, mirror)
    real_open = datafetch.open_range
    served = {"reads": 0}

    class Dropped:
        """The connection fails after the first chunk of the whole fetch, on every resume too."""

        def __init__(self, body):
            self.body = body

        def read(self, n):
            served["reads"] += 1
            if served["reads"] > 1:
                raise ConnectionResetError("connection reset by peer")
            return self.body.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.body.close()

    def dropping(url, start):
        body, resumed, total = real_open(url, start)
        return Dropped(body), resumed, total
    monkeypatch.setattr(datafetch, "open_range", dropping)
    said = []
    with pytest.raises(datafetch.FetchError, match="interrupted after 1,048,576 of .* the partial file .* is kept"):
        datafetch.fetch_one(src, tmp_path / "data", log=said.append)
    assert len(said) == datafetch.RESUMES and all("resuming from there" in line for line in said)
    target = tmp_path / "data" / src.path
    part = target.with_name(f".{target.name}.part")
    assert not target.exists() and part.stat().st_size == datafetch.CHUNK  # no half-written target
    monkeypatch.setattr(datafetch, "open_range", real_open)
    assert datafetch.fetch_one(src, tmp_path / "data") == "resumed"
    assert target.read_bytes() == (Path(DATA) / src.path).read_bytes() and not part.exists()
    # a bad partial file (not a prefix of the real one) fails the digest and is fetched again from the start
    target.unlink()
    part.write_bytes(b"garbage" * 1000)
    assert datafetch.fetch_one(src, tmp_path / "data", log=said.append) == "fetched" and not part.exists()
    assert target.read_bytes() == (Path(DATA) / src.path).read_bytes()
    assert "the partial file did not continue into the right file" in said[-1]


def test_unreachable_source_fails_at_once_naming_the_url_and_bad_only_exits_2(tmp_path, capsys):
    assert main(["data", "fetch", "--only", "dart", "--data-dir", str(tmp_path), "--mirror", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "cannot fetch http://127.0.0.1:9/microsoft/LoRA/" in err and "dart-v1.1.1-full-train.json" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert main(["data", "fetch", "--only", "imagenet", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "invalid --only imagenet" in err and "fewshot, nlg, glue" in err


def test_every_file_we_hold_matches_its_manifest_digest():
    """The committed sources table agrees with the shared data: each held file passes its own digest."""
    held = [s for s in datafetch.sources() if (Path(DATA) / s.path).is_file()]
    assert len(held) == 233
    bad = [s.path for s in held if not datafetch.verify(Path(DATA) / s.path, s.digest)]
    assert bad == []
