"""08 efficiency: UniPELT Table 4's measures on this machine (inference parameters, training and inference time
relative to full fine-tuning).

Training time comes from the runs' own throughput (``train_examples_per_s``), per seed against full FT of the same
seed. Inference time is measured after the grid trains, by :func:`time_inference`: the methods of one seed's runs,
attached to a fresh backbone as each run's record says (the structure: inference cost depends on the form and sizes,
not on the trained values) and put in their inference form, time one eval forward each on one fixed batch,
interleaved in rotating order over many rounds, with full FT built twice as an A/A control (the noise band). Its
results are a JSON file beside the study's tables that :func:`report` reads."""
from __future__ import annotations

import functools
import json
import platform
import time
from pathlib import Path

import pandas as pd

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.efficiency import efficiency_headlines, training_spread
from ..reporting.names import method_name, method_order
from ..reporting.tables import MISSING
from .common import ALL_GLUE_METHODS, CPU_DRAWS, FULL_DATA, GLUE_TASKS, SMOKE, command
from .grids import build, k_points
from .reports import Report, keys_in_order, start

NAME = "efficiency"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "methods", "k", "data_seeds")
# Compared with UniPELT's Table 4: every method (AdaMix included) under UniPELT's protocol, so that all rows train
# at the same batch size. Only this study scores the final weights (eval_steps=0), since it measures time, not
# accuracy.
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("rte",), methods=("full", "lora"), **FULL_DATA, seeds=(42,),
                  budget=dict(protocol="unipelt-glue", **SMOKE)),
    "cpu": dict(tasks=("sst2",), methods=ALL_GLUE_METHODS, **CPU_DRAWS,
                budget=dict(epochs=1, protocol="unipelt-glue", eval_steps=0)),
    "paper": dict(tasks=("sst2",), methods=ALL_GLUE_METHODS, **FULL_DATA, seeds=(42,),
                  budget=dict(epochs=1, protocol="unipelt-glue")),
}
#: inference timing per profile: timed rounds (after ``warmup`` untimed ones) of one eval forward per model, on one
#: fixed batch of ``batch_size`` examples of the task's reported (dev) set
TIMING = {"smoke": dict(rounds=5, warmup=1, batch_size=16),
          "cpu": dict(rounds=30, warmup=3, batch_size=32),
          "paper": dict(rounds=50, warmup=5, batch_size=32)}
#: version of the timing JSON's layout (a file of another version is measured again)
TIMING_SCHEMA = 1
points = k_points


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


def timing_path(report: Report) -> Path:
    """Where the inference timing of a report's runs is kept: ``tables/08_efficiency_inference_timing.json``."""
    return report.reports_dir / "tables" / f"{report.notebook}_inference_timing.json"


def _forward(model, batch: dict, autocast) -> None:
    import torch

    with torch.no_grad(), autocast():
        model(**batch)


def _batch(result: dict, tok, batch_size: int, device) -> tuple[dict, dict]:
    """One fixed batch: the first ``batch_size`` rows of the run's reported (dev) set, tokenised and padded as in
    its evaluation (the run's max length; to max length where the run padded so)."""
    from ..data import load_glue
    from ..features import PadCollator, tokenize_classification

    split = (result.get("data") or {}).get("eval", {}).get("split") or "dev"
    ds = load_glue(result["task"], split, (result.get("spec") or {}).get("data_dir"))
    ds = ds.select(range(min(batch_size, len(ds))))
    training = result["training"]
    rows = tokenize_classification(ds, tok, training["max_length"], regression=False)
    pad_to = training["max_length"] if training.get("pad_to_max_length") else None
    batch = PadCollator(tok.pad_token_id, pad_to)([dict(r) for r in rows])
    batch.pop("labels", None)
    batch = {k: v.to(device) for k, v in batch.items()}
    return batch, {"split": split, "rows": len(ds), "width": int(batch["input_ids"].shape[1]),
                   "max_length": training["max_length"]}


