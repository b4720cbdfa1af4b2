"""UniPELT fidelity: peftkit against the authors' fork (morningmoni/UniPELT), computed independently.

Rows of docs/fidelity.md's UniPELT section: prefix / gate / adapter initialisation (U1), which parameters train
(U2), gates averaged over every position of the padded input (U3). Each test fails if its default is switched back.
"""
from __future__ import annotations

import dataclasses
import math
import os

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

import peftkit
from conftest import batch, logits, perturb, tiny
from peftkit.features import PadCollator
from peftkit.layers import PeftState
from peftkit.methods.prefix import PrefixEncoder

STD = 0.02  # BERT's initializer_range: the fork's init_weights draws every Linear / Embedding from N(0, STD)


# --- U1: initialisation -------------------------------------------------------------------------------------
def _close_std(t: torch.Tensor, expected: float, rel: float = 0.05) -> None:
    got = t.float().std().item()
    assert abs(got - expected) <= rel * expected, f"std {got:.5f}, expected {expected:.5f}"


def test_prefix_init_matches_fork_statistics():
    """Embedding and MLP weights N(0, 0.02), biases zero; the initial keys / values then have the std the formula
    gives: out = W2 tanh(W1 e), so std(out) = 0.02 * sqrt(mean_p ||tanh(W1 e_p)||^2), about 0.005 on BERT-base."""
    torch.manual_seed(0)
    enc = PrefixEncoder(10, 768, 12, 512, PeftState("prefix", None, None))  # BERT-base sizes, default init
    for w in (enc.embedding.weight, enc.mlp[0].weight, enc.mlp[2].weight):
        _close_std(w, STD)
        assert abs(w.mean().item()) < 3 * STD / math.sqrt(w.numel())
    assert torch.count_nonzero(enc.mlp[0].bias) == 0 and torch.count_nonzero(enc.mlp[2].bias) == 0
    with torch.no_grad():
        kv = enc.compute()
        t = torch.tanh(enc.embedding.weight @ enc.mlp[0].weight.T)
    _close_std(kv, STD * t.pow(2).sum(-1).mean().sqrt().item())
    _close_std(kv, STD * math.sqrt(512 * 768 * STD**2 * STD**2))  # tanh is linear at this scale: 0.0050
    legacy = PrefixEncoder(10, 768, 12, 512, PeftState("prefix", None, None), init="pytorch")
    with torch.no_grad():
        assert legacy.compute().std().item() > 0.2  # PyTorch's defaults: about 0.27, fifty times the fork's


def test_prefix_method_default_init_is_the_forks():
    model = peftkit.apply(tiny("bert"), "prefix", prefix_length=8, prefix_hidden=64)
    assert torch.count_nonzero(model.pk_prefix.mlp[0].bias) == 0
    _close_std(model.pk_prefix.embedding.weight, STD, rel=0.15)  # 8 x 32 draws
    old = peftkit.apply(tiny("bert"), "prefix", prefix_length=8, prefix_hidden=64, init="pytorch")
    assert old.pk_prefix.embedding.weight.std().item() > 0.5


def _wide_bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                                                    intermediate_size=64, vocab_size=50, num_labels=2))


def test_unipelt_gates_and_adapter_init_match_fork():
    """Gates (prefix, LoRA, adapter) and both adapter projections N(0, 0.02) with zero biases (the fork's
    init_weights and AdapterHub's init_bert_weights); LoRA keeps A Kaiming-uniform, B zero."""
    model = peftkit.apply(_wide_bert(), "unipelt", bottleneck=64, prefix_length=4, r=4)
    mods = dict(model.named_modules())
    gates = [m.proj for m in mods.values() if isinstance(m, peftkit.layers.Gate)]
    assert len(gates) == 2 * 4
    _close_std(torch.cat([g.weight.flatten() for g in gates]), STD, rel=0.1)  # 2,048 draws
    assert all(torch.count_nonzero(g.bias) == 0 for g in gates)
    ups = [m.up[0] for n, m in mods.items() if n.endswith("pk_adapter")]
    downs = [m.down[0] for n, m in mods.items() if n.endswith("pk_adapter")]
    _close_std(torch.cat([u.weight.flatten() for u in ups]), STD, rel=0.1)
    _close_std(torch.cat([d.weight.flatten() for d in downs]), STD, rel=0.1)
    assert all(torch.count_nonzero(m.bias) == 0 for m in ups + downs)
    lora = mods["bert.encoder.layer.0.attention.self.query.pk_lora"]
    assert torch.count_nonzero(lora.B[0].weight) == 0
    assert lora.A[0].weight.abs().max().item() <= 1 / math.sqrt(256) + 1e-7  # Kaiming-uniform(a=sqrt(5)) bound
    _close_std(model.pk_prefix.mlp[2].weight, STD)
    old = peftkit.apply(_wide_bert(), "unipelt", bottleneck=64, prefix_length=4, r=4, init="pytorch")
    old_mods = dict(old.named_modules())
    assert all(torch.count_nonzero(m.up[0].weight) == 0 for n, m in old_mods.items() if n.endswith("pk_adapter"))
    assert any(torch.count_nonzero(m.proj.bias) for m in old_mods.values() if isinstance(m, peftkit.layers.Gate))


