"""Golden cross-checks: peftkit against peft (LoRA) and AdapterHub `adapters` (bottleneck adapters, UniPELT).

peft runs beside the runtime (transformers 5); AdapterHub `adapters` 1.3 needs transformers 4.57, so its tests are
marked ``peers`` and ``make test`` runs them in the peers venv (``make peers``, requirements-peers.lock).
"""
from __future__ import annotations

import copy

import pytest
import torch

import peftkit
from conftest import batch, logits, perturb, tiny


def _peers():
    return pytest.importorskip("adapters", reason="AdapterHub adapters is not installed here: make peers")


@pytest.mark.parametrize("arch", ["bert", "roberta", "gpt2"])
@pytest.mark.parametrize("method,opts", [("lora", {"r": 4, "alpha": 8}),
                                         ("adamix", {"base": "lora", "r": 4, "alpha": 8, "num_modules": 3})])
def test_lora_export_loads_in_peft_with_same_logits(arch, method, opts, tmp_path):
    peft = pytest.importorskip("peft")
    base = tiny(arch)
    model = peftkit.apply(copy.deepcopy(base), method, seed=0, **opts)
    perturb(model)
    if method == "adamix":
        peftkit.merge(model)  # AdaMix-LoRA exports its weight average
    x = batch(arch)
    ours = logits(model.eval(), x)
    peftkit.export_peft(model, tmp_path)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path)).eval()
    torch.testing.assert_close(logits(loaded, x), ours, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method,opts", [("prefix", {"prefix_length": 3, "prefix_hidden": 16}),
                                         ("adamix", {"base": "prefix", "prefix_length": 3, "prefix_hidden": 16,
                                                     "num_modules": 3, "share": "none"})])
def test_prefix_export_loads_in_peft_with_same_logits_on_gpt2(method, opts, tmp_path):
    """A merged AdaMix-prefix is a plain prefix of fixed key/values: peft's prefix format (prefix_projection=False)
    holds it, and peft's model gives the same logits once its positions start at 0 as peftkit's do (peft numbers
    them from L: without position_ids it differs)."""
    peft = pytest.importorskip("peft")
    from peftkit.export import peft_position_ids

    base = tiny("gpt2")
    model = peftkit.apply(copy.deepcopy(base), method, seed=0, **opts)
    perturb(model)
    peftkit.merge(model)
    x = batch("gpt2")
    ours = logits(model.eval(), x)
    peftkit.export_peft(model, tmp_path)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path)).eval()
    assert type(loaded).__name__ == "PeftModelForCausalLM"
    assert loaded.peft_config["default"].peft_type == "PREFIX_TUNING"
    at_zero = logits(loaded, {**x, "position_ids": peft_position_ids(x["input_ids"], 3)})
    torch.testing.assert_close(at_zero, ours, atol=1e-6, rtol=0)
    assert (logits(loaded, x) - ours).abs().max() > 1e-3  # peft's own numbering: positions L..L+T-1


def test_prefix_export_refuses_encoders_that_peft_cannot_run(tmp_path):
    """peft runs a prefix as past key/values; transformers 5's BERT takes none, so the export says so."""
    model = peftkit.apply(tiny("bert"), "adamix", base="prefix", prefix_length=3, prefix_hidden=16, seed=0)
    peftkit.merge(model)
    with pytest.raises(ValueError, match="past_key_values"):
        peftkit.export_peft(model, tmp_path)
    with pytest.raises(ValueError, match="base=prefix"):
        peftkit.export_peft(peftkit.apply(tiny("bert"), "adamix", base="prompt", prompt_length=3), tmp_path)


def _hub_model(arch, config):
    model = tiny(arch)
    _peers().init(model)
    model.add_adapter("a", config=config)
    model.set_active_adapters("a")
    return model.eval()


def _copy_bottlenecks(ours, theirs, sites):
    """Copy peftkit's adapter weights into AdapterHub's modules (site name -> adapters' module)."""
    theirs_modules = dict(theirs.named_modules())
    with torch.no_grad():
        for site, hub_name in sites:
            blk = dict(ours.named_modules())[site + ".pk_adapter"]
            hub = theirs_modules[hub_name]
            hub.adapter_down[0].weight.copy_(blk.down[0].weight)
            hub.adapter_down[0].bias.copy_(blk.down[0].bias)
            hub.adapter_up.weight.copy_(blk.up[0].weight)
            hub.adapter_up.bias.copy_(blk.up[0].bias)