def _choose(results: list[dict], seed: int | None) -> tuple[str | None, int | None, dict, str | None]:
    """(task, seed, {method_label: result}, why not) for the timing: the first task (GLUE order) and the given or
    smallest seed that has a full-FT run, on its first training set (K and data seed, where the runs have them)."""
    ours = [r for r in results if r.get("task_kind") == "glue"]
    tasks = keys_in_order((r["task"] for r in ours), GLUE_TASKS)
    if not tasks:
        return None, None, {}, "no GLUE runs among the results"
    task = tasks[0]
    draw = lambda r: (r.get("k") or 0, r.get("data_seed") or 0)  # noqa: E731 - the training set
    full = sorted((r["seeds"]["seed"], draw(r)) for r in ours if r["task"] == task and r["method_label"] == "full")
    if not full:
        return task, None, {}, f"no full fine-tuning run of {task} to time against"
    if seed is None:
        seed = full[0][0]
    elif seed not in {s for s, _ in full}:
        seeds = sorted({s for s, _ in full})
        raise ValueError(f"invalid seed={seed!r}: full fine-tuning of {task} ran with seeds {seeds}")
    first = min(d for s, d in full if s == seed)
    runs = {}
    for r in ours:
        if r["task"] == task and r["seeds"]["seed"] == seed and draw(r) == first:
            runs.setdefault(r["method_label"], r)
    return task, seed, {m: runs[m] for m in method_order(runs)}, None


