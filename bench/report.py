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


def meta(device: torch.device, settings: dict) -> dict:
    """Machine, versions, date, git state and settings of this run."""
    import peftkit

    from .measure import MEMORY_METHOD

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    status = _git("status", "--porcelain")
    return {
        "schema": SCHEMA,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "gpu": gpu},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": _version("transformers"), "peft": _version("peft"),
                     "adapters": _version("adapters"), "peftkit": peftkit.__version__, "numpy": _version("numpy")},
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None},
        "device": device.type,
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "settings": settings,
        "timing_method": ("wall time of one step (time.perf_counter; torch.cuda.synchronize before and after on "
                          "CUDA); contenders of a group interleaved in rotating order after warm-up rounds; GC off "
                          "while timing, collected between rounds; median and IQR over the timed rounds"),
        "memory_method": MEMORY_METHOD,
    }


def _mb(b: float | None) -> str:
    return "–" if b is None else f"{b / 2**20:,.1f}"


def _verdict(met) -> str:
    return "–" if met is None else ("met" if met else "**missed**")


def measurement_lines(result: dict, markdown: bool) -> list[str]:
    head = ["backbone", "group", "contender", "median ms", "IQR ms", "items/s", "peak MiB", "static MiB",
            "trainable"]
    rows = []
    for m in result["measurements"]:
        if "error" in m:
            rows.append([m["backbone"], m["group"], m["contender"], "error: " + m["error"][:60], "", "", "", "", ""])
            continue
        rows.append([m["backbone"], m["group"], m["contender"], f"{1e3 * m['median']:.1f}", f"{1e3 * m['iqr']:.1f}",
                     f"{m['throughput']:.1f}", _mb(m["peak_bytes"]), _mb(m["static_bytes"]),
                     f"{m['trainable_params']:,}" if m["mode"] == "train" else "–"])
    return _table(head, rows, markdown)


def ratio_lines(result: dict, markdown: bool) -> list[str]:
    head = ["backbone", "ratio", "time", "paired IQR", "time goal", "", "memory", "mem goal", "", "note"]
    rows = []
    for r in result["ratios"]:
        if "error" in r:
            rows.append([r["backbone"], r["name"], "error", "", "", "", "", "", "", r["error"]])
            continue
        iqr = f"{r['paired_q1']:.3f}–{r['paired_q3']:.3f}" if "paired_q1" in r else "–"
        tg = "–" if r["time_goal"] is None else f"≤ {r['time_goal']:.2f}"
        mg = "–" if r["mem_goal"] is None else f"≤ {r['mem_goal']:.2f}"
        rows.append([r["backbone"], r["name"], f"{r['ratio']:.3f}", iqr, tg, _verdict(r["time_met"]),
                     f"{r['mem_ratio']:.3f}", mg, _verdict(r["mem_met"]), r.get("paper", "")])
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
                              f"{val:.3f} > {r[kind + '_goal']:.2f}")
    return met, missed, misses


def markdown(result: dict, command: str) -> str:
    from .suite import PAPER_INFER_VS_FT

    m = result["meta"]
    v, mach = m["versions"], m["machine"]
    met, missed, misses = goal_summary(result)
    lines = ["# peftkit benchmarks", "",
             f"Written by `{command}` on {m['date']} (git {str(m['git']['commit'])[:10]}"
             f"{', uncommitted changes' if m['git']['dirty'] else ''}). Every number below comes from that one run "
             "(`reports/benchmarks.json`); nothing is edited by hand.", "",
             "## Machine and versions", "",
             f"- device: **{m['device']}** ({m['precision']}); CPU {mach['cpu']}, {mach['cpu_count']} cores, "
             f"torch threads {mach['torch_threads']}" + (f"; GPU {mach['gpu']}" if mach["gpu"] else ""),
             f"- platform: {mach['platform']}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), "",
             "## Settings", "", f"- {m['timing_method']}.", f"- memory: {m['memory_method']}",
             "- a training step is zero_grad(set_to_none) + forward with labels (the model's own loss) + backward + "
             "AdamW.step over whatever requires grad (method + task head); inference is one eval forward under "
             "torch.no_grad(). Ratios are peftkit (or the method under test) over the peer / baseline of the same "
             "interleaved group: `time` is the ratio of medians, `paired IQR` the quartiles of the per-round ratios.",
             "- peers: LoRA vs peft `LoraConfig(r=8, lora_alpha=16, target_modules=[query, value])` (GPT-2: "
             "`c_attn`, all of q, k, v, as peft cannot target slices; peftkit adapts the q and v slices); Pfeiffer vs "
             "adapters `SeqBnConfig(reduction_factor=hidden/48)`; Houlsby vs `DoubleSeqBnConfig(reduction_factor="
             "hidden/48)`; prefix vs `PrefixTuningConfig(prefix_length=10)`; UniPELT APL vs `UniPELTConfig()` "
             "(peftkit's adapter size set to hidden/16 to match it: 48 on BERT-base, 24 on MiniLM); full FT and "
             "BitFit vs plain PyTorch freezing by hand. AdaMix: M=4, shared up-projection / LoRA B; consistency "
             "via `peftkit.consistency.consistency_forward(weight=1.0)` (a doubled batch in one forward).",
             ""]
    for name, b in result["backbones"].items():
        sub = " CPU subset of the groups (the full set needs a GPU)." if b["cpu_subset"] else ""
        lines.append(f"- **{name}**: {b['source']}; {b['params']:,} parameters; batch {b['batch']} x {b['seq_len']} "
                     f"tokens; {b['rounds']} timed rounds after {b['warmup']} warm-up; groups "
                     f"{', '.join(b['groups'])}.{sub} ({b['seconds']:.0f} s)")
    lines += ["", "## Goals", "", f"{met} met, {missed} missed (reported, not asserted)."]
    lines += [f"- missed: {x}" for x in misses]
    lines += ["", "## Ratios", ""] + ratio_lines(result, True)
    lines += ["", "## Measurements", ""] + measurement_lines(result, True)
    lines += ["", "Paper reference (UniPELT, BERT-base, inference time relative to full FT): "
              + ", ".join(f"{k} {val:.2f}" for k, val in PAPER_INFER_VS_FT.items())
              + ". Their numbers are for the unmerged methods on a GPU."]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path, command: str) -> tuple[Path, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown(result, command))
    return out, md


def print_result(result: dict) -> None:
    print("\n".join(measurement_lines(result, False)))
    print()
    print("\n".join(ratio_lines(result, False)))
    met, missed, misses = goal_summary(result)
    print(f"\ngoals: {met} met, {missed} missed")
    for x in misses:
        print("  missed:", x)
