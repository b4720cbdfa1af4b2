"""Project hygiene that a clean clone relies on."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

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


def _ignored(path: str) -> bool:
    proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path], capture_output=True)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_rendered_notebooks_of_cpu_and_paper_are_committable_the_rest_of_executed_is_not():
    for profile in ("cpu", "paper"):
        assert not _ignored(f"reports/executed/{profile}/01_glue_main.html")
        assert _ignored(f"reports/executed/{profile}/01_glue_main.ipynb")  # the executed copies stay local
    assert _ignored("reports/executed/smoke/00_tour.html") and _ignored("reports/executed/smoke/00_tour.ipynb")
    assert _ignored("reports/executed/cpu/sub/x.html") and _ignored("reports/executed/x.html")


def test_readme_links_every_rendered_notebook_to_a_file_that_exists_or_that_make_reports_writes():
    from peftkit.reproduce import notebooks, select_notebooks

    available = notebooks()
    assert "00_tour" in select_notebooks(available, None)  # `make reports` runs every notebook, the tour included
    links = re.findall(r"\]\((reports/executed/([a-z]+)/([^)/]+)\.html)\)", ROOT.joinpath("README.md").read_text())
    assert {name for _, profile, name in links if profile == "cpu"} == set(available)  # one link per notebook
    for path, profile, name in links:
        assert (ROOT / path).is_file() or (profile in ("cpu", "paper") and name in available), path
    assert (ROOT / "reports/executed/cpu/00_tour.html").is_file()  # committed: readable without running anything
