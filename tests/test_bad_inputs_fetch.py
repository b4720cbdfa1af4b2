"""Bad input, round 2, for ``peftkit data fetch`` (see tests/test_bad_inputs_cli.py): a download cut short is
resumed, not thrown away; a bad data directory, target or mirror, and a flag that cannot apply, exit 2 with one line
before anything downloads, leaving the data directory as it was. Synthetic sources served from a local mirror
(file://, or a local http.server that closes connections mid-file): no network, no shared data needed.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import listing, one_line_error
from peftkit import datafetch
from peftkit.cli import main


@pytest.fixture
def two_sources(tmp_path, monkeypatch):
    """A sources table of two files (a small one and one of several chunks) in data_sources.tsv's format, with the
    mirror's copy of each: {path under the data directory: bytes}."""
    monkeypatch.setattr(datafetch, "CHUNK", 1 << 14)
    files = {"nlg/e2e/small.txt": b"name[The Eagle] | a pub\n" * 40,
             "nlg/dart/big.bin": bytes(range(256)) * 400}  # 102,400 bytes: 7 chunks
    table = tmp_path / "sources.tsv"
    rows = ["group\tpath\turl\tbytes\tdigest"]
    for path, blob in files.items():
        rows.append(f"nlg\t{path}\t{datafetch.UPSTREAM}/lora/{path}\t{len(blob)}\t"
                    f"sha256:{hashlib.sha256(blob).hexdigest()}")
        (tmp_path / "mirror" / "lora" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mirror" / "lora" / path).write_bytes(blob)
    table.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(datafetch, "SOURCES", table)
    return files


class CuttingServer(http.server.ThreadingHTTPServer):
    """Serves the mirror over HTTP with Range support, closing the connection halfway through a response: the
    first response of each file (``cut="first"``) or every one (``cut="always"``)."""

    daemon_threads = True

    def __init__(self, root: Path, cut: str):
        self.root, self.cut, self.seen = root, cut, set()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805 - the server's request handler
                blob = (root / handler.path.lstrip("/")).read_bytes()
                start = int(handler.headers.get("Range", "bytes=0-")[6:].split("-")[0])
                handler.send_response(206 if start else 200)
                handler.send_header("Content-Length", str(len(blob) - start))
                if start:
                    handler.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
                handler.end_headers()
                cut = self.cut == "always" or (self.cut == "first" and handler.path not in self.seen)
                self.seen.add(handler.path)
                body = blob[start:]
                handler.wfile.write(body[:len(body) // 2] if cut else body)
                handler.close_connection = True

            def log_message(handler, *a):  # noqa: N805
                pass
        super().__init__(("127.0.0.1", 0), Handler)

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


def test_a_download_cut_short_is_resumed_not_thrown_away(tmp_path, two_sources, capsys):
    """Item 4: the server closes the connection halfway through each file's first response: the fetch says so,
    resumes the partial file with a Range request and verifies it."""
    data = tmp_path / "data"
    with CuttingServer(tmp_path / "mirror", "first") as url:
        assert main(["data", "fetch", "--data-dir", str(data), "--mirror", url]) == 0
    out = capsys.readouterr().out
    assert "nlg/dart/big.bin: the connection closed early after 51,200 of 102,400 bytes; resuming" in out, out
    assert "2 resumed" in out and "does not match" not in out
    assert {p: (data / p).read_bytes() for p in two_sources} == two_sources
    assert not list(data.rglob("*.part"))


def test_a_download_cut_short_every_time_keeps_its_part_for_the_next_run(tmp_path, two_sources, capsys):
    data = tmp_path / "data"
    with CuttingServer(tmp_path / "mirror", "always") as url:
        assert main(["data", "fetch", "--only", "dart", "--data-dir", str(data), "--mirror", url]) == 1
    err = capsys.readouterr().err
    part = data / "nlg/dart/.big.bin.part"
    assert "interrupted after" in err and f"the partial file {part} is kept" in err and "does not match" not in err
    assert 90_000 < part.stat().st_size < 102_400 and not (data / "nlg/dart/big.bin").exists()
    with CuttingServer(tmp_path / "mirror", "never") as url:
        assert main(["data", "fetch", "--only", "dart", "--data-dir", str(data), "--mirror", url]) == 0
    assert "1 resumed" in capsys.readouterr().out
    assert (data / "nlg/dart/big.bin").read_bytes() == two_sources["nlg/dart/big.bin"] and not part.exists()


DATA_CASES = [
    # (id, arguments, substrings of the error); {data} is an empty data directory, {mirror} a good file:// mirror
    ("data-dir-a-file", ["--data-dir", "{file}"], ["--data-dir", "it is an existing file"]),
    ("data-dir-under-a-file", ["--data-dir", "{file}/data"], ["--data-dir", "is a file"]),
    ("data-dir-read-only", ["--data-dir", "{readonly}"], ["--data-dir", "not writable"]),
    ("target-is-a-directory", ["--data-dir", "{data}", "@mkdir nlg/e2e/small.txt"],
     ["--data-dir", "nlg/e2e/small.txt is a directory"]),
    ("folder-on-the-way-is-a-file", ["--data-dir", "{data}", "@touch nlg"], ["--data-dir", "is a file where a folder"]),
    ("mirror-plain-path", ["--data-dir", "{data}", "--mirror", "{tmp}/mirror"], ["--mirror", "file://"]),
    ("mirror-other-scheme", ["--data-dir", "{data}", "--mirror", "ftp://example.org"], ["--mirror", "http://"]),
    ("list-with-force", ["--list", "--force"], ["--force with --list"]),
    ("list-with-data-dir", ["--list", "--data-dir", "{data}"], ["--data-dir with --list"]),
    ("force-with-nothing-to-replace", ["--data-dir", "{data}", "--force", "@fetched"],
     ["--force", "nothing to replace", "2 verify"]),
]


@pytest.mark.parametrize("case,args,words", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_fetch_refuses_bad_places_and_flags_before_downloading(case, args, words, tmp_path, two_sources,
                                                                   capsys, readonly_dir):
    if case == "data-dir-read-only" and os.geteuid() == 0:
        pytest.skip("root can write to a read-only directory")
    data, mirror = tmp_path / "data", (tmp_path / "mirror").as_uri()
    data.mkdir()
    (tmp_path / "a_file").write_text("not a directory\n")
    for step in [a for a in args if a.startswith("@")]:
        what, _, rel = step[1:].partition(" ")
        if what == "mkdir":
            (data / rel).mkdir(parents=True)
        elif what == "touch":
            (data / rel).write_text("")
        else:
            assert main(["data", "fetch", "--data-dir", str(data), "--mirror", mirror]) == 0
    args = [a.format(file=tmp_path / "a_file", data=data, tmp=tmp_path, readonly=readonly_dir) for a in args
            if not a.startswith("@")]
    if "--mirror" not in args:
        args += ["--mirror", mirror]
    capsys.readouterr()
    before = listing(tmp_path)
    assert main(["data", "fetch", *args]) == 2
    err = one_line_error(capsys, "peftkit data")
    for w in words:
        assert w in err, err
    assert listing(tmp_path) == before  # nothing downloaded, replaced or created


def test_an_offline_fetch_leaves_no_folders_behind(tmp_path, two_sources, capsys):
    data = tmp_path / "data"
    t0 = time.time()
    assert main(["data", "fetch", "--data-dir", str(data), "--mirror", "http://127.0.0.1:9"]) == 1
    assert time.time() - t0 < 10 and "cannot fetch http://127.0.0.1:9/lora/nlg/" in capsys.readouterr().err
    assert listing(tmp_path / "data") == {}


def test_force_replaces_only_the_files_with_another_digest(tmp_path, two_sources, capsys):
    data, mirror = tmp_path / "data", (tmp_path / "mirror").as_uri()
    assert main(["data", "fetch", "--data-dir", str(data), "--mirror", mirror]) == 0
    (data / "nlg/e2e/small.txt").write_text("edited\n")
    kept = (data / "nlg/dart/big.bin").stat().st_mtime_ns
    assert main(["data", "fetch", "--data-dir", str(data), "--mirror", mirror]) == 1  # refused up front
    assert "small.txt exists but does not match" in capsys.readouterr().err
    assert main(["data", "fetch", "--data-dir", str(data), "--mirror", mirror, "--force"]) == 0
    assert "1 fetched, 0 resumed, 1 already present" in capsys.readouterr().out
    assert (data / "nlg/e2e/small.txt").read_bytes() == two_sources["nlg/e2e/small.txt"]
    assert (data / "nlg/dart/big.bin").stat().st_mtime_ns == kept  # the file that verified was not downloaded


def test_ctrl_c_during_a_fetch_speaks_of_the_download_not_of_runs(tmp_path, two_sources, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(datafetch, "fetch_one", interrupted)
    assert main(["data", "fetch", "--data-dir", str(tmp_path / "data"), "--mirror",
                 (tmp_path / "mirror").as_uri()]) == 130
    err = capsys.readouterr().err.strip()
    assert "interrupted" in err and ".part" in err and "resumes" in err and len(err.splitlines()) == 1
    assert "runs" not in err and "checkpoint" not in err
