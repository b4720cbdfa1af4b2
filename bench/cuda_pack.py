"""Section 4 of ``bench.cuda_check``: the Ray executor packs short peftkit runs onto one GPU
(``--gpus-per-run 0.25``): their throughput against the same runs one at a time, and their result files equal.

Nothing is downloaded and no data directory is needed: the runs train a randomly initialised BERT saved here (its
WordPiece vocabulary written from the words of the data) on a synthetic SST-2 in the GLUE layout
(``<dir>/glue/SST-2/{train,dev}.tsv``: a label is the sentiment of the polar words a sentence holds), through the
whole run path (``peftkit.experiment.RunSpec`` -> ``peftkit.executors.execute_grid`` -> ``result.json``).
"""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from .cuda_common import Context, log, result, skipped

POSITIVE = "good great fine lovely superb charming moving funny clever warm".split()
NEGATIVE = "bad awful dull boring lifeless tedious weak messy clumsy cold".split()
FILLER = "the a this film movie story plot acting it is was and but very quite rather so".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
RUNS = (("lora", {}), ("pfeiffer", {}), ("adamix", {"base": "lora"}), ("bitfit", {}))
NEEDS = ("ray", "datasets", "evaluate", "accelerate", "safetensors")
# result.json fields that differ between two identical runs by nature (times, rates, memory, where, when)
VOLATILE = ("wall_time_s", "train_time_s", "train_examples_per_s", "eval_examples_per_s", "peak_memory_mb",
            "finished_at", "run_id", "path", "out")
FLOAT_RTOL = 1e-4


def sentences(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 14))]
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def write_data(root: Path, train: int = 64, dev: int = 32) -> Path:
    """A synthetic SST-2 in the GLUE layout; returns the data directory (``PEFTKIT_DATA_DIR`` / ``data_dir``)."""
    task = root / "glue" / "SST-2"
    task.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", train, 0), ("dev", dev, 1)):
        lines = "".join(f"{text} \t{label}\n" for text, label in sentences(n, seed))
        (task / f"{split}.tsv").write_text("sentence\tlabel\n" + lines, encoding="utf-8")
    return root


