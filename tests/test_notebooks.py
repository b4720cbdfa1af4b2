"""The notebooks: committed clean and thin, their parameters, a smoke execution of each through papermill with
assertions on what it wrote, and ``peftkit reproduce`` (one notebook; a failing one reported by name and cell)."""
from __future__ import annotations

import ast
import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import needs_data
from peftkit.studies import DEFAULTS, NOTEBOOKS, STUDY_PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NAMES = sorted(p.stem for p in NB_DIR.glob("*.ipynb"))
TOUR = "00_tour"  # the step-through notebook: no study, no runs
STUDY_NAMES = [n for n in NAMES if n != TOUR]

# What each notebook must write (stems under REPORTS_DIR) and which tables carry the papers' numbers.
TABLES = {"01_glue_main": ["vs_adamix", "vs_unipelt"], "02_low_resource": ["k100", "upper_bound"],
          "03_fewshot": ["results"], "04_nlg": ["results", "samples"], "05_ablation_bottleneck": ["results"],
          "06_ablation_adamix": ["modes", "variants"], "07_unipelt_gates": ["means"], "08_efficiency": ["results"]}
PAPER_TABLES = {"01_glue_main": ["vs_adamix", "vs_unipelt"], "02_low_resource": ["k100", "upper_bound"],
                "04_nlg": ["results"], "05_ablation_bottleneck": ["results"], "06_ablation_adamix": ["variants"],
                "08_efficiency": ["results"]}
FIGURES = {"04_nlg": ["bars"], "05_ablation_bottleneck": ["curve"], "06_ablation_adamix": ["modes"],
           "07_unipelt_gates": ["heatmap"], "08_efficiency": ["bars"]}
CLAIMS = ("02_low_resource", "03_fewshot", "06_ablation_adamix")
# Other files a notebook writes into REPORTS_DIR (and registers in its index).
DATA_FILES = {"08_efficiency": ["tables/08_efficiency_inference_timing.json"]}


def _code(name: str) -> list:
    return [c for c in nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4).cells if c.cell_type == "code"]


def test_the_tour_and_the_eight_study_notebooks_are_there():
    assert TOUR in NAMES and STUDY_NAMES == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs_and_without_functions(name):
    for cell in _code(name):
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{name}: outputs committed"
        assert "def " not in cell.source, f"{name}: a function defined in a notebook belongs in peftkit/"
        assert "lambda" not in cell.source and "class " not in cell.source