@pytest.mark.peers
@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("method,hub_config", [("pfeiffer", "seq_bn"), ("houlsby", "double_seq_bn")])
def test_adapters_match_adapterhub(arch, method, hub_config):
    """pfeiffer == adapters seq_bn (LayerNorm before and after), houlsby == double_seq_bn (swish), same weights."""
    _peers()
    from adapters import DoubleSeqBnConfig, SeqBnConfig

    ours = peftkit.apply(tiny(arch), method, bottleneck=8)
    perturb(ours)
    cfg = (SeqBnConfig if method == "pfeiffer" else DoubleSeqBnConfig)(reduction_factor=4)  # 32 / 4 = 8
    theirs = _hub_model(arch, cfg)
    prefix = "bert" if arch == "bert" else "roberta"
    sites = []
    for i in range(2):
        layer = f"{prefix}.encoder.layer.{i}"
        sites.append((f"{layer}.output", f"{layer}.output.adapters.a"))
        if method == "houlsby":
            sites.append((f"{layer}.attention.output", f"{layer}.attention.output.adapters.a"))
    _copy_bottlenecks(ours, theirs, sites)
    with torch.no_grad():  # same task head
        theirs_head = dict(theirs.named_parameters())
        for n, p in ours.named_parameters():
            if n in theirs_head and p.requires_grad and "pk_" not in n:  # head and pooler
                theirs_head[n].copy_(p)
    x = batch(arch)
    torch.testing.assert_close(logits(ours.eval(), x), logits(theirs, x), atol=1e-5, rtol=0)


@pytest.mark.peers
def test_unipelt_trainable_count_against_adapterhub():
    """adapters' UniPELTConfig on BERT-base trains exactly as many parameters as peftkit's UniPELT (APL):
    per layer a seq_bn adapter (b=48) with gate, LoRA r=8 on query and value with one gate each, and gated
    prefix-tuning whose reparameterisation (embedding 10x768, Linear(768, 512), Linear(512, 2*12*768)) is the
    same shape (and the same outputs: test_unipelt_logits_match_adapterhub_on_padded_batch).
    """
    adapters = _peers()
    from adapters import UniPELTConfig
    from transformers import BertConfig, BertModel

    hub = BertModel(BertConfig())
    adapters.init(hub)
    hub.add_adapter("u", config=UniPELTConfig())
    hub.train_adapter("u")
    theirs = sum(p.numel() for p in hub.parameters() if p.requires_grad)
    from peftkit.cli import params

    ours = params("bert-base", "unipelt")["trainable"]
    assert ours == theirs == 11_083_376


def _unipelt_to_adapterhub(ours):
    """adapters' UniPELTConfig on the same tiny BERT, carrying peftkit's UniPELT weights (and head)."""
    from adapters import UniPELTConfig

    theirs = tiny("bert")
    _peers().init(theirs)
    theirs.add_adapter("u", config=UniPELTConfig())  # seq_bn (reduction 16: b=2 here), prefix L=10, LoRA r=8
    theirs.set_active_adapters("u")
    o = dict(ours.named_parameters())
    pairs = {f"classifier.{w}": o[f"classifier.{w}"] for w in ("weight", "bias")}
    pre = "bert.encoder.layer.0.attention.self.prefix_tuning.pool.prefix_tunings.u.self_prefix."
    pairs[pre + "wte.weight"] = o["pk_prefix.embedding.weight"]
    for j in (0, 2):  # Linear, tanh, Linear
        for w in ("weight", "bias"):
            pairs[pre + f"control_trans.{j}.{w}"] = o[f"pk_prefix.mlp.{j}.{w}"]
    for i in range(2):
        lay = f"bert.encoder.layer.{i}."
        for w in ("weight", "bias"):
            pairs[lay + f"attention.self.prefix_tuning.prefix_gates.u.{w}"] = \
                o[lay + f"attention.self.pk_prefix_gate.proj.{w}"]
            pairs[lay + f"output.adapters.u.adapter_down.0.{w}"] = o[lay + f"output.pk_adapter.down.0.{w}"]
            pairs[lay + f"output.adapters.u.adapter_up.{w}"] = o[lay + f"output.pk_adapter.up.0.{w}"]
            pairs[lay + f"output.adapters.u.gate.{w}"] = o[lay + f"output.pk_adapter.gate.proj.{w}"]
        for side in ("query", "value"):
            ours_lora, hub_lora = lay + f"attention.self.{side}.pk_lora.", lay + f"attention.self.{side}.loras.u."
            pairs[hub_lora + "lora_A"] = o[ours_lora + "A.0.weight"]
            pairs[hub_lora + "lora_B"] = o[ours_lora + "B.0.weight"]
            for w in ("weight", "bias"):
                pairs[hub_lora + f"gate.{w}"] = o[ours_lora + f"gate.proj.{w}"]
    theirs_params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, value in pairs.items():
            theirs_params[name].copy_(value)
    return theirs.eval()


@pytest.mark.peers
def test_unipelt_logits_match_adapterhub_on_padded_batch():
    """Same weights, a batch padded 5 tokens past its longest row: peftkit's default UniPELT (gates averaged over
    every position, as the authors' fork) equals adapters' UniPELTConfig, which averages over padding too;
    gate_average='masked' does not (its gates ignore the padding)."""
    x = batch("bert")
    pad = torch.zeros(3, 5, dtype=torch.long)
    padded = {k: torch.cat([x[k], pad], 1) for k in ("input_ids", "attention_mask")}
    for average, equal in (("all", True), ("masked", False)):
        ours = peftkit.apply(tiny("bert"), "unipelt", bottleneck=2, prefix_length=10, r=8, seed=0,
                             gate_average=average)
        perturb(ours)
        theirs = _unipelt_to_adapterhub(ours.eval())
        diff = (logits(ours, padded) - logits(theirs, padded)).abs().max().item()
        assert (diff < 1e-6) is equal, (average, diff)
