"""What the bench measures: groups of contenders timed together, the ratios between them and the goals.

A group's contenders are timed interleaved (see :mod:`peftkit.timing`); a ratio is always between two contenders
of the same group, numerator first (peftkit, or the method under test) over denominator (the peer / baseline).
Goals are reported as met or missed, never asserted.
"""
from __future__ import annotations

import fnmatch
import os
import sys
import time
from dataclasses import dataclass, field, replace

import torch

from . import backbones as bbs
from .contenders import Runner, Spec, pk
from .measure import peak_memory, ratio, summary, time_group

# Paper figures (UniPELT, Mao et al. 2022, Table 4: efficiency on BERT-base, inference time relative to full FT),
# from ../shared/reference/unipelt_efficiency_bert_base.csv.
PAPER_INFER_VS_FT = {"LoRA": 1.05, "Adapter": 1.07, "Prefix-tuning": 1.14, "UniPELT (AP)": 1.18,
                     "UniPELT (APL)": 1.27, "BitFit": 1.02}
# Same table, training time relative to full FT, keyed by the bench's training group.
PAPER_TRAIN_VS_FT = {"bitfit": ("BitFit", 0.65), "prefix": ("Prefix-tuning", 0.56), "lora": ("LoRA", 0.53),
                     "pfeiffer": ("Adapter", 0.55), "unipelt": ("UniPELT (APL)", 0.67)}


@dataclass(frozen=True)
class Ratio:
    name: str
    num: Spec
    den: Spec
    time_goal: float | None = None  # num/den median step time must be <= this
    mem_goal: float | None = None  # num/den peak memory must be <= this
    paper: str = ""  # a paper figure to read beside the ratio


@dataclass(frozen=True)
class Group:
    name: str
    mode: str  # train | infer
    members: tuple
    ratios: tuple = field(default=())


def _peer_train(name: str, ours: Spec, peer: Spec, goal: float) -> Group:
    return Group(name, "train", (ours, peer), (Ratio(f"{name} train step peftkit/{peer.impl}", ours, peer, goal, 1.0),))


