"""Section 5 of ``bench.cuda_check``: a 2-process DistributedDataParallel step of AdaMix with its consistency loss
(NCCL, one GPU per process): unselected modules get no gradient in a step (``find_unused_parameters``) and every
rank draws the same routes, so after a few steps on different data the trainable weights are identical on both.

With fewer than two GPUs the section is skipped (two NCCL processes cannot share one GPU); ``--dry --dry-ddp``
runs the same worker as two CPU processes (gloo). The worker is this module run by torchrun::

    python -m torch.distributed.run --nproc_per_node 2 -m bench.cuda_ddp --out result.json [--tiny]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from .cuda_common import Context, result, skipped, train_steps

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


def worker(out: str, tiny: bool) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import peftkit
    from peftkit.consistency import consistency_forward

    from .backbones import build, make_batch

    cuda = torch.cuda.is_available() and not tiny
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world, local = dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    bb = build("bert-base", device, tiny=tiny, seed=0)  # the same initial weights on every rank
    model = peftkit.apply(bb.model, "adamix", base="lora", seed=0).train()
    ddp = DistributedDataParallel(model, device_ids=[local] if cuda else None, find_unused_parameters=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    batch = make_batch(bb, 8 if cuda else 4, 64 if cuda else 16, device, seed=10 + rank)  # different data per rank
    losses, seconds = train_steps(opt, STEPS, lambda: consistency_forward(ddp, batch, weight=1.0)[0],
                                  lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda))
    flat = torch.cat([p.detach().float().flatten() for p in params])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    routes = [None] * world
    dist.all_gather_object(routes, peftkit.routing(model))
    all_losses = [None] * world
    dist.all_gather_object(all_losses, losses)
    if rank == 0:
        diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
        report = {"world_size": world, "backend": dist.get_backend(), "steps": STEPS, "weights_equal": diff == 0.0,
                  "weights_max_abs_diff": diff, "routes_equal": all(r == routes[0] for r in routes),
                  "losses": all_losses, "finite": all(torch.isfinite(torch.tensor(x)).all() for x in all_losses),
                  "seconds": seconds, "trainable_params": int(flat.numel())}
        Path(out).write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp(ctx: Context) -> dict:
    cuda = ctx.device.type == "cuda"
    gpus = torch.cuda.device_count() if cuda else 0
    if cuda and gpus < 2:
        return skipped("skipped: one GPU (a 2-process DDP step needs two: NCCL cannot run two ranks on one GPU)")
    if not cuda and not ctx.options.get("dry_ddp"):
        return skipped("skipped: no GPU (--dry; --dry-ddp runs the worker as two CPU processes with gloo)")
    out = ctx.tmp / "ddp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "bench.cuda_ddp", "--out", str(out)] + ([] if cuda else ["--tiny"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    if cuda:
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES") or "0,1"
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=max(30.0, ctx.budget.left()))
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout)[-1500:]
        return result("fail", f"torchrun exited {proc.returncode}", {"stderr_tail": tail},
                      reason=tail.strip().splitlines()[-1] if tail.strip() else None)
    rep = json.loads(out.read_text())
    ok = rep["weights_equal"] and rep["routes_equal"] and rep["finite"]
    summary = (f"{rep['world_size']} ranks ({rep['backend']}), {rep['steps']} AdaMix consistency steps: weights "
               f"{'identical' if rep['weights_equal'] else 'DIFFER'} (max abs diff {rep['weights_max_abs_diff']:.1e}), "
               f"routes {'equal' if rep['routes_equal'] else 'DIFFER'}, {rep['seconds']:.2f} s")
    return result("pass" if ok else "fail", summary, rep)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.cuda_ddp", description="the DDP worker (run by torchrun)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tiny", action="store_true", help="tiny BERT on CPU processes (gloo)")
    args = ap.parse_args()
    worker(args.out, args.tiny)
