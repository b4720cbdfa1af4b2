"""``python -m bench``: run the benchmark groups, print the table and ratios, write JSON and Markdown."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import backbones as bbs


def parse(argv: list[str] | None) -> argparse.Namespace:
    from .contenders import PRECISIONS
    from .suite import GROUP_NAMES

    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--backbone", default=None,
                    help=f"one of {', '.join(bbs.ALL)}, a comma list, or 'all' ({', '.join(bbs.NAMES)}); "
                         "default minilm (--quick: tiny)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed training rounds per group; inference groups get 2N (default: per backbone)")
    ap.add_argument("--only", default=None,
                    help="comma list of group names or globs; groups: " + ", ".join(GROUP_NAMES))
    ap.add_argument("--peer", choices=("peft", "adapters"), default=None,
                    help="only the groups with a contender from this peer library (e.g. adapters, from the peers "
                         "environment; the runtime environment skips them)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="bf16 autocast or fp32 (default auto: bf16 autocast on CUDA, fp32 on CPU)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny backbone (unless --backbone is given), batch 4 x 16 tokens, 2 rounds: for tests")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 16; --quick 4)")
    ap.add_argument("--seq-len", type=int, default=None, help="tokens per example (default 128; --quick 16)")
    ap.add_argument("--out", default="reports/benchmarks.json", help="JSON path; the Markdown goes beside it (.md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--profile", default=None, metavar="CONTENDER",
                    help="profile one contender key (e.g. peftkit:lora, adapters:pfeiffer) instead of benchmarking")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from . import report, suite
    from .contenders import resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench: error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    precision = resolve_precision(args.precision, device)
    spec = args.backbone or ("tiny" if args.quick else "minilm")
    names = list(bbs.NAMES) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    bad = [n for n in names if n not in bbs.ALL]
    if bad:
        print(f"bench: error: unknown backbone {bad[0]!r}: allowed {', '.join(bbs.ALL)}, all", file=sys.stderr)
        return 2
    batch = args.batch or (4 if args.quick else 16)
    seq_len = args.seq_len or (16 if args.quick else 128)
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    if args.profile:
        from .profile import profile_contender

        return profile_contender(args.profile, names[0], device, batch, seq_len, only, precision=precision)
    load0 = os.getloadavg()[0]
    command = ("python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    settings = {"backbones": names, "batch": batch, "seq_len": seq_len, "repeats": args.repeats, "only": only,
                "quick": args.quick, "device_option": args.device, "precision": precision,
                "threads_option": args.threads, "peer": args.peer, "loadavg_1min_start": load0}
    meta = report.meta(device, settings, command, precision)  # git state and date as the run starts
    try:
        result = suite.run(names, only, device, args.repeats, batch, seq_len, args.quick, precision, args.peer)
    except ValueError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    settings["loadavg_1min_end"] = os.getloadavg()[0]
    result = {"meta": meta, **result}
    report.print_result(result)
    if not args.no_write:
        js, md = report.write(result, Path(args.out))
        print(f"\nwrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
