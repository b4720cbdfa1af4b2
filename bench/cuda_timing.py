"""Section 3 of ``bench.cuda_check``: training-step time and peak memory of peftkit against peft (LoRA) and plain
PyTorch (full fine-tuning) on BERT-base and RoBERTa-large, measured by ``bench``'s own machinery
(:func:`bench.suite.run_group`: interleaved rotating rounds after warm-up, medians, paired ratios, peak memory).

Each group times three contenders together: peftkit, the peer, and a second, identical copy of the peftkit
contender (the A/A control), so the control's ratio is the noise floor of the very rounds the comparison ran in.
"""
from __future__ import annotations

from dataclasses import replace

from .backbones import make_batch
from .contenders import Spec, pk, resolve_precision
from .cuda_common import TIME_BUDGET, Context, free_memory, log, partial_note, result, verdict
from .suite import Group, Ratio, available_impls, run_group

BACKBONES = ("bert-base", "roberta-large")


def groups() -> list[Group]:
    """LoRA (peftkit / peft) and full fine-tuning (peftkit / plain PyTorch), each with its A/A control."""
    out = []
    for name, ours, peer, goal in (("lora", pk("lora"), Spec("peft", "lora"), 0.95),
                                   ("full", pk("full"), Spec("torch", "full"), 1.0)):
        twin = replace(ours, replica=1)
        out.append(Group(f"{name}+control", "train", (ours, peer, twin), (
            Ratio(f"{name} train step peftkit/{peer.impl}", ours, peer, goal, 1.0),
            Ratio(f"A/A control: identical peftkit {name} contenders", twin, ours))))
    return out


def _row(r: dict) -> dict:
    keep = ("backbone", "group", "name", "numerator", "denominator", "ratio", "paired_median", "paired_q1",
            "paired_q3", "mem_ratio", "time_goal", "time_met", "mem_goal", "mem_met", "error")
    return {k: r[k] for k in keep if k in r}


def timing(ctx: Context) -> dict:
    s = ctx.sizes
    precision = resolve_precision("auto", ctx.device)  # bf16 autocast on CUDA, fp32 on CPU (as bench)
    rounds, warmup = s.bench_rounds
    avail = available_impls()
    measurements, ratios, skipped, todo, done, late = [], [], {}, 0, 0, 0
    for name in BACKBONES:
        for group in groups():
            todo += 1
            missing = [m.impl for m in group.members if avail.get(m.impl)]
            if missing:
                skipped[f"{name} {group.name}"] = f"{missing[0]} cannot be imported: {avail[missing[0]]}"
                continue
            if ctx.budget.left() < (15 if ctx.device.type == "cuda" else 2):
                late += 1
                continue
            bb = ctx.backbone(name)
            batch = make_batch(bb, s.bench_batch, s.bench_seq_len, ctx.device)
            rows, rat = run_group(group, bb, batch, ctx.device, rounds, warmup, precision)
            measurements += [{k: v for k, v in m.items() if k not in ("samples", "cpu_samples")} for m in rows]
            ratios += [_row(r) for r in rat]
            done += 1
            free_memory(ctx.device)
    ctx.release()
    errors = [m for m in measurements if "error" in m]
    for m in errors:
        log(f"timing: {m['backbone']} {m['contender']}: {m['error']}")
    compared = [r for r in ratios if not r["name"].startswith("A/A") and "ratio" in r]
    controls = {r["backbone"] + r["group"]: r for r in ratios if r["name"].startswith("A/A") and "ratio" in r}
    parts = []
    for r in compared:
        c = controls.get(r["backbone"] + r["group"])
        band = f", A/A {c['ratio']:.3f}" if c else ""
        parts.append(f"{r['backbone']} {r['name'].split(' train')[0]} {r['ratio']:.3f}{band}, "
                     f"memory {r['mem_ratio']:.2f}")
    summary = ("time ratios (peftkit / peer, median step; A/A = noise): " + "; ".join(parts) if parts
               else "nothing measured") + partial_note(done + len(skipped), todo)
    if skipped:
        summary += "; skipped: " + ", ".join(skipped)
    details = {"precision": "bf16 autocast" if precision == "bf16" else "fp32", "batch": [s.bench_batch,
               s.bench_seq_len], "rounds": rounds, "warmup": warmup, "ratios": ratios,
               "measurements": measurements, "skipped": skipped,
               "method": "bench.suite.run_group: contenders interleaved in rotating order, medians and paired "
                         "per-round ratios; memory = bench.measure.peak_memory (static + transient)"}
    if not measurements:
        return result("skipped", summary, details, reason=TIME_BUDGET if late else "no group could run here")
    return result(verdict([not errors]), summary, details)
