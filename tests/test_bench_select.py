"""The bench runs every group it can in the environment it is in: a group whose peer library cannot be imported
(AdapterHub ``adapters`` under transformers 5) is skipped and listed, and ``--peer`` selects one peer's groups."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import suite  # noqa: E402
from bench.__main__ import main  # noqa: E402

CPU = torch.device("cpu")


def test_peer_selects_the_groups_with_that_peers_contenders():
    assert suite.select("minilm", None, CPU, peer="adapters") == ["pfeiffer", "houlsby", "prefix", "unipelt"]
    assert suite.select("bert-base", None, CPU, peer="adapters") == ["pfeiffer"]
    assert suite.select("gpt2-medium", None, CPU, peer="adapters") == []
    assert suite.select("minilm", ["lora", "pfeiffer"], CPU, peer="peft") == ["lora"]


def test_groups_whose_peer_cannot_be_imported_are_skipped_and_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "available_impls", lambda: {"peftkit": "", "torch": "", "peft": "",
                                                            "adapters": "ModuleNotFoundError: adapters"})
    out = tmp_path / "b.json"
    assert main(["--quick", "--repeats", "1", "--threads", "1", "--only", "lora,pfeiffer", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    tiny = res["backbones"]["tiny"]
    assert tiny["groups"] == ["lora"] and tiny["skipped"] == {"pfeiffer": "ModuleNotFoundError: adapters"}
    assert {m["group"] for m in res["measurements"]} == {"lora"}
    md = out.with_suffix(".md").read_text()
    assert "skipped, their peer library cannot be imported in this environment: pfeiffer" in md
