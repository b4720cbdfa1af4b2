"""Official-semantics tests for what happens around the forward pass (docs/fidelity.md, section "Training step"): the
optimiser step on the authors' PyTorch, the sampler, clipping, precision, the NLG loader and the NLG method settings.
Each computes the authors' behaviour independently and fails when peftkit's default is switched back.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

import peftkit
from conftest import batch, tiny
from peftkit.core import state_of
from peftkit.experiment import RunSpec, resolve
from peftkit.runner import training_args, use_bf16
from peftkit.trainer import PeftTrainer

# ---- T1: AdamW as transformers 4.x computed it, on PyTorch 1.x's zero-filled gradients ----------------------------

LR, WD, EPS, B1, B2 = 1e-2, 0.1, 1e-8, 0.9, 0.999
ROUTES = [[0, 1], [1, 1], [0, 2], [2, 0], [1, 0]]  # per step, the down-projection each of the 2 layers draws


class _Rows(Dataset):
    def __init__(self, inputs: dict, labels: torch.Tensor):
        self.inputs, self.labels = inputs, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {**{k: v[i] for k, v in self.inputs.items()}, "labels": self.labels[i]}


def _mixture_model():
    """A tiny BERT with AdaMix (3 down-projections, one shared up), no dropout, routing forced to ROUTES."""
    model = peftkit.apply(tiny("bert"), "adamix", num_modules=3, bottleneck=4, seed=0)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def _force_routes(model, routes):
    draws = [i for step in routes for i in step]
    state = state_of(model)
    state.draw = lambda n, groups=1: [draws.pop(0) for _ in range(groups)]


def _train_with_peftkit(tmp_path, inputs, labels, **optim):
    from transformers import TrainingArguments

    model = _mixture_model()
    _force_routes(model, ROUTES)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=len(labels), max_steps=len(ROUTES),
                             learning_rate=LR, weight_decay=WD, adam_epsilon=EPS, lr_scheduler_type="constant",
                             max_grad_norm=0.0, report_to=[], save_strategy="no", use_cpu=True, logging_steps=100,
                             disable_tqdm=True)
    PeftTrainer(model=model, args=args, train_dataset=_Rows(inputs, labels), optim=optim).train()
    return model


def _train_by_hand(inputs, labels):
    """The authors' loop written out: loss.backward(); AdamW.step() (transformers 4.x: eps added to sqrt(v) before
    the bias correction, decay applied after the update, biases and LayerNorm not decayed, grad None skipped);
    model.zero_grad() on torch 1.9 (gradients zeroed, not set to None)."""
    model = _mixture_model()
    _force_routes(model, ROUTES)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    state = {}
    for _ in ROUTES:
        model.train()
        model(**inputs, labels=labels).loss.backward()
        with torch.no_grad():
            for n, p in params.items():
                if p.grad is None:  # never used yet: AdamW skips it
                    continue
                s = state.setdefault(n, {"t": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
                s["t"] += 1
                s["m"] = B1 * s["m"] + (1 - B1) * p.grad
                s["v"] = B2 * s["v"] + (1 - B2) * p.grad * p.grad
                step = LR * math.sqrt(1 - B2 ** s["t"]) / (1 - B1 ** s["t"])
                p -= step * s["m"] / (s["v"].sqrt() + EPS)
                decayed = "bias" not in n and "LayerNorm" not in n
                if decayed:
                    p -= LR * WD * p
                p.grad.zero_()  # torch 1.9's zero_grad(): the gradient stays, as zeros
    return model


def test_undrawn_experts_keep_stepping_as_on_the_authors_torch(tmp_path):
    inputs, labels = batch("bert", b=4), torch.tensor([0, 1, 2, 1])
    ours = _train_with_peftkit(tmp_path / "a", inputs, labels)
    theirs = _train_by_hand(inputs, labels)
    for (n, p), q in zip(ours.named_parameters(), theirs.parameters()):
        if p.requires_grad:
            torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=n)
    # switched back to torch >= 2 (gradients set to None, undrawn experts skipped): the experts drift apart
    old = _train_with_peftkit(tmp_path / "b", inputs, labels, grad_reset="none", optimizer="torch-adamw")
    layer0 = "bert.encoder.layer.0.output.pk_adapter.down.0.weight"  # drawn at step 1, idle at steps 2, 4, 5
    gap = (dict(old.named_parameters())[layer0] - dict(theirs.named_parameters())[layer0]).abs().max()
    assert gap > 1e-3


def test_torch_variant_is_torch_adamw_and_the_hf_variant_is_not():
    from peftkit.optim import AdamW

    torch.manual_seed(0)
    w0 = torch.randn(5, 3)
    runs = {}
    for name in ("torch", "hf", "ref"):
        w = torch.nn.Parameter(w0.clone())
        opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.1, eps=1e-3) if name == "ref" else \
            AdamW([w], lr=0.1, weight_decay=0.1, eps=1e-3, variant=name, step_zero_grads=False)
        for step in range(4):
            w.grad = torch.sin(w.detach() * (step + 1))
            opt.step()
        runs[name] = w.detach()
    torch.testing.assert_close(runs["torch"], runs["ref"], atol=1e-7, rtol=0)
    assert (runs["hf"] - runs["ref"]).abs().max() > 1e-5  # eps before the bias correction, decay after


def test_weight_decay_groups_follow_the_trainer_and_the_nlg_code():
    from peftkit.optim import decay_parameter_names

    model = peftkit.apply(tiny("bert"), "pfeiffer", bottleneck=4)
    hf, every = decay_parameter_names(model, "hf"), decay_parameter_names(model, "all")
    assert not any("bias" in n or "LayerNorm" in n for n in hf)
    assert "bert.encoder.layer.0.output.pk_adapter.down.0.weight" in hf
    assert every == {n for n, _ in model.named_parameters()}
    nlg = resolve(RunSpec(task="e2e", method="lora", out="x", profile="paper"))
    glue = resolve(RunSpec(task="rte", method="lora", out="x", profile="paper"))
    assert (nlg.weight_decay_scope, glue.weight_decay_scope) == ("all", "hf")
    assert (nlg.optimizer, nlg.grad_reset, glue.optimizer, glue.grad_reset) == ("hf-adamw", "zero") * 2


# ---- T3-T6: sampler, clipping, drop_last, precision --------------------------------------------------------------

@pytest.mark.parametrize("task,method", [("rte", "adamix"), ("rte", "lora"), ("e2e", "lora"), ("e2e", "adamix")])
def test_batches_are_drawn_uniformly_at_random(tmp_path, task, method):
    spec = resolve(RunSpec(task=task, method=method, out=str(tmp_path), profile="paper"))
    assert spec.sampler == "random"
    args = training_args(spec, tmp_path, 100)
    assert not getattr(args, "group_by_length", False)
    assert getattr(args, "train_sampling_strategy", "random") == "random"


def test_nlg_trains_unclipped_on_full_batches_and_glue_clips_at_one(tmp_path):
    nlg = resolve(RunSpec(task="webnlg", method="adamix", options={"base": "lora"}, out="x", profile="paper"))
    glue = resolve(RunSpec(task="rte", method="adamix", out="x", profile="paper"))
    a_nlg, a_glue = training_args(nlg, tmp_path, 100), training_args(glue, tmp_path, 100)
    assert (a_nlg.max_grad_norm, a_nlg.dataloader_drop_last) == (0.0, True)  # --clip 0.0; drop_last=True
    assert (a_glue.max_grad_norm, a_glue.dataloader_drop_last) == (1.0, False)  # the HF Trainer's defaults


def test_nlg_drops_the_last_training_batch_but_evaluates_every_dev_row(tmp_path):
    """gpt2_ft.py:299-307: the training loader drop_last=True, the validation loader drop_last=False (the Trainer
    would drop both: a dev set smaller than one evaluation batch was evaluated on nothing)."""
    from peftkit.features import PadCollator

    nlg = resolve(RunSpec(task="e2e", method="lora", out="x", profile="paper"))
    args = training_args(nlg, tmp_path, 10)
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]}] * 10
    trainer = PeftTrainer(model=peftkit.apply(tiny("gpt2"), "lora"), args=args, train_dataset=rows,
                          eval_dataset=rows[:3], data_collator=PadCollator(0), causal=True)
    assert args.per_device_eval_batch_size > 3 and args.dataloader_drop_last
    assert sum(len(b["input_ids"]) for b in trainer.get_eval_dataloader()) == 3
    assert sum(len(b["input_ids"]) for b in trainer.get_test_dataloader(rows[:3])) == 3
    assert sum(len(b["input_ids"]) for b in trainer.get_train_dataloader()) == 10 // nlg.batch_size * nlg.batch_size
    assert trainer.args.dataloader_drop_last  # restored after building the evaluation loader
    assert torch.isfinite(torch.tensor(trainer.evaluate()["eval_loss"]))  # evaluated on the 3 rows


@pytest.mark.parametrize("task,method", [("rte", "adamix"), ("sst2", "unipelt"), ("e2e", "lora"),
                                         ("fewshot:sst-2", "lora")])
def test_the_paper_profile_trains_in_fp32(tmp_path, task, method):
    spec = resolve(RunSpec(task=task, method=method, out="x", profile="paper"))
    assert spec.precision == "fp32" and not use_bf16(spec.precision)
    assert not training_args(spec, tmp_path, 100).bf16
    assert resolve(RunSpec(task=task, method=method, out="x", profile="paper", precision="bf16")).precision == "bf16"


# ---- T7-T9: the NLG method settings --------------------------------------------------------------------------

def test_nlg_adamix_adapter_is_the_authors_bottleneck_8_with_8_experts():
    spec = resolve(RunSpec(task="e2e", method="adamix", options={"base": "adapter"}, out="x", profile="paper"))
    assert {k: spec.options[k] for k in ("bottleneck", "num_modules", "share")} == \
        {"bottleneck": 8, "num_modules": 8, "share": "up"}
    glue = resolve(RunSpec(task="rte", method="adamix", out="x", profile="paper"))
    assert glue.options.get("bottleneck", 48) == 48


def test_dart_gets_its_script_warmup_and_no_lora_dropout():
    dart = resolve(RunSpec(task="dart", method="lora", out="x", profile="paper"))
    e2e = resolve(RunSpec(task="e2e", method="lora", out="x", profile="paper"))
    mix = resolve(RunSpec(task="dart", method="adamix", options={"base": "lora"}, out="x", profile="paper"))
    assert (dart.warmup_steps, dart.options["dropout"], mix.options["dropout"]) == (2000, 0.0, 0.0)
    assert (e2e.warmup_steps, e2e.options["dropout"]) == (2000, 0.1)
    assert resolve(RunSpec(task="dart", method="lora", out="x", profile="cpu")).warmup_ratio == 0.013


def _gpt2_adamix_lora(**opts):
    model = peftkit.apply(tiny("gpt2"), "adamix", base="lora", r=2, num_modules=3, dropout=0.5, seed=0, **opts)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "pk_lora" in n:
                p.normal_(0, 0.3, generator=g)
    return model.train()


def _authors_c_attn(m, x, idx):
    """AdamixMergedLinear on GPT-2's c_attn: one dropout of x, one A expert (q and v rows), the shared B."""
    out = torch.addmm(m.bias, x.reshape(-1, x.shape[-1]), m.weight).view(*x.shape[:-1], -1)
    xd = m.pk_lora_q.dropout(x)
    h = out.shape[-1] // 3
    q, v = m.pk_lora_q, m.pk_lora_v
    out = out.clone()
    out[..., :h] += q.scaling * q.B[0](q.A[idx](xd))
    out[..., 2 * h:] += v.scaling * v.B[0](v.A[idx](xd))
    return out


@pytest.mark.parametrize("fused", ["default", "independent"])
def test_adamix_lora_draws_one_expert_and_one_dropout_for_fused_qkv(fused):
    model = _gpt2_adamix_lora(**({} if fused == "default" else {"fused_qv": fused}))
    host = model.transformer.h[0].attn.c_attn
    x = torch.randn(2, 5, host.weight.shape[0])
    gen = state_of(model).generator
    same = 0
    for trial in range(6):
        g0 = gen.get_state()
        torch.manual_seed(trial)
        ours = host(x)
        routes = peftkit.routing(model)
        q_route = routes["transformer.h.0.attn.c_attn.pk_lora_q"]
        same += q_route == routes["transformer.h.0.attn.c_attn.pk_lora_v"]
        gen.set_state(g0)
        torch.manual_seed(trial)
        theirs = _authors_c_attn(host, x, q_route[0][0])
        if fused == "default":
            torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
        else:
            assert not torch.allclose(ours, theirs, atol=1e-4)  # two dropout masks (and usually two draws)
    assert same == 6 if fused == "default" else same < 6
