"""Official-semantics tests for AdaMix (docs/fidelity.md, section AdaMix): each computes the authors' behaviour
independently -- from the formula in their code, on a tiny random BERT / RoBERTa / GPT-2 with the same weights
copied in -- and checks peftkit's default against it. Each fails when its default is switched to the old behaviour.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, TrainingArguments

import peftkit
from conftest import batch, perturb, tiny
from peftkit import protocols
from peftkit.consistency import consistency_forward
from peftkit.experiment import RunSpec, resolve
from peftkit.features import generation_ids
from peftkit.generate import generate
from peftkit.trainer import PeftTrainer

# ---- row 1: AdaMix's adapter: LN(dropout(h + up(gelu(down(h)))) + x) on the FFN output, before its dropout ------


def _authors_ffn_output(m, wd, bd, wu, bu):
    """The authors' BertOutput / RobertaOutput with ExpertSoup (modeling_bert.py / modeling_roberta.py)."""
    def forward(hidden_states, input_tensor):
        h = m.dense(hidden_states)
        h = h + F.linear(F.gelu(F.linear(h, wd, bd)), wu, bu)  # ExpertSoup(h, residual=h)
        return m.LayerNorm(m.dropout(h) + input_tensor)
    return forward


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("num_modules", [1, 4])
def test_adamix_adapter_matches_the_authors_ffn_output(arch, num_modules):
    model = peftkit.apply(tiny(arch), "adamix", bottleneck=8, num_modules=num_modules, seed=0)
    perturb(model, scale=0.05)
    ref = copy.deepcopy(model)  # same weights; its FFN outputs are replaced by the authors' forward below
    x = batch(arch)
    for training in (True, False):  # training: one module (M=1) with live dropout; eval: the merged average
        if training and num_modules > 1:
            continue
        for layer, ref_layer in zip(model.base_model.encoder.layer, ref.base_model.encoder.layer):
            a = layer.output.pk_adapter
            wd = torch.stack([d.weight for d in a.down]).mean(0).detach()
            bd = torch.stack([d.bias for d in a.down]).mean(0).detach()
            ref_layer.output.forward = _authors_ffn_output(ref_layer.output, wd, bd, a.up[0].weight.detach(),
                                                           a.up[0].bias.detach())
        model.train(training)
        ref.train(training)
        with torch.no_grad():
            torch.manual_seed(5)
            ours = model(**x).logits
            torch.manual_seed(5)
            theirs = ref(**x).logits
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert all(a.act is F.gelu for a in (layer.output.pk_adapter for layer in model.base_model.encoder.layer))
    assert not any(hasattr(layer.attention.output, "pk_adapter") for layer in model.base_model.encoder.layer)


def test_single_adapter_baseline_is_adamix_adapter_with_one_module():
    from peftkit.studies import grid

    specs = grid("ablation_adamix", "smoke", num_modules=(1, 4), share=("up",), consistency=(None,))
    labels = {(s.method, s.options.get("base", "adapter"), s.options.get("num_modules", 4)) for s in specs}
    assert ("adamix", "adapter", 1) in labels and ("adamix", "adapter", 4) in labels
    assert peftkit.make_config("adamix").base == "adapter"


# ---- row 2: initialisation --------------------------------------------------------------------------------------

def _wide_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                     vocab_size=99, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(cfg)


@pytest.mark.parametrize("method,options", [("adamix", {}), ("pfeiffer", {}), ("houlsby", {})])
def test_adapter_init_is_bert_normal_002_for_down_and_up(method, options):
    """Authors' GLUE code: _init_weights re-draws every expert Linear N(0, 0.02), zero bias (AdapterHub's and the
    UniPELT fork's init_bert_weights do the same for seq_bn / double_seq_bn)."""
    model = peftkit.apply(_wide_bert(), method, bottleneck=32, seed=0, **options)
    for side in ("down", "up"):
        ws = [p for n, p in model.named_parameters() if f"pk_adapter.{side}." in n and n.endswith("weight")]
        bs = [p for n, p in model.named_parameters() if f"pk_adapter.{side}." in n and n.endswith("bias")]
        w = torch.cat([p.detach().flatten() for p in ws])
        assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002, (side, float(w.std()))
        assert all(float(b.detach().abs().max()) == 0.0 for b in bs)
    if method == "adamix":  # the M down-projections are independent draws
        downs = model.bert.encoder.layer[0].output.pk_adapter.down
        assert not torch.equal(downs[0].weight, downs[1].weight)
    near = peftkit.apply(_wide_bert(), method, bottleneck=32, seed=0, init="zero_up", **options)
    assert all(float(p.abs().max()) == 0 for n, p in near.named_parameters() if "pk_adapter.up." in n)


