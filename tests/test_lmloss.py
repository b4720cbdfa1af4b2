"""The causal LM loss with the vocabulary projection restricted to the scored positions (peftkit.lmloss) is the
Trainer's label-smoothed loss over the full logits: the same value and the same gradients, for training (one pass
and AdaMix's two) and evaluation."""
from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertLMHeadModel, GPT2Config, GPT2LMHeadModel, TrainingArguments
from transformers.trainer_pt_utils import LabelSmoother

import peftkit
from conftest import HEADS, LAYERS, VOCAB, H, batch, perturb
from peftkit.lmloss import causal_lm_loss, scored_positions, scored_targets
from peftkit.trainer import PeftTrainer


def _model(arch: str, method: str, **options):
    torch.manual_seed(0)
    if arch == "gpt2":
        base = GPT2LMHeadModel(GPT2Config(n_embd=H, n_layer=LAYERS, n_head=HEADS, vocab_size=VOCAB, n_positions=64,
                                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    else:  # MiniLM's form: a BERT encoder used as a decoder, its MLM head (transform + projection) on top
        base = BertLMHeadModel(BertConfig(is_decoder=True, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                          intermediate_size=64, vocab_size=VOCAB, hidden_size=H,
                                          max_position_embeddings=64, hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0))
    model = peftkit.apply(base, method, seed=0, **options)
    perturb(model, scale=0.3)
    return model


def _inputs(arch: str) -> dict:
    x = batch(arch, b=3, t=9)
    labels = x["input_ids"].masked_fill(x["attention_mask"] == 0, -100).clone()
    labels[:, :4] = -100  # the source and the separator are not scored
    return dict(x, labels=labels)


def _reference(model, inputs, eps):
    """The Trainer's loss: full [batch, length, vocab] logits, LabelSmoother with the causal shift."""
    out = model(**{k: v for k, v in inputs.items() if k != "labels"})
    assert out.logits.shape[:2] == inputs["labels"].shape
    return LabelSmoother(epsilon=eps)(out, inputs["labels"], shift_labels=True)


def _grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch,method,options", [("gpt2", "lora", {"r": 4}), ("bert", "lora", {"r": 4}),
                                                 ("gpt2", "prefix", {}), ("gpt2", "prompt", {}),
                                                 ("gpt2", "unipelt", {})])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_restricted_projection_gives_the_full_loss_and_gradients(arch, method, options, eps):
    model = _model(arch, method, **options)
    model.train()
    inputs = _inputs(arch)
    model.zero_grad()
    theirs = _reference(model, inputs, eps)
    theirs.backward()
    expected = _grads(model)
    model.zero_grad()
    ours, out = causal_lm_loss(model, inputs, eps)
    ours.backward()
    got = _grads(model)
    n = int((inputs["labels"][:, 1:] != -100).sum())
    assert out.logits.shape == (n, VOCAB) and n < inputs["labels"].numel() / 2  # projected only where scored
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    assert set(got) == set(expected) and len(got) > 0
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)


def test_scored_positions_follow_the_causal_shift():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, 10]])
    keep = scored_positions(labels)
    assert keep.tolist() == [[False, True, True, False, False], [True, True, True, True, False]]
    assert scored_targets(labels).tolist() == [5, 6, 7, 8, 9, 10]


@pytest.mark.parametrize("consistency", [0.0, 2.0])
def test_trainer_loss_is_the_label_smoothed_loss_in_training_and_evaluation(tmp_path, consistency):
    model = _model("gpt2", "adamix", base="lora", r=4, num_modules=1)  # one module: both passes are the same
    args = TrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=0.1, use_cpu=True, report_to=[])
    trainer = PeftTrainer(model=model, args=args, consistency=consistency, causal=True)
    inputs = _inputs("gpt2")
    model.train()
    loss = trainer.compute_loss(model, dict(inputs))
    torch.testing.assert_close(loss, _reference(model, inputs, 0.1), atol=1e-6, rtol=1e-6)
    model.eval()
    with torch.no_grad():
        evaluated, _, _ = trainer.prediction_step(model, dict(inputs), prediction_loss_only=True)
        torch.testing.assert_close(evaluated, _reference(model, inputs, 0.1), atol=1e-6, rtol=1e-6)


def test_a_model_without_an_output_embedding_is_refused():
    from peftkit.lmloss import project_only

    with pytest.raises(ValueError, match="no output embedding"):
        with project_only(torch.nn.Linear(2, 2), torch.ones(1, 1, dtype=torch.bool)):
            pass
