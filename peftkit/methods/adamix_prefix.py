"""AdaMix over prefix-tuning and prompt-tuning (``peftkit.apply(model, "adamix", base="prefix" | "prompt")``).

peftkit's extension, not the authors': the AdaMix paper names AdaMix over prefix and prompt tuning as future work,
and neither its code, peft nor AdapterHub has it. The design follows AdaMix over adapters point by point; the
choices and the reasons are in docs/adamix_prefix.md.

**Prefix** (``base="prefix"``). Module i is a prefix-tuning module: an embedding E_i of the L prefix positions in
front of the reparameterisation MLP (Linear(h, ``prefix_hidden``), tanh, Linear(``prefix_hidden``, layers x 2 x
h)), giving every layer's key and value prefixes kv_i = MLP(E_i).
- ``share`` maps AdaMix's adapter sides onto the two parts: the embedding is the per-module input side (the
  adapter's down-projection), the MLP the side that expands it to the key/values (the up-projection). ``up``
  (default, as AdaMix's shared up-projection): M embeddings, one MLP. ``none`` (ablation): M embeddings and M
  MLPs, drawn independently like an unshared adapter's down and up. ``down``: one embedding, M MLPs.
- Training draws one (embedding, MLP) pair per layer and per forward, uniformly from the model's routing generator
  (:func:`peftkit.layers.routed`, the adapters' and LoRA's machinery): layer l's key/values are those of the
  drawn module, so every layer draws anew, as AdaMix draws per adapter layer. Only drawn modules are computed and
  get a gradient. Under ``peftkit.route_groups(model, 2)`` (the consistency loss) each half of the doubled batch
  draws its own module per layer. No router parameters. ``peftkit.routing`` reports each layer's draw under the
  name of that layer's self-attention module.
- Inference (``inference``): ``merged`` (one set of key/values per layer, the arithmetic and the parameter count
  of a single prefix of the same length); ``random`` (keep drawing per layer); ``fixed-K`` (module K at every
  layer); ``ensemble``: the mean of the M attention outputs at every layer (one attention per module: the query,
  key and value projections once, the attention itself M times per layer).
- ``merge``: what the merged module holds. ``kv`` (default): the mean of the key/values the modules produce,
  mean over (i, j) of MLP_j(E_i) over every pair the routing can draw, computed once (the prefix does not depend
  on the input, so averaging the modules' outputs costs nothing at inference). ``weights``: AdaMix's own weight
  averaging, MLP_avg(mean_i E_i) with the MLPs' weights and biases averaged where there are several; it differs
  from ``kv`` by the tanh's curvature (and by the cross terms of averaged MLPs). The default is the reasoned
  choice (docs/adamix_prefix.md); 06's AdaMix-prefix base run records both (``merged-kv``, ``merged-weights``)
  for the measurement that must confirm it. Both options are a property of the merge only (training is the same).
- ``init`` (bert | pytorch) and ``expert_init`` (independent, default | identical) as for prefix-tuning and AdaMix.

**Prompt** (``base="prompt"``). M soft prompts of ``prompt_length`` tokens (each initialised from random
vocabulary rows); one drawn per forward (per routing group), the prompt being the input. ``merged``: their
average, exact (it is one prompt); ``ensemble``: the batch run once per prompt, the base model's outputs averaged
(M forwards of the model, as one batch of M x B rows).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import check_choice, check_int, fail
from ..layers import INITS as PREFIX_INITS
from ..layers import PeftState, copy_first, init_module, routed
from .prefix import MergesToKV, attach_prefix
from .prompt import SoftPrompt, attach_prompt

MERGES = ("kv", "weights")
DEFAULT_MERGE = "kv"  # the reasoned default (docs/adamix_prefix.md); 06 measures both
PROMPT_BASES = ("prefix", "prompt")


class PrefixMixture(MergesToKV):
    """M prefix modules (``n_emb`` embeddings, ``n_mlp`` MLPs), routed per layer; one prefix once merged."""

    reparameterisation = ("embeddings", "mlps")

    def __init__(self, length: int, hidden: int, num_layers: int, mlp_hidden: int, state: PeftState, n_emb: int,
                 n_mlp: int, merge: str = DEFAULT_MERGE, init: str = "bert", expert_init: str = "independent"):
        super().__init__()
        self.length, self.hidden, self.num_layers = length, hidden, num_layers
        self.embeddings = nn.ModuleList(nn.Embedding(length, hidden) for _ in range(n_emb))
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.Tanh(),
                                                nn.Linear(mlp_hidden, num_layers * 2 * hidden)) for _ in range(n_mlp))
        if init == "bert":  # "pytorch": the constructors above already drew PyTorch's defaults
            init_module(self, "bert")
        if expert_init == "identical":
            copy_first(self.embeddings)
            copy_first(self.mlps)
        self.n_emb, self.n_mlp, self.merge_how = n_emb, n_mlp, merge
        self.kv: Optional[nn.Parameter] = None
        self.averages_outputs = False  # this forward's key/values stack M modules whose attentions are averaged
        self.sites: list = []  # each layer's self-attention module (where peftkit.routing reports the draw)
        self._stash: Optional[tuple] = None
        self._state = state

    def module_kv(self, i: int, j: int) -> torch.Tensor:
        """Every layer's prefix of embedding i through MLP j, [layers, 2, L, h]."""
        out = self.mlps[j](self.embeddings[i].weight)
        return out.view(self.length, self.num_layers, 2, self.hidden).permute(1, 2, 0, 3)

    def merged_kv(self, how: Optional[str] = None) -> torch.Tensor:
        """The merged prefix, [layers, 2, L, h]: ``how`` (default the ``merge`` option) kv | weights."""
        how = how or self.merge_how
        if how == "kv":
            return torch.stack([self.module_kv(i, j) for i in range(self.n_emb) for j in range(self.n_mlp)]).mean(0)
        mean = lambda ps: torch.stack(list(ps)).mean(0)  # noqa: E731
        emb = mean(e.weight for e in self.embeddings)
        w1, b1, w2, b2 = (mean(getattr(m[k], a) for m in self.mlps) for k, a in ((0, "weight"), (0, "bias"),
                                                                                 (2, "weight"), (2, "bias")))
        out = F.linear(torch.tanh(F.linear(emb, w1, b1)), w2, b2)
        return out.view(self.length, self.num_layers, 2, self.hidden).permute(1, 2, 0, 3)

    def compute(self) -> torch.Tensor:
        """This forward's prefixes: [layers, 2, L, h] (one per layer), or [layers, G, 2, L, h] (G routing groups;
        with ``averages_outputs`` the M modules of the ensemble)."""
        self._state.check_trainable_forward(self)
        self.averages_outputs = False
        single = self.n_emb == 1 and self.n_mlp == 1  # num_modules=1: a plain prefix, nothing to route
        if self.kv is not None:
            self._record([] if single else ["merged"] * self.num_layers)
            return self.kv
        if single:
            return self.module_kv(0, 0)
        choices = [routed(self._state, self.n_emb, self.n_mlp, self.training) for _ in range(self.num_layers)]
        self._record(choices)
        if choices[0] == "merged":
            return self.merged_kv()
        if choices[0] == "ensemble":
            pairs = [(i % self.n_emb, i % self.n_mlp) for i in range(max(self.n_emb, self.n_mlp))]
            self.averages_outputs = True
            kv = self._modules_kv(pairs)
            return torch.stack([kv[p] for p in pairs], 1)
        drawn = self._modules_kv(dict.fromkeys(p for pairs in choices for p in pairs))  # only the drawn ones
        per_layer = [drawn[pairs[0]][layer] if len(pairs) == 1 else torch.stack([drawn[p][layer] for p in pairs])
                     for layer, pairs in enumerate(choices)]
        return torch.stack(per_layer)

    def _modules_kv(self, pairs) -> dict:
        """{(i, j): :meth:`module_kv`} for the given pairs, one MLP call per MLP over its drawn embeddings stacked
        (the modules not asked for are not computed, so they get no gradient)."""
        by_mlp: dict = {}
        for i, j in pairs:
            by_mlp.setdefault(j, []).append(i)
        out = {}
        for j, embs in by_mlp.items():
            kv = self.mlps[j](torch.stack([self.embeddings[i].weight for i in embs]))  # [k, L, layers * 2 * h]
            kv = kv.view(len(embs), self.length, self.num_layers, 2, self.hidden).permute(0, 2, 3, 1, 4)
            out.update({(i, j): kv[n] for n, i in enumerate(embs)})
        return out

    def _record(self, choices: list) -> None:
        for site, choice in zip(self.sites, choices):
            site.last_route = choice