# --- U3: gates and the fork's forward -----------------------------------------------------------------------
def _gate(lin, x, mask, average):
    """The fork: torch.mean(torch.sigmoid(gate(x)), dim=1) -> [B, 1]; 'masked' restricts the mean to real tokens."""
    s = torch.sigmoid(F.linear(x, lin.weight, lin.bias))  # per position, then averaged
    if average == "all":
        return s.mean(dim=1)
    m = mask.to(s.dtype).unsqueeze(-1)
    return (s * m).sum(dim=1) / m.sum(dim=1)


def fork_unipelt_logits(model, ids, mask, average="all"):
    """UniPELT (APL) on BERT as the fork's modeling_bert.py / lora_layers.py / adapters computes it, from the
    weights of ``model`` read directly (eval mode, no dropout). Returns (logits, {gate name: [B] values})."""
    cfg, bert = model.config, model.bert
    nh, layers = cfg.num_attention_heads, cfg.num_hidden_layers
    x = bert.embeddings(input_ids=ids)
    b, t, h = x.shape
    hd = h // nh
    ext = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0  # get_extended_attention_mask of the fork's era
    enc = model.pk_prefix  # BertEncoder.prefix_enc_embed + prefix_embed_MLP, view(bsz, L, layers*2, heads, hd)
    p = F.linear(torch.tanh(F.linear(enc.embedding.weight, enc.mlp[0].weight, enc.mlp[0].bias)),
                 enc.mlp[2].weight, enc.mlp[2].bias)
    plen = p.shape[0]
    p = p.view(plen, layers * 2, nh, hd).permute(1, 2, 0, 3)  # [layers*2, heads, L, hd]; layer i: 2i keys, 2i+1 values
    ln = lambda v, mod: F.layer_norm(v, (h,), mod.weight, mod.bias, mod.eps)  # noqa: E731
    gates = {}

    def lora(host, inp, name):  # LoRA_Linear.forward: scaling = mean(sigmoid(lora_gate(x)), dim=1)
        part = host.pk_lora
        g = _gate(part.gate.proj, inp, mask, average)
        gates[name] = g.squeeze(-1)
        return F.linear(inp, host.weight, host.bias) + (inp @ part.A[0].weight.T @ part.B[0].weight.T) * g[:, :, None]

    for i, layer in enumerate(bert.encoder.layer):
        sa, pre = layer.attention.self, f"bert.encoder.layer.{i}."
        split = lambda v: v.view(b, -1, nh, hd).transpose(1, 2)  # noqa: E731
        q = split(lora(sa.query, x, pre + "attention.self.query.pk_lora.gate"))
        k = split(F.linear(x, sa.key.weight, sa.key.bias))
        v = split(lora(sa.value, x, pre + "attention.self.value.pk_lora.gate"))
        gp = _gate(sa.pk_prefix_gate.proj, x, mask, average)
        gates[pre + "attention.self.pk_prefix_gate"] = gp.squeeze(-1)
        gp = gp.view(b, 1, 1, 1)
        k = torch.cat([p[2 * i].expand(b, -1, -1, -1) * gp, k], 2)
        v = torch.cat([p[2 * i + 1].expand(b, -1, -1, -1) * gp, v], 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + torch.cat([torch.zeros(b, 1, 1, plen), ext], -1)
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h)
        so = layer.attention.output
        a = ln(F.linear(ctx, so.dense.weight, so.dense.bias) + x, so.LayerNorm)
        inter = F.gelu(F.linear(a, layer.intermediate.dense.weight, layer.intermediate.dense.bias))
        out = layer.output
        hs = F.linear(inter, out.dense.weight, out.dense.bias)
        ad = out.pk_adapter  # Pfeiffer: residual h, input LN(h + a), gate from the adapter input
        y = ln(hs + a, out.LayerNorm)
        ga = _gate(ad.gate.proj, y, mask, average)
        gates[pre + "output.pk_adapter.gate"] = ga.squeeze(-1)
        up = F.linear(F.relu(F.linear(y, ad.down[0].weight, ad.down[0].bias)), ad.up[0].weight, ad.up[0].bias)
        x = ln(up * ga[:, :, None] + hs + a, out.LayerNorm)
    pooled = torch.tanh(F.linear(x[:, 0], bert.pooler.dense.weight, bert.pooler.dense.bias))
    return F.linear(pooled, model.classifier.weight, model.classifier.bias), gates


