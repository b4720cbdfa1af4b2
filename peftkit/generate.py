"""NLG decoding (beam search presets of AdaMix) and scoring with the packaged E2E / WebNLG / DART metrics."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .core import has_state, state_of


def cache_is_exact(model) -> bool:
    """Whether generating with the KV cache computes what full forwards compute. Not for gated UniPELT: a gate
    averages over the positions of its forward, which a cached step restricts to the new token
    (docs/fidelity.md, L1); :func:`generate` turns the cache off for it."""
    if not has_state(model):
        return True
    state = state_of(model)
    return not (state.method == "unipelt" and getattr(state.config, "gates", False))


@torch.no_grad()
def generate(model, tokenizer, sources: list[str], max_length: int, settings: dict, batch_size: int = 8,
             progress: Optional[Callable[[int], None]] = None, nlg_format: str = "authors",
             extra_eos: Optional[list] = None, show: bool = False) -> list[str]:
    """Decode one text per source. Decoder-only LMs (GPT-2) are batched with left padding; an encoder used as a
    decoder (BERT-style, no position ids from the mask) decodes one source at a time (beams still batched).
    ``extra_eos``: GPT-2 token ids that also end a beam (AdaMix's ``gpt2_beam.py``: 628, "\n\n"); ignored for
    other tokenizers, whose ids mean other things. ``show``: a progress bar (sources decoded, rate, time left) on
    stderr. The KV cache is used unless it would change the result (:func:`cache_is_exact`)."""
    if show and progress is None:
        from tqdm.auto import tqdm

        with tqdm(total=len(sources), desc="decoding", unit="source") as bar:
            return generate(model, tokenizer, sources, max_length, settings, batch_size, progress=bar.update,
                            nlg_format=nlg_format, extra_eos=extra_eos)
    from .features import generation_ids  # datasets-free import of this module (cache_is_exact)

    model.eval()
    device = next(model.parameters()).device
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    eos = sep if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    gpt2 = model.config.model_type == "gpt2"
    stop = [eos] + [i for i in (extra_eos or []) if gpt2 and i != eos]
    step = batch_size if gpt2 else 1
    if not cache_is_exact(model):
        settings = {**settings, "use_cache": False}
    texts: list[str] = []
    for start in range(0, len(sources), step):
        rows = [generation_ids(tokenizer, s, None, max_length, nlg_format)["input_ids"]
                for s in sources[start:start + step]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        out = model.generate(input_ids=ids, attention_mask=mask, eos_token_id=stop if len(stop) > 1 else eos,
                             pad_token_id=pad,
                             do_sample=False, **settings)
        for row in out[:, width:]:
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
        if progress:
            progress(len(rows))
    return texts


def score(task: str, predictions: list[str], references: list[list[str]], seen: Optional[list[bool]] = None,
          scoring: str = "lora") -> dict:
    """E2E: bleu, nist, meteor, rouge_l, cider (official script definitions). WebNLG / DART: bleu, meteor, ter
    as the LoRA/AdaMix evaluation computed them (*scoring* "lora"; "sacrebleu": raw-text bleu, ter), and for
    WebNLG with *seen* (one bool per source) the same keys again with ``_seen`` / ``_unseen`` suffixes."""
    from . import metrics

    name = {"e2e": "e2e", "webnlg": "webnlg", "dart": "dart"}[task]
    if name == "e2e":
        return metrics.load(name).compute(predictions=predictions, references=references)
    return metrics.load(name).compute(predictions=predictions, references=references, seen=seen, scoring=scoring)


def scoring_label(task: str, scoring: str = "lora") -> str:
    """How :func:`score` scored *task*, in words (recorded in result.json and printed by the reports)."""
    if scoring not in ("lora", "sacrebleu"):
        raise ValueError(f"unknown scoring {scoring!r}; expected one of ['lora', 'sacrebleu']")
    if task == "e2e":
        return "e2e-metrics measure_scores.py -p definitions, LoRA's tokenised test references"
    if scoring == "lora":
        return "LoRA gpt2_decode.py --tokenize --lower --ref_num 6 + eval.py (multi-bleu-detok, METEOR 1.5, pyter min)"
    return "sacrebleu on raw text (BLEU 13a, corpus TER)"
