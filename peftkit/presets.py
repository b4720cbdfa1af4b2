"""Hyperparameter presets: the papers' stated settings (../shared/reference/README.md) and the CPU budgets.

One place for every number, so notebooks, the CLI and the trainer never disagree.
"""
from __future__ import annotations

# UniPELT (BERT-base) learning rates, and AdaMix's (BERT-base, 4e-4; RoBERTa-large 3e-4; GPT-2 M NLG 2e-4).
PAPER_LR = {"full": 2e-5, "bitfit": 1e-4, "pfeiffer": 1e-4, "houlsby": 1e-4, "prefix": 2e-4, "lora": 5e-4,
            "unipelt": 5e-4, "adamix": 4e-4, "prompt": 3e-1}
# prompt-tuning is not in either paper; 0.3 is Lester et al.'s rate.
PAPER_LR_BY_MODEL = {("adamix", "roberta-large"): 3e-4, ("adamix", "gpt2-medium"): 2e-4, ("lora", "gpt2-medium"): 2e-4}

# CPU profile (MiniLM-L6, a few epochs): the papers' rates are tuned for 20-50 epochs; with 3-10 epochs small
# PEFT modules need larger steps. These are peftkit's choices, not the papers'.
CPU_LR = {"full": 5e-5, "bitfit": 1e-3, "pfeiffer": 1e-3, "houlsby": 1e-3, "prefix": 1e-3, "lora": 1e-3,
          "unipelt": 1e-3, "adamix": 1e-3, "prompt": 3e-1}

CONSISTENCY_WEIGHT = {"classification": 1.0, "generation": 100.0, "regression": 0.0}

GENERATION = {"num_beams": 10, "length_penalty": 0.8, "no_repeat_ngram_size": 4, "max_new_tokens": 64}

# Training settings per profile (overridable per run). Paper: UniPELT's GLUE protocol, AdaMix's NLG protocol.
PROFILES = {
    "smoke": {"model": "minilm", "batch_size": 8, "max_length": 64, "max_steps": 8, "eval_steps": 4,
              "max_train": 64, "max_eval": 64, "patience": None, "warmup_ratio": 0.0, "weight_decay": 0.0,
              "generation": {"num_beams": 2, "max_new_tokens": 12}},
    "cpu": {"model": "minilm", "batch_size": 16, "max_length": 128, "epochs": 3, "eval_steps": None,
            "max_train": None, "max_eval": None, "patience": None, "warmup_ratio": 0.06, "weight_decay": 0.1},
    "paper": {"model": "bert-base-uncased", "batch_size": 16, "max_length": 128, "epochs": 50, "eval_steps": None,
              "max_train": None, "max_eval": None, "patience": 10, "warmup_ratio": 0.06, "weight_decay": 0.1},
}
# Per task kind, what differs from the profile above. These are the defaults of a single run (`peftkit train`,
# RunSpec); the notebooks' study grids set smaller budgets of their own on top (studies_defaults.DEFAULTS).
# Few-shot (LM-BFF protocol): batch 8, 1,000 steps, evaluation on the k-shot dev split every 100 steps.
# NLG (AdaMix, GPT-2 medium): batch 8, length 512, 20 epochs, label smoothing 0.1, weight decay 0.01 (E2E).
KIND_PRESETS = {
    "fewshot": {"smoke": {"max_train": None, "max_eval": 64},
                "cpu": {"batch_size": 8, "max_steps": 300, "epochs": None, "eval_steps": 50, "max_length": 128},
                "paper": {"model": "roberta-large", "batch_size": 8, "max_steps": 1000, "epochs": None,
                          "eval_steps": 100, "patience": None}},
    "nlg": {"smoke": {"max_train": 32, "max_eval": 3},
            "cpu": {"max_train": 3000, "max_eval": 60, "epochs": 2, "max_length": 96, "batch_size": 16,
                    "weight_decay": 0.01, "generation": {"num_beams": 5, "max_new_tokens": 48}},
            "paper": {"model": "gpt2-medium", "batch_size": 8, "max_length": 512, "epochs": 20, "patience": None,
                      "label_smoothing": 0.1, "weight_decay": 0.01, "warmup_ratio": 0.0}},
}


# Per task, what differs again (profile -> task -> settings). AdaMix's NLG protocol: E2E 20 epochs with 2,000 warmup
# steps, WebNLG 25 epochs with 2,500, DART 20 epochs without label smoothing or weight decay (and, as a method
# option, without LoRA dropout: see studies_defaults.NLG_OPTIONS_BY_TASK).
TASK_PRESETS = {
    "paper": {"e2e": {"epochs": 20, "warmup_steps": 2000},
              "webnlg": {"epochs": 25, "warmup_steps": 2500},
              "dart": {"epochs": 20, "label_smoothing": 0.0, "weight_decay": 0.0}},
}


def profile_settings(profile: str, kind: str, task: str | None = None) -> dict:
    """The presets of ``profile`` for a task of ``kind`` (glue | fewshot | nlg), and of ``task`` itself if given."""
    per_task = TASK_PRESETS.get(profile, {}).get((task or "").split(":", 1)[-1].lower(), {})
    return {**PROFILES[profile], **KIND_PRESETS.get(kind, {}).get(profile, {}), **per_task}


def generation_settings(profile: str) -> dict:
    """Decoding settings: the papers' beam search, cut down for the smoke and cpu profiles."""
    return {**GENERATION, **profile_settings(profile, "nlg").get("generation", {})}


def learning_rate(method: str, profile: str = "cpu", model: str | None = None) -> float:
    if profile == "paper":
        return PAPER_LR_BY_MODEL.get((method, model or ""), PAPER_LR[method])
    return CPU_LR[method]