def time_inference(results: list[dict], profile: str, reports_dir=None, *, seed: int | None = None,
                   rounds: int | None = None, warmup: int | None = None, batch_size: int | None = None,
                   force: bool = False) -> dict:
    """Time one eval forward of every method of one seed's runs (attached as each run's record says), interleaved,
    with an A/A control; write the JSON the report reads (atomically, beside the study's tables;
    :func:`timing_path`) and return it.

    Each method's run of ``seed`` (default: the smallest seed with a full-FT run) on the first task is rebuilt from
    its record as its structure (:func:`peftkit.reload.attached_model`: the run's method and options attached to a
    fresh backbone; inference cost depends on the form and sizes, not on the trained values, so no trained weights
    are needed) and put in the form it was scored in (merged where the method merges: LoRA, AdaMix, prefix; as
    trained otherwise; :func:`peftkit.trainer.inference_form`); full FT is built twice, as two contenders (the A/A
    control). All of them run one forward (``torch.no_grad``, bf16
    autocast where the runs trained with it) on one fixed batch of the reported set, in rotating order, for
    ``rounds`` timed rounds after ``warmup`` untimed ones (:func:`peftkit.timing.time_group`; defaults per profile
    in :data:`TIMING`). Per method: the median of the per-round ratios to full FT and their quartiles (paired IQR);
    the A/A ratio's quartiles are the noise band. A file measured with the same runs and settings is returned as
    it is unless ``force``. Returns ``rows`` (one per method plus the A/A row), ``aa``, ``contenders``, ``settings``
    and provenance; without a full-FT run, ``rows`` is empty and ``skipped`` says why (nothing is written)."""
    import contextlib

    import torch

    from ..atomic import write_json
    from ..consistency import find_peft_model
    from ..core import state_of
    from ..reload import attached_model
    from ..timing import ratio, summary, time_group
    from ..trainer import inference_form

    r = start(NAME, profile, reports_dir, results, grid)
    path = timing_path(r)
    settings = {**TIMING[profile]}
    for key, value in (("rounds", rounds), ("warmup", warmup), ("batch_size", batch_size)):
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "warmup" else 1):
                raise ValueError(f"invalid {key}={value!r}: allowed an integer >= {0 if key == 'warmup' else 1}")
            settings[key] = value
    task, seed, runs, why = _choose(results, seed)
    if why:
        print(f"[efficiency] inference timing skipped: {why}", flush=True)
        return {"rows": [], "skipped": why}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings.update(task=task, seed=seed, runs={m: x["run_id"] for m, x in runs.items()}, device=device.type,
                    weights="attached")  # the methods' structure, freshly attached (no trained weights needed)
    if path.is_file() and not force:
        stored = json.loads(path.read_text())
        if stored.get("schema") == TIMING_SCHEMA and stored.get("settings") == settings:
            print(f"[efficiency] inference timing of these runs exists: {path} (force=True to measure again)")
            return stored
    bf16 = bool(runs["full"]["training"].get("bf16"))
    autocast = (functools.partial(torch.autocast, device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext)
    contenders, missing = [], {}
    with contextlib.ExitStack() as stack:
        tok = None
        for label, result in runs.items():
            for copy in ((1, 2) if label == "full" else (1,)):
                try:
                    model, tok = attached_model(result)
                except (FileNotFoundError, KeyError) as e:
                    missing[label] = str(e)
                    break
                model.to(device)
                peft_model = find_peft_model(model)
                stack.enter_context(inference_form(peft_model))
                form = "merge applied" if state_of(peft_model).merged else "unmerged"
                contenders.append({"method_label": label, "copy": copy, "run_id": result["run_id"], "form": form,
                                   "model": model})
        if "full" in missing or not contenders:
            why = f"full fine-tuning's model could not be rebuilt from its record: {missing.get('full')}"
            print(f"[efficiency] inference timing skipped: {why}", flush=True)
            return {"rows": [], "skipped": why}
        # the A/A copy sits half a rotation from the reference, as far from it in time as a typical pair
        contenders.insert(len(contenders) // 2, contenders.pop(1))
        batch, batch_info = _batch(runs["full"], tok, settings["batch_size"], device)
        print(f"[efficiency] timing {len(contenders)} models ({task}, seed {seed}) on a batch of "
              f"{batch_info['rows']} x {batch_info['width']} tokens: {settings['rounds']} rounds after "
              f"{settings['warmup']} warm-up, {torch.get_num_threads()} threads", flush=True)
        steps = [functools.partial(_forward, c["model"], batch, autocast) for c in contenders]
        t0 = time.time()
        wall, cpu = time_group(steps, settings["rounds"], settings["warmup"], device)
        seconds = time.time() - t0
    stats = []
    for c, w, p in zip(contenders, wall, cpu):
        del c["model"]
        s, cpu_median = summary(w), summary(p)["median"]
        stats.append({**s, "samples": w, "cpu_median": cpu_median})
        c.update(median_s=s["median"], q1_s=s["q1"], q3_s=s["q3"], samples_s=w, cpu_median_s=cpu_median)
    ref = stats[0]

    def row(i: int, label: str, aa: bool = False) -> dict:
        q = ratio(stats[i], ref)
        return {"method_label": label, "aa": aa, "ratio": q["paired_median"], "q1": q["paired_q1"],
                "q3": q["paired_q3"], "ratio_of_medians": q["ratio"], "cpu_ratio": q.get("cpu_ratio"),
                "form": contenders[i]["form"]}

    copy = next(i for i, c in enumerate(contenders) if c["copy"] == 2)
    aa = row(copy, "full", aa=True)
    half = max(abs(aa["q1"] - 1.0), abs(aa["q3"] - 1.0))
    rows = [row(0, "full")] + [row(i, c["method_label"]) for i, c in enumerate(contenders) if 0 < i != copy] + [aa]
    for x in rows:
        x["within_aa"] = bool(abs(x["ratio"] - 1.0) <= half) if not x["aa"] else None
    out = {"schema": TIMING_SCHEMA, "study": NAME, "profile": profile, "settings": settings,
           "batch": batch_info, "precision": "bf16 autocast" if bf16 else "fp32", "threads": torch.get_num_threads(),
           "device_name": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.machine()})",
           "rows": rows, "aa": {"ratio": aa["ratio"], "q1": aa["q1"], "q3": aa["q3"],
                                "band": [max(0.0, 1 - half), 1 + half]},  # a loaded machine's quartile can pass 2
           "contenders": contenders, "missing": missing, "seconds": round(seconds, 2), "torch": torch.__version__,
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(path, out)
    rep.register_artifact(r.reports_dir, path, "Inference timing of the methods attached as each run's record says: "
                          "interleaved rounds, A/A control (JSON)", command(profile, r.notebook))
    print(f"[efficiency] A/A ratio {aa['ratio']:.3f} (IQR {aa['q1']:.3f}-{aa['q3']:.3f}); "
          + ", ".join(f"{x['method_label']} {x['ratio']:.3f}" for x in rows[1:-1]) + f" -> {path}", flush=True)
    return out


def timing_matches(timing: dict, results: list[dict]) -> bool:
    """Whether ``timing`` timed exactly the runs that :func:`time_inference` would choose from ``results``."""
    s = timing.get("settings") or {}
    if timing.get("schema") != TIMING_SCHEMA or "runs" not in s:
        return False
    try:
        task, _, runs, why = _choose(results, s.get("seed"))
    except ValueError:
        return False
    return not why and task == s.get("task") and {m: x["run_id"] for m, x in runs.items()} == s["runs"]


def _timing_for(report: Report, results: list[dict], timing: dict | None) -> tuple[dict | None, str | None]:
    """The timing the table shows (given, or read from the report's folder) or why there is none."""
    if timing is None:
        path = timing_path(report)
        if not path.is_file():
            return None, (f"no inference timing for these runs ({path.name} is missing): run "
                          "studies.efficiency.time_inference(results, PROFILE, REPORTS_DIR) before the report, as "
                          "the notebook does")
        timing = {**json.loads(path.read_text()), "file": path.relative_to(report.reports_dir).as_posix()}
    if timing.get("skipped"):
        return None, f"inference timing skipped: {timing['skipped']}"
    if not timing_matches(timing, results):
        return None, "the inference timing file was measured on other runs than these; time them again"
    return timing, None


def _inference_note(t: dict) -> str:
    s, b, aa = t["settings"], t["batch"], t["aa"]
    forms = {}
    for c in t["contenders"]:
        forms.setdefault(c["form"], []).append(method_name(c["method_label"]))
    what = {"merge applied": "peftkit.merge applied (LoRA folded into W, AdaMix's modules averaged, the prefix MLP "
            "dropped; nothing changes for BitFit and adapters)", "unmerged": "unmerged (full FT; a gated LoRA cannot "
            "merge)"}
    form_text = "; ".join(f"{what.get(f, f)}: {', '.join(dict.fromkeys(names))}" for f, names in forms.items())
    return (f"inference time × FT (ours): measured after training ({t['measured_at']}), not from the runs' "
            f"evaluations: each method of the seed-{s['seed']} runs attached to a fresh backbone as its run's "
            f"record says (the structure, no trained weights: cost depends on the form and sizes), in its inference "
            f"form ({form_text}), one eval forward (no_grad, {t['precision']}) per model and round on one fixed "
            f"batch of {b['rows']} {s['task']} {b['split']} examples ({b['width']} tokens), all models interleaved "
            f"in rotating order, {s['rounds']} timed rounds after {s['warmup']} warm-up round(s), on "
            f"{t['device_name']} with {t['threads']} thread(s). Shown: the median of the per-round time ratios to "
            f"full FT, with their quartiles (IQR). A/A control: full FT built twice and timed as two contenders, "
            f"ratio {aa['ratio']:.3f} (IQR {aa['q1']:.3f}–{aa['q3']:.3f}); a method whose ratio lies within the A/A "
            f"band {aa['band'][0]:.3f}–{aa['band'][1]:.3f} (1 ± the A/A quartile furthest from 1) reads 'inference "
            f"within A/A band': not distinguishable from full FT by this measurement. Every sample: "
            f"{t.get('file', 'the timing JSON')}."
            + ("" if not t.get("missing") else " Not timed (could not be rebuilt from its record): "
               + ", ".join(method_name(m) for m in t["missing"]) + "."))


def _train_cell(x: pd.Series) -> str:
    v = x["train_time_vs_ft"]
    if pd.isna(v):
        return MISSING
    if x.name == "full" or x["train_n"] < 2:
        return f"{v:.2f} (n={int(x['train_n'])})"
    return f"{v:.2f} ({x['train_time_vs_ft_lo']:.2f}–{x['train_time_vs_ft_hi']:.2f}, n={int(x['train_n'])})"


def _inference_cell(x: pd.Series) -> str:
    v = x["inference_time_vs_ft"]
    if pd.isna(v):
        return MISSING
    if x.name == "full":
        return "1.00 (reference)"
    return f"{v:.2f} (IQR {x['inference_time_vs_ft_lo']:.2f}–{x['inference_time_vs_ft_hi']:.2f})"


def _reading(x: pd.Series, train: bool) -> str:
    """The words a row's ratios come with, in a column of their own (never in the numbers' cells): "training
    spread ≥ difference" (the seeds do not resolve it), "inference within A/A band" (not distinguishable from full
    FT); "–" for none."""
    words = ["training spread ≥ difference"] if train and x.name != "full" and x["train_n"] >= 2 and \
        bool(x["train_spread_flag"]) else []
    within = x.get("inference_within_aa")
    words += ["inference within A/A band"] if x.name != "full" and not pd.isna(within) and bool(within) else []
    return "; ".join(words) or MISSING


def report(results: list[dict], profile: str, reports_dir=None, timing: dict | None = None) -> Report:
    """UniPELT Table 4's measures on this machine: inference parameters %, training time (the runs' throughput,
    per seed) and inference time (the interleaved timing of :func:`time_inference`, read from its JSON unless
    ``timing`` is given) relative to full FT, beside the paper's."""
    r = start(NAME, profile, reports_dir, results, grid)
    frame = rep.runs_frame(results)
    timing, no_timing = _timing_for(r, results, timing)
    rows = rep.efficiency_rows(frame, methods=method_order(frame["method_label"]), timing=timing)
    order = method_order(rows["method_label"])
    ours = rows[rows["source"] == "ours"].set_index("method_label")
    paper = rows[rows["source"] == "paper"].set_index("method_label")
    keep_train, train_why = training_spread(rows)
    r.headlines = efficiency_headlines(rows if keep_train else rows.assign(train_time_vs_ft=float("nan")))
    out = pd.DataFrame(index=[method_name(m) for m in order])
    out.index.name = "method"

    def cells(src: pd.DataFrame, fmt) -> list[str]:
        return [fmt(src.loc[m]) if m in src.index else MISSING for m in order]

    def number(col: str, d: int):
        return lambda x: MISSING if pd.isna(x[col]) else f"{x[col]:.{d}f}"

    out["inference params % (ours)"] = cells(ours, number("trainable_pct", 3))
    out["inference params % (paper)"] = cells(paper, number("trainable_pct", 3))
    if keep_train:
        out["training time × FT (ours)"] = cells(ours, _train_cell)
    out["training time × FT (paper)"] = cells(paper, number("train_time_vs_ft", 2))
    out["inference time × FT (ours)"] = cells(ours, _inference_cell)
    out["inference time × FT (paper)"] = cells(paper, number("inference_time_vs_ft", 2))
    reading = cells(ours, lambda x: _reading(x, keep_train))
    if any(w != MISSING for w in reading):
        out["reading"] = reading
    out["runs"] = [int(ours.loc[m, "n_runs"]) if m in ours.index else 0 for m in order]
    aa = rows[rows["source"] == "aa"]
    if len(aa):
        a = aa.iloc[0]
        line = {c: MISSING for c in out.columns}
        line["inference time × FT (ours)"] = (f"{a['inference_time_vs_ft']:.2f} (IQR {a['inference_time_vs_ft_lo']:.2f}"
                                              f"–{a['inference_time_vs_ft_hi']:.2f})")
        line["runs"] = 1
        out.loc["Full FT, A/A control (a second copy)"] = line
    devices = sorted({str(x.get("device")) for x in results})
    notes = [f"training time × FT (ours): per seed, full FT's training throughput (train_examples_per_s, from the "
             f"result files; measured on {', '.join(devices)}) over the method's, same task, seed, backbone and "
             "profile; shown: the median over seeds with the range (min–max) and n. reading 'training spread ≥ "
             "difference': the range across seeds is at least the median's distance from 1, so the seeds do not "
             "resolve the difference from full FT. The trainer's throughput counts in-training evaluation and "
             "checkpointing where the budget has them; other jobs sharing the machine's cores add noise."]
    if not keep_train:
        notes.append(f"training time × FT (ours) is left out: {train_why}.")
    notes.append(_inference_note(timing) if timing else f"inference time × FT (ours) is missing: {no_timing}.")
    notes += ["inference params %: parameters the method adds to the inference form (AdaMix merged) over the "
              "backbone's; paper: UniPELT Table 4's trainable % (BERT-base).",
              "paper: UniPELT Table 4 (BERT-base, its own hardware); its time ratios carry no interval.",
              "Figure: bars on linear axes; training ratios with their range over seeds, inference ratios with their "
              "IQR over rounds and the A/A band shaded."]
    r.table("results", out, "Efficiency relative to full fine-tuning", "Inference parameters, training and "
            "inference time relative to full fine-tuning, ours beside UniPELT Table 4", frame=frame,
            paper_backbone="bert-base", notes=notes)
    if len(rows):
        fig_rows = rows if keep_train else rows.assign(train_time_vs_ft=rows["train_time_vs_ft"].where(
            rows["source"] != "ours"))
        r.figure("bars", rep.efficiency_bars, "Efficiency relative to full fine-tuning, ours beside UniPELT Table 4",
                 fig_rows, caption_from=frame)
    return r