def test_adamix_lora_experts_start_identical_by_default():
    """NLG AdamixMergedLinear: experts_lora_A are deep copies of one lora_A (Kaiming), B zero; GPT2LMModel's
    _init_weights touches nn.Linear modules only, not these ParameterLists."""
    model = peftkit.apply(tiny("gpt2"), "adamix", base="lora", num_modules=4, share="up", r=4, seed=0)
    parts = [m for n, m in model.named_modules() if n.endswith(("pk_lora_q", "pk_lora_v"))]
    assert parts and all(len(p.A) == 4 for p in parts)
    for p in parts:
        assert all(torch.equal(p.A[0].weight, a.weight) for a in p.A)
        assert float(p.B[0].weight.abs().max()) == 0.0
        bound = 1 / p.A[0].weight.shape[1] ** 0.5  # kaiming_uniform(a=sqrt(5)) on [r, in]: U(-1/sqrt(in), ..)
        assert float(p.A[0].weight.abs().max()) <= bound
    other = peftkit.apply(tiny("gpt2"), "adamix", base="lora", num_modules=4, r=4, seed=0, expert_init="independent")
    part = next(m for n, m in other.named_modules() if n.endswith("pk_lora_q"))
    assert not torch.equal(part.A[0].weight, part.A[1].weight)


# ---- row 3: consistency regularisation ---------------------------------------------------------------------------

def _authors_symmetric_kl(p, q):
    """modeling_roberta.symmetric_KL_loss: batchmean KL with detached targets, halved."""
    return 0.5 * (F.kl_div(F.log_softmax(p.float(), -1), F.softmax(q.detach().float(), -1), reduction="batchmean")
                  + F.kl_div(F.log_softmax(q.float(), -1), F.softmax(p.detach().float(), -1), reduction="batchmean"))


def test_consistency_loss_is_first_pass_ce_plus_symmetric_kl():
    model = peftkit.apply(tiny("roberta"), "adamix", bottleneck=8, num_modules=4, seed=0).train()
    perturb(model, scale=0.5)
    inputs = dict(batch("roberta"), labels=torch.tensor([0, 1, 2]))
    torch.manual_seed(0)
    loss, task, kl, out = consistency_forward(model, inputs, weight=1.0)
    l1, l2 = out.logits.chunk(2)
    theirs = F.cross_entropy(l1, inputs["labels"]) + 1.0 * _authors_symmetric_kl(l1, l2)
    torch.testing.assert_close(loss, theirs, atol=1e-6, rtol=0)
    params = [p for p in model.parameters() if p.requires_grad]
    g_ours = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    g_theirs = torch.autograd.grad(theirs, params, allow_unused=True)
    for a, b in zip(g_ours, g_theirs):
        if a is not None or b is not None:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert float(kl) > 0


def test_consistency_default_weight_follows_the_authors_classifiers(tmp_path):
    """BertForSequenceClassification never computes the consistency loss; RobertaForSequenceClassification does
    (w = 1); GPT2LMModel uses 100. Read from the model's config, not its name."""
    for arch, expected in (("bert", 0.0), ("roberta", 1.0)):
        d = tmp_path / arch
        tiny(arch).config.save_pretrained(d)
        assert protocols.consistency_weight("adamix-glue", str(d), "glue", regression=False) == expected
    assert resolve(RunSpec("rte", "adamix", "x", profile="paper", model="FacebookAI/roberta-large")).consistency == 1
    assert resolve(RunSpec("rte", "adamix", "x", profile="paper")).consistency == 0.0
    assert resolve(RunSpec("e2e", "adamix", "x", {"base": "lora"})).consistency == 100.0


