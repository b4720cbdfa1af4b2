"""Project hygiene that a clean clone relies on."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    return {ln.strip().lstrip("- ").strip() for ln in lines if "==" in ln and not ln.strip().startswith("#")}


def test_environment_yml_mirrors_the_lock():
    lock = _pins(ROOT.joinpath("requirements.lock").read_text().splitlines())
    env = _pins(ROOT.joinpath("environment.yml").read_text().splitlines())
    assert lock and lock == env, sorted(lock ^ env)[:10]


def test_committed_notebooks_carry_no_outputs():
    for nb in ROOT.glob("notebooks/*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), nb.name


def test_no_method_file_is_oversized():
    for f in ROOT.glob("peftkit/**/*.py"):
        assert len(f.read_text().splitlines()) <= 400, f
