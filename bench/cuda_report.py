"""The Markdown summary of ``bench.cuda_check`` (a function of its JSON only): the machine, one line per section
(status, what it shows, seconds), then each section's table.

    python -m bench.cuda_report DIR/cuda_check.json      # re-render DIR/cuda_check.md from the JSON
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ICON = {"pass": "pass", "fail": "**FAIL**", "skipped": "skipped"}


def _f(x, fmt: str = ".3g") -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "**no**"
    if isinstance(x, float):
        return format(x, fmt)
    return str(x)


def _table(head: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows] + [""]


def _merge_cell(m: dict) -> str:
    if not m:
        return "–"
    if not m.get("applicable"):
        return "n/a (gated LoRA)"
    return f"{_f(m.get('max_abs_diff'), '.1e')} ≤ {_f(m.get('tol'), '.1e')}"


def _methods(d: dict) -> list[str]:
    cells: dict = {}
    for r in d["rows"]:
        loss = f"{r['first5']:.4f} → {r['last5']:.4f}" if "first5" in r else "error: " + r.get("error", "?")
        if "max_loss" in r and r["max_loss"] > 1.5 * r["losses"][0]:  # a spike along the way: shown, not judged
            loss += f" (max {r['max_loss']:.3g})"
        if "first5" in r and not r.get("decreasing"):
            loss = f"**{loss}** (not decreasing)" if r.get("finite") else f"**{loss}** (not finite)"
        merge = _merge_cell(r.get("merge") or {})
        if (r.get("merge") or {}).get("applicable") and not r["merge"].get("ok"):
            merge = f"**{merge}** (unmerge {_f(r['merge'].get('unmerge_max_abs_diff'), '.1e')})"
        row = cells.setdefault((r["backbone"], r["method"]), {"ok": True})
        row[r["precision"]] = (loss, merge, _f(r.get("peak_mb"), ".0f"))
        row["ok"] = row["ok"] and r["ok"]
    rows = []
    for (backbone, method), c in cells.items():
        fp, bf = c.get("fp32", ("–",) * 3), c.get("bf16", ("–",) * 3)
        rows.append([backbone, method, fp[0], fp[1], bf[0], bf[1], f"{fp[2]} / {bf[2]}", c["ok"]])
    intro = (f"{d['steps']} AdamW steps on one batch of {d['batch'][0]} x {d['batch'][1]} tokens "
             f"(lr {d['lr']['full']:g} full fine-tuning, {d['lr']['others']:g} the rest). Loss: mean of the first 5 "
             f"→ mean of the last 5 steps; decreasing means {d['decreasing']}. Merged vs unmerged: max abs "
             f"difference of the eval-mode logits ≤ tolerance, fp32: {d['merge_tolerance']['fp32']}; "
             f"{d['merge_tolerance']['bf16']}.")
    return ([intro, ""]
            + _table(["backbone", "method", "fp32 loss", "fp32 merged vs unmerged", "bf16 loss",
                      "bf16 merged vs unmerged", "peak MiB fp32 / bf16", "ok"], rows))


def _routing(d: dict) -> list[str]:
    rows = [[r["base"], r["routes_equal"], r["generator_state_equal"], _f(r["task_loss_max_rel_diff"], ".1e"),
             _f(r["kl_max_rel_diff"], ".1e"), _f(r["grad_max_rel_diff"], ".1e"), r["draws_under_default_device"],
             r["ok"]] for r in d["rows"]]
    return [f"Tolerance: {d['tolerance']}.", ""] + _table(
        ["AdaMix base", "routes equal", "generator state equal", "task loss rel diff", "KL rel diff",
         "grad rel diff", "draws under device default", "ok"], rows)


def _timing(d: dict) -> list[str]:
    rows = [[r["backbone"], r["name"], _f(r.get("ratio"), ".3f"),
             f"{_f(r.get('paired_q1'), '.3f')} – {_f(r.get('paired_q3'), '.3f')}", _f(r.get("mem_ratio"), ".3f"),
             _f(r.get("time_goal")), r.get("time_met")] for r in d["ratios"]]
    meas = [[m["backbone"], m["contender"], _f(m.get("median", 0) * 1e3, ".2f"), _f(m.get("iqr", 0) * 1e3, ".2f"),
             _f(m.get("peak_bytes", 0) / 2**20, ".0f"), m.get("trainable_params")] for m in d["measurements"]]
    out = [f"{d['precision']}, batch {d['batch'][0]} x {d['batch'][1]}, {d['rounds']} timed rounds after "
           f"{d['warmup']} warm-up; {d['method']}. A ratio is numerator / denominator of median step time; the A/A "
           "row of a group is the noise floor of the rounds beside it.", ""]
    out += _table(["backbone", "comparison", "ratio", "paired IQR", "memory ratio", "time goal", "met"], rows)
    out += _table(["backbone", "contender", "median ms", "IQR ms", "peak MiB", "trainable"], meas)
    return out + [f"Skipped: {k}: {v}" for k, v in d.get("skipped", {}).items()]


def _packing(d: dict) -> list[str]:
    if "rows" not in d:
        return [f"`{json.dumps(d)}`", ""]
    out = [f"Executor: {d['executor']}; {d['runs']} runs of {d['steps']} steps on a random BERT "
           f"(hidden, layers, heads, FFN = {d['backbone_dims']}). One at a time {d['sequential_wall_s']:.1f} s, "
           f"packed {d['packed_wall_s']:.1f} s (Ray start {d['ray_start_s']:.1f} s, not counted): "
           f"{d['sequential_runs_per_min']:.1f} → {d['packed_runs_per_min']:.1f} runs/min, "
           f"**{d['packed_over_sequential']:.2f}x**. Result files compared without times, rates, memory and paths; "
           f"floats to a relative {d['float_rtol']:g}.", ""]
    rows = [[r["run"], r["sequential"], r["packed"], _f(r.get("sequential_train_s"), ".1f"),
             _f(r.get("packed_train_s"), ".1f"), _f(r.get("packed_peak_memory_mb"), ".0f"), r.get("equal"),
             r.get("bitwise"), _f(r.get("weights_max_abs_diff"), ".1e"),
             "; ".join(f"{k}: {a} vs {b}" for k, a, b in r.get("differences", [])[:3]) or r.get("error") or ""]
            for r in d["rows"]]
    return out + _table(["run", "one at a time", "packed", "train s (1 at a time)", "train s (packed)",
                         "peak MiB (packed)", "results equal", "bitwise", "weights max abs Δ", "differences"], rows)


def _generation(d: dict) -> list[str]:
    rows = [[r["method"], r["same_beams"], _f(r["sequence_score_max_abs_diff"], ".1e"), r["cache_is_exact"],
             r["new_tokens"], r["ok"]] for r in d["rows"]]
    return [f"Settings: {json.dumps(d['settings'])}; UniPELT with gates: {d['gated_unipelt']}.", ""] + _table(
        ["method", "same beams", "beam score max abs Δ", "cache_is_exact", "new tokens", "ok"], rows)


def _ddp(d: dict) -> list[str]:
    if "stderr_tail" in d:
        return ["```", d["stderr_tail"], "```", ""]
    return _table(["ranks", "backend", "steps", "weights equal", "max abs Δ", "routes equal", "finite"],
                  [[d["world_size"], d["backend"], d["steps"], d["weights_equal"],
                    _f(d["weights_max_abs_diff"], ".1e"), d["routes_equal"], d["finite"]]])


DETAILS = {"methods": _methods, "routing": _routing, "timing": _timing, "packing": _packing, "ddp": _ddp,
           "generation": _generation}


def markdown(res: dict) -> str:
    meta, secs = res["meta"], res["sections"]
    cuda = meta.get("cuda", {})
    where = cuda.get("gpu") or f"CPU ({meta['machine']['cpu']})"
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    lines = [f"# CUDA check: {where}", "",
             f"`{meta['command']}` — mode {meta['mode']}, {meta['date']}, git {(meta['git'] or {}).get('commit')}"
             f"{' (dirty)' if (meta['git'] or {}).get('dirty') else ''}, {meta.get('wall_s', 0):.0f} s of a "
             f"{meta['settings']['budget_s']:.0f} s budget.", "",
             f"Versions: {versions}; CUDA {cuda.get('torch_cuda')}, {cuda.get('gpu_count', 0)} GPU(s)"
             + (f", {cuda['gpu_memory_gib']} GiB, TF32 {cuda['tf32']}" if "gpu_memory_gib" in cuda else "") + ".", ""]
    if meta.get("note"):
        lines += [f"**{meta['note']}**", ""]
    totals = res.get("totals", {})
    lines += [f"**{totals.get('pass', 0)} passed, {totals.get('fail', 0)} failed, {totals.get('skipped', 0)} "
              "skipped.**", ""]
    ordered = sorted(secs.items(), key=lambda kv: kv[1]["number"])
    lines += _table(["#", "section", "status", "what it shows", "s"],
                    [[s["number"], f"{name}: {s['title']}", ICON[s["status"]], s["summary"].replace("|", "/"),
                      _f(s["seconds"], ".0f")] for name, s in ordered])
    for name, s in ordered:
        lines += [f"## {s['number']}. {s['title']} — {ICON[s['status']]}", "", s["summary"], ""]
        d = s.get("details")
        if isinstance(d, dict) and "traceback" in d:
            lines += ["```", d["traceback"][-2000:], "```", ""]
        elif isinstance(d, dict) and name in DETAILS:
            try:
                lines += DETAILS[name](d)
            except (KeyError, TypeError, ValueError) as e:  # a partial record: say so, keep the rest of the report
                lines += [f"(details not rendered: {type(e).__name__}: {e}; see the JSON)", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    out = path.with_suffix(".md")
    out.write_text(markdown(json.loads(path.read_text())), encoding="utf-8")
    print(f"wrote {out}")
