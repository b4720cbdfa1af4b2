"""Prompt-tuning (Lester et al.): ``prompt_length`` trainable vectors inserted at the input embeddings.

Encoders get the prompt after the first token (so BERT's pooler still reads [CLS]); decoders get it in front.
The hooks sit on the base model (``model.bert``...): the attention mask and token type ids are extended to
match, and the prompt positions are cut out of its hidden states again, so every head (classifier, MLM,
LM) sees states aligned with the input tokens and labels need no change. Forward passes with a KV cache
(incremental generation) are not supported yet.

The hooks ask the prompt module for the prompt of each batch row (:meth:`SoftPrompt.rows`), so that AdaMix over
prompt-tuning (``methods/adamix_prefix.py``) can give each routing group its own prompt, or, for its ensemble,
run the batch once per prompt and average the base model's outputs over the copies.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import MethodConfig, check_int, register
from ..layers import PeftState, bind_call


class SoftPrompt(nn.Module):
    def __init__(self, length: int, embeddings: nn.Embedding):
        super().__init__()
        ids = torch.randint(0, embeddings.num_embeddings, (length,))
        self.weight = nn.Parameter(embeddings.weight.detach()[ids].clone())  # init from random vocabulary rows

    def rows(self, b: int) -> torch.Tensor:
        """The prompt of each of ``b`` batch rows, [b, n, h]."""
        return self.weight.unsqueeze(0).expand(b, -1, -1)

    def inference_numel(self) -> int:
        return self.weight.numel()


def _insert(x: torch.Tensor, at: int, block: torch.Tensor) -> torch.Tensor:
    return torch.cat([x[:, :at], block, x[:, at:]], dim=1)


def _pre_hook(model, args, kwargs, *, state: PeftState):
    call = bind_call(type(model).forward, (model, *args), kwargs)
    call.pop("self", None)
    if call.get("past_key_values") is not None and getattr(call["past_key_values"], "get_seq_length", lambda: 1)():
        raise NotImplementedError("prompt-tuning does not support a KV cache yet: call generate(use_cache=False)")
    ids, embeds = call.pop("input_ids", None), call.get("inputs_embeds")
    if embeds is None:
        embeds = model.get_input_embeddings()(ids)
    b, t = embeds.shape[:2]
    prompt = model.pk_prompt.rows(b)  # [copies * b, n, h]: copies > 1 only for an AdaMix ensemble
    copies = prompt.shape[0] // b
    if copies > 1:  # the batch once per prompt; _post_hook averages the outputs over the copies
        call = {k: v.repeat(copies, *[1] * (v.dim() - 1)) if isinstance(v, torch.Tensor) and v.dim() and
                v.shape[0] == b else v for k, v in call.items()}
        embeds = call["inputs_embeds"] if call.get("inputs_embeds") is not None else embeds.repeat(copies, 1, 1)
    at = 0 if state.arch.is_decoder else 1
    n = prompt.shape[1]
    call["inputs_embeds"] = _insert(embeds, at, prompt.to(embeds.dtype))
    b = b * copies
    mask = call.get("attention_mask")
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.long, device=embeds.device)
    call["attention_mask"] = _insert(mask, at, torch.ones(b, n, dtype=mask.dtype, device=mask.device))
    if call.get("token_type_ids") is not None:
        tt = call["token_type_ids"]
        call["token_type_ids"] = _insert(tt, at, torch.zeros(b, n, dtype=tt.dtype, device=tt.device))
    if call.get("position_ids") is not None:
        raise NotImplementedError("prompt-tuning does not take explicit position_ids")
    state.prompt_slice = (at, n, t, copies)
    return (), call


def _fold(value, copies: int):
    """Mean over the ``copies`` stacked along the batch axis of every tensor in a base model's output."""
    if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] % copies == 0:
        return value.view(copies, value.shape[0] // copies, *value.shape[1:]).mean(0)
    if isinstance(value, tuple) and not hasattr(value, "keys"):
        return tuple(_fold(v, copies) for v in value)
    return value


def _post_hook(model, args, kwargs, output, *, state: PeftState):
    at, n, t, copies = state.prompt_slice
    if copies > 1:
        if isinstance(output, tuple):
            output = _fold(output, copies)
        else:
            for key in list(output.keys()):
                output[key] = _fold(output[key], copies)
    hidden = output[0]
    if hidden.dim() == 3 and hidden.shape[1] == t + n:
        cut = torch.cat([hidden[:, :at], hidden[:, at + n:]], dim=1)
        if isinstance(output, tuple):
            return (cut, *output[1:])
        output["last_hidden_state"] = cut
    return output


@dataclass
class PromptConfig(MethodConfig):
    """Prompt-tuning: ``prompt_length`` soft tokens (default 20) at the input only."""

    name = "prompt"
    prompt_length: int = 20

    def validate(self) -> None:
        check_int("prompt_length", self.prompt_length, 1)


def attach_prompt(model, arch, state: PeftState, make_prompt) -> None:
    """Put the prompt module ``make_prompt(input embeddings)`` on the base model and hook it in. Shared by prompt
    and AdaMix over prompt-tuning (whose module holds M prompts)."""
    if arch.family not in ("bert", "gpt2", "llama"):
        arch.require(("bert", "gpt2", "llama"), "prompt-tuning")
    from ..core import hook_target

    body = hook_target(model, arch)
    body.pk_prompt = make_prompt(model.get_input_embeddings())
    body.register_forward_pre_hook(functools.partial(_pre_hook, state=state), with_kwargs=True)
    body.register_forward_hook(functools.partial(_post_hook, state=state), with_kwargs=True)


def attach(model, cfg: PromptConfig, arch, state: PeftState) -> None:
    attach_prompt(model, arch, state, lambda embeddings: SoftPrompt(cfg.prompt_length, embeddings))


register(PromptConfig, attach)
