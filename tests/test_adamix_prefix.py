"""AdaMix over prefix-tuning and prompt-tuning (peftkit's extension, docs/adamix_prefix.md): per-layer routing from
the seeded generator, the merge formulas, merged = a plain prefix holding the averaged values, the inference modes,
consistency groups, save / load, bad options, parameter counts and the protocol's learning rate."""
from __future__ import annotations

import pytest
import torch

import peftkit
from conftest import batch, logits, perturb, tiny
from peftkit.core import state_of
from peftkit.methods.adamix_prefix import PrefixMixture, PromptMixture

PREFIX = dict(base="prefix", prefix_length=3, prefix_hidden=16)


def _adamix(arch="bert", seed=0, **opts):
    model = peftkit.apply(tiny(arch), "adamix", seed=seed, **{**PREFIX, **opts})
    perturb(model, scale=0.3)
    return model


def _no_dropout(model):
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
        if hasattr(mod, "dropout_prob"):  # SDPA attention keeps its own probability
            mod.dropout_prob = 0.0
    return model


def _module_kv(enc, i, j):
    """Independent formula for module (embedding i, MLP j): every layer's (key, value) prefixes, [layers, 2, L, h]."""
    lin1, lin2 = enc.mlps[j][0], enc.mlps[j][2]
    out = torch.tanh(enc.embeddings[i].weight @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias
    h = enc.hidden  # the MLP's output row: layer l's key at block 2l, its value at 2l + 1, each h wide
    return torch.stack([torch.stack([out[:, (2 * layer + s) * h:(2 * layer + s + 1) * h] for s in (0, 1)])
                        for layer in range(enc.num_layers)])


def _plain_prefix(model, kv, arch="bert"):
    """A plain prefix-tuning model (the same base, the same head) holding ``kv`` [layers, 2, L, h] as its merged
    key/values."""
    plain = peftkit.apply(tiny(arch), "prefix", prefix_length=kv.shape[2], prefix_hidden=16)
    peftkit.merge(plain)
    with torch.no_grad():
        plain.pk_prefix.kv.copy_(kv)
        heads = dict(model.named_parameters())
        for n, p in plain.named_parameters():
            if p.requires_grad:
                p.copy_(heads[n])  # the head
    return plain.eval()


def test_training_draws_one_module_per_layer_from_the_seeded_generator():
    model = _adamix(num_modules=4, seed=7).train()
    enc = model.pk_prefix
    g = torch.Generator().manual_seed(7)
    for _ in range(5):
        model.zero_grad(set_to_none=True)
        model(**batch("bert"), labels=torch.tensor([0, 1, 2])).loss.backward()
        expected = [[(torch.randint(4, (1,), generator=g).item(), 0)] for _ in range(2)]  # share up: one MLP
        routes = peftkit.routing(model)
        assert list(routes) == [f"bert.encoder.layer.{i}.attention.self" for i in range(2)]
        assert list(routes.values()) == expected
        drawn = {pairs[0][0] for pairs in expected}
        for i, emb in enumerate(enc.embeddings):  # only drawn modules are computed: the others get no gradient
            assert (emb.weight.grad is not None) == (i in drawn)
        assert enc.mlps[0][2].weight.grad is not None


def test_draws_are_uniform_and_per_layer_and_sides_independent_without_sharing():
    model = _adamix(num_modules=3, share="none", seed=1).train()
    enc = model.pk_prefix
    seen = []
    with torch.no_grad():
        for _ in range(600):
            enc.compute()
            seen.append([site.last_route[0] for site in enc.sites])
    for layer in range(2):
        counts = torch.bincount(torch.tensor([s[layer][0] for s in seen]), minlength=3)
        assert counts.min() > 150 and counts.max() < 250, counts  # 200 expected per module
    assert any(s[0] != s[1] for s in seen), "both layers always drew the same module"
    assert any(a != b for s in seen for a, b in s), "embedding and MLP always drew the same index"


@pytest.mark.parametrize("share", ["up", "none", "down"])
@pytest.mark.parametrize("merge", ["kv", "weights"])
def test_merge_equals_the_formula(merge, share):
    model = _adamix(num_modules=3, share=share, merge=merge).eval()
    enc = model.pk_prefix
    n_e, n_m = len(enc.embeddings), len(enc.mlps)
    with torch.no_grad():
        if merge == "kv":  # the mean of the key/values of every (embedding, MLP) pair the routing can draw
            expected = torch.stack([_module_kv(enc, i, j) for i in range(n_e) for j in range(n_m)]).mean(0)
        else:  # AdaMix's weight averaging: the averaged embedding through the averaged MLP
            avg = _adamix(num_modules=1, share="up").pk_prefix
            avg.embeddings[0].weight.copy_(torch.stack([e.weight for e in enc.embeddings]).mean(0))
            for k in (0, 2):
                for a in ("weight", "bias"):
                    getattr(avg.mlps[0][k], a).copy_(torch.stack([getattr(m[k], a) for m in enc.mlps]).mean(0))
            expected = _module_kv(avg, 0, 0)
    x = batch("bert")
    on_the_fly = logits(model, x)  # merged mode computes the merge each forward until peftkit.merge caches it
    peftkit.merge(model)
    torch.testing.assert_close(enc.kv, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits(model, x), on_the_fly, atol=1e-6, rtol=0)
    other = _adamix(num_modules=3, share=share, merge="weights" if merge == "kv" else "kv")
    peftkit.merge(other)
    assert not torch.allclose(other.pk_prefix.kv, enc.kv, atol=1e-4)  # the two options are different merges


def test_default_merge_averages_the_key_values():
    """The default (docs/adamix_prefix.md: reasoned, to be confirmed by 06's merged-kv / merged-weights modes) is
    merge="kv"; this fails if the default is switched."""
    model = _adamix(num_modules=3)
    assert state_of(model).config.merge is None and model.pk_prefix.merge_how == "kv"
    enc = model.pk_prefix
    with torch.no_grad():
        expected = torch.stack([_module_kv(enc, i, 0) for i in range(3)]).mean(0)
    peftkit.merge(model)
    torch.testing.assert_close(enc.kv, expected, atol=1e-6, rtol=0)


def test_merging_by_evaluates_one_trained_model_under_both_options():
    from peftkit.methods.adamix_prefix import merging_by

    model = _adamix(num_modules=3).eval()
    x = batch("bert")
    out = {}
    for how in ("kv", "weights"):
        with merging_by(model, how), peftkit.merged(model):
            out[how] = logits(model, x)
    assert model.pk_prefix.merge_how == "kv" and not state_of(model).merged
    torch.testing.assert_close(out["kv"], logits(model, x), atol=1e-6, rtol=0)
    assert not torch.allclose(out["kv"], out["weights"], atol=1e-5)
    with pytest.raises(ValueError, match="allowed one of kv, weights"):
        with merging_by(model, "mean"):
            pass
    with pytest.raises(ValueError, match="no prefix mixture"):
        with merging_by(tiny("bert"), "kv"):
            pass


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
@pytest.mark.parametrize("merge", ["kv", "weights"])
def test_merged_inference_is_a_plain_prefix_holding_the_averaged_values(arch, merge):
    model = _adamix(arch, num_modules=4, merge=merge).eval()
    peftkit.merge(model)
    plain = _plain_prefix(model, model.pk_prefix.kv.detach(), arch)
    x = batch(arch)
    torch.testing.assert_close(logits(model, x), logits(plain, x), atol=1e-6, rtol=0)
    one_prefix = 2 * 2 * 3 * 32  # layers x (key, value) x L x h
    assert peftkit.count_parameters(model)["inference"] == peftkit.count_parameters(plain)["inference"] == one_prefix


@pytest.mark.parametrize("merge", ["kv", "weights"])
def test_identical_modules_merge_to_the_plain_prefix_method(merge):
    """Every module holding the same values: the merged model is the prefix method itself (its MLP and all)."""
    model = _adamix(num_modules=4, share="none", merge=merge, expert_init="identical", seed=3)
    enc = model.pk_prefix
    with torch.no_grad():  # perturb moved each module differently: make them identical again
        for side in (enc.embeddings, enc.mlps):
            for mod in list(side)[1:]:
                for p, p0 in zip(mod.parameters(), side[0].parameters()):
                    p.copy_(p0)
    plain = peftkit.apply(tiny("bert"), "prefix", prefix_length=3, prefix_hidden=16)
    with torch.no_grad():
        plain.pk_prefix.embedding.weight.copy_(enc.embeddings[0].weight)
        for k in (0, 2):
            plain.pk_prefix.mlp[k].load_state_dict(enc.mlps[0][k].state_dict())
        plain.classifier.load_state_dict(model.classifier.state_dict())
    x = batch("bert")
    peftkit.merge(model)
    torch.testing.assert_close(logits(model.eval(), x), logits(plain.eval(), x), atol=1e-6, rtol=0)


def test_random_and_fixed_modes_route_per_layer():
    model = _adamix(num_modules=3, share="none").eval()
    enc, x = model.pk_prefix, batch("bert")
    for mode in ("random", "random", "fixed-2"):
        peftkit.set_inference(model, mode)
        out = logits(model, x)
        pairs = [site.last_route[0] for site in enc.sites]
        if mode == "fixed-2":
            assert pairs == [(2, 2), (2, 2)]
        with torch.no_grad():
            kv = torch.stack([_module_kv(enc, i, j)[layer] for layer, (i, j) in enumerate(pairs)])
        torch.testing.assert_close(out, logits(_plain_prefix(model, kv), x), atol=1e-6, rtol=0)


def test_ensemble_is_the_mean_of_the_m_attention_outputs():
    model = _adamix(num_modules=3).eval()
    attn = model.bert.encoder.layer[1].attention.self
    h = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    outs = []
    with torch.no_grad():
        for k in range(3):
            peftkit.set_inference(model, f"fixed-{k}")
            outs.append(attn(h)[0])
        peftkit.set_inference(model, "ensemble")
        torch.testing.assert_close(attn(h)[0], torch.stack(outs).mean(0), atol=1e-6, rtol=0)
        assert attn.last_route == "ensemble"


def test_consistency_groups_route_the_two_halves_independently_per_layer():
    model = _no_dropout(_adamix(num_modules=4, seed=0)).train()
    x = batch("bert")
    doubled = {k: torch.cat([v, v]) for k, v in x.items()}
    differed = 0
    for _ in range(4):
        with peftkit.route_groups(model, 2), torch.no_grad():
            out = model(**doubled).logits
        routes = [site.last_route for site in model.pk_prefix.sites]
        assert all(len(pairs) == 2 for pairs in routes)
        for half in (0, 1):  # each half is the prefix method holding its own draws, layer by layer
            with torch.no_grad():
                kv = torch.stack([_module_kv(model.pk_prefix, *pairs[half])[layer]
                                  for layer, pairs in enumerate(routes)])
            torch.testing.assert_close(out[3 * half:3 * half + 3], logits(_plain_prefix(model, kv), x), atol=1e-5,
                                       rtol=0)
        differed += any(pairs[0] != pairs[1] for pairs in routes)
    assert differed > 0
    from peftkit.consistency import consistency_forward

    model.zero_grad(set_to_none=True)
    loss, task, kl, _ = consistency_forward(model, {**x, "labels": torch.tensor([0, 1, 2])}, weight=1.0)
    loss.backward()
    assert torch.isfinite(loss) and kl >= 0
    drawn = {i for site in model.pk_prefix.sites for i, _ in site.last_route}
    assert {i for i, e in enumerate(model.pk_prefix.embeddings) if e.weight.grad is not None} == drawn


@pytest.mark.parametrize("opts", [dict(num_modules=3), dict(num_modules=2, share="none", merge="weights"),
                                  dict(base="prompt", prompt_length=4, num_modules=3, prefix_length=10,
                                       prefix_hidden=512)])
@pytest.mark.parametrize("merged", [False, True])
def test_save_load_round_trip(opts, merged, tmp_path):
    model = _adamix(**opts).eval()
    if merged:
        peftkit.merge(model)
    x = batch("bert")
    before = logits(model, x)
    peftkit.save(model, tmp_path)
    fresh = peftkit.load(tiny("bert"), tmp_path).eval()
    assert state_of(fresh).merged == merged and state_of(fresh).config == state_of(model).config
    assert torch.equal(logits(fresh, x), before)


def test_prompt_mixture_draws_merges_and_ensembles():
    model = peftkit.apply(tiny("bert"), "adamix", base="prompt", prompt_length=4, num_modules=3, seed=2)
    perturb(model, scale=0.3)
    mix, x = model.bert.pk_prompt, batch("bert")
    assert isinstance(mix, PromptMixture)
    model.train()
    with peftkit.route_groups(model, 2):
        model(**{k: torch.cat([v, v]) for k, v in x.items()})
    assert len(peftkit.routing(model)["bert.pk_prompt"]) == 2
    model.eval()
    fixed = []
    for k in range(3):
        peftkit.set_inference(model, f"fixed-{k}")
        fixed.append(logits(model, x))
    peftkit.set_inference(model, "ensemble")  # BERT's classifier is linear in the base model's (pooled) output
    torch.testing.assert_close(logits(model, x), torch.stack(fixed).mean(0), atol=1e-5, rtol=0)
    peftkit.set_inference(model, "merged")
    plain = peftkit.apply(tiny("bert"), "prompt", prompt_length=4)
    with torch.no_grad():  # the merged prompt is the average prompt, exactly
        plain.bert.pk_prompt.weight.copy_(torch.stack([t.weight for t in mix.tables]).mean(0))
        plain.classifier.load_state_dict(model.classifier.state_dict())
    peftkit.merge(model)
    torch.testing.assert_close(logits(model, x), logits(plain.eval(), x), atol=1e-6, rtol=0)
    assert peftkit.count_parameters(model)["inference"] == peftkit.count_parameters(plain)["inference"] == 4 * 32


BAD = [
    ({"base": "adapter", "merge": "kv"}, "merge", "only with base=prefix"),
    ({"base": "lora", "prompt_length": 5}, "prompt_length", "only with base=prompt"),
    ({"base": "adapter", "prefix_length": 5}, "prefix_length", "only with base=prefix"),
    ({**PREFIX, "bottleneck": 16}, "bottleneck", "adapter bases"),
    ({**PREFIX, "r": 4}, "r", "base=lora"),
    ({**PREFIX, "targets": ["query"]}, "targets", "base=lora"),
    ({**PREFIX, "dropout": 0.1}, "dropout", "adapter and lora bases"),
    ({**PREFIX, "prompt_length": 5}, "prompt_length", "base=prompt"),
    ({**PREFIX, "merge": "mean"}, "merge", "one of kv, weights"),
    ({**PREFIX, "init": "zero_up"}, "init", "one of bert, pytorch"),
    ({**PREFIX, "prefix_length": 0}, "prefix_length", "an integer >= 1"),
    ({"base": "prompt", "share": "none"}, "share", "two-sided modules"),
    ({"base": "prompt", "merge": "kv"}, "merge", "base=prefix"),
    ({"base": "prompt", "prefix_hidden": 32}, "prefix_hidden", "base=prefix"),
    ({"base": "prompt", "prompt_length": -1}, "prompt_length", "an integer >= 1"),
    ({"base": "soft"}, "base", "prefix, prompt"),
]


@pytest.mark.parametrize("opts,name,allowed", BAD)
def test_bad_options_are_rejected_naming_the_allowed_values(opts, name, allowed):
    model = tiny("bert")
    with pytest.raises(ValueError, match=rf"invalid option {name}=") as err:
        peftkit.apply(model, "adamix", **opts)
    assert "allowed" in str(err.value) and allowed in str(err.value)
    with pytest.raises(ValueError, match="no peftkit method"):
        state_of(model)


def test_parameter_counts_on_bert_base():
    from peftkit.cli import params

    emb, mlp = 10 * 768, 768 * 512 + 512 + 512 * 12 * 2 * 768 + 12 * 2 * 768
    one = params("bert-base", "prefix")
    assert (one["trainable"], one["inference"]) == (emb + mlp, 184_320)
    for share, trainable in (("up", 4 * emb + mlp), ("none", 4 * (emb + mlp)), ("down", emb + 4 * mlp)):
        got = params("bert-base", "adamix", base="prefix", share=share)
        assert (got["trainable"], got["inference"], got["mergeable"]) == (trainable, 184_320, True), share
    prompt = params("bert-base", "adamix", base="prompt")
    assert (prompt["trainable"], prompt["inference"]) == (4 * 20 * 768, params("bert-base", "prompt")["inference"])


def test_protocol_rate_and_options_follow_the_base_method(tmp_path):
    from peftkit import protocols
    from peftkit.experiment import RunSpec, resolve

    for proto in protocols.NAMES:
        for base in ("prefix", "prompt"):
            assert protocols.learning_rate(proto, "adamix", "minilm", {"base": base}) == \
                protocols.learning_rate(proto, base, "minilm")
    assert protocols.learning_rate("adamix-glue", "adamix", "minilm", {"base": "prefix"}) == 2e-4
    assert protocols.learning_rate("adamix-glue", "adamix", "minilm") == 4e-4  # AdaMix's own, for its adapter
    # AdaMix's RoBERTa-large adapter size is not an option of AdaMix over prefix
    assert protocols.method_options("adamix-glue", "adamix", "roberta-large", {"base": "prefix"}) == {"base": "prefix"}
    assert protocols.method_options("adamix-glue", "adamix", "roberta-large")["bottleneck"] == 16
    spec = resolve(RunSpec(task="sst2", method="adamix", options={"base": "prefix"}, profile="cpu", out=str(tmp_path)))
    assert (spec.protocol, spec.lr, spec.options) == ("adamix-glue", 2e-4, {"base": "prefix"})


def test_mixtures_are_the_registered_modules():
    from peftkit.layers import expert_spread

    fresh = peftkit.apply(tiny("bert"), "adamix", seed=0, **PREFIX).pk_prefix
    assert not torch.equal(fresh.embeddings[0].weight, fresh.embeddings[1].weight)  # expert_init: independent draws
    assert abs(float(fresh.embeddings[0].weight.std()) - 0.02) < 0.005  # init: bert, N(0, 0.02) as prefix-tuning's
    model = _adamix()
    assert isinstance(model.pk_prefix, PrefixMixture) and len(model.pk_prefix.embeddings) == 4
    assert len(model.pk_prefix.mlps) == 1  # share="up" (default): one reparameterisation MLP
    spread = expert_spread(model)
    assert spread is not None and spread["mixtures"] == 1 and spread["mean_pairwise_distance"] > 0
