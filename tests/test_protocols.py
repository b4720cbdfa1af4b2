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