def _padded(extra: int):
    x = batch("bert")
    ids = torch.cat([x["input_ids"], torch.zeros(3, extra, dtype=torch.long)], 1)
    mask = torch.cat([x["attention_mask"], torch.zeros(3, extra, dtype=torch.long)], 1)
    return ids, mask


@pytest.mark.parametrize("average", ["all", "masked"])
def test_unipelt_forward_matches_fork(average):
    """Same weights, padded batch: peftkit's logits and every gate equal the fork's computation (atol 1e-6).
    The default is the fork's mean over every position; gate_average='masked' equals the masked reference."""
    opts = {} if average == "all" else {"gate_average": "masked"}
    model = peftkit.apply(tiny("bert"), "unipelt", bottleneck=8, prefix_length=3, r=4, seed=0, **opts)
    perturb(model)
    model.eval()
    ids, mask = _padded(5)
    ours = logits(model, {"input_ids": ids, "attention_mask": mask})
    ours_gates = peftkit.gate_values(model)
    with torch.no_grad():
        ref, ref_gates = fork_unipelt_logits(model, ids, mask, average)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    assert set(ours_gates) == set(ref_gates)
    for name, g in ref_gates.items():
        torch.testing.assert_close(ours_gates[name], g, atol=1e-6, rtol=0)


def test_default_gates_depend_on_padding_like_the_forks():
    """Padding to max length (the fork's run_glue default) lowers or raises every gate of a padded example: the
    mean runs over the padding positions too. With gate_average='masked' the gates ignore padding."""
    for average, moves in (("all", True), ("masked", False)):
        model = peftkit.apply(tiny("bert"), "unipelt", bottleneck=8, prefix_length=3, r=4, seed=0,
                              gate_average=average)
        perturb(model)
        model.eval()
        x = batch("bert")
        logits(model, x)
        short = peftkit.gate_values(model)
        ids, mask = _padded(9)
        logits(model, {"input_ids": ids, "attention_mask": mask})
        long = peftkit.gate_values(model)
        diff = max((long[n] - short[n]).abs().max().item() for n in short)
        assert (diff > 1e-4) is moves, (average, diff)


def test_pad_collator_pads_to_max_length():
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": 1},
            {"input_ids": [5], "attention_mask": [1], "labels": 0}]
    longest = PadCollator(0)(rows)
    assert longest["input_ids"].shape == (2, 3)
    fixed = PadCollator(0, pad_to=8)(rows)
    assert fixed["input_ids"].shape == (2, 8) and fixed["attention_mask"].sum().item() == 4
    assert fixed["input_ids"][1].tolist() == [5] + [0] * 7


# --- U2: which parameters train -----------------------------------------------------------------------------
def _fork_trainable(names: list[str], run: str) -> set[str]:
    """The fork's run_glue.py on a plain BertForSequenceClassification (its own modules aside):
    --train_adapter (adapter, UniPELT): model.train_adapter freezes bert.* except names containing 'prefix' / 'lora'
    (none in plain BERT), the classifier stays trainable; LoRA-only / prefix-only / BitFit: utils.freeze_params
    freezes every parameter whose name lacks 'lora' / 'prefix' / 'bias' (classifier included); full: nothing."""
    if run == "train_adapter":
        return {n for n in names if not n.startswith("bert.")}
    if run == "full":
        return set(names)
    keep = {"lora": ("lora",), "prefix": ("prefix",), "bitfit": ("bias",)}[run]
    return {n for n in names if any(k in n for k in keep)}


# (peftkit method, options, the fork's run, train_head the UniPELT protocol passes)
FORK_RUNS = [("unipelt", {"bottleneck": 8, "prefix_length": 3, "r": 4}, "train_adapter", True),
             ("pfeiffer", {"bottleneck": 8}, "train_adapter", True),
             ("lora", {"r": 4}, "lora", False),
             ("prefix", {"prefix_length": 3, "prefix_hidden": 16}, "prefix", False),
             ("bitfit", {}, "bitfit", False),
             ("full", {}, "full", True)]


@pytest.mark.parametrize("method,opts,run,train_head", FORK_RUNS, ids=[r[0] for r in FORK_RUNS])
def test_trainable_backbone_params_match_fork(method, opts, run, train_head):
    """Outside the method's own modules, exactly the fork's parameters train: the pooler stays frozen by default;
    the UniPELT protocol's LoRA-only, prefix-only and BitFit rows need train_head=False."""
    plain = [n for n, _ in tiny("bert").named_parameters()]
    model = peftkit.apply(tiny("bert"), method, train_head=train_head, **opts)
    ours = {n for n, p in model.named_parameters() if p.requires_grad and "pk_" not in n}
    assert ours == _fork_trainable(plain, run)


