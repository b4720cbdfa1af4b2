"""Sections 1, 2 and 6 of ``bench.cuda_check``: every method trains and merges on the device, AdaMix routes and
computes its consistency loss there as on the CPU, and GPT-2 beam search gives the same beams with and without the
KV cache."""
from __future__ import annotations

import copy
import time

import torch

from .backbones import PAPER, make_batch
from .contenders import autocast
from .cuda_common import (TIME_BUDGET, Context, free_memory, log, max_abs, partial_note, result, skipped,
                          train_steps, verdict)

METHODS = (("full", {}), ("bitfit", {}), ("houlsby", {}), ("pfeiffer", {}), ("lora", {}), ("prefix", {}),
           ("prompt", {}), ("adamix", {"base": "adapter"}), ("adamix", {"base": "pfeiffer"}),
           ("adamix", {"base": "houlsby"}), ("adamix", {"base": "lora"}), ("adamix", {"base": "prefix"}),
           ("adamix", {"base": "prompt"}), ("unipelt", {"variant": "AP"}), ("unipelt", {"variant": "APL"}))
LR = 1e-3  # AdamW, no schedule, every method but full fine-tuning (Sizes.full_lr)
PRECISIONS = ("fp32", "bf16")
DECREASING = "mean of the last 5 losses < mean of the first 5 (one fixed batch, repeated)"
MERGE_TOL = {
    "fp32": "1e-4 x max(1, max abs logit)",
    "bf16": "bf16 autocast: 3 x the max abs difference between the unmerged model's bf16 and fp32 logits + 1e-3 x "
            "max(1, max abs logit)",
}


def label(method: str, options: dict) -> str:
    """adamix-lora, unipelt-AP, unipelt-gates=False ..."""
    return "-".join([method] + [f"{k}={v}" if isinstance(v, bool) else str(v) for k, v in options.items()])


def no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout off everywhere (SDPA attention keeps its own probability), so two devices compute the same thing."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
        if hasattr(mod, "dropout_prob"):
            mod.dropout_prob = 0.0
    return model


def _logits(model, inputs, device, precision) -> torch.Tensor:
    with torch.no_grad(), autocast(device, precision):
        return model(**inputs).logits.float()


def merge_check(model, inputs, device, precision: str) -> dict:
    """Merged against unmerged logits in eval mode (and unmerged again), within the precision's tolerance."""
    import peftkit

    model.eval()
    unmerged = _logits(model, inputs, device, precision)
    scale = max(1.0, float(unmerged.abs().max()))
    if precision == "fp32":
        tol = 1e-4 * scale
    else:
        tol = 3 * max_abs(unmerged, _logits(model, inputs, device, "fp32")) + 1e-3 * scale
    try:
        peftkit.merge(model)
    except ValueError as e:  # UniPELT APL: a gated LoRA is evaluated unmerged by design
        return {"ok": True, "applicable": False, "note": str(e).split(";")[0]}
    merged = _logits(model, inputs, device, precision)
    peftkit.unmerge(model)
    again = _logits(model, inputs, device, precision)
    diff, back = max_abs(merged, unmerged), max_abs(again, unmerged)
    return {"ok": diff <= tol and back <= tol, "applicable": True, "max_abs_diff": diff, "unmerge_max_abs_diff": back,
            "tol": tol}


