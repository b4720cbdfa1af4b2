"""AdaMix under DistributedDataParallel: 2 CPU processes (gloo) stay in sync although unselected modules get no
gradient in a step (find_unused_parameters, and the same routing seed on every rank)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch


def test_two_rank_ddp_keeps_identical_weights(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(worker), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and any("pk_adapter.down.3" in k for k in ranks[0])
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    ups = [v for k, v in ranks[0].items() if "pk_adapter.up.0.weight" in k]
    assert any(u.abs().sum() > 0 for u in ups)  # it trained (the up-projection starts at zero)
