"""``python -m bench.prefix_ab``: prefix-tuning inference with its attention mask built once per forward (peftkit's
code) against the same model rebuilding it in every layer (the earlier code, recreated here by clearing the
per-forward cache before each layer), timed interleaved in one run beside an A/A pair of base models. A one-off
measurement behind a code change; prints a table and writes JSON (``--out``)."""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from peftkit.timing import ratio, summary, time_group

from . import backbones as bbs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.prefix_ab", description=__doc__)
    ap.add_argument("--backbone", default="minilm", choices=bbs.ALL)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import peftkit
    from peftkit.methods import prefix as prefix_module

    device = torch.device("cpu")
    bb = bbs.load(args.backbone, device)
    batch = bbs.make_batch(bb, 16, 128, device)
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    prefix = peftkit.apply(copy.deepcopy(bb.model), "prefix", seed=0)
    peftkit.merge(prefix)
    models = {"base": bb.model.eval(), "base#2": copy.deepcopy(bb.model).eval(), "prefix": prefix.eval(),
              "prefix, mask per layer": copy.deepcopy(prefix).eval()}
    per_layer = models["prefix, mask per layer"]._peftkit
    real = prefix_module.prefix_mask

    def rebuilding(state, *a, **kw):  # the earlier code: no mask kept between the layers of a forward
        if state is per_layer:
            state.prefix_mask = None
        return real(state, *a, **kw)

    prefix_module.prefix_mask = rebuilding
    ref = None
    with torch.no_grad():
        for name, m in models.items():  # the variants compute the same function
            out = m(**inputs).logits
            if name.startswith("prefix"):
                ref = out if ref is None else ref
                torch.testing.assert_close(out, ref, atol=0, rtol=0)

    def step(m):
        def run():
            with torch.no_grad():
                m(**inputs)
        return run

    names = list(models)
    wall, cpu = time_group([step(models[n]) for n in names], args.rounds, 3, device)
    rows = {n: {"samples": wall[i], **summary(wall[i]), "cpu_median": summary(cpu[i])["median"]}
            for i, n in enumerate(names)}
    pairs = [("base#2", "base"), ("prefix", "base"), ("prefix, mask per layer", "base"),
             ("prefix", "prefix, mask per layer")]
    out = []
    for a, b in pairs:
        r = ratio(rows[a], rows[b])
        out.append({"numerator": a, "denominator": b, **r})
        print(f"{a:>28} / {b:<24} {r['ratio']:.3f}  paired IQR {r['paired_q1']:.3f}-{r['paired_q3']:.3f}")
    for n, r in rows.items():
        print(f"{n:>28}: median {r['median'] * 1e3:.1f} ms")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"argv": sys.argv[1:], "backbone": args.backbone, "rounds": args.rounds,
                                              "threads": torch.get_num_threads(), "torch": torch.__version__,
                                              "rows": rows, "ratios": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
