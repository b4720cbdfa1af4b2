"""A finished run's model, rebuilt from its record: its trained parameters (``best/``, kept in the local run store,
never committed), or only its structure (the method attached with the run's options, which is what inference cost
depends on, so it needs the record alone)."""
from __future__ import annotations

from pathlib import Path

from .core import apply


def run_dir(result: dict) -> Path:
    """The directory of a finished run (its ``result.json`` and ``best/``), from a result dict."""
    if result.get("path"):  # set by peftkit.results.load_results and read_result
        return Path(result["path"]).parent
    return Path(result["spec"]["out"])


def load_trained(result: dict):
    """A finished run's scored model, rebuilt from the run store: a fresh backbone with the run's head (the frozen
    parts drawn with the run's seed, as in training) and ``<run>/best`` (what trained, plus the head) loaded into it
    with :func:`peftkit.load`. Returns (model, tokenizer); the model is in eval mode and unmerged (see
    :func:`peftkit.trainer.inference_form` for the form it was scored in)."""
    from .core import load

    best = run_dir(result) / "best"
    if not (best / "peftkit_config.json").is_file():
        raise FileNotFoundError(f"{best}: no trained parameters (peftkit_config.json) for run {result.get('run_id')}")
    return _rebuild(result, lambda model, head: load(model, best))


def attached_model(result: dict):
    """A finished run's model as its structure alone: a fresh backbone with the run's head, and the run's method
    attached with the run's options (the seed it trained with), untrained. Inference cost depends on the structure
    (the merged or unmerged form, the sizes), not on the trained values, so 08's timing measures these: it needs
    no trained weights, only the run record. Returns (model, tokenizer) in eval mode."""
    spec = result.get("spec") or {}
    training = result.get("training") or {}
    options = dict(spec.get("options") or {})
    common = dict(train_head=training.get("train_head", True), seed=(result.get("seeds") or {}).get("routing_seed"))

    def attach(model, head):
        pooler = {"train_pooler": training.get("train_pooler", False)} if head == "classifier" else {}
        return apply(model, result["method"], **common, **pooler, **options)
    return _rebuild(result, attach)


def _rebuild(result: dict, attach):
    """The rebuild both share: the run's tokenizer, torch seeded with the run's seed (so the frozen parts a fresh
    backbone draws are those it trained with), the backbone with the run's head, and ``attach(backbone, head)``,
    which puts the method on the backbone and returns it (on a prompt run the backbone is the MLM that
    :class:`peftkit.features.PromptClassifier` then wraps). Returns (model, tokenizer), the model in eval mode."""
    from transformers import set_seed

    from . import backbones

    name, head = result["task"], result.get("head") or "classifier"
    tok = backbones.load_tokenizer(result["model"])
    set_seed((result.get("seeds") or {}).get("seed", 42))
    if head == "classifier":
        from .data import glue_task

        model = attach(backbones.load_model(result["model"], "classifier", glue_task(name).num_labels), head)
    elif head == "prompt":
        from . import features

        mlm = attach(backbones.load_model(result["model"], "mlm"), head)
        model = features.PromptClassifier(mlm, features.label_word_ids(name, tok))
    else:
        model = attach(backbones.load_model(result["model"], head), head)
    return model.eval(), tok