@pytest.mark.parametrize("name", NAMES)
def test_one_parameters_cell_of_upper_case_names(name):
    tagged = [c for c in _code(name) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    targets = [t.id for node in ast.parse(tagged[0].source).body for t in node.targets]
    assert targets and all(t.isupper() for t in targets)


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_inspect_notebook_lists_the_parameters(name):
    import papermill as pm

    params = pm.inspect_notebook(str(NB_DIR / f"{name}.ipynb"))
    study = NOTEBOOKS[name]
    expected = {"PROFILE", "MODEL", "SEEDS", "MAX_STEPS", "EPOCHS", "MAX_TRAIN", "RUNS_DIR", "REPORTS_DIR"}
    expected |= {p.upper() for p in STUDY_PARAMETERS[study]}
    assert set(params) == expected
    assert params["PROFILE"]["default"] == '"cpu"'
    assert all(params[p]["default"] == "None" for p in expected - {"PROFILE"})  # None = the profile's default
    assert all(params[p]["help"] for p in params)  # each says what it is


def test_smoke_grids_are_tiny():
    from peftkit import studies

    sizes = {s: len(studies.grid(s, "smoke", runs_dir="/nonexistent/runs")) for s in studies.STUDIES}
    assert all(1 <= n <= 3 for n in sizes.values()), sizes
    assert all(spec.profile == "smoke" for s in DEFAULTS for spec in studies.grid(s, "smoke", runs_dir="/r"))


@needs_data
@pytest.mark.parametrize("name", STUDY_NAMES)
def test_the_budget_prose_matches_the_cpu_grid(name):
    """The introduction's "**cpu budget.**" paragraph states the grid's run count ("= N runs"), its training sets
    (every K as "K = 1,000"), its token lengths (every max length as "N tokens"), its wall time and the run store;
    they drift when a default changes (06 said "3 seeds = 24 runs" of a 40-run grid, every notebook named a
    per-study run store after the store became one per profile). The time is the measured one ("measured ... N
    minutes") once every run of the grid has its record committed under reports/runs/cpu, and until then the plan's
    estimate, saying the tables are not yet rebuilt on this grid ("not yet rebuilt", "estimated ... N minutes")."""
    import re

    from peftkit import studies
    from peftkit.experiment import resolve

    intro = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4).cells[0].source
    budget = intro.split("**cpu budget.**", 1)[1].split("\n\n", 1)[0]
    specs = studies.grid(NOTEBOOKS[name], "cpu", runs_dir="/r")
    stated = [int(n) for n in re.findall(r"=\s+(\d+)\s+runs", budget)]
    assert stated == [len(specs)], (name, stated)
    resolved = [resolve(s) for s in specs]
    for k in sorted({r.k for r in resolved if r.k}):
        assert f"K = {k:,}" in budget, (name, k)
    for length in sorted({r.max_length for r in resolved}):
        assert re.search(rf"\b{length} tokens", budget), (name, length)
    if all((Path(spec.out) / "result.json").is_file() for spec in studies.grid(NOTEBOOKS[name], "cpu")):
        assert re.search(r"measured[^.]*?\d+ minutes", budget), f"{name}: say the measured wall time"
    else:
        flat = " ".join(budget.lower().split())
        assert "not yet rebuilt" in flat and re.search(r"estimated[^.]*?\d+ minutes", flat), \
            f"{name}: its records are not all committed: say so, with the plan's estimate"
    assert "default `reports/runs/<PROFILE>`," in intro and not re.search(r"runs/<PROFILE>/\w", intro), name
    assert "final weights" not in budget or name == "08_efficiency", f"{name}: the protocols select the best epoch"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One RUNS_DIR for every notebook (runs that two notebooks share train once) and one REPORTS_DIR."""
    root = tmp_path_factory.mktemp("notebooks")
    return {"runs": root / "runs", "reports": root / "reports", "executed": root / "executed"}


def _paper_numbers(path: Path) -> list[float]:
    """The published numbers of a table's CSV: its "paper" columns, or its rows labelled "paper"."""
    rows = list(csv.reader(path.read_text().splitlines()))
    header, body = rows[0], rows[1:]
    cols = [i for i, h in enumerate(header) if "paper" in h]
    cells = [r[i] for r in body for i in cols] + [c for r in body if "paper" in r for c in r[r.index("paper") + 1:]]
    numbers = []
    for c in cells:
        try:
            numbers.append(float(c.split()[-1]))  # "Prefix-tuning 55.96" -> 55.96
        except (ValueError, IndexError):
            pass
    return numbers


