"""Hyperparameter presets: a run's settings = its protocol's (:mod:`peftkit.protocols`, the authors' training
settings) scaled by the profile (paper: unscaled; cpu / smoke: data, length and backbone only).

One place for every number, so notebooks, the CLI and the trainer never disagree.
"""
from __future__ import annotations

import re

from . import protocols

PROFILES = ("smoke", "cpu", "paper")

#: AdaMix's beam search (gpt2_beam.py via run_eval_*.sh): beam 10, length penalty 0.8, no-repeat 4-grams, 64 tokens.
GENERATION = {"num_beams": 10, "length_penalty": 0.8, "no_repeat_ngram_size": 4, "max_new_tokens": 64}
#: decoding scaled for the small profiles (beam width and length only)
GENERATION_SCALING = {"smoke": {"num_beams": 2, "max_new_tokens": 12}, "cpu": {"num_beams": 5, "max_new_tokens": 48}}

#: The scaled profiles replace the paper's warmup steps by the same fraction of training (E2E: 2,000 of ~105k
#: steps; WebNLG: 2,500 of ~56k; DART: 2,000 of ~157k, 62,659 examples x 20 epochs at batch 8), since their runs
#: are far shorter than 2,000 steps.
SCALED_WARMUP = {"e2e": 0.019, "webnlg": 0.044, "dart": 0.013}


#: The scaled profiles' token length per task: the smallest max length that truncates fewer than 1% of the task's
#: training examples with MiniLM-L6's tokenizer (:func:`covering_length`; GLUE and NLG: the whole training set as
#: the run encodes it; few-shot: the union of the five LM-BFF splits' training files with the prompt template),
#: never above the protocol's own max length (RTE: 197 -> 128). Tasks not listed keep the protocol's. Measured on
#: the shared data (tests/test_protocols.py recomputes the GLUE and few-shot entries).
TOKEN_LENGTH = {"glue": {"cola": 25, "sst2": 44, "mrpc": 83, "stsb": 75, "rte": 197},
                "fewshot": {"sst-2": 61}, "nlg": {"e2e": 95, "webnlg": 187}}
#: fraction of training examples a scaled token length may truncate
TRUNCATED = 0.01


def covering_length(lengths) -> int:
    """The smallest length L such that fewer than :data:`TRUNCATED` of ``lengths`` exceed L."""
    ordered = sorted(int(n) for n in lengths)
    if not ordered:
        raise ValueError("covering_length needs at least one length")
    allowed = -(-len(ordered) * TRUNCATED // 1) - 1  # the most examples that may exceed L (strictly fewer than 1%)
    return ordered[len(ordered) - 1 - int(max(allowed, 0))]


def profile_settings(profile: str, kind: str, task: str | None = None, protocol: str | None = None,
                     method: str = "lora", model: str | None = None) -> dict:
    """The settings of a run: the protocol's (for ``model``, default the profile's backbone) with the profile's
    scaling on top. ``protocol`` None: the default for ``kind`` and ``method``."""
    if profile not in PROFILES:
        raise ValueError(f"invalid profile={profile!r}: allowed one of {', '.join(PROFILES)}")
    name = protocol or protocols.default_protocol(kind, method)
    scale = protocols.SCALING[profile][kind]
    model = model or scale["model"]
    out = {**protocols.settings(name, model, task), **scale, "model": model, "protocol": name}
    short = (task or "").split(":", 1)[-1].lower()
    if out.get("max_length") == "task":  # the scaled profiles' per-task length, capped at the protocol's
        full = protocols.settings(name, model, task)["max_length"]
        key = re.sub(r"[^a-z0-9]", "", short) if kind == "glue" else short
        out["max_length"] = min(TOKEN_LENGTH[kind].get(key, full), full)
    if profile != "paper" and out.get("warmup_steps") is None and short in SCALED_WARMUP and name == "adamix-nlg":
        out["warmup_ratio"] = SCALED_WARMUP[short]
    if out.get("max_steps") and "epochs" in scale:
        out.pop("max_steps")
    if "max_steps" in scale:
        out.pop("epochs", None)
    return out


def generation_settings(profile: str) -> dict:
    """Decoding settings: the papers' beam search, cut down for the smoke and cpu profiles."""
    return {**GENERATION, **GENERATION_SCALING.get(profile, {})}


def learning_rate(method: str, profile: str = "cpu", model: str | None = None, protocol: str | None = None,
                  kind: str = "glue", options: dict | None = None) -> float:
    """The protocol's rate for ``method`` (``options``: AdaMix's base) on ``model`` (keyed by architecture family
    and size from its config)."""
    name = protocol or protocols.default_protocol(kind, method)
    return protocols.learning_rate(name, method, model or protocols.SCALING[profile][kind]["model"], options)
