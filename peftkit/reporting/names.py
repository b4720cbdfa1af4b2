"""Names shared by tables and figures: task keys, metric units, method and backbone display names."""
from __future__ import annotations

import re

from ..metrics._glue_tasks import normalize_task

# Metrics the result files report as fractions: shown x100 (percent) like the papers.
# WebNLG also reports each on the seen / unseen categories alone (suffixes _seen, _unseen; the plain key is all).
_SEEN = ("_seen", "_unseen")
PERCENT_METRICS = frozenset({"accuracy", "f1", "matthews_correlation", "pearson", "spearmanr", "bleu", "meteor",
                             "rouge_l", "combined_score"} | {m + s for m in ("bleu", "meteor") for s in _SEEN})
# Reported as they are: raw NIST and CIDEr scores, TER as a fraction (the papers print it so).
RAW_METRICS = frozenset({"nist", "cider", "ter", "ter_seen", "ter_unseen"})
KNOWN_METRICS = PERCENT_METRICS | RAW_METRICS
LOWER_IS_BETTER = frozenset({"ter", "ter_seen", "ter_unseen"})

METRIC_NAMES = {"accuracy": "accuracy", "f1": "F1", "matthews_correlation": "Matthews corr.",
                "pearson": "Pearson", "spearmanr": "Spearman", "bleu": "BLEU", "nist": "NIST", "meteor": "METEOR",
                "rouge_l": "ROUGE-L", "cider": "CIDEr", "ter": "TER", "combined_score": "combined score",
                "mean": "average", "bleu_seen": "BLEU S", "bleu_unseen": "BLEU U", "meteor_seen": "METEOR S",
                "meteor_unseen": "METEOR U", "ter_seen": "TER S", "ter_unseen": "TER U"}

TASK_NAMES = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "rte": "RTE", "qnli": "QNLI", "stsb": "STS-B",
              "mnli": "MNLI", "mnli_matched": "MNLI-m", "mnli_mismatched": "MNLI-mm", "qqp": "QQP", "wnli": "WNLI",
              "sst5": "SST-5", "mr": "MR", "cr": "CR", "mpqa": "MPQA", "subj": "Subj", "trec": "TREC", "snli": "SNLI",
              "e2e": "E2E", "webnlg": "WebNLG", "dart": "DART", "avg": "Avg"}

# Every method_label the runner writes (peftkit.experiment.method_label), in the order tables and figures use.
METHOD_LABELS = ("full", "bitfit", "prompt", "prefix", "lora", "pfeiffer", "houlsby", "adamix-adapter",
                 "adamix-pfeiffer", "adamix-houlsby", "adamix-lora", "adamix-prefix", "adamix-prompt", "unipelt-AP",
                 "unipelt-APL", "unipelt-AP-nogates", "unipelt-APL-nogates")
METHOD_NAMES = {"full": "Full FT", "bitfit": "BitFit", "prompt": "Prompt-tuning", "prefix": "Prefix-tuning",
                "lora": "LoRA", "pfeiffer": "Adapter (Pfeiffer)", "houlsby": "Houlsby adapter",
                "adamix-adapter": "AdaMix (adapter)", "adamix-pfeiffer": "AdaMix (Pfeiffer adapter)",
                "adamix-houlsby": "AdaMix (Houlsby adapter)",
                "adamix-lora": "AdaMix (LoRA)", "adamix-prefix": "AdaMix (prefix-tuning)",
                "adamix-prompt": "AdaMix (prompt-tuning)", "unipelt-AP": "UniPELT (AP)", "unipelt-APL": "UniPELT (APL)",
                "unipelt-AP-nogates": "UniPELT (AP) without gates",
                "unipelt-APL-nogates": "UniPELT (APL) without gates"}
# Spellings callers may use for the same label.
METHOD_ALIASES = {"adapter": "pfeiffer", "adamix": "adamix-adapter",
                  "ft": "full", "full-ft": "full", "unipelt-ap": "unipelt-AP", "unipelt-apl": "unipelt-APL",
                  "unipelt-ap-nogates": "unipelt-AP-nogates", "unipelt-apl-nogates": "unipelt-APL-nogates"}

# Canonical backbone keys (what the papers used) and how titles print them.
BACKBONE_NAMES = {"bert-base": "BERT-base", "roberta-large": "RoBERTa-large", "roberta-base": "RoBERTa-base",
                  "gpt2-medium": "GPT-2 medium", "gpt2": "GPT-2", "minilm-l6": "MiniLM-L6"}


def task_key(task) -> str:
    """Canonical task key: GLUE/few-shot names through ``normalize_task`` ("SST-2" -> "sst2"), others lower case."""
    text = str(task)
    try:
        return normalize_task(text)
    except ValueError:
        return text.strip().lower().replace("-", "").replace(" ", "")


def task_name(task) -> str:
    """How a table prints a task ("sst2" -> "SST-2")."""
    key = task_key(task)
    return TASK_NAMES.get(key, str(task))


def method_key(label: str) -> str:
    """Canonical method_label for a label or one of its aliases (unknown labels are returned unchanged)."""
    text = str(label).strip()
    if text in METHOD_NAMES:
        return text
    return METHOD_ALIASES.get(text.lower(), text)


def method_name(label: str) -> str:
    """Display name of a method_label ("adamix-lora" -> "AdaMix (LoRA)")."""
    return METHOD_NAMES.get(method_key(label), str(label))


def method_order(labels) -> list[str]:
    """Labels sorted in the kit's fixed order (unknown labels last, alphabetically)."""
    rank = {m: i for i, m in enumerate(METHOD_LABELS)}
    return sorted(dict.fromkeys(labels), key=lambda m: (rank.get(m, len(rank)), str(m)))


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def metric_unit(metric: str) -> str:
    """Axis unit of a metric as the frame holds it."""
    if metric in PERCENT_METRICS:
        return "%"
    if metric == "ter":
        return "fraction"
    return "score"


def metric_axis_label(metric: str) -> str:
    unit = metric_unit(metric)
    return f"{metric_name(metric)} ({unit})"


def scale_metric(metric: str, value) -> float:
    """A result file's value in the papers' units: x100 for fraction metrics, as it is for nist, cider, ter."""
    value = float(value)
    return value * 100.0 if metric in PERCENT_METRICS else value


def decimals(metric: str) -> int:
    return 3 if metric in ("ter", "ter_seen", "ter_unseen", "cider") else 2


def backbone_key(model) -> str:
    """Canonical backbone of a model name or path: 'bert-base-uncased' -> 'bert-base', 'minilm' -> 'minilm-l6'."""
    text = str(model or "").strip().rstrip("/").lower()
    base = re.split(r"[\\/]", text)[-1] if text else ""
    m = re.search(r"minilm-l(\d+)", text)
    if m:
        return f"minilm-l{m.group(1)}"
    if "minilm" in text:
        return "minilm-l6"
    for key in ("roberta-large", "roberta-base", "bert-large", "bert-base", "gpt2-medium", "gpt2-large", "gpt2-xl"):
        if key in base:
            return key
    if base in ("gpt2", "openai-community-gpt2"):
        return "gpt2"
    return base


def backbone_name(model) -> str:
    """How titles print a backbone ('minilm' -> 'MiniLM-L6', 'bert-base-uncased' -> 'BERT-base')."""
    key = backbone_key(model)
    if key.startswith("minilm-l"):
        return "MiniLM-L" + key[len("minilm-l"):]
    return BACKBONE_NAMES.get(key, key or "unknown backbone")