# ---- row 4: protocols --------------------------------------------------------------------------------------------

def test_adamix_glue_protocol_matches_the_scripts(tmp_path):
    bert = resolve(RunSpec("mnli", "adamix", "x", profile="paper"))
    assert (bert.protocol, bert.batch_size, bert.lr, bert.epochs, bert.warmup_ratio, bert.weight_decay,
            bert.patience, bert.max_length, bert.eval_steps) == \
        ("adamix-glue", 64, 4e-4, 40, 0.06, 0.1, None, 128, None)
    d = tmp_path / "local-large-roberta"  # a local path: the rate comes from the config, not the name
    cfg = tiny("roberta").config
    cfg.hidden_size, cfg.num_attention_heads = 1024, 16
    cfg.save_pretrained(d)
    large = resolve(RunSpec("mnli", "adamix", "x", profile="paper", model=str(d)))
    assert (large.lr, large.epochs, large.options.get("bottleneck"), large.consistency) == (3e-4, 20, 16, 1.0)
    baseline = resolve(RunSpec("mrpc", "lora", "x", profile="paper"))  # quoted from UniPELT: UniPELT's protocol
    assert (baseline.protocol, baseline.batch_size, baseline.epochs, baseline.patience, baseline.warmup_ratio,
            baseline.weight_decay) == ("unipelt-glue", 16, 50, 10, 0.0, 0.0)
    assert [protocols.selection_metric("unipelt-glue", t) for t in ("mrpc", "cola", "stsb", "rte")] == \
        ["f1", "matthews_correlation", "spearmanr", "accuracy"]


def test_cpu_profile_scales_only_data_length_and_backbone():
    """Every protocol stays whole at the cpu profile (epochs, steps, evaluation cadence, early stopping, batch, ...):
    only the backbone (and the rate its family keys), the training data, the token length and the precision
    differ; NLG's warmup steps become the same fraction of the shorter training."""
    import dataclasses

    for task, method in (("rte", "adamix"), ("sst2", "lora"), ("sst2", "unipelt"), ("e2e", "adamix"),
                         ("webnlg", "lora"), ("fewshot:sst-2", "lora")):
        paper, cpu = resolve(RunSpec(task, method, "x", profile="paper")), resolve(RunSpec(task, method, "x"))
        scaled = {"profile", "model", "lr", "k", "data_seed", "max_train", "max_eval", "max_length", "precision"}
        if task in ("e2e", "webnlg"):
            scaled |= {"warmup_steps", "warmup_ratio"}
        for f in dataclasses.fields(RunSpec):
            if f.name not in scaled:
                assert getattr(paper, f.name) == getattr(cpu, f.name), (task, method, f.name)
        assert paper.lr == cpu.lr or paper.model != cpu.model  # the rate follows the backbone's family
        if not task.startswith("fewshot") and task not in ("e2e", "webnlg"):
            assert (cpu.k, cpu.data_seed, paper.k) == (1000, 111, None)  # UniPELT's low-resource protocol


# ---- row 5: label smoothing in AdaMix's consistency path -----------------------------------------------------------

def _smoothed_ce(logits, labels, eps):
    """The authors' NLG loss (GPT2LMModel.forward): (1 - eps) * NLL + eps * mean_v(-log p), over target tokens."""
    logits, labels = logits[:, :-1], labels[:, 1:]
    logp = F.log_softmax(logits.float(), -1)
    keep = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    loss = (1 - eps) * nll + eps * (-logp.mean(-1))
    return (loss * keep).sum() / keep.sum()


def _nlg_batch():
    x = batch("gpt2")
    labels = x["input_ids"].masked_fill(x["attention_mask"] == 0, -100).clone()
    labels[:, :3] = -100  # the context
    return dict(x, labels=labels)