def test_train_pooler_option_trains_saves_and_counts_it(tmp_path):
    frozen = peftkit.apply(tiny("bert"), "lora", r=4)
    assert not frozen.bert.pooler.dense.weight.requires_grad
    model = peftkit.apply(tiny("bert"), "lora", r=4, train_pooler=True)
    assert model.bert.pooler.dense.weight.requires_grad
    counts, head_only = peftkit.count_parameters(model), peftkit.count_parameters(frozen)
    assert counts["head"] - head_only["head"] == 32 * 32 + 32
    assert counts["trainable"] == head_only["trainable"]
    perturb(model)
    peftkit.save(model, tmp_path)
    fresh = peftkit.load(tiny("bert"), tmp_path)
    assert fresh.bert.pooler.dense.weight.requires_grad
    torch.testing.assert_close(fresh.bert.pooler.dense.weight, model.bert.pooler.dense.weight, atol=0, rtol=0)
    with pytest.raises(ValueError, match="train_pooler"):
        peftkit.apply(tiny("bert"), "lora", train_pooler="yes")


def test_pooler_rule_follows_the_checkpoint(tmp_path):
    """MiniLM-L6 ships pooler weights (so its pooler stays frozen); a checkpoint without them trains its pooler."""
    from safetensors.torch import load_file, save_file

    from peftkit.backbones import has_pooler_weights

    assert has_pooler_weights("minilm")
    tiny("bert").save_pretrained(tmp_path)
    assert has_pooler_weights(str(tmp_path))
    f = tmp_path / "model.safetensors"
    save_file({k: v for k, v in load_file(str(f)).items() if "pooler" not in k}, str(f), metadata={"format": "pt"})
    assert not has_pooler_weights(str(tmp_path))


@pytest.mark.skipif(not os.environ.get("PEFTKIT_DATA_DIR"), reason="needs the shared data (PEFTKIT_DATA_DIR)")
def test_run_pads_to_max_length_and_keeps_minilm_pooler_frozen(tmp_path, monkeypatch):
    """A run with pad_to_max_length pads every batch (train and eval) to max_length and records it; MiniLM ships
    pooler weights, so its pooler is neither trained nor saved. (RunSpec gains the field at merge; a subclass
    stands in for it here.)"""
    from safetensors import safe_open

    from peftkit.experiment import RunSpec, run

    widths, collate = set(), PadCollator.__call__

    def spy(self, rows):
        out = collate(self, rows)
        widths.add(out["input_ids"].shape[1])
        return out
    monkeypatch.setattr(PadCollator, "__call__", spy)

    @dataclasses.dataclass
    class PaddedSpec(RunSpec):
        pad_to_max_length: bool = True

    spec = PaddedSpec("sst-2", "unipelt", str(tmp_path / "u"), {"bottleneck": 8}, profile="smoke", max_train=16,
                      max_eval=16, max_steps=2, max_length=128)
    res = run(spec, progress=False)
    assert widths == {128}  # SST-2 sentences are far shorter
    assert res["training"]["pad_to_max_length"] is True and res["training"]["train_pooler"] is False
    assert res["method_config"]["gate_average"] == "all" and res["gates"]["adapter"]
    with safe_open(str(tmp_path / "u" / "best" / "peftkit_weights.safetensors"), "pt") as f:
        saved = list(f.keys())
    assert any(k.startswith("classifier.") for k in saved) and not any("pooler" in k for k in saved)


@pytest.mark.parametrize("method,head,pad", [("lora", False, True), ("prefix", False, True), ("bitfit", False, True),
                                             ("pfeiffer", True, True), ("unipelt", True, True), ("full", True, True),
                                             ("adamix", True, False)])
def test_unipelt_protocol_freezes_the_forks_heads_and_pads_to_max_length(method, head, pad):
    """Rows U4/U5 as a run resolves them: under UniPELT's protocol (every non-AdaMix GLUE row) the LoRA-only,
    prefix-only and BitFit runs keep the classifier frozen and every batch is padded to max_length; AdaMix rows train
    under AdaMix's protocol (head trained, no padding). An explicit train_head / pad_to_max_length wins."""
    from peftkit.experiment import RunSpec, resolve

    for profile in ("paper", "cpu"):
        r = resolve(RunSpec(task="rte", method=method, out="x", profile=profile))
        assert (r.train_head, r.pad_to_max_length) == (head, pad), (profile, r.protocol)
    r = resolve(RunSpec(task="rte", method=method, out="x", train_head=True, pad_to_max_length=False))
    assert (r.train_head, r.pad_to_max_length) == (True, False)