def _finite_metrics(result: dict) -> bool:
    return bool(result["best_metrics"]) and all(math.isfinite(v) for v in result["best_metrics"].values())


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("name", STUDY_NAMES)
def test_notebook_runs_on_the_smoke_profile(name, smoke):
    import papermill as pm

    from peftkit import studies
    from peftkit.reporting import read_index

    reports = smoke["reports"]
    out = smoke["executed"] / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NB_DIR / f"{name}.ipynb"), str(out), cwd=str(ROOT), progress_bar=False,
                        kernel_name="python3", parameters={"PROFILE": "smoke", "RUNS_DIR": str(smoke["runs"]),
                                                           "REPORTS_DIR": str(reports)})
    specs = studies.grid(NOTEBOOKS[name], "smoke", runs_dir=smoke["runs"])
    for spec in specs:  # every run of the grid finished, with finite metrics
        result = json.loads((Path(spec.out) / "result.json").read_text())
        assert result["status"] == "finished" and result["profile"] == "smoke" and _finite_metrics(result)
    index = read_index(reports)
    readme = (reports / "README.md").read_text()
    command = f"peftkit reproduce --profile smoke --only {name}"
    for table in TABLES[name]:
        for suffix in (".md", ".csv"):
            rel = f"tables/{name}_{table}{suffix}"
            assert (reports / rel).stat().st_size > 0 and rel in index and index[rel]["command"] == command
            assert f"]({rel})" in readme
        md = (reports / f"tables/{name}_{table}.md").read_text()
        assert md.startswith("# ") and "profile smoke" in md.splitlines()[0] and "MiniLM-L6" in md.splitlines()[0]
        if table in PAPER_TABLES.get(name, ()):
            assert "(paper: " in md.splitlines()[0]  # the paper's backbone differs from ours
            assert _paper_numbers(reports / f"tables/{name}_{table}.csv"), f"{name}_{table}: no paper numbers"
    for fig in FIGURES.get(name, ()):
        png, pdf = reports / f"figures/{name}_{fig}.png", reports / f"figures/{name}_{fig}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert pdf.read_bytes()[:4] == b"%PDF"
        assert f"figures/{name}_{fig}.png" in index and f"figures/{name}_{fig}.pdf" in index
    for rel in DATA_FILES.get(name, ()):
        assert json.loads((reports / rel).read_text()) and rel in index
    if name in CLAIMS:
        claims = (reports / f"claims/{name}.md").read_text()
        assert "Verdict:" in claims and f"claims/{name}.md" in index
    executed = nbformat.read(out, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    finding = "".join(o.get("data", {}).get("text/markdown", "") for o in executed.cells[-1].outputs)
    assert finding.startswith("**Runs.** ") and "**Scale.** " in finding  # the notebook ends with its finding
    assert f"### {name}\n\n{finding}\n" in readme  # ... the same text as the README's "What was found" has
    assert not list(NB_DIR.glob("*executed*")) and not (NB_DIR / "runs").exists()  # nothing written beside them


def test_tour_parameters():
    import papermill as pm

    params = pm.inspect_notebook(str(NB_DIR / f"{TOUR}.ipynb"))
    assert set(params) == {"PROFILE", "MODEL", "SEED", "N_SENTENCES", "STEPS", "LR", "REPORTS_DIR"}
    assert params["PROFILE"]["default"] == '"cpu"' and params["MODEL"]["default"] == '"minilm"'
    assert all(params[p]["help"] for p in params)
    source = "\n".join(c.source for c in _code(TOUR))
    # AdaMix's own defaults, whatever they are; the one other base is the AdaMix-over-prefix cell's, named as such
    assert "base=" not in source.replace('peftkit.apply(prefix_model, "adamix", base="prefix"', "")


@needs_data
@pytest.mark.slow
def test_tour_notebook_shows_routing_merge_and_gates(tmp_path):
    """The tour, executed by ``peftkit reproduce`` (as ``make reports`` does): its executed copy and HTML land in
    REPORTS_DIR/executed/, and what it records is what it claims to show."""
    from peftkit.reporting import read_index

    reports = tmp_path / "reports"
    from peftkit.reproduce import declared_parameters, notebooks

    assert "RUNS_DIR" not in declared_parameters(notebooks()[TOUR])  # the tour trains no runs: it takes no run store
    proc = reproduce_cli("--profile", "smoke", "--only", TOUR, "--reports-dir", str(reports), "--runs-dir",
                      str(tmp_path / "runs"))
    assert proc.returncode == 2 and "invalid --runs-dir" in proc.stderr  # so a run store given to it is refused
    proc = reproduce_cli("--profile", "smoke", "--only", TOUR, "--reports-dir", str(reports))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = reports / f"executed/smoke/{TOUR}.ipynb"
    html = (reports / f"executed/smoke/{TOUR}.html").read_text()
    assert "unipelt" in html.lower() and sys.prefix not in html  # the environment's paths print as <python>
    for noise in ("TqdmWarning", "Loading weights", "FutureWarning"):
        assert noise not in html, noise  # results, not the environment's notices
    assert f"executed/smoke/{TOUR}.html" in read_index(reports)  # listed first in the reports README
    readme = (reports / "README.md").read_text()
    assert readme.index(f"](executed/smoke/{TOUR}.html)") < readme.index("## Files")
    rec = json.loads((reports / "tour/tour.json").read_text())
    routing = rec["routing"]
    m = rec["adamix"]["num_modules"]
    assert len(routing["pass1"]) == 6 and set(routing["pass1"]) == set(routing["pass2"])  # one entry per layer
    assert all(0 <= i < m for pairs in routing["pass1"].values() for pair in pairs for i in pair)
    assert not routing["same_routes"] and routing["pass1"] != routing["pass2"]  # two forwards, different modules
    assert routing["max_abs_diff"] > 1e-4 and routing["replay_max_abs_diff"] == 0.0  # routing alone differs
    groups = rec["consistency_groups"]  # the doubled batch: two independently routed halves per module
    assert groups and all(len(pairs) == 2 for pairs in groups.values())
    assert any(pairs[0] != pairs[1] for pairs in groups.values())
    steps = rec["consistency"]
    assert len(steps) == 3 and all(s["kl"] >= 0 and s["weight"] == 1.0 for s in steps)
    assert all(abs(s["loss"] - (s["task_loss"] + s["weight"] * s["kl"])) < 1e-5 for s in steps)
    assert any(s["kl"] > 0 for s in steps)
    merge = rec["merge"]
    assert merge["deterministic"] and merge["max_abs_diff_vs_formula"] <= 1e-5
    assert merge["inference"] < merge["trainable"]  # merged: one module's worth instead of M
    modes = rec["inference_modes"]
    assert {"merged", "random", "random (call 2)", "ensemble"} | {f"fixed-{k}" for k in range(m)} == set(modes)
    assert modes["random"] != modes["random (call 2)"] and modes["fixed-0"] != modes["fixed-1"]
    prefix = rec["adamix_prefix"]  # AdaMix over prefix: a module per layer, merged to exactly one prefix
    assert len(prefix["drawn"]) == 6 and all(0 <= e < 4 and mlp == 0 for e, mlp in prefix["drawn"])
    assert prefix["inference"] == prefix["one_prefix"] < prefix["trainable"] and prefix["merge"] == "kv"
    assert prefix["deterministic"] and prefix["max_abs_diff_vs_formula"] <= 1e-6
    gates = rec["gates"]
    assert gates["shape"] == [6, 4, 4] and len(gates["values"]) == 6 * 4 * 4  # layers x components x sentences
    assert set(gates["components"]) == {"adapter", "prefix", "lora_query", "lora_value"}
    assert all(0.0 < v < 1.0 for v in gates["values"]) and len(set(gates["values"])) > 1
    assert rec["export"]["max_abs_diff"] <= 1e-5 and rec["export"]["peft_class"] == "PeftModel"
    assert set(rec["export"]["files"]) == {"adapter_config.json", "adapter_model.safetensors"}
    png = reports / "tour/unipelt_gates.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "tour/unipelt_gates.png" in read_index(reports)
    executed = nbformat.read(out, as_version=4)  # the cells show it too, not only the record
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "peftkit method adamix" in text and "merged twice, identical logits: True" in text
    assert "replaying the first pass's routing: difference 0" in text


def test_html_copy_drops_widgets_and_progress_redraws_and_prints_paths_relative(tmp_path):
    """What the committed HTML copies show: widget outputs (a live front end's progress bars) and the overwritten
    states of a carriage-return progress line are gone, split streams are one, the checkout's paths are relative
    and the Python environment's read <python>; tables, figures and text stay."""
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from peftkit.render import readable

    root = tmp_path / "checkout"
    widget = new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                                              "text/plain": "HBox(children=(FloatProgress(value=0.0),))"})
    table = new_output("execute_result", data={"text/html": f"<table><td>{root}/reports/t.md</td></table>",
                                               "text/plain": "t"}, execution_count=1)
    image = new_output("display_data", data={"image/png": "iVBORw0KGgo="})
    cell = new_code_cell(f"REPORTS_DIR = '{root}/reports'", outputs=[
        widget, new_output("stream", name="stderr", text="decoding 1/3\rdecoding 2/3\r"),
        new_output("stream", name="stderr", text=f"decoding 3/3\n{sys.prefix}/lib/x.py:1: Warning\n"),
        table, image, new_output("stream", name="stdout", text=f"written to {root}/reports/t.md\n")])
    nb = readable(new_notebook(cells=[cell]), root)
    outs = nb.cells[0].outputs
    assert [o.output_type for o in outs] == ["stream", "execute_result", "display_data", "stream"]
    assert outs[0].text == "decoding 3/3\n<python>/lib/x.py:1: Warning\n"
    assert outs[1].data["text/html"] == "<table><td>reports/t.md</td></table>" and outs[2] == image
    assert outs[3].text == "written to reports/t.md\n" and nb.cells[0].source == "REPORTS_DIR = 'reports'"


