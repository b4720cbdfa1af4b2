"""AdaMix behaviour: routing, gradients of unselected modules, inference modes, consistency route groups."""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch

import peftkit
from conftest import batch, logits, perturb, tiny
from peftkit.core import state_of
from peftkit.methods.adapter import Bottleneck
from peftkit.methods.lora import LoRAPart


def _mixtures(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (Bottleneck, LoRAPart))]


def _record_routes(model, steps: int):
    """Which module each mixture used in each forward: index of the one down/A module with a gradient."""
    routes = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        model(**batch("bert"), labels=torch.tensor([0, 1, 2])).loss.backward()
        row = []
        for _, m in _mixtures(model):
            side = m.down if isinstance(m, Bottleneck) else m.A
            used = [i for i, lin in enumerate(side) if lin.weight.grad is not None]
            row.append(used)
        routes.append(row)
    return routes


@pytest.mark.parametrize("opts", [{"base": "pfeiffer", "bottleneck": 8}, {"base": "lora", "r": 4}])
def test_training_routes_one_module_per_forward_unselected_get_no_gradient(opts):
    model = peftkit.apply(tiny("bert"), "adamix", num_modules=4, seed=7, **opts).train()
    perturb(model)
    routes = _record_routes(model, 12)
    for row in routes:
        assert all(len(used) == 1 for used in row), row  # exactly one module drawn, the others have grad None
    per_layer = list(zip(*[[u[0] for u in row] for row in routes]))
    assert all(len(set(seq)) > 1 for seq in per_layer), "routing never changed over 12 forwards"
    assert len(set(per_layer)) > 1, "all layers drew the same sequence: draws are not independent per layer"
    # the shared side (up / B) always has a gradient
    for _, m in _mixtures(model):
        shared = m.up if isinstance(m, Bottleneck) else m.B
        assert len(shared) == 1 and shared[0].weight.grad is not None


def test_routing_is_reproducible_from_the_seed():
    def run(seed):
        model = peftkit.apply(tiny("bert"), "adamix", bottleneck=8, num_modules=4, seed=seed).train()
        perturb(model)
        return _record_routes(model, 6)
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_down_and_up_draw_independently_without_sharing():
    model = peftkit.apply(tiny("bert"), "adamix", bottleneck=8, num_modules=4, share="none", seed=1).train()
    perturb(model)
    pairs = set()
    for _ in range(20):
        model.zero_grad(set_to_none=True)
        model(**batch("bert"), labels=torch.tensor([0, 1, 2])).loss.backward()
        m = _mixtures(model)[0][1]
        d = [i for i, lin in enumerate(m.down) if lin.weight.grad is not None]
        u = [i for i, lin in enumerate(m.up) if lin.weight.grad is not None]
        assert len(d) == 1 and len(u) == 1
        pairs.add((d[0], u[0]))
    assert any(a != b for a, b in pairs), "down and up always drew the same index"


@pytest.mark.parametrize("opts", [{"base": "pfeiffer", "bottleneck": 8}, {"base": "lora", "r": 4}])
def test_inference_modes(opts):
    model = peftkit.apply(tiny("bert"), "adamix", num_modules=3, share="none", seed=0, **opts)
    perturb(model, scale=0.3)
    model.eval()
    x = batch("bert")
    merged = [logits(model, x) for _ in range(3)]
    assert all(torch.equal(merged[0], m) for m in merged)  # merged: deterministic
    peftkit.set_inference(model, "random")
    randoms = [logits(model, x) for _ in range(8)]
    assert any(not torch.allclose(randoms[0], r) for r in randoms[1:])
    # fixed-K equals a single-module model holding module K's weights
    for k in range(3):
        peftkit.set_inference(model, f"fixed-{k}")
        single = _single_module_copy(model, opts, k)
        torch.testing.assert_close(logits(model, x), logits(single, x), atol=1e-6, rtol=0)
    # ensemble: each mixture's output is the mean of its modules' outputs
    peftkit.set_inference(model, "ensemble")
    for _, m in _mixtures(model):
        h = torch.randn(2, 5, m.down[0].in_features if isinstance(m, Bottleneck) else m.A[0].in_features)
        outs = []
        for k in range(3):
            peftkit.set_inference(model, f"fixed-{k}")
            outs.append(m(h))
        peftkit.set_inference(model, "ensemble")
        torch.testing.assert_close(m(h), torch.stack(outs).mean(0), atol=1e-6, rtol=0)


def _single_module_copy(model, opts, k):
    method = "pfeiffer" if opts["base"] == "pfeiffer" else "lora"
    single_opts = {"bottleneck": 8} if method == "pfeiffer" else {"r": 4, "alpha": 16.0}
    single = peftkit.apply(tiny("bert"), method, **single_opts)
    with torch.no_grad():
        mix = dict(_mixtures(model))
        for n, m in _mixtures(single):
            src = mix[n]
            pairs = ((m.down, src.down), (m.up, src.up)) if method == "pfeiffer" else ((m.A, src.A), (m.B, src.B))
            for dst, srcs in pairs:
                dst[0].load_state_dict(srcs[k].state_dict())
        heads = dict(model.named_parameters())
        for n, p in single.named_parameters():
            if p.requires_grad and "pk_" not in n:  # the head (classifier and pooler)
                p.copy_(heads[n])
    return single.eval()


