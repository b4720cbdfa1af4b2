"""AdaMix (Wang et al., EMNLP 2022): a mixture of M adapters or M LoRAs with stochastic routing.

- Training: for every forward of every mixed projection one module index is drawn uniformly from the model's
  routing generator (seeded by ``peftkit.apply(..., seed=)``); down and up sides (LoRA: A and B) draw
  independently, every layer anew. No router parameters, no balancing loss. Modules not drawn get no gradient.
- ``share``: one side is shared by all modules. ``up`` (the authors' default) means one up-projection and M
  down-projections for adapters, and one B with M A's for LoRA; ``down`` the reverse; ``none`` is the ablation.
  Sharing both sides would collapse AdaMix to one module, so it is not an option.
- Inference (``inference``): ``merged`` averages the weights of the M modules (``peftkit.merge`` caches the
  average, for LoRA folds it into the frozen weight), so inference costs one module; ``random`` keeps routing;
  ``fixed-K`` always uses module K; ``ensemble`` averages the outputs of the modules.
- ``base``: ``adapter`` (default) is AdaMix's own adapter, as the authors' GLUE code places it: once per layer on
  the feed-forward output projection's result h before its dropout, GELU, no LayerNorm in front,
  y = LN(dropout(h + up(gelu(down(h)))) + x). ``num_modules=1`` of it is "a single adapter of the same inference
  size". ``pfeiffer`` / ``houlsby`` (AdapterHub placements) and ``lora`` are the other bases.
- ``init`` (adapter bases): ``bert`` (default) N(0, 0.02) down- and up-projections, zero biases (the authors'
  ``_init_weights`` re-draws every expert Linear); ``zero_up`` the near-identity start.
- ``expert_init``: ``independent`` (each module its own draw) or ``identical`` (every module a copy of the
  first, as the NLG code's deep-copied LoRA A's). Default: the authors' per base -- independent for adapter
  bases (GLUE code), identical for ``lora`` (NLG ``AdamixMergedLinear``). Weight averaging depends on it.
- ``fused_qv`` (``base="lora"`` on GPT-2's fused ``c_attn``): ``shared`` (default) draws one A (and B) module and
  one dropout mask for the query and value slices, as ``AdamixMergedLinear`` does (one A of 2r rows, one expert
  index per forward); ``independent`` draws per slice.
- Consistency regularisation needs two independently routed passes: ``peftkit.route_groups(model, 2)`` routes
  the two halves of a doubled batch independently inside one forward (see the trainer).
- ``base="prefix"`` / ``"prompt"``: AdaMix over prefix-tuning or prompt-tuning, peftkit's extension (the paper's
  future work): ``prefix_length``, ``prefix_hidden``, ``merge`` (kv | weights) / ``prompt_length``; see
  :mod:`peftkit.methods.adamix_prefix` and docs/adamix_prefix.md. An option that cannot apply to the chosen base
  (``bottleneck`` with a prefix, ``merge`` with an adapter, ...) is an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..config import ACTIVATIONS, BASES, SHARE, MethodConfig, check_choice, check_float, check_int, check_targets
from ..config import fail, register
from ..layers import EXPERT_INITS, PeftState, parse_inference
from . import adamix_prefix
from .adapter import INITS, HoulsbyConfig, PfeifferConfig, attach_bottleneck
from .lora import FUSED_QV, attach_lora


@dataclass
class AdaMixConfig(MethodConfig):
    """AdaMix over ``base`` (adapter | pfeiffer | houlsby | lora | prefix | prompt). GLUE defaults: M = 4,
    bottleneck 48, shared up."""

    name = "adamix"
    base: str = "adapter"
    num_modules: int = 4
    share: str = "up"
    inference: str = "merged"
    bottleneck: int = 48
    activation: Optional[str] = None  # None: the base adapter's default
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: Optional[list] = field(default=None)
    init: str = "bert"
    expert_init: Optional[str] = None  # None: independent for adapter bases, identical for lora (the authors')
    fused_qv: str = "shared"  # base=lora on GPT-2's c_attn: one A/B draw and one dropout mask for q and v
    prefix_length: int = 10  # base=prefix (methods/adamix_prefix.py)
    prefix_hidden: int = 512  # base=prefix: the reparameterisation MLP's width
    merge: Optional[str] = None  # base=prefix: kv (None: the default, adamix_prefix.DEFAULT_MERGE) | weights
    prompt_length: int = 20  # base=prompt

    def validate(self) -> None:
        check_choice("base", self.base, BASES)
        if self.expert_init is not None:
            check_choice("expert_init", self.expert_init, EXPERT_INITS)
        check_int("num_modules", self.num_modules, 1)
        check_choice("share", self.share, SHARE)
        parse_inference(self.inference, self.num_modules)
        if self.base in adamix_prefix.PROMPT_BASES:
            adamix_prefix.validate(self)
            return
        check_choice("init", self.init, INITS)
        for name, default in (("prefix_length", 10), ("prefix_hidden", 512), ("merge", None), ("prompt_length", 20)):
            if getattr(self, name) != default:
                fail(name, getattr(self, name), f"only with base={'prompt' if name == 'prompt_length' else 'prefix'}"
                     f", not with base={self.base}; leave it out")
        if self.base == "lora":
            if self.init != "bert":
                fail("init", self.init, "bert only with base=lora (LoRA: Kaiming-uniform A, zero B)")
            check_int("r", self.r, 1)
            check_float("alpha", self.alpha, 0.0, low_open=True)
            check_targets(self.targets)
            check_choice("fused_qv", self.fused_qv, FUSED_QV)
        else:
            check_int("bottleneck", self.bottleneck, 1)
            if self.activation is not None:
                check_choice("activation", self.activation, ACTIVATIONS)
            if self.targets is not None:
                fail("targets", self.targets, "only with base=lora (adapters go at fixed sites)")
            if self.fused_qv != "shared":
                fail("fused_qv", self.fused_qv, "only with base=lora (it is about LoRA on GPT-2's fused c_attn)")
        check_float("dropout", self.dropout, 0.0, 1.0)

    def experts_start(self) -> str:
        """The resolved ``expert_init``."""
        return self.expert_init or ("identical" if self.base == "lora" else "independent")

    def sides(self) -> tuple[int, int]:
        """Number of (down or A, up or B) modules."""
        m = self.num_modules
        return (m, 1) if self.share == "up" else (1, m) if self.share == "down" else (m, m)


def attach(model, cfg: AdaMixConfig, arch, state: PeftState) -> None:
    n_first, n_second = cfg.sides()
    state.inference = cfg.inference
    if cfg.base in adamix_prefix.PROMPT_BASES:
        adamix_prefix.attach(model, cfg, arch, state)
        return
    if cfg.base == "lora":
        attach_lora(model, arch, state, cfg.r, cfg.alpha, cfg.dropout, cfg.targets, n_first, n_second,
                    expert_init=cfg.experts_start(), fused_qv=cfg.fused_qv)
        return
    if cfg.base == "adapter":
        placement, act, ln_before = "adamix", cfg.activation or "gelu", False
    else:
        base = PfeifferConfig if cfg.base == "pfeiffer" else HoulsbyConfig
        placement, act, ln_before = base.placement, cfg.activation or base.activation, base.original_ln_before
    attach_bottleneck(model, arch, state, placement, cfg.bottleneck, act, ln_before, n_first, n_second,
                      dropout=cfg.dropout, init=cfg.init, expert_init=cfg.experts_start())


register(AdaMixConfig, attach)