def train_one(bb, method: str, options: dict, batch: dict, device, precision: str, steps: int,
              full_lr: float = 1e-5) -> dict:
    import peftkit

    torch.manual_seed(0)
    model = peftkit.apply(copy.deepcopy(bb.model), method, seed=0, **options).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=full_lr if method == "full" else LR)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, seconds = train_steps(opt, steps, lambda: model(**batch).loss, lambda: autocast(device, precision))
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    merge = merge_check(model, {k: v for k, v in batch.items() if k != "labels"}, device, precision)
    row = {"backbone": bb.name, "method": label(method, options), "precision": precision, "losses": losses,
           "first5": first, "last5": last, "max_loss": max(losses), "finite": finite,
           "decreasing": finite and last < first,
           "merge": merge, "train_s": seconds, "trainable_params": sum(p.numel() for p in params)}
    if device.type == "cuda":
        row["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    row["ok"] = row["decreasing"] and merge["ok"]
    return row  # the model and its optimiser go with this frame


def methods(ctx: Context) -> dict:
    """Section 1: every method x fp32 / bf16 autocast x BERT-base, RoBERTa-large, GPT-2 medium, ``steps`` steps."""
    s = ctx.sizes
    todo = [(name, p, m, o) for name in PAPER for p in PRECISIONS for m, o in METHODS]
    rows, per_item = [], 0.0
    for name, precision, method, options in todo:
        if ctx.budget.left() < max(2.0, 1.5 * per_item):
            break
        bb = ctx.backbone(name)
        batch = make_batch(bb, s.batch, s.seq_len, ctx.device)
        t0 = time.perf_counter()
        try:
            row = train_one(bb, method, options, batch, ctx.device, precision, s.steps, s.full_lr)
        except Exception as e:  # noqa: BLE001 - one method failing is a row, the others go on
            row = {"backbone": name, "method": label(method, options), "precision": precision, "ok": False,
                   "error": f"{type(e).__name__}: {str(e)[:300]}"}
        per_item = max(per_item, time.perf_counter() - t0)
        rows.append(row)
        if not row["ok"]:
            why = row.get("error") or ("loss not finite" if not row["finite"] else "loss not decreasing"
                                       if not row["decreasing"] else "merged != unmerged")
            log(f"methods: {name} {row['method']} {precision}: FAILED ({why})")
    ctx.release(keep=("bert-base", "roberta-large"))
    if not rows:
        return skipped(TIME_BUDGET)
    failed = [f"{r['backbone']} {r['method']} {r['precision']}" for r in rows if not r["ok"]]
    summary = (f"{len(rows) - len(failed)}/{len(rows)} method x precision x backbone runs passed"
               + partial_note(len(rows), len(todo)) + (f"; failed: {', '.join(failed[:6])}" if failed else ""))
    details = {"decreasing": DECREASING, "merge_tolerance": MERGE_TOL, "steps": s.steps,
               "batch": [s.batch, s.seq_len], "lr": {"full": s.full_lr, "others": LR}, "rows": rows}
    return result(verdict([r["ok"] for r in rows]), summary, details)


def _consistency_steps(model, batch, steps: int) -> list[dict]:
    import peftkit
    from peftkit.consistency import consistency_forward

    out = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        loss, task, kl, _ = consistency_forward(model, batch, weight=1.0)
        loss.backward()
        grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
        out.append({"routes": peftkit.routing(model), "task": float(task), "kl": float(kl), "grads": grads})
    return out


def routing(ctx: Context) -> dict:
    """Section 2: AdaMix (adapter and LoRA bases) copied to the device routes as on the CPU for the same seed, and
    the consistency loss (two routed passes in one doubled forward + symmetric KL) and its gradients agree (fp32,
    dropout off); routing also works under the device as default device (``with torch.device(...)``)."""
    import peftkit
    from peftkit.core import state_of

    s = ctx.sizes
    rows = []
    for base in ("adapter", "lora"):
        cpu_model = no_dropout(copy.deepcopy(ctx.backbone("bert-base").model).cpu())
        peftkit.apply(cpu_model, "adamix", base=base, seed=7)
        with torch.no_grad():  # move the up / B modules off their zero init so the mixtures matter
            g = torch.Generator().manual_seed(1)
            for p in cpu_model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=g) * 0.1)
        dev_model = copy.deepcopy(cpu_model).to(ctx.device)
        batch_cpu = make_batch(ctx.backbone("bert-base"), s.batch, s.seq_len, torch.device("cpu"))
        batch_dev = {k: v.to(ctx.device) for k, v in batch_cpu.items()}
        cpu_model.train()
        dev_model.train()
        a, b = _consistency_steps(cpu_model, batch_cpu, 3), _consistency_steps(dev_model, batch_dev, 3)
        routes_equal = all(x["routes"] == y["routes"] for x, y in zip(a, b))
        rel = lambda x, y: abs(x - y) / max(abs(x), 1e-6)  # noqa: E731
        task_rel = max(rel(x["task"], y["task"]) for x, y in zip(a, b))
        kl_rel = max(rel(x["kl"], y["kl"]) for x, y in zip(a, b))
        grad_rel = max(max_abs(x["grads"][n], y["grads"][n]) / max(float(x["grads"][n].abs().max()), 1e-12)
                       for x, y in zip(a, b) for n in x["grads"] if n in y["grads"])
        same_grads = all(x["grads"].keys() == y["grads"].keys() for x, y in zip(a, b))
        state = state_of(dev_model)
        gen_equal = torch.equal(state_of(cpu_model).generator.get_state(), state.generator.get_state())
        with torch.device(ctx.device):  # the device as default device: the CPU generator must still draw
            default_ok = len(state.draw(4, 2)) == 2 and state.generator.device.type == "cpu"
        ok = routes_equal and same_grads and gen_equal and default_ok and task_rel <= 1e-4 and grad_rel <= 1e-3 \
            and kl_rel <= 1e-3
        rows.append({"base": base, "ok": ok, "routes_equal": routes_equal, "generator_state_equal": gen_equal,
                     "same_modules_with_gradient": same_grads, "task_loss_max_rel_diff": task_rel,
                     "kl_max_rel_diff": kl_rel, "grad_max_rel_diff": grad_rel, "draws_under_default_device": default_ok,
                     "routes_first_step": {k: v for k, v in list(a[0]["routes"].items())[:2]},
                     "kl": [x["kl"] for x in b]})
        del cpu_model, dev_model
    free_memory(ctx.device)
    summary = "; ".join(f"{r['base']}: routes {'equal' if r['routes_equal'] else 'DIFFER'}, task loss rel diff "
                        f"{r['task_loss_max_rel_diff']:.1e}, grad rel diff {r['grad_max_rel_diff']:.1e}" for r in rows)
    tol = ("routes and generator state equal; relative differences: task loss <= 1e-4, KL <= 1e-3, gradients "
           "(max abs diff / max abs grad) <= 1e-3")
    return result(verdict([r["ok"] for r in rows]), summary, {"tolerance": tol, "steps": 3, "rows": rows})