@pytest.mark.parametrize("num_modules", [1, 4])
def test_adamix_generation_training_loss_is_the_smoothed_loss(tmp_path, num_modules):
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0)
    torch.manual_seed(0)
    model = peftkit.apply(GPT2LMHeadModel(cfg), "adamix", base="lora", r=4, num_modules=num_modules, seed=0)
    perturb(model, scale=0.3)
    args = TrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=0.1, use_cpu=True, report_to=[])
    trainer = PeftTrainer(model=model, args=args, consistency=100.0, causal=True)
    inputs = _nlg_batch()
    model.train()
    torch.manual_seed(0)
    loss, out = trainer.compute_loss(model, dict(inputs), return_outputs=True)
    keep = inputs["labels"][:, 1:] != -100  # the logits are the scored positions' rows (peftkit.lmloss): put back
    full = torch.zeros(2 * keep.shape[0], keep.shape[1] + 1, out.logits.shape[-1])
    full[:, :-1][torch.cat([keep, keep])] = out.logits
    l1, l2 = full.chunk(2)
    mask = inputs["labels"][:, 1:] != -100
    kl = _authors_symmetric_kl(l1[:, :-1][mask], l2[:, :-1][mask])
    expected = _smoothed_ce(l1, inputs["labels"], 0.1) + 100.0 * kl
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-6)
    plain = _smoothed_ce(l1, inputs["labels"], 0.0) + 100.0 * kl
    assert abs(float(loss - plain)) > 1e-3  # the smoothing is not silently dropped
    if num_modules == 1:  # no routing, no dropout: both passes agree and the loss is the smoothed CE itself
        assert float(kl) < 1e-10


# ---- row 6: AdaMix NLG (GPT-2) -----------------------------------------------------------------------------------

class _CharTokenizer:
    """A stand-in GPT-2 tokenizer (no sep / cls token; eos = 0): one id per character."""

    sep_token_id = cls_token_id = None
    eos_token_id = pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i not in (0,))


def test_nlg_inputs_are_context_eos_space_completion_eos():
    tok = _CharTokenizer()
    spec = resolve(RunSpec("e2e", "adamix", "x"))
    row = generation_ids(tok, "name[Aromi]", "Aromi is a pub.", 128, spec.nlg_format)
    context, completion = [ord(c) for c in "name[Aromi]"], [ord(c) for c in " Aromi is a pub."]
    assert row["input_ids"] == context + [0] + completion + [0]
    assert row["labels"] == [-100] * (len(context) + 1) + completion + [0]


def test_beam_search_also_stops_on_628():
    cfg = GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=700, n_positions=64, eos_token_id=0,
                     pad_token_id=0, bos_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.transformer.wte.weight[628] = model.transformer.ln_f.bias * 0 + 5.0  # 628 always the argmax
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.ln_f.bias.fill_(1.0)
    spec = resolve(RunSpec("e2e", "adamix", "x"))
    settings = {"num_beams": 2, "max_new_tokens": 6, "length_penalty": 0.8, "no_repeat_ngram_size": 4}
    ours = generate(model, _CharTokenizer(), ["ab"], 32, settings, extra_eos=spec.extra_eos)
    hf = generate(model, _CharTokenizer(), ["ab"], 32, settings, extra_eos=[])
    assert ours == [chr(628)] or ours == [""]  # stopped at the first 628
    assert len(hf[0]) > 1  # without it: runs on past 628


def test_adamix_nlg_training_settings(tmp_path):
    from peftkit.backbones import load_model

    spec = resolve(RunSpec("e2e", "adamix", "x", {"base": "lora"}, profile="paper"))
    assert (spec.adam_epsilon, spec.backbone_dropout, spec.evaluate_model, spec.label_smoothing) == \
        (1e-6, 0.0, "final", 0.1)
    assert spec.options == {"base": "lora", "r": 4, "alpha": 32.0, "dropout": 0.1, "num_modules": 8, "share": "up"}
    d = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=32)).save_pretrained(d)
    m = load_model(str(d), "causal", dropout=spec.backbone_dropout)
    assert (m.config.resid_pdrop, m.config.embd_pdrop, m.config.attn_pdrop) == (0.0, 0.0, 0.0)
    assert json.loads((d / "config.json").read_text())["resid_pdrop"] == 0.1  # the checkpoint keeps HF's 0.1
    hf = load_model(str(d), "causal")
    assert hf.config.resid_pdrop == 0.1