def groups(hidden: int) -> list[Group]:
    """Every group, in run order. ``hidden`` sets UniPELT's adapter size to AdapterHub's default (hidden / 16)."""
    uni = dict(bottleneck=max(1, hidden // 16))  # = 48 on BERT-base, as in the paper; matches UniPELTConfig()
    out = [
        _peer_train("lora", pk("lora"), Spec("peft", "lora"), 0.95),
        _peer_train("pfeiffer", pk("pfeiffer"), Spec("adapters", "pfeiffer"), 0.95),
        _peer_train("houlsby", pk("houlsby"), Spec("adapters", "houlsby"), 1.0),
        _peer_train("prefix", pk("prefix"), Spec("adapters", "prefix"), 1.0),
        _peer_train("unipelt", pk("unipelt", variant="APL", **uni), Spec("adapters", "unipelt"), 1.0),
        _peer_train("full", pk("full"), Spec("torch", "full"), 1.0),
        _peer_train("bitfit", pk("bitfit"), Spec("torch", "bitfit"), 1.0),
    ]
    for base, single in (("adapter", pk("pfeiffer")), ("lora", pk("lora")), ("prefix", pk("prefix"))):
        opts = {"base": "pfeiffer" if base == "adapter" else base}
        mix, cons = pk("adamix", **opts), pk("adamix", consistency=True, **opts)
        out.append(Group(f"adamix-{base}", "train", (single, mix, cons), (
            Ratio(f"AdaMix-{base} / single {base} train step", mix, single, 1.05),
            Ratio(f"AdaMix-{base} + consistency / single {base} train step", cons, single, 1.8))))
    base = Spec("torch", "base", mode="infer")
    inf = lambda method, **o: pk(method, mode="infer", **o)  # noqa: E731
    single_a, mix_a = inf("pfeiffer", merged=True), inf("adamix", merged=True, base="pfeiffer")
    single_l, mix_l = inf("lora", merged=True), inf("adamix", merged=True, base="lora")
    ap, apl = inf("unipelt", variant="AP", **uni), inf("unipelt", variant="APL", **uni)
    prefix = inf("prefix", merged=True)
    mix_p = inf("adamix", merged=True, base="prefix")  # peftkit's extension: merged to one prefix (merge="kv")
    lora = pk("lora")
    out += [
        # A/A controls: two identical contenders, built and timed like any pair. Their ratio is 1 by construction,
        # so its paired IQR is this run's noise floor for the ratios beside it.
        Group("control-train", "train", (lora, replace(lora, replica=1)),
              (Ratio("A/A control: identical LoRA contenders, train step", replace(lora, replica=1), lora),)),
        Group("control-infer", "infer", (base, replace(base, replica=1)),
              (Ratio("A/A control: identical base models, inference", replace(base, replica=1), base),)),
        Group("infer-adamix-adapter", "infer", (single_a, mix_a),
              (Ratio("merged AdaMix-adapter / single adapter inference", mix_a, single_a, 1.02),)),
        Group("infer-adamix-lora", "infer", (single_l, mix_l),
              (Ratio("merged AdaMix-LoRA / single merged LoRA inference", mix_l, single_l, 1.02),)),
        # goal: merged AdaMix-prefix inside the A/A band of a single prefix, timed in the same interleaved group
        Group("infer-adamix-prefix", "infer", (prefix, mix_p, replace(prefix, replica=1)), (
            Ratio("merged AdaMix-prefix / single merged prefix inference", mix_p, prefix, 1.02),
            Ratio("A/A control: identical merged prefix contenders, inference", replace(prefix, replica=1), prefix))),
        Group("infer-lora", "infer", (base, single_l),
              (Ratio("merged LoRA / base model inference", single_l, base, 1.02,
                     paper=f"paper (unmerged LoRA vs FT): {PAPER_INFER_VS_FT['LoRA']:.2f}"),)),
        Group("infer-unipelt", "infer", (base, ap, apl), (
            Ratio("UniPELT AP / full FT inference", ap, base, paper=f"paper: {PAPER_INFER_VS_FT['UniPELT (AP)']:.2f}"),
            Ratio("UniPELT APL / full FT inference", apl, base, 1.15,
                  paper=f"paper: {PAPER_INFER_VS_FT['UniPELT (APL)']:.2f}"))),
        Group("infer-prefix", "infer", (base, prefix),
              (Ratio("merged prefix / base model inference", prefix, base,
                     paper=f"paper: {PAPER_INFER_VS_FT['Prefix-tuning']:.2f}"),)),
        Group("infer-hooks", "infer", (base, inf("full")),
              (Ratio("peftkit 'full' (hooks only) / base model inference", inf("full"), base),)),
    ]
    return out


GROUP_NAMES = [g.name for g in groups(768)]
# On CPU the large backbones run a subset (the full set is for a GPU); --only overrides.
CPU_SUBSET = {
    "bert-base": ["lora", "pfeiffer", "adamix-adapter", "adamix-lora", "control-train", "infer-adamix-adapter",
                  "infer-adamix-lora", "infer-lora", "control-infer"],
    "roberta-large": ["lora", "infer-lora"],
    "gpt2-medium": ["lora", "infer-lora"],
}
# (training rounds, inference rounds, warm-up rounds) per backbone on CPU; CUDA uses CUDA_REPEATS everywhere.
# --repeats N sets training rounds to N and inference rounds to 2N (an inference step is the cheaper one).
CPU_REPEATS = {"tiny": (2, 2, 1), "minilm": (20, 40, 2), "bert-base": (5, 8, 1), "roberta-large": (3, 4, 1),
               "gpt2-medium": (3, 4, 1)}
CUDA_REPEATS = (50, 100, 5)


def available_impls() -> dict[str, str]:
    """Which peer libraries this environment can import: {impl: "" if importable else why not}. AdapterHub
    ``adapters`` 1.3 needs transformers 4.57, so in the runtime environment (transformers 5) its groups are skipped
    and run from the peers environment instead (``--peer adapters``)."""
    out = {"peftkit": "", "torch": ""}
    for impl in ("peft", "adapters"):
        try:
            __import__(impl)
            out[impl] = ""
        except Exception as e:  # noqa: BLE001 - any import failure means the group cannot run here
            out[impl] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return out


def impls_of(name: str) -> set[str]:
    """The implementations a group's contenders use."""
    return {m.impl for g in groups(768) if g.name == name for m in g.members}


def select(backbone: str, only: list[str] | None, device: torch.device, peer: str | None = None) -> list[str]:
    """The groups to run on ``backbone``: ``--only``'s, else the device's default set; with ``peer`` only the groups
    that have a contender from that library."""
    names = _select(backbone, only, device)
    return [n for n in names if peer in impls_of(n)] if peer else names


def _select(backbone: str, only: list[str] | None, device: torch.device) -> list[str]:
    if only:
        names = [n for n in GROUP_NAMES if any(fnmatch.fnmatch(n, pat) for pat in only)]
        unknown = [p for p in only if not any(fnmatch.fnmatch(n, p) for n in GROUP_NAMES)]
        if unknown:
            raise ValueError(f"--only: no group matches {unknown}; groups are {', '.join(GROUP_NAMES)}")
        return names
    if device.type == "cpu" and backbone in CPU_SUBSET:
        return list(CPU_SUBSET[backbone])
    return list(GROUP_NAMES)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_group(group: Group, bb, batch: dict, device: torch.device, rounds: int, warmup: int,
              precision: str = "fp32") -> tuple[list, list]:
    """Build, time and measure one group; returns (measurement rows, ratio rows)."""
    runners, errors = {}, {}
    for spec in group.members:
        try:
            runners[spec] = Runner(spec, bb, batch, device, precision)
        except Exception as e:  # noqa: BLE001 - a peer that cannot build this backbone is reported, not fatal
            errors[spec] = f"{type(e).__name__}: {e}"
            _log(f"  {spec.key}: cannot build ({errors[spec]})")
    live = list(runners.values())
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    samples, cpu = time_group([r.step for r in live], rounds, warmup, device) if live else ([], [])
    mems = {r.spec: peak_memory(r, device) for r in live}
    rows = {}
    for spec in group.members:
        row = {"backbone": bb.name, "group": group.name, "mode": group.mode, "contender": spec.key,
               "impl": spec.impl, "method": spec.method, "options": dict(spec.options), "merged": spec.merged,
               "consistency": spec.consistency, "loadavg_1min": [load0, os.getloadavg()[0]]}
        if spec in runners:
            r = runners[spec]
            s, c = samples[live.index(r)], cpu[live.index(r)]
            row.update(samples=s, **summary(s), **mems[spec], trainable_params=r.trainable,
                       throughput=len(batch["input_ids"]) / summary(s)["median"])
            if device.type == "cpu":  # process CPU time says nothing about GPU work
                row.update(cpu_samples=c, cpu_median=summary(c)["median"])
        else:
            row["error"] = errors[spec]
        rows[spec] = row
    ratios = []
    for rt in group.ratios:
        a, b = rows[rt.num], rows[rt.den]
        out = {"backbone": bb.name, "group": group.name, "mode": group.mode, "name": rt.name,
               "numerator": rt.num.key, "denominator": rt.den.key, "time_goal": rt.time_goal,
               "mem_goal": rt.mem_goal, "paper": rt.paper}
        if "median" in a and "median" in b:
            out.update(ratio(a, b))
            out["time_met"] = None if rt.time_goal is None else out["ratio"] <= rt.time_goal
            if rt.time_goal is not None and "paired_q1" in out:  # the goal lies inside the noise band
                out["time_goal_within_iqr"] = out["paired_q1"] <= rt.time_goal <= out["paired_q3"]
            out["mem_ratio"] = a["peak_bytes"] / b["peak_bytes"]
            out["mem_met"] = None if rt.mem_goal is None else out["mem_ratio"] <= rt.mem_goal
        else:
            out["error"] = "a contender did not build"
        ratios.append(out)
    del runners, live
    _log(f"  {group.name}: {time.perf_counter() - t0:.0f} s")
    return list(rows.values()), ratios


def run(backbone_names: list[str], only: list[str] | None, device: torch.device, repeats: int | None,
        batch_size: int, seq_len: int, quick: bool, precision: str = "fp32", peer: str | None = None) -> dict:
    """Every selected group on every backbone; returns the raw result (see :mod:`bench.report`). A group whose peer
    library cannot be imported here is skipped and listed (``skipped``), not run half."""
    measurements, ratios, backbones = [], [], {}
    avail = available_impls()
    for name in backbone_names:
        t0 = time.perf_counter()
        selected = select(name, only, device, peer)
        if not selected:
            _log(f"{name}: no selected group{' has a ' + peer + ' contender' if peer else ''}; skipped")
            continue
        bb = bbs.load(name, device)
        batch = bbs.make_batch(bb, batch_size, seq_len, device)
        train_r, infer_r, warmup = CPU_REPEATS.get(name, (3, 4, 1)) if device.type == "cpu" else CUDA_REPEATS
        if quick:
            train_r, infer_r, warmup = 2, 2, 1
        if repeats:
            train_r, infer_r = repeats, 2 * repeats
        skipped = {n: avail[i] for n in selected for i in sorted(impls_of(n)) if avail.get(i)}
        names = [n for n in selected if n not in skipped]
        for n, why in skipped.items():
            _log(f"  {n}: skipped, its peer cannot be imported here ({why})")
        _log(f"{name}: {bb.params:,} parameters, batch {batch_size} x {seq_len}, {train_r} training / {infer_r} "
             f"inference rounds (+{warmup} warm-up), groups: {', '.join(names)}")
        for g in groups(bb.hidden):
            if g.name in names:
                rounds = train_r if g.mode == "train" else infer_r
                m, r = run_group(g, bb, batch, device, rounds, warmup, precision)
                measurements += m
                ratios += r
        subset = device.type == "cpu" and not only and name in CPU_SUBSET
        backbones[name] = {"source": bb.source, "params": bb.params, "hidden": bb.hidden, "batch": batch_size,
                           "seq_len": seq_len, "train_rounds": train_r, "infer_rounds": infer_r, "warmup": warmup,
                           "groups": names, "skipped": skipped,
                           "cpu_subset": subset, "seconds": round(time.perf_counter() - t0, 1)}
        del bb, batch
    return {"backbones": backbones, "measurements": measurements, "ratios": ratios}
