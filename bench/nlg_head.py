"""``python -m bench.nlg_head``: what projecting onto the vocabulary only at the scored positions saves an NLG step.

One training step (forward, backward, AdamW) of MiniLM as a causal decoder on a batch shaped like the cpu profile's
E2E batches (:data:`peftkit.cpucost.NLG_TOKENS`: 8 rows padded to 81 tokens, the last 24 of each row scored), bf16
autocast, in three contenders timed in interleaved, rotating rounds (:func:`peftkit.timing.time_group`):

- ``full``: the LM head over every position, then the loss over the scored ones (what the Trainer's label smoother,
  and peftkit before ``peftkit.lmloss``, computed);
- ``scored`` and ``scored (A/A)``: ``peftkit.lmloss`` / ``peftkit.consistency`` (the projection only where a label
  is scored), timed twice as two contenders, so their ratio is the noise floor of the run.

``--method adamix`` (default: AdaMix-LoRA, M = 8, the consistency batch of two passes) or ``lora``. Prints the
medians and the ratios and writes them as JSON with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from peftkit.timing import ratio, summary, time_group


def _batch(rows: int, length: int, scored: int, vocab: int) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (rows, length), generator=g)
    labels = ids.clone()
    labels[:, : length - scored] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _contenders(method: str, rows: int, length: int, scored: int):
    import peftkit
    from peftkit import backbones
    from peftkit.consistency import consistency_forward, double, find_peft_model, symmetric_kl, task_loss
    from peftkit.core import route_groups
    from peftkit.lmloss import causal_lm_loss

    model = backbones.load_model("minilm", "causal", dropout=0.0)
    options = {"base": "lora", "r": 4, "alpha": 32, "num_modules": 8} if method == "adamix" else {"r": 4, "alpha": 32}
    peftkit.apply(model, method, seed=0, **options)
    model.train()
    b = _batch(rows, length, scored, model.config.vocab_size)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = {k: v for k, v in b.items() if k != "labels"}

    def full():
        if method != "adamix":
            return task_loss(model(**inputs).logits, b["labels"], 0.1, causal=True)
        with route_groups(find_peft_model(model), 2):
            l1, l2 = model(**double(inputs)).logits.chunk(2)
        kl = symmetric_kl(l1[:, :-1], l2[:, :-1], b["labels"][:, 1:] != -100)
        return task_loss(l1, b["labels"], 0.1, causal=True) + kl

    def scored_only():
        if method != "adamix":
            return causal_lm_loss(model, b, 0.1)[0]
        return consistency_forward(model, b, 1.0, causal=True, smoothing=0.1)[0]

    def step(loss_fn):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run
    return {"full": step(full), "scored": step(scored_only), "scored (A/A)": step(scored_only)}


def main(argv: list[str] | None = None) -> int:
    from peftkit.cpucost import NLG_TOKENS

    padded, targets = NLG_TOKENS["e2e"]
    ap = argparse.ArgumentParser(prog="python -m bench.nlg_head", description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", choices=("adamix", "lora"), default="adamix")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    a = ap.parse_args(argv)
    if a.rounds < 2 or a.warmup < 0 or a.threads < 1:
        print("python -m bench.nlg_head: error: --rounds must be >= 2, --warmup >= 0, --threads >= 1",
              file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    shape = (8, round(padded), round(targets))
    steps = _contenders(a.method, *shape)
    wall, cpu = time_group(list(steps.values()), a.rounds, a.warmup, torch.device("cpu"))
    stats = {name: {**summary(w), "samples": w, "cpu_median": summary(c)["median"]}
             for name, w, c in zip(steps, wall, cpu)}
    result = {"method": a.method, "batch": {"rows": shape[0], "tokens": shape[1], "scored_per_row": shape[2]},
              "threads": a.threads, "rounds": a.rounds, "seconds": {k: v["median"] for k, v in stats.items()},
              "scored_over_full": ratio(stats["scored"], stats["full"]),
              "a_a": ratio(stats["scored (A/A)"], stats["scored"])}
    for name, s in stats.items():
        print(f"{name:14s} median {s['median']:.3f} s/step (IQR {s['q1']:.3f}-{s['q3']:.3f})")
    print(f"scored / full {result['scored_over_full']['ratio']:.2f}; A/A {result['a_a']['ratio']:.2f}")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