GEN_METHODS = (("lora", {}), ("adamix", {"base": "lora"}), ("prefix", {}), ("adamix", {"base": "prefix"}),
               ("unipelt", {"gates": False}))


def generation(ctx: Context) -> dict:
    """Section 6: GPT-2 medium (causal LM) with each method in its inference form decodes two left-padded sources
    by beam search (the papers' settings) with and without the KV cache: the beams must be the same tokens."""
    import peftkit
    from peftkit.generate import cache_is_exact
    from peftkit.presets import generation_settings
    from peftkit.trainer import inference_form

    bb = ctx.backbone("gpt2-medium", head="causal")
    settings = {**generation_settings(ctx.sizes.gen_profile), "max_new_tokens": ctx.sizes.gen_max_new_tokens}
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, min(bb.vocab, 30000) - 1, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding on row 1, as peftkit.generate batches GPT-2
    ids = ids.masked_fill(mask == 0, bb.pad_id).to(ctx.device)
    mask = mask.to(ctx.device)
    rows = []
    for method, options in GEN_METHODS:
        if ctx.budget.left() < 5:
            break
        torch.manual_seed(0)
        model = peftkit.apply(copy.deepcopy(bb.model), method, seed=0, **options)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=g).to(p.device) * 0.02)
        model.eval()
        kw = dict(attention_mask=mask, do_sample=False, pad_token_id=bb.pad_id, eos_token_id=bb.pad_id,
                  output_scores=True, return_dict_in_generate=True, **settings)
        t0 = time.perf_counter()
        with inference_form(model), torch.no_grad():
            cached = model.generate(ids, use_cache=True, **kw)
            uncached = model.generate(ids, use_cache=False, **kw)
        same = cached.sequences.shape == uncached.sequences.shape and torch.equal(cached.sequences,
                                                                                   uncached.sequences)
        score_diff = (max_abs(cached.sequences_scores, uncached.sequences_scores)
                      if cached.sequences_scores is not None else None)
        rows.append({"method": label(method, options), "ok": same and cache_is_exact(model), "same_beams": same,
                     "cache_is_exact": cache_is_exact(model), "sequence_score_max_abs_diff": score_diff,
                     "new_tokens": int(cached.sequences.shape[1] - ids.shape[1]), "seconds": time.perf_counter() - t0})
        del model
    ctx.release(keep=("bert-base", "roberta-large"))
    if not rows:
        return skipped(TIME_BUDGET)
    summary = (f"{sum(r['same_beams'] for r in rows)}/{len(rows)} methods give the same beams with and without the "
               f"cache ({settings['num_beams']} beams, {settings['max_new_tokens']} new tokens)"
               + partial_note(len(rows), len(GEN_METHODS)))
    return result(verdict([r["ok"] for r in rows]), summary, {"settings": settings, "rows": rows,
                                                              "gated_unipelt": "not checked: the cache is off for it "
                                                              "by design (docs/fidelity.md L1)"})
