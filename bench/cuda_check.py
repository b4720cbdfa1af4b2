"""``python -m bench.cuda_check --out DIR``: the CUDA path of peftkit checked in one command (at most 8 minutes on
one H100), written to ``DIR/cuda_check.json`` and ``DIR/cuda_check.md``.

Sections (each records pass / fail / skipped with its numbers; one failing does not stop the others):

1. ``methods``: every method (full, BitFit, Houlsby, Pfeiffer, LoRA, prefix, prompt, AdaMix over each base, UniPELT
   AP / APL) trains 20 steps on one repeated batch in fp32 and in bf16 autocast on random paper-size BERT-base,
   RoBERTa-large and GPT-2 medium with a finite, decreasing loss; merged == unmerged outputs within a stated
   tolerance per precision (:mod:`bench.cuda_models`);
2. ``routing``: AdaMix routes the same on the device as on the CPU for the same seed; its consistency loss and
   gradients agree (:mod:`bench.cuda_models`);
3. ``timing``: training-step time and peak memory against peft (LoRA) and plain PyTorch (full fine-tuning) on
   BERT-base and RoBERTa-large, each with an interleaved A/A control (:mod:`bench.cuda_timing`);
4. ``packing``: the Ray executor with ``gpus_per_run=0.25`` packs 4 short runs onto the GPU: throughput against
   the same runs one at a time, result files equal (:mod:`bench.cuda_pack`; skipped if ray cannot be imported);
5. ``ddp``: a 2-process DDP step (skipped with one GPU) (:mod:`bench.cuda_ddp`);
6. ``generation``: GPT-2 medium beam search gives the same beams with and without the KV cache
   (:mod:`bench.cuda_models`).

A time budget (``--budget``, default 420 s) guards the whole: a section whose turn comes too late is skipped
("skipped: time budget"), long sections stop starting new items at their cap, and a watchdog writes what was found
and exits if a section overruns by more than 30 s. The outputs are rewritten after every section.

``--dry`` rehearses the same code paths on the CPU on tiny configurations (2 layers, hidden 32; 10 steps, full
fine-tuning at lr 1e-3; one torch thread) in under a minute on 2 cores: the timing section with 2 rounds, the
packing section with 2 runs through the local executor (``--dry-ray``: Ray with CPU workers), DDP skipped
(``--dry-ddp``: two gloo CPU processes). ``tests/test_cuda_check.py`` runs it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

JSON_NAME, MD_NAME = "cuda_check.json", "cuda_check.md"
SCHEMA = 1
# name: (number, title, cap on a GPU in seconds, seconds it needs to start); run in the order of RUN_ORDER
SECTIONS = {
    "methods": (1, "every method trains (fp32, bf16) and merges", 170, 20),
    "routing": (2, "AdaMix routing and consistency: device as CPU", 40, 10),
    "timing": (3, "step time and memory vs peft / PyTorch, A/A control", 110, 40),
    "packing": (4, "Ray packs 4 runs on one GPU (gpus_per_run 0.25)", 150, 60),
    "ddp": (5, "2-process DDP step", 90, 30),
    "generation": (6, "GPT-2 beams with and without the KV cache", 60, 15),
}
# packing (all or nothing) before timing (which measures as many groups as its time allows)
RUN_ORDER = ("methods", "routing", "generation", "ddp", "packing", "timing")
GRACE_S = 30.0


def section_functions() -> dict:
    from . import cuda_ddp, cuda_models, cuda_pack, cuda_timing

    return {"methods": cuda_models.methods, "routing": cuda_models.routing, "timing": cuda_timing.timing,
            "packing": cuda_pack.packing, "ddp": cuda_ddp.ddp, "generation": cuda_models.generation}


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.cuda_check", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help=f"directory for {JSON_NAME} and {MD_NAME} (created)")
    ap.add_argument("--dry", action="store_true", help="tiny configurations on the CPU (about a minute)")
    ap.add_argument("--dry-ray", action="store_true", help="--dry: run the packing section through Ray (CPU)")
    ap.add_argument("--dry-ddp", action="store_true", help="--dry: run the DDP section as two gloo CPU processes")
    ap.add_argument("--only", default=None, help="comma list of sections: " + ", ".join(SECTIONS))
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole check (default 420; --dry 600)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (saved model, runs)")
    args = ap.parse_args(argv)
    # a usage error exits 2 here, before anything is built or written (0 is not "the default": it is refused)
    if args.budget is not None and not (math.isfinite(args.budget) and args.budget > 0):
        ap.error(f"--budget: allowed a positive number of seconds, not {args.budget:g}")
    for flag, given in (("--dry-ray", args.dry_ray), ("--dry-ddp", args.dry_ddp)):
        if given and not args.dry:
            ap.error(f"{flag}: allowed only with --dry (it changes how the CPU rehearsal runs a section)")
    only = [s.strip() for s in (args.only or "").split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"--only: unknown section {bad[0]!r}: allowed {', '.join(SECTIONS)}")
    args.only = only or list(SECTIONS)
    return args


def machine(device) -> dict:
    import torch

    out = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
           "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   bf16_supported=torch.cuda.is_bf16_supported(),
                   tf32={"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32})
    return out


class Check:
    """The run's state, written out after every section (and by the watchdog if a section overruns)."""

    def __init__(self, out: Path, meta: dict):
        self.out, self.lock = out, threading.Lock()
        self.res = {"meta": meta, "sections": {
            name: {"number": n, "title": title, "status": "skipped", "summary": "not reached",
                   "details": None, "reason": "not reached", "seconds": 0.0}
            for name, (n, title, _, _) in SECTIONS.items()}}

    def set(self, name: str, record: dict, seconds: float) -> None:
        with self.lock:
            self.res["sections"][name].update(record, seconds=round(seconds, 2))

    def write(self, wall_s: float, note: str | None = None) -> None:
        from .cuda_report import markdown

        with self.lock:
            statuses = [s["status"] for s in self.res["sections"].values()]
            self.res["totals"] = {k: statuses.count(k) for k in ("pass", "fail", "skipped")}
            self.res["meta"]["wall_s"] = round(wall_s, 1)
            if note:
                self.res["meta"]["note"] = note
            self.out.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.res, indent=1, default=str)
            (self.out / JSON_NAME).write_text(text + "\n", encoding="utf-8")
            (self.out / MD_NAME).write_text(markdown(json.loads(text)), encoding="utf-8")


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from . import report
    from .cuda_common import DRY, PAPER, TIME_BUDGET, Budget, Context, free_memory, log, result

    if not args.dry and not torch.cuda.is_available():
        print("cuda_check: error: no CUDA device here; --dry rehearses the check on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.dry else torch.device("cuda", 0)
    if args.dry:  # tiny models: more threads only contend (10x slower on 2 cores shared with another job)
        torch.set_num_threads(1)
    sizes = DRY if args.dry else PAPER
    budget = Budget(sizes.budget_s if args.budget is None else args.budget)
    command = "python -m bench.cuda_check " + " ".join(sys.argv[1:] if argv is None else argv)
    settings = {"dry": args.dry, "only": args.only, "budget_s": budget.total_s, "sizes": asdict(sizes)}
    meta = report.meta(device, settings, command, "bf16" if device.type == "cuda" else "fp32")
    meta.update(check="bench.cuda_check", schema=SCHEMA, mode="dry (CPU, tiny configs)" if args.dry else "gpu",
                cuda=machine(device))
    meta["precision"] = "per section (methods: fp32 and bf16 autocast; timing: bf16 autocast on CUDA)"
    check = Check(Path(args.out), meta)
    tmp = Path(tempfile.mkdtemp(prefix="peftkit-cuda-check-"))
    ctx = Context(device, sizes, budget, tmp, args.dry, {"dry_ray": args.dry_ray, "dry_ddp": args.dry_ddp})
    current = {"name": None}

    def abort():  # a section overran the budget by GRACE_S: write what is known and leave
        name = current["name"]
        if name:
            check.set(name, result("fail", f"aborted: still running {GRACE_S:.0f} s past the time budget",
                                   reason="time budget overrun"), budget.elapsed())
        check.write(budget.elapsed(), note=f"aborted during section {name!r}: time budget overrun")
        log(f"aborted during {name}: time budget overrun; wrote {check.out}")
        os._exit(3)

    watchdog = threading.Timer(budget.total_s + GRACE_S, abort)
    watchdog.daemon = True
    watchdog.start()
    fns = section_functions()
    log(f"{'dry run on CPU' if args.dry else torch.cuda.get_device_name(device)}; budget {budget.total_s:.0f} s")
    try:
        for name in RUN_ORDER:
            if name not in args.only:
                check.set(name, result("skipped", "not selected (--only)", reason="not selected (--only)"), 0.0)
                continue
            _, title, cap, need = SECTIONS[name]
            if args.dry:
                cap, need = budget.total_s, 1.0
            if budget.left_total() < need:
                check.set(name, result("skipped", TIME_BUDGET, reason=TIME_BUDGET), 0.0)
                log(f"{name}: {TIME_BUDGET}")
                continue
            budget.open_section(cap)
            current["name"] = name
            t0 = time.perf_counter()
            log(f"{name}: {title} (cap {cap:.0f} s, {budget.left_total():.0f} s left)")
            try:
                record = fns[name](ctx)
            except Exception as e:  # noqa: BLE001 - one failing section must not stop the others
                tb = traceback.format_exc()
                record = result("fail", f"{type(e).__name__}: {str(e)[:300]}", {"traceback": tb[-4000:]},
                                reason=f"{type(e).__name__}: {str(e)[:300]}")
                log(f"{name}: raised\n{tb}")
            finally:
                current["name"] = None
                free_memory(device)
            check.set(name, record, time.perf_counter() - t0)
            log(f"{name}: {record['status']} in {time.perf_counter() - t0:.1f} s: {record['summary']}")
            check.write(budget.elapsed())
    finally:
        watchdog.cancel()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    check.write(budget.elapsed())
    totals = check.res["totals"]
    log(f"done in {budget.elapsed():.0f} s: {totals}; wrote {check.out / JSON_NAME} and {check.out / MD_NAME}")
    return 1 if totals["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
