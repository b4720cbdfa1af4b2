"""Exact parameter counts (methods.md), the `peftkit params` CLI, and bad options that must leave models untouched."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification, LlamaConfig, LlamaForCausalLM

import peftkit
from conftest import batch, logits, tiny
from peftkit.cli import main, params
from peftkit.core import state_of

BERT_BASE = [
    ("pfeiffer", {"bottleneck": 48}, None, 894_528),
    ("lora", {"r": 8}, 294_912, 294_912),
    ("prefix", {"prefix_length": 10}, None, 184_320),
    ("adamix", {"base": "pfeiffer", "bottleneck": 48, "num_modules": 4, "share": "up"}, 2_223_360, 894_528),
    ("adamix", {"base": "lora", "r": 8, "num_modules": 4, "share": "up"}, 737_280, 294_912),
    # AdaMix over prefix: 4 embeddings (10 x 768) and one reparameterisation MLP; merged, one prefix
    ("adamix", {"base": "prefix", "num_modules": 4, "share": "up"}, 4 * 7_680 + 9_849_344, 184_320),
    ("adamix", {"base": "prompt", "num_modules": 4}, 61_440, 15_360),
    ("unipelt", {"variant": "APL"}, None, 1_410_672),
    ("unipelt", {"variant": "AP"}, None, 1_097_304),
]


@pytest.mark.parametrize("method,opts,trainable,inference", BERT_BASE)
def test_exact_counts_bert_base(method, opts, trainable, inference):
    got = params("bert-base", method, **opts)
    assert got["inference"] == inference
    if trainable is not None:
        assert got["trainable"] == trainable


def test_bitfit_and_roberta_large_counts():
    assert params("bert-base", "bitfit")["trainable"] == 102_912  # ~103K: every bias, pooler included
    assert params("roberta-large", "pfeiffer", bottleneck=16)["inference"] == 811_392
    assert params("bert-base", "prefix")["trainable"] == 10 * 768 + 768 * 512 + 512 + 512 * 18432 + 18432


def test_cli_params_prints_json():
    out = subprocess.run([sys.executable, "-m", "peftkit.cli", "params", "--arch", "bert-base", "--method", "adamix",
                          "--option", "base=lora", "--option", "num_modules=4"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["trainable"], data["inference"]) == (737_280, 294_912)


def test_params_report_writes_table_and_index(tmp_path):
    from peftkit.cli import params_report

    md = params_report(tmp_path)
    text = md.read_text()
    assert "| adamix" in text.lower() and "894,528" in text  # pfeiffer b=48 on BERT-base
    index = (tmp_path / "README.md").read_text()
    assert "](parameters.md)" in index and "make params" in index


def test_cli_bad_option_exits_nonzero(capsys):
    assert main(["params", "--arch", "bert-base", "--method", "lora", "--option", "r=-2"]) == 2
    assert "r=-2" in capsys.readouterr().err
    assert main(["params", "--arch", "bert-huge", "--method", "lora"]) == 2
    assert "bert-base" in capsys.readouterr().err


BAD = [
    ("nope", {}, "method"),
    ("lora", {"r": -1}, "r="),
    ("lora", {"rank": 8}, "unknown option 'rank'"),
    ("lora", {"alpha": 0}, "alpha"),
    ("lora", {"dropout": 1.5}, "dropout"),
    ("lora", {"targets": "query"}, "targets"),
    ("lora", {"targets": ["nonexistent"]}, "no Linear module named 'nonexistent'"),
    ("adamix", {"base": "lora", "r": 0}, "r="),
    ("adamix", {"num_modules": 0}, "num_modules"),
    ("adamix", {"share": "both"}, "share"),
    ("adamix", {"base": "bitfit"}, "base"),
    ("adamix", {"base": "prefix", "bottleneck": 16}, "bottleneck"),  # a flag that cannot apply to the base
    ("adamix", {"base": "adapter", "merge": "kv"}, "merge"),
    ("adamix", {"inference": "fixed-9", "num_modules": 4}, "inference"),
    ("adamix", {"inference": "average"}, "inference"),
    ("adamix", {"targets": ["query"]}, "targets"),
    ("prefix", {"prefix_length": 0}, "prefix_length"),
    ("prompt", {"prompt_length": 0}, "prompt_length"),
    ("pfeiffer", {"bottleneck": 4.5}, "bottleneck"),
    ("pfeiffer", {"activation": "softmax"}, "activation"),
    ("houlsby", {"bottleneck": -3}, "bottleneck"),
    ("unipelt", {"variant": "APLX"}, "variant"),
    ("unipelt", {"gates": "yes"}, "gates"),
    ("unipelt", {"r": 0}, "r="),
    ("bitfit", {"r": 8}, "unknown option"),
]


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method,opts,message", BAD)
def test_bad_options_raise_and_leave_model_untouched(method, opts, message):
    model = tiny("bert")
    before = _snapshot(model)
    modules_before = [n for n, _ in model.named_modules()]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        peftkit.apply(model, method, **opts)
    assert "allowed" in str(err.value) or "no Linear module" in str(err.value)
    with pytest.raises(ValueError, match="no peftkit method"):
        state_of(model)
    assert [n for n, _ in model.named_modules()] == modules_before
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())
    assert "forward" not in vars(model.bert.encoder.layer[0].attention.self.query)


def test_unsupported_architecture_errors_say_how_to_name_targets():
    model = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                                                 vocab_size=50))
    with pytest.raises(ValueError, match="targets=") as err:
        peftkit.apply(model, "lora")
    assert "q_lin" in str(err.value)  # the message lists the Linear modules the user can name
    with pytest.raises(ValueError, match="adapters is not supported on model_type 'distilbert'"):
        peftkit.apply(model, "pfeiffer")
    peftkit.apply(model, "lora", targets=["q_lin", "v_lin"], r=2)  # naming them works
    assert peftkit.count_parameters(model)["trainable"] == 2 * (2 * 32 + 32 * 2)


def test_non_transformers_model_and_double_apply():
    with pytest.raises(ValueError, match="Hugging Face"):
        peftkit.apply(torch.nn.Linear(3, 3), "lora")
    model = peftkit.apply(tiny("bert"), "lora", r=2)
    with pytest.raises(ValueError, match="already attached"):
        peftkit.apply(model, "bitfit")
    with pytest.raises(ValueError, match="train_head"):
        peftkit.apply(tiny("bert"), "lora", train_head="no")
    with pytest.raises(ValueError, match="seed"):
        peftkit.apply(tiny("bert"), "lora", seed=-1)


def test_llama_lora_default_targets():
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=50)
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg).eval()
    model = peftkit.apply(copy.deepcopy(base), "lora", r=4)
    assert peftkit.count_parameters(model)["trainable"] == 2 * 2 * (32 * 4 + 4 * 32)
    x = {"input_ids": torch.randint(0, 50, (2, 5))}
    torch.testing.assert_close(logits(model, x), logits(base, x))  # B = 0 at init


def test_gate_values_after_forward():
    model = peftkit.apply(tiny("bert"), "unipelt", bottleneck=8, prefix_length=4, r=4)
    model(**batch("bert"))
    gates = peftkit.gate_values(model)
    assert len(gates) == 2 * 4  # per layer: adapter, prefix, LoRA query, LoRA value
    assert all(g.shape == (3,) and bool(((g > 0) & (g < 1)).all()) for g in gates.values())
    names = " ".join(gates)
    assert "pk_prefix_gate" in names and "pk_adapter.gate" in names and "query.pk_lora.gate" in names
