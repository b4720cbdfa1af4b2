"""The cpu profile scales each protocol's length by one fraction (docs/protocols.md): the grids of notebooks 01, 02,
05 and 06 train for ceil(protocol epochs x CPU_EPOCH_FRACTION) epochs, whatever protocol a row trains under."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from peftkit import protocols
from peftkit.experiment import RunSpec, resolve
from peftkit.studies import ablation_adamix, ablation_bottleneck, glue_main, low_resource
from peftkit.studies.common import CPU_EPOCH_FRACTION

ROOT = Path(__file__).resolve().parents[1]

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


@pytest.mark.parametrize("study", [glue_main, ablation_bottleneck, ablation_adamix, low_resource])
def test_cpu_grids_train_a_fraction_of_each_protocol(study, tmp_path):
    specs = study.grid("cpu", runs_dir=str(tmp_path))
    assert specs
    for spec in specs:
        r = resolve(spec)
        assert r.epochs == math.ceil(AUTHORS_EPOCHS[r.protocol] * CPU_EPOCH_FRACTION), (spec.method, r.protocol)


def test_protocols_doc_states_the_fraction():
    text = (ROOT / "docs" / "protocols.md").read_text()
    assert f"{CPU_EPOCH_FRACTION:g} of the protocol's epochs" in text