def test_reports_readme_lists_the_rendered_notebooks_first(tmp_path):
    from peftkit.reporting.index import is_rendered_notebook, render_readme

    (tmp_path / "executed/cpu").mkdir(parents=True)
    (tmp_path / "executed/cpu/00_tour.html").write_text("<html></html>")
    entry = {"description": "d", "command": "c"}
    text = render_readme(tmp_path, {"tables/t.md": entry, "executed/cpu/00_tour.html": entry,
                                    "executed/cpu/01_glue_main.html": entry})
    assert text.index("## The notebooks, executed") < text.index("](executed/cpu/00_tour.html): d") \
        < text.index("](executed/cpu/01_glue_main.html) *(not built yet)*") < text.index("## Files") \
        < text.index("](tables/t.md)")
    assert is_rendered_notebook("../executed/paper/04_nlg.html") and not is_rendered_notebook("figures/x.html")
    assert "## The notebooks, executed" not in render_readme(tmp_path, {"tables/t.md": entry})


def reproduce_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "peftkit.cli", "reproduce", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


def test_reproduce_rejects_bad_arguments(capsys, tmp_path):
    from peftkit.cli import main

    for args, allowed in ((["--profile", "gpu"], "smoke, cpu, paper"), (["--only", "99_nope"], "01_glue_main")):
        assert main(["reproduce", *args, "--reports-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "invalid" in err and allowed in err
    assert not (tmp_path / "executed").exists()  # nothing ran


@needs_data
@pytest.mark.slow
def test_reproduce_one_notebook_then_a_failing_one_among_others(tmp_path, smoke):
    """The runs come from the smoke executions above when they ran first (reruns skip finished runs)."""
    reports = tmp_path / "reports"
    ok = reproduce_cli("--profile", "smoke", "--only", "07_unipelt_gates", "--reports-dir", str(reports),
                    "--runs-dir", str(smoke["runs"]))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (reports / "executed/smoke/07_unipelt_gates.ipynb").is_file()
    assert (reports / "executed/smoke/07_unipelt_gates.html").stat().st_size > 0
    assert "07_unipelt_gates: finished" in ok.stdout and "1/1 notebooks finished" in ok.stdout
    assert "figures/07_unipelt_gates_heatmap.png" in (reports / "index.json").read_text()

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    shutil.copy(NB_DIR / "07_unipelt_gates.ipynb", nbs)
    broken = nbformat.read(NB_DIR / "08_efficiency.ipynb", as_version=4)
    broken.cells.insert(3, nbformat.v4.new_code_cell('raise RuntimeError("deliberately broken")'))
    nbformat.write(broken, nbs / "00_broken.ipynb")
    proc = reproduce_cli("--profile", "smoke", "--notebooks-dir", str(nbs), "--reports-dir", str(tmp_path / "r2"),
                      "--runs-dir", str(smoke["runs"]), "--no-html")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    failed = [line for line in proc.stdout.splitlines() if line.startswith("[reproduce] FAILED")]
    assert len(failed) == 1 and "00_broken" in failed[0] and "cell 4" in failed[0]  # after the injected cell
    assert 'raise RuntimeError("deliberately broken")' in failed[0] and "RuntimeError" in failed[0]
    assert "07_unipelt_gates: finished" in proc.stdout and "1/2 notebooks finished" in proc.stdout
    assert (tmp_path / "r2/executed/smoke/failed/00_broken.ipynb").is_file()  # the failed copy, with its traceback
    assert f"(see {tmp_path / 'r2/executed/smoke/failed/00_broken.ipynb'})" in failed[0]
    assert not (tmp_path / "r2/executed/smoke/00_broken.ipynb").exists()  # never where a good copy goes