def test_merged_inference_costs_one_module_and_equals_weight_average():
    model = peftkit.apply(tiny("bert"), "adamix", bottleneck=8, num_modules=4, seed=0)
    perturb(model)
    model.eval()
    x = batch("bert")
    unmerged_eval = logits(model, x)  # merged mode computes the average on the fly
    peftkit.merge(model)
    torch.testing.assert_close(logits(model, x), unmerged_eval, atol=1e-6, rtol=0)
    blk = _mixtures(model)[0][1]
    avg_down = torch.stack([d.weight for d in blk.down]).mean(0)
    torch.testing.assert_close(blk._avg[0], avg_down)
    # training continues from the unmerged modules: the merged copy is dropped, not reused
    peftkit.unmerge(model)
    assert blk._avg is None
    with torch.no_grad():
        blk.down[0].weight.add_(torch.randn_like(blk.down[0].weight))  # not a constant: LN would cancel it
    assert not torch.allclose(logits(model, x), unmerged_eval)


def test_routing_draws_on_its_cpu_generator_whatever_the_default_device():
    """Routing uses a CPU generator; under another default device (``with torch.device("cuda")``, here the meta
    device, which stands in for it on a CPU-only machine) the draws stay on the CPU and are the same as without it:
    before, they landed on the default device (meta: no values; CUDA: a CPU generator refused)."""
    def draws(context):
        model = peftkit.apply(tiny("bert"), "adamix", bottleneck=8, num_modules=4, seed=5)
        with context:
            return [state_of(model).draw(4, 2) for _ in range(5)]
    assert draws(torch.device("meta")) == draws(contextlib.nullcontext())
    models = [tiny("bert"), tiny("bert")]
    torch.manual_seed(11)
    with torch.device("meta"):
        seed = state_of(peftkit.apply(models[0], "adamix", bottleneck=8)).seed  # from the global CPU generator
    torch.manual_seed(11)
    assert state_of(peftkit.apply(models[1], "adamix", bottleneck=8)).seed == seed


def test_route_groups_route_the_two_halves_independently():
    model = peftkit.apply(tiny("bert"), "adamix", bottleneck=8, num_modules=4, seed=0).train()
    perturb(model, scale=0.5)
    for mod in model.modules():  # no dropout: any difference between halves comes from routing
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
        if hasattr(mod, "dropout_prob"):  # SDPA attention keeps its own dropout probability
            mod.dropout_prob = 0.0
    x = batch("bert")
    doubled = {k: torch.cat([v, v]) for k, v in x.items()}
    differed = 0
    with peftkit.route_groups(model, 2):
        for _ in range(6):
            out = model(**doubled).logits
            differed += not torch.allclose(out[:3], out[3:])
    assert differed > 0
    out = model(**doubled).logits  # outside the context: one route for the whole batch
    torch.testing.assert_close(out[:3], out[3:])


def test_adamix_lora_m1_equals_lora():
    """With one module AdaMix is its base method: same parameters, same outputs."""
    a = peftkit.apply(tiny("bert"), "adamix", base="lora", r=4, num_modules=1, seed=0)
    torch.manual_seed(0)
    b = peftkit.apply(tiny("bert"), "lora", r=4)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    x = batch("bert")
    perturb(a)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(logits(a.eval(), x), logits(b.eval(), x))


@pytest.mark.parametrize("opts", [{"base": "pfeiffer", "bottleneck": 8}, {"base": "lora", "r": 4}])
def test_routing_reports_the_modules_the_last_forward_used(opts):
    model = peftkit.apply(tiny("bert"), "adamix", num_modules=4, share="none", seed=3, **opts).train()
    perturb(model)
    with pytest.raises(ValueError, match="no peftkit method"):
        peftkit.routing(tiny("bert"))
    seen = set()
    for _ in range(6):
        model.zero_grad(set_to_none=True)
        model(**batch("bert"), labels=torch.tensor([0, 1, 2])).loss.backward()
        routes = peftkit.routing(model)
        assert set(routes) == {n for n, _ in _mixtures(model)}
        for name, m in _mixtures(model):
            first, second = (m.down, m.up) if isinstance(m, Bottleneck) else (m.A, m.B)
            used = ([i for i, lin in enumerate(first) if lin.weight.grad is not None],
                    [j for j, lin in enumerate(second) if lin.weight.grad is not None])
            assert routes[name] == [(used[0][0], used[1][0])]  # what trained is what routing says was drawn
            seen.add(routes[name][0])
    assert len(seen) > 1
    with peftkit.route_groups(model, 2):
        model(**{k: torch.cat([v, v]) for k, v in batch("bert").items()})
    assert all(len(pairs) == 2 for pairs in peftkit.routing(model).values())
    model.eval()
    with torch.no_grad():
        model(**batch("bert"))
    assert set(peftkit.routing(model).values()) == {"merged"}
