"""LM-BFF's manual prompts (Gao et al., 2021, Table 1 and ``run_experiment.sh``).

Template format: literal text with the fields ``{text_a}``, ``{text_b}`` and ``{mask}``. A field
may carry one modifier after ``|``:

- ``|drop_last``: drop the last character (LM-BFF's ``sent-_``, which removes the final
  punctuation before "?");
- ``|lower_first``: lower-case the first character (LM-BFF's ``sentl_``).

The rendered string is LM-BFF's concatenation of template parts: ``"{text_a} It was {mask}."``
is ``*cls**sent_0*_It_was*mask*.*sep+*`` without the special tokens. The space before ``{mask}``
matches LM-BFF for RoBERTa, whose mask token strips the space before it (BERT ignores spaces).
Label words are keyed by class index in the task's label order (``load_kshot``/``load_glue``);
LM-BFF scores them as single tokens with a leading space (" great") under RoBERTa.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from ._common import DataError, lookup, norm_name


@dataclass(frozen=True)
class Prompt:
    """A manual template, its label words (class index -> word) and LM-BFF's original spelling."""

    template: str
    label_words: Mapping[int, str]
    lmbff_template: str


_SENTIMENT = "{text_a} It was {mask}."
_THIS_IS = "{text_a} This is {mask}."
_NLI = "{text_a|drop_last}? {mask}, {text_b|lower_first}"
_PARA = "{text_a} {mask}, {text_b|lower_first}"
_LM_SENTIMENT = "*cls**sent_0*_It_was*mask*.*sep+*"
_LM_THIS_IS = "*cls**sent_0*_This_is*mask*.*sep+*"
_LM_NLI = "*cls**sent-_0*?*mask*,*+sentl_1**sep+*"
_LM_PARA = "*cls**sent_0**mask*,*+sentl_1**sep+*"


def _p(template: str, words: tuple[str, ...], lmbff: str) -> Prompt:
    return Prompt(template, MappingProxyType(dict(enumerate(words))), lmbff)


#: Keyed by LM-BFF task directory name. All templates and words were checked against
#: princeton-nlp/LM-BFF ``run_experiment.sh``; only the key order is ours (class index order).
PROMPTS: Mapping[str, Prompt] = MappingProxyType({
    "SST-2": _p(_SENTIMENT, ("terrible", "great"), _LM_SENTIMENT),
    "sst-5": _p(_SENTIMENT, ("terrible", "bad", "okay", "good", "great"), _LM_SENTIMENT),
    "mr": _p(_SENTIMENT, ("terrible", "great"), _LM_SENTIMENT),
    "cr": _p(_SENTIMENT, ("terrible", "great"), _LM_SENTIMENT),
    "mpqa": _p(_SENTIMENT, ("terrible", "great"), _LM_SENTIMENT),
    "subj": _p(_THIS_IS, ("subjective", "objective"), _LM_THIS_IS),
    # TREC classes 0..5 = description, entity, abbreviation, human, location, numeric.
    "trec": _p("{mask}: {text_a}", ("Description", "Entity", "Expression", "Human", "Location", "Number"),
               "*cls**mask*:*+sent_0**sep+*"),
    "CoLA": _p(_THIS_IS, ("incorrect", "correct"), _LM_THIS_IS),
    # NLI label order is entailment, neutral, contradiction (LM-BFF maps by name: Yes/Maybe/No).
    "MNLI": _p(_NLI, ("Yes", "Maybe", "No"), _LM_NLI),
    "SNLI": _p(_NLI, ("Yes", "Maybe", "No"), _LM_NLI),
    "QNLI": _p(_NLI, ("Yes", "No"), _LM_NLI),
    "RTE": _p(_NLI, ("Yes", "No"), _LM_NLI),
    "MRPC": _p(_PARA, ("No", "Yes"), _LM_PARA),
    "QQP": _p(_PARA, ("No", "Yes"), _LM_PARA),
    # STS-B is regression: 0 -> "No" anchors the low end (score 0), 1 -> "Yes" the high end (5).
    "STS-B": _p(_PARA, ("No", "Yes"), _LM_PARA),
})

_PROMPT_NAMES = {norm_name(n): n for n in PROMPTS}
_FIELD = re.compile(r"\{(text_a|text_b|mask)(?:\|(drop_last|lower_first))?\}")


def get_prompt(task: str) -> Prompt:
    """The prompt of an LM-BFF task (case-insensitive; "sst2" and "SST-2" both work)."""
    return PROMPTS[lookup("task", "an LM-BFF few-shot task", task, _PROMPT_NAMES, PROMPTS)]


def render_prompt(task: str, text_a: str, text_b: str | None = None, mask_token: str = "<mask>") -> str:
    """Fill the task's template: e.g. SST-2 gives ``f"{text_a} It was {mask_token}."``."""
    template = get_prompt(task).template
    if "{text_b" in template and text_b is None:
        raise DataError(f"text_b is required for the sentence-pair task {task!r}")
    values = {"text_a": text_a, "text_b": text_b, "mask": mask_token}

    def fill(m: re.Match) -> str:
        field, mod = m.group(1), m.group(2)
        text = values[field]
        if mod == "drop_last":
            return text[:-1]
        if mod == "lower_first":
            return text[:1].lower() + text[1:]
        return text

    return _FIELD.sub(fill, template)
