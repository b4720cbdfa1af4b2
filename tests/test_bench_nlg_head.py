"""bench.nlg_head's structure (never its timings): three contenders, the ratio against the full projection and the
A/A control, bad counts refused."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import nlg_head  # noqa: E402


def test_nlg_head_bench_writes_its_ratios(tmp_path, capsys):
    out = tmp_path / "nlg_head.json"
    assert nlg_head.main(["--method", "lora", "--rounds", "2", "--warmup", "0", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["seconds"]) == {"full", "scored", "scored (A/A)"} and all(v > 0 for v in r["seconds"].values())
    assert r["batch"] == {"rows": 8, "tokens": 81, "scored_per_row": 24}
    assert r["scored_over_full"]["ratio"] > 0 and r["a_a"]["ratio"] > 0
    assert "scored / full" in capsys.readouterr().out


def test_nlg_head_bench_refuses_bad_counts(capsys):
    assert nlg_head.main(["--rounds", "1"]) == 2
    assert "--rounds must be >= 2" in capsys.readouterr().err
