"""``RunSpec.epoch_fraction``: a run's length as a fraction of its protocol's epochs (docs/protocols.md), resolved to
whole epochs, so that rows of one table trained under different protocols keep the papers' relative lengths."""
from __future__ import annotations

import math
import pytest

from peftkit import protocols
from peftkit.experiment import RunSpec, resolve

# The protocols' own lengths on a BERT-size backbone, from the authors' scripts (docs/protocols.md), written out
# here rather than read from peftkit.protocols, so that a change there has to change this too.
AUTHORS_EPOCHS = {"adamix-glue": 40, "unipelt-glue": 50}


@pytest.mark.parametrize("method,protocol", [("adamix", "adamix-glue"), ("pfeiffer", "unipelt-glue"),
                                             ("lora", "unipelt-glue"), ("unipelt", "unipelt-glue")])
def test_epoch_fraction_scales_the_protocols_epochs(method, protocol, tmp_path):
    spec = resolve(RunSpec(task="sst2", method=method, out=str(tmp_path / "r"), epoch_fraction=0.25))
    assert spec.protocol == protocol
    assert spec.epochs == math.ceil(AUTHORS_EPOCHS[protocol] * 0.25) and spec.epoch_fraction is None
    assert protocols.settings(protocol, spec.model)["epochs"] == AUTHORS_EPOCHS[protocol]


def test_a_run_asked_for_by_fraction_is_the_run_asked_for_by_epochs(tmp_path):
    by_fraction = resolve(RunSpec(task="sst2", method="adamix", out=str(tmp_path / "r"), epoch_fraction=0.25))
    by_epochs = resolve(RunSpec(task="sst2", method="adamix", out=str(tmp_path / "r"), epochs=10))
    assert by_fraction == by_epochs


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), True])
def test_epoch_fraction_is_checked(bad, tmp_path):
    with pytest.raises(ValueError, match="epoch_fraction"):
        resolve(RunSpec(task="sst2", method="lora", out=str(tmp_path / "r"), epoch_fraction=bad))


def test_epoch_fraction_excludes_other_lengths_and_step_protocols(tmp_path):
    with pytest.raises(ValueError, match="epoch_fraction"):
        resolve(RunSpec(task="sst2", method="lora", out=str(tmp_path / "r"), epoch_fraction=0.5, epochs=2))
    with pytest.raises(ValueError, match="epoch_fraction"):  # LM-BFF counts steps
        resolve(RunSpec(task="fewshot:sst-2", method="lora", out=str(tmp_path / "r"), epoch_fraction=0.5))


# ---- the cpu profile's token lengths (presets.TOKEN_LENGTH) ------------------------------------------------------

def test_covering_length_truncates_fewer_than_one_percent():
    from peftkit.presets import covering_length

    assert covering_length([1] * 99 + [5]) == 5  # 1 of 100 would be 1%: not fewer
    assert covering_length(list(range(1, 201))) == 199  # 1 of 200 truncated
    assert covering_length([7]) == 7


@pytest.mark.parametrize("kind,task", [("glue", t) for t in ("cola", "sst2", "mrpc", "stsb", "rte")]
                         + [("fewshot", "sst-2")])
def test_token_lengths_are_measured_on_the_training_data(kind, task):
    """Recomputes presets.TOKEN_LENGTH from the shared data with MiniLM-L6's tokenizer, as the runs encode it."""
    from peftkit import backbones, features
    from peftkit.data import DataError, FEWSHOT_SEEDS, load_glue, load_kshot
    from peftkit.presets import TOKEN_LENGTH, covering_length

    tok = backbones.load_tokenizer("minilm")
    try:
        if kind == "glue":
            ds = load_glue(task, "train")
            pair = ds["text_b"][0] is not None
            enc = tok(list(ds["text_a"]), list(ds["text_b"])) if pair else tok(list(ds["text_a"]))
            lengths = [len(x) for x in enc["input_ids"]]
        else:
            lengths = [len(x) for s in FEWSHOT_SEEDS
                       for x in features.tokenize_prompt(load_kshot(task, "train", k=16, seed=s), tok, task,
                                                         512)["input_ids"]]
    except DataError as e:
        pytest.skip(f"needs the shared data (PEFTKIT_DATA_DIR): {e}")
    assert covering_length(lengths) == TOKEN_LENGTH[kind][task]
    spec = resolve(RunSpec(task=("fewshot:" if kind == "fewshot" else "") + task, method="lora", out="x"))
    assert spec.max_length == min(TOKEN_LENGTH[kind][task], 128)  # never above the protocol's own length