def write_backbone(root: Path, dims: tuple, seed: int = 0) -> Path:
    """A randomly initialised BERT (``dims`` = hidden, layers, heads, FFN) with a WordPiece tokenizer over the
    data's words (plus letters and punctuation), saved as a local model directory ``peftkit`` can load."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = SPECIALS + sorted(set(POSITIVE + NEGATIVE + FILLER)) + list(letters) + [f"##{c}" for c in letters]
    vocab += list(".,!?'-")
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True).save_pretrained(str(root))
    hidden, layers, heads, ffn = dims
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=ffn, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertModel(cfg).save_pretrained(str(root))
    return root


def specs(runs_dir: Path, model: Path, data: Path, n: int, steps: int, max_length: int) -> list:
    from peftkit.experiment import RunSpec

    return [RunSpec(task="sst-2", method=m, options=dict(o), out=str(runs_dir / "-".join([m, *o.values()])),
                    profile="smoke", model=str(model), data_dir=str(data), max_steps=steps, batch_size=16,
                    max_length=max_length, eval_steps=0, max_train=64, max_eval=32, seed=42) for m, o in RUNS[:n]]


def flat(value, prefix: str = "") -> dict:
    """A result as {dotted path: leaf}, without the fields that differ by nature (``VOLATILE``, timings)."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if k in VOLATILE or str(k).endswith(("_runtime", "_per_second")):
                continue
            out.update(flat(v, f"{prefix}{k}."))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(flat(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = value
    return out


def compare(a: Path, b: Path) -> dict:
    """Two runs' result files (floats to a relative ``FLOAT_RTOL``) and trained weights (``best/``)."""
    from safetensors.torch import load_file

    ra, rb = (flat(json.loads((d / "result.json").read_text())) for d in (a, b))
    diffs, bitwise = [], ra == rb
    for key in sorted(set(ra) | set(rb)):
        x, y = ra.get(key, "<missing>"), rb.get(key, "<missing>")
        if x == y:
            continue
        floats = isinstance(x, float) and isinstance(y, float)
        if floats and math.isclose(x, y, rel_tol=FLOAT_RTOL, abs_tol=1e-12):
            continue
        diffs.append([key, x, y])
    wa, wb = (load_file(str(d / "best" / "peftkit_weights.safetensors")) for d in (a, b))
    wdiff = max((float((wa[k].float() - wb[k].float()).abs().max()) for k in wa if k in wb), default=float("nan"))
    return {"equal": not diffs and wa.keys() == wb.keys(), "bitwise": bitwise, "differences": diffs[:10],
            "weights_max_abs_diff": wdiff}


def _grid(specs_, options) -> tuple[float, list[dict]]:
    from peftkit.executors import execute_grid

    t0 = time.perf_counter()
    outcomes = execute_grid(specs_, options, force=True)
    return time.perf_counter() - t0, outcomes


def packing(ctx: Context) -> dict:
    missing = []
    for name in NEEDS:
        try:
            __import__(name)
        except ImportError as e:
            missing.append(f"{name} ({type(e).__name__})")
    if missing:
        return skipped(f"skipped: cannot import {', '.join(missing)} (the runs need peftkit's training extras and "
                       "ray: pip install -e '.[train]' ray)")
    from peftkit.executors import ExecutorOptions, ray_start

    s, cuda = ctx.sizes, ctx.device.type == "cuda"
    use_ray = cuda or ctx.options.get("dry_ray", False)
    root = ctx.tmp / "pack"
    data = write_data(root / "data")
    model = write_backbone(root / "model", s.pack_dims)
    seq_specs = specs(root / "sequential", model, data, s.pack_runs, s.pack_steps, s.pack_max_length)
    packed_specs = specs(root / "packed", model, data, s.pack_runs, s.pack_steps, s.pack_max_length)
    gpus = 1.0 / s.pack_runs if cuda else 0.0
    seq_wall, seq = _grid(seq_specs, ExecutorOptions("local"))
    log(f"pack: {len(seq)} runs one at a time in {seq_wall:.1f} s")
    if ctx.budget.left() < 1.5 * seq_wall + 20:
        return result("skipped", f"sequential runs took {seq_wall:.0f} s; no time left for the packed ones",
                      {"sequential_wall_s": seq_wall}, reason="skipped: time budget")
    ray_start_s = 0.0
    if use_ray:
        t0 = time.perf_counter()
        ray, _ = ray_start(ExecutorOptions("ray"))
        ray_start_s = time.perf_counter() - t0
        try:
            packed_wall, packed = _grid(packed_specs, ExecutorOptions("ray", gpus_per_run=gpus, cpus_per_run=1))
        finally:
            if ray is not None:
                ray.shutdown()
    else:  # --dry without --dry-ray: the same grid through the local executor (no Ray start-up on 2 cores)
        packed_wall, packed = _grid(packed_specs, ExecutorOptions("local"))
    log(f"pack: {len(packed)} runs {'packed on Ray' if use_ray else 'again, locally'} in {packed_wall:.1f} s")
    rows = []
    for a, b in zip(seq, packed):
        row = {"run": Path(a["out"]).name, "sequential": a["status"], "packed": b["status"],
               "sequential_train_s": (a.get("result") or {}).get("train_time_s"),
               "packed_train_s": (b.get("result") or {}).get("train_time_s"),
               "packed_peak_memory_mb": (b.get("result") or {}).get("peak_memory_mb")}
        if a["status"] == b["status"] == "trained":
            row.update(compare(Path(a["out"]), Path(b["out"])))
        else:
            row.update(equal=False, error=a.get("error") or b.get("error"))
        rows.append(row)
    throughput = {"sequential_runs_per_min": 60 * len(seq) / seq_wall, "packed_runs_per_min": 60 * len(packed) /
                  packed_wall, "packed_over_sequential": seq_wall / packed_wall}
    details = {"executor": f"ray, gpus_per_run={gpus:g}, cpus_per_run=1" if use_ray else
               "local (--dry: the packed half runs without Ray; --dry-ray uses Ray on the CPU)",
               "runs": len(seq), "steps": s.pack_steps, "backbone_dims": list(s.pack_dims),
               "sequential_wall_s": seq_wall, "packed_wall_s": packed_wall, "ray_start_s": ray_start_s,
               **throughput, "float_rtol": FLOAT_RTOL, "rows": rows,
               "note": "wall times exclude the Ray start (ray_start_s); each packed run starts its own worker "
                       "process (imports included)"}
    equal = sum(bool(r.get("equal")) for r in rows)
    summary = (f"{len(seq)} runs: {throughput['packed_over_sequential']:.2f}x the throughput of one at a time "
               f"({seq_wall:.1f} s -> {packed_wall:.1f} s, Ray start {ray_start_s:.1f} s not counted); result files "
               f"equal in {equal}/{len(rows)} ({sum(bool(r.get('bitwise')) for r in rows)} bitwise)")
    return result("pass" if equal == len(rows) else "fail", summary, details)
