"""Provenance, the printed table, and the JSON / Markdown reports (the Markdown is a function of the JSON only)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

SCHEMA = 1


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[1])
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def meta(device: torch.device, settings: dict, command: str = "", precision: str = "fp32") -> dict:
    """Machine, versions, date, git state and settings of this run."""
    import peftkit

    from .measure import MEMORY_METHOD

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    status = _git("status", "--porcelain")
    return {
        "schema": SCHEMA,
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "gpu": gpu},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": _version("transformers"), "peft": _version("peft"),
                     "adapters": _version("adapters"), "peftkit": peftkit.__version__, "numpy": _version("numpy")},
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None},
        "device": device.type,
        "precision": "bf16 autocast" if precision == "bf16" else "fp32",
        "settings": settings,
        "timing_method": ("wall time of one step (time.perf_counter; torch.cuda.synchronize before and after on "
                          "CUDA); contenders of a group interleaved in rotating order after warm-up rounds; GC off "
                          "while timing, collected between rounds; median and IQR over the timed rounds"),
        "memory_method": MEMORY_METHOD,
    }


def _mb(b: float | None) -> str:
    return "–" if b is None else f"{b / 2**20:,.1f}"


def _verdict(met, noisy: bool = False) -> str:
    if met is None:
        return "–"
    return ("met" if met else "**missed**") + (" (within IQR)" if noisy else "")


def measurement_lines(result: dict, markdown: bool) -> list[str]:
    head = ["backbone", "group", "contender", "median ms", "IQR ms", "CPU ms", "items/s", "peak MiB", "static MiB",
            "trainable"]
    rows = []
    for m in result["measurements"]:
        if "error" in m:
            rows.append([m["backbone"], m["group"], m["contender"], "error: " + m["error"][:60]] + [""] * 6)
            continue
        rows.append([m["backbone"], m["group"], m["contender"], f"{1e3 * m['median']:.1f}", f"{1e3 * m['iqr']:.1f}",
                     f"{1e3 * m['cpu_median']:.1f}" if "cpu_median" in m else "–", f"{m['throughput']:.1f}",
                     _mb(m["peak_bytes"]), _mb(m["static_bytes"]),
                     f"{m['trainable_params']:,}" if m["mode"] == "train" else "–"])
    return _table(head, rows, markdown)


def ratio_lines(result: dict, markdown: bool) -> list[str]:
    head = ["backbone", "ratio", "time", "paired IQR", "CPU time", "time goal", "time verdict", "memory", "mem goal",
            "mem verdict", "note"]
    rows = []
    for r in result["ratios"]:
        if "error" in r:
            rows.append([r["backbone"], r["name"], "error", "", "", "", "", "", "", "", r["error"]])
            continue
        iqr = f"{r['paired_q1']:.3f}–{r['paired_q3']:.3f}" if "paired_q1" in r else "–"
        tg = "–" if r["time_goal"] is None else f"≤ {r['time_goal']:.2f}"
        mg = "–" if r["mem_goal"] is None else f"≤ {r['mem_goal']:.2f}"
        verdict = _verdict(r["time_met"], r.get("time_goal_within_iqr", False))
        cpu = f"{r['cpu_ratio']:.3f}" if "cpu_ratio" in r else "–"
        rows.append([r["backbone"], r["name"], f"{r['ratio']:.3f}", iqr, cpu, tg, verdict,
                     f"{r['mem_ratio']:.4f}", mg, _verdict(r["mem_met"]), r.get("paper", "")])
    return _table(head, rows, markdown)


def _table(head: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def goal_summary(result: dict) -> tuple[int, int, list[str]]:
    met = missed = 0
    misses = []
    for r in result["ratios"]:
        for kind in ("time", "mem"):
            v = r.get(f"{kind}_met")
            if v is None:
                continue
            met += bool(v)
            missed += not v
            if not v:
                val = r["ratio"] if kind == "time" else r["mem_ratio"]
                misses.append(f"{r['backbone']}: {r['name']} ({'time' if kind == 'time' else 'peak memory'}) "
                              f"{val:.4f} > {r[kind + '_goal']:.2f}")
    return met, missed, misses


def vs_full_lines(result: dict) -> list[str]:
    """peftkit's training step relative to its own full fine-tuning step, beside the UniPELT paper's figures.
    Across groups (not interleaved): CPU time on CPU (steadier on a shared machine), wall time on CUDA."""
    from .suite import PAPER_TRAIN_VS_FT

    rows = []
    for bb in result["backbones"]:
        ours = {m["group"]: m for m in result["measurements"] if m["backbone"] == bb and m["mode"] == "train"
                and m["impl"] == "peftkit" and not m["consistency"] and "median" in m}
        if "full" not in ours:
            continue
        key = "cpu_median" if "cpu_median" in ours["full"] else "median"
        for group, (label, paper) in PAPER_TRAIN_VS_FT.items():
            if group in ours:
                rows.append([bb, label, ours[group]["contender"], f"{ours[group][key] / ours['full'][key]:.2f}",
                             f"{paper:.2f}"])
    if not rows:
        return []
    return ["", "## Training step relative to full fine-tuning (peftkit, across groups)", "",
            "Not interleaved (each method's median comes from its own group), so only indicative; CPU time on CPU. "
            "The paper's figures: UniPELT Table 4, BERT-base, on the paper's own hardware.", ""] + _table(
        ["backbone", "method", "contender", "step / full FT step", "paper"], rows, True)


NOTES = [
    "AdaMix + consistency runs `consistency_forward`: the batch is doubled and routed as two independent passes in "
    "one forward, so it does twice the arithmetic of one pass; where a step is compute-bound (CPU, large batches) "
    "its ratio to a single pass cannot fall much below 2.",
    "Merged LoRA / AdaMix / prefix do the base model's arithmetic (LoRA folded into W, AdaMix averaged) plus, for "
    "prefix-tuning, 10 extra keys per attention; UniPELT cannot merge (input-dependent gates), so it runs the "
    "adapter, the gated LoRA and the prefix at inference.",
    "AdaMix over prefix-tuning (peftkit's extension): M=4 prefix embeddings before one shared MLP, a module drawn per "
    "layer in training; merged, one prefix of the same length (the mean of the modules' key/values), so its "
    "inference goal is to sit inside the A/A band of a single merged prefix timed in the same group "
    "(infer-adamix-prefix).",
    "Goals below 1.0 against a peer (LoRA, Pfeiffer <= 0.95) ask peftkit to be faster than a library doing the "
    "same arithmetic; on CPU the step is dominated by the backbone's matrix products, which neither side can skip.",
]


def control_notes(result: dict) -> list[str]:
    """One line per A/A control ratio: how far apart two identical contenders came out in this run."""
    out = []
    for r in result["ratios"]:
        if r["name"].startswith("A/A control") and "ratio" in r:
            iqr = f", paired IQR {r['paired_q1']:.3f}–{r['paired_q3']:.3f}" if "paired_q1" in r else ""
            out.append(f"{r['backbone']}: A/A control ({r['name'].removeprefix('A/A control: ')}): ratio "
                       f"{r['ratio']:.3f}{iqr}; a ratio of the same mode nearer to 1 than that is within this run's "
                       "noise.")
    return out


def markdown(result: dict) -> str:
    from .suite import PAPER_INFER_VS_FT

    m = result["meta"]
    v, mach = m["versions"], m["machine"]
    met, missed, misses = goal_summary(result)
    lines = ["# peftkit benchmarks", "",
             f"Written by `{m['command']}` on {m['date']} (git {str(m['git']['commit'])[:10]}"
             f"{', uncommitted changes' if m['git']['dirty'] else ''}). Every number below comes from that one run "
             "(the JSON file of the same name beside this one); nothing is edited by hand.", "",
             "## Machine and versions", "",
             f"- device: **{m['device']}** ({m['precision']}); CPU {mach['cpu']}, {mach['cpu_count']} cores, "
             f"torch threads {mach['torch_threads']}" + (f"; GPU {mach['gpu']}" if mach["gpu"] else ""),
             f"- 1-minute load average (all processes on the machine): {m['settings']['loadavg_1min_start']:.2f} at "
             f"the start of the run, {m['settings']['loadavg_1min_end']:.2f} at its end"
             + (" -- a shared, busy machine: read the paired IQR and the CPU-time ratios"
                if max(m['settings']['loadavg_1min_start'], m['settings']['loadavg_1min_end'])
                > 1.5 * mach['torch_threads'] else ""),
             f"- platform: {mach['platform']}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), "",
             "## Settings", "", f"- {m['timing_method']}.", f"- memory: {m['memory_method']}",
             "- a training step is zero_grad(set_to_none) + forward with labels (the model's own loss) + backward + "
             "AdamW.step over whatever requires grad (method + task head); inference is one eval forward under "
             "torch.no_grad(). Ratios are peftkit (or the method under test) over the peer / baseline of the same "
             "interleaved group: `time` is the ratio of wall-time medians (the goals are judged on it), `paired IQR` "
             "the quartiles of the per-round wall-time ratios, `CPU time` the ratio of medians of this process's CPU "
             "time per step (time.process_time, all threads; a cross-check that is less sensitive to other processes "
             "on a shared machine, meaningless on CUDA). `(within IQR)`: the goal lies inside the paired IQR, so the "
             "verdict is within the run's noise.",
             "- peers: LoRA vs peft `LoraConfig(r=8, lora_alpha=16, target_modules=[query, value])` (GPT-2: "
             "`c_attn`, all of q, k, v, as peft cannot target slices; peftkit adapts the q and v slices: the same "
             "trainable count, but peftkit keeps two rank-r activations A x per layer for backward where peft keeps "
             "one, i.e. batch x tokens x r x 4 bytes more per layer); Pfeiffer vs "
             "adapters `SeqBnConfig(reduction_factor=hidden/48)`; Houlsby vs `DoubleSeqBnConfig(reduction_factor="
             "hidden/48)`; prefix vs `PrefixTuningConfig(prefix_length=10)`; UniPELT APL vs `UniPELTConfig()` "
             "(peftkit's adapter size set to hidden/16 to match it: 48 on BERT-base, 24 on MiniLM); full FT and "
             "BitFit vs plain PyTorch freezing by hand. Every peer trains the same task head as peftkit (the "
             "parameters `peftkit.arch.is_head_param` names: the classifier; BERT's pooler stays frozen on both "
             "sides), so both sides of a ratio train the same parameters (the `trainable` column). AdaMix: M=4, "
             "shared up-projection / LoRA B (over prefix: one shared MLP); consistency via "
             "`peftkit.consistency.consistency_forward(weight=1.0)` (a doubled batch in one forward).",
             ""]
    for name, b in result["backbones"].items():
        sub = " CPU subset of the groups (the full set needs a GPU)." if b["cpu_subset"] else ""
        lines.append(f"- **{name}**: {b['source']}; {b['params']:,} parameters; batch {b['batch']} x {b['seq_len']} "
                     f"tokens; {b['train_rounds']} training / {b['infer_rounds']} inference rounds after {b['warmup']} "
                     f"warm-up; groups "
                     f"{', '.join(b['groups'])}.{sub} ({b['seconds']:.0f} s)")
        if b.get("skipped"):
            lines.append(f"  - skipped, their peer library cannot be imported in this environment: "
                         f"{', '.join(b['skipped'])} ({'; '.join(sorted(set(b['skipped'].values())))}); "
                         "`make bench-peers` measures them in the peers environment (benchmarks_adapters.md)")
    lines += ["", "## Goals", "", f"{met} met, {missed} missed (reported, not asserted)."]
    lines += [f"- missed: {x}" for x in misses]
    lines += ["", "Reading the goals:"] + [f"- {n}" for n in NOTES + control_notes(result)]
    lines += ["", "## Ratios", ""] + ratio_lines(result, True)
    lines += vs_full_lines(result)
    lines += ["", "## Measurements", ""] + measurement_lines(result, True)
    lines += ["", "Paper reference (UniPELT, BERT-base, inference time relative to full FT): "
              + ", ".join(f"{k} {val:.2f}" for k, val in PAPER_INFER_VS_FT.items())
              + " (Table 4; the paper's hardware and setting, not this run's)."]
    return "\n".join(lines) + "\n"


def description(result: dict) -> str:
    """What a benchmarks file holds, for the reports index: its peers, precision and library versions."""
    meta = result.get("meta", {})
    settings, versions = meta.get("settings", {}), meta.get("versions", {})
    impls = {m["impl"] for m in result.get("measurements", [])} - {"peftkit"}
    peers = " and ".join({"peft": "peft", "adapters": "AdapterHub adapters", "torch": "plain PyTorch"}[i]
                         for i in sorted(impls)) or "its own baselines"
    which = f" (the {settings['peer']} groups)" if settings.get("peer") else ""
    return (f"Speed and memory of peftkit against {peers}, {meta.get('precision', 'fp32')}, transformers "
            f"{versions.get('transformers', '?')}{which}")


def write(result: dict, out: Path) -> tuple[Path, Path]:
    """JSON and Markdown, each written atomically, and both registered in the index beside them (reports/README.md)."""
    from peftkit.atomic import write_text
    from peftkit.reporting import write_index

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(result, indent=1) + "\n")
    md = out.with_suffix(".md")
    write_text(md, markdown(result))
    command = result.get("meta", {}).get("command", "make bench")
    write_index(out.parent, [(path, f"{description(result)} ({what})", command)
                             for path, what in ((md, "Markdown"), (out, "JSON"))])
    return out, md


def rerender(path: str) -> Path:
    """Rewrite the Markdown beside a benchmarks JSON from that JSON alone (``python -m bench.report FILE``)."""
    p = Path(path)
    md = p.with_suffix(".md")
    md.write_text(markdown(json.loads(p.read_text())))
    return md


def print_result(result: dict) -> None:
    print("\n".join(measurement_lines(result, False)))
    print()
    print("\n".join(ratio_lines(result, False)))
    met, missed, misses = goal_summary(result)
    print(f"\ngoals: {met} met, {missed} missed")
    for x in misses:
        print("  missed:", x)


if __name__ == "__main__":
    import sys

    print(f"wrote {rerender(sys.argv[1])}")