class PromptMixture(nn.Module):
    """M soft prompts, one drawn per forward (per routing group); their average once merged."""

    def __init__(self, length: int, embeddings: nn.Embedding, state: PeftState, num: int,
                 expert_init: str = "independent"):
        super().__init__()
        self.tables = nn.ModuleList(SoftPrompt(length, embeddings) for _ in range(num))
        if expert_init == "identical":
            copy_first(self.tables)
        self._state = state
        self._avg: Optional[torch.Tensor] = None

    def averaged(self) -> torch.Tensor:
        """The mean of the M prompts, [n, h]: the merged prompt. Cached while merged."""
        return self._avg if self._avg is not None else torch.stack([t.weight for t in self.tables]).mean(0)

    def rows(self, b: int) -> torch.Tensor:
        """The prompt of each batch row: [b, n, h]; for the ensemble [M * b, n, h] (the batch once per prompt)."""
        self._state.check_trainable_forward(self)
        num = len(self.tables)
        if num == 1:
            return self.tables[0].rows(b)
        choice = routed(self._state, num, 1, self.training)
        self.last_route = choice
        if choice == "merged":
            return self.averaged().unsqueeze(0).expand(b, -1, -1)
        if choice == "ensemble":
            return torch.cat([t.rows(b) for t in self.tables])
        if b % len(choice):
            raise ValueError(f"batch of {b} cannot be split into {len(choice)} routing groups")
        return torch.cat([self.tables[i].rows(b // len(choice)) for i, _ in choice])

    def merge(self) -> None:
        if len(self.tables) > 1:
            with torch.no_grad():
                self._avg = self.averaged().detach().clone()

    def unmerge(self) -> None:
        self._avg = None

    def inference_numel(self) -> int:
        return self.tables[0].weight.numel()


@contextlib.contextmanager
def merging_by(model: nn.Module, how: str) -> Iterator[nn.Module]:
    """Merge AdaMix-prefix's modules by ``how`` (kv | weights) inside the block, whatever the model's ``merge``
    option: the option only decides what a merge computes, so one trained model can be evaluated under both (06's
    measurement of the default, :func:`peftkit.runner`'s ``merged-kv`` / ``merged-weights`` modes)."""
    check_choice("merge", how, MERGES)
    mixtures = [m for m in model.modules() if isinstance(m, PrefixMixture)]
    if not mixtures:
        raise ValueError("merging_by applies to AdaMix with base=prefix; this model has no prefix mixture")
    if any(m.kv is not None for m in mixtures):
        raise ValueError("the model is merged: peftkit.unmerge(model) first, so the merge is recomputed")
    old = [m.merge_how for m in mixtures]
    for m in mixtures:
        m.merge_how = how
    try:
        yield model
    finally:
        for m, how_before in zip(mixtures, old):
            m.merge_how = how_before


def validate(cfg) -> None:
    """The options of AdaMix with ``base`` prefix or prompt; a flag that cannot apply to the base is an error."""
    base = cfg.base
    defaults = {"bottleneck": (48, "adapter bases (adapter, pfeiffer, houlsby)"),
                "activation": (None, "adapter bases (adapter, pfeiffer, houlsby)"),
                "r": (8, "base=lora"), "alpha": (16.0, "base=lora"), "targets": (None, "base=lora"),
                "fused_qv": ("shared", "base=lora"), "dropout": (0.0, "adapter and lora bases")}
    if base == "prompt":
        defaults.update({"prefix_length": (10, "base=prefix"), "prefix_hidden": (512, "base=prefix"),
                         "merge": (None, "base=prefix (a prompt merges exactly: the average prompt)"),
                         "init": ("bert", "adapter, lora and prefix bases (a prompt starts from vocabulary rows)"),
                         "share": ("up", "two-sided modules (a prompt is one table per module)")})
    else:
        defaults["prompt_length"] = (20, "base=prompt")
    for name, (default, where) in defaults.items():
        if getattr(cfg, name) != default:
            fail(name, getattr(cfg, name), f"only with {where}, not with base={base}; leave it out")
    if base == "prefix":
        check_int("prefix_length", cfg.prefix_length, 1)
        check_int("prefix_hidden", cfg.prefix_hidden, 1)
        check_choice("init", cfg.init, PREFIX_INITS)
        if cfg.merge is not None:
            check_choice("merge", cfg.merge, MERGES)
    else:
        check_int("prompt_length", cfg.prompt_length, 1)


def attach(model, cfg, arch, state: PeftState) -> None:
    """AdaMix over prefix-tuning or prompt-tuning (see the module docstring)."""
    n_emb, n_mlp = cfg.sides()
    if cfg.base == "prompt":
        attach_prompt(model, arch, state, lambda emb: PromptMixture(cfg.prompt_length, emb, state, cfg.num_modules,
                                                                    cfg.experts_start()))
        return
    enc = PrefixMixture(cfg.prefix_length, arch.hidden, arch.num_layers, cfg.prefix_hidden, state, n_emb, n_mlp,
                        cfg.merge or DEFAULT_MERGE, cfg.init, cfg.experts_start())
    attach_prefix(model, arch, state, cfg.prefix_length, cfg.prefix_hidden, encoder=enc)
    enc.sites = [arch.attention(i) for i in range(arch.num_layers)]
