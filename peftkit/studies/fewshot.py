"""03 few-shot: LM-BFF splits (K=16 per class, five seeds), AdaMix vs single-module PEFT vs full fine-tuning (and
AdaMix-prefix, peftkit's extension, beside prefix-tuning), prompt (masked-LM) head vs classification head."""
from __future__ import annotations

import itertools
from typing import Iterable

from .. import reporting as rep
from ..experiment import RunSpec
from ..reporting.names import method_name, method_order
from .grids import build
from .reports import Report, keys_in_order, kit_metric, metric_note, ours_table, start

NAME = "fewshot"
#: this study's own grid parameters (beyond common.COMMON_PARAMETERS), notebook names in upper case
PARAMETERS = ("tasks", "methods", "classifier_head")
#: adamix-prefix: AdaMix over prefix-tuning, peftkit's extension (docs/adamix_prefix.md), beside prefix-tuning
LABELS = ("full", "pfeiffer", "lora", "prefix", "adamix-adapter", "adamix-lora", "adamix-prefix")
#: the claims checked (prompt head): each AdaMix against the single module of its kind that the grid trains
FEWSHOT_CLAIMS = (("adamix-adapter", "pfeiffer"), ("adamix-lora", "lora"), ("adamix-prefix", "prefix"))
LM_BFF_TASKS = ("sst-2", "sst-5", "mr", "cr", "mpqa", "subj", "trec", "cola", "mrpc", "qnli", "rte")
SEEDS = (13, 21, 42, 87, 100)
# smoke: its 32 examples, 64 tokens (room for the prompt), 2 steps, one evaluation on 16
#: the grid's defaults per profile (every notebook parameter left at None) and the training budget (RunSpec
#: fields on top of the profile's presets in peftkit.presets)
DEFAULTS = {
    "smoke": dict(tasks=("sst-2",), methods=("lora",), classifier_head=("lora",), seeds=(13,),
                  budget=dict(max_steps=2, eval_steps=2, max_eval=16)),
    "cpu": dict(tasks=("sst-2",), methods=LABELS, classifier_head=("lora",), seeds=SEEDS),
    "paper": dict(tasks=LM_BFF_TASKS, methods=LABELS, classifier_head=("lora",), seeds=SEEDS),
}


def points(p: dict) -> Iterable[dict]:
    """Every task x method (prompt head, and the classifier_head methods with a classification head) x seed; the
    seed also draws the split (data_seed)."""
    heads = [(m, "prompt") for m in p["methods"]] + [(m, "classifier") for m in p["classifier_head"] or ()]
    for task, (label, head), seed in itertools.product(p["tasks"], heads, p["seeds"]):
        yield dict(task=f"fewshot:{task.split(':', 1)[-1]}", label=label, head=head, data_seed=seed, seed=seed)


def grid(profile: str, **params) -> list[RunSpec]:
    """This study's RunSpecs under ``profile`` (see :func:`peftkit.studies.grids.build`; nothing is trained)."""
    return build(NAME, profile, DEFAULTS, PARAMETERS, points, **params)


def head_note(prompt_runs: list[dict]) -> str:
    """What the result files say about the masked-LM head (field new_head_weights), naming the backbones."""
    new = sorted({str(x.get("model")) for x in prompt_runs if x.get("new_head_weights")})
    n_new = sum(bool(x.get("new_head_weights")) for x in prompt_runs)
    text = (f"Prompt-based runs: the masked-LM head transform is newly initialised in {n_new} of {len(prompt_runs)} "
            "runs (result field new_head_weights)")
    if not n_new:
        return text + ": every backbone used shipped its pretrained masked-LM head."
    why = "MiniLM ships its encoder only" if new == ["minilm"] else \
        f"the checkpoint of {', '.join(new)} ships no masked-LM head transform"
    return text + f": {why}, so the head's dense + LayerNorm start from random weights and train with the method."


def report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """LM-BFF few-shot (K=16 per class, five splits): AdaMix vs single-module PEFT vs full FT, prompt vs
    classification head."""
    r = start(NAME, profile, reports_dir, results, grid)
    frame = rep.runs_frame(results)
    tasks = keys_in_order(frame["task"])
    rows = []
    for head in ("prompt", "classifier"):
        for m in method_order(frame.loc[frame["head"] == head, "method_label"]):
            rows.append((method_name(m) + (", classification head" if head == "classifier" else ""),
                         {"method_label": m, "head": head}))
    prompt_runs = [x for x in results if x.get("head") == "prompt"]
    r.notes = [head_note(prompt_runs),
               "No paper column: the AdaMix paper's few-shot numbers are not transcribed in shared/reference."]
    t = ours_table(frame, rows, tasks, kit_metric)
    r.table("results", t, "Few-shot (K = 16 per class, LM-BFF splits), test sets", "Few-shot results per method "
            "and head", frame=frame, notes=[metric_note(tasks, kit_metric)] + r.notes)
    prompt = rep.select(frame, head="prompt")
    labels = set(prompt["method_label"])
    checks = [rep.claim_check(prompt, mix, single, kit_metric, tasks, pair_on=("task", "seed", "data_seed"))
              for mix, single in FEWSHOT_CLAIMS if {mix, single} <= labels]
    if {"prompt", "classifier"} <= set(rep.select(frame, method_label="lora")["head"]):
        checks.append(rep.claim_check(frame, {"method_label": "lora", "head": "prompt"},
                                      {"method_label": "lora", "head": "classifier"}, kit_metric, tasks,
                                      claim="LoRA with the prompt (MLM) head > LoRA with a classification head"))
    r.claim_file(checks, "Few-shot claims")
    return r
