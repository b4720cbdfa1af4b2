"""What a reader sees of an executed notebook: the parameters once, no notices of the environment (tqdm,
transformers, Ray), whole run ids and no empty columns in the plan table."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from test_notebooks import reproduce_cli


def test_html_copy_shows_the_parameters_once(tmp_path):
    """papermill injects its cell after the notebook's own parameters cell; where it only repeats defaults (as
    `peftkit reproduce --profile cpu` does) the HTML shows the notebook's cell alone, an override stays visible."""
    from nbformat.v4 import new_code_cell, new_notebook

    from peftkit.render import readable

    def notebook(injected: str):
        own = new_code_cell('PROFILE = "cpu"  # smoke | cpu | paper\nSEEDS = None  # the profile\'s')
        own.metadata["tags"] = ["parameters"]
        given = new_code_cell(f"# Parameters\n{injected}\n")
        given.metadata["tags"] = ["injected-parameters"]
        return new_notebook(cells=[new_code_cell("from peftkit import studies"), own, given, new_code_cell("x = 1")])

    same = readable(notebook('PROFILE = "cpu"'))
    assert [c.source.split("\n")[0] for c in same.cells] == ["from peftkit import studies",
                                                             'PROFILE = "cpu"  # smoke | cpu | paper', "x = 1"]
    changed = readable(notebook('PROFILE = "smoke"\nSEEDS = [42]'))
    assert len(changed.cells) == 4 and changed.cells[2].source.endswith('SEEDS = [42]\n')


QUIET = '''import sys
import warnings

import tqdm.auto  # noqa: F401 - in a headless kernel: "IProgress not found"
from transformers import BertConfig, BertModel
from transformers.utils.logging import tqdm as hf_tqdm

model = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                             vocab_size=10))
model.is_gradient_checkpointing  # transformers' FutureWarning of a deprecated alias (peft reads it)
for _ in hf_tqdm(range(3), desc="Loading weights"):
    pass
warnings.warn("a warning of ours")
print("an error of ours", file=sys.stderr)'''


@pytest.mark.slow
def test_reproduce_keeps_the_environments_notices_out_of_the_executed_copies(tmp_path):
    """The executed copies carry results, not the environment's warnings: tqdm's IProgress notice, transformers'
    "Loading weights" bars and its deprecation FutureWarnings are silenced in the kernels `peftkit reproduce`
    starts; a warning or an error of the notebook's own still shows."""
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell('PROFILE = "cpu"  # smoke | cpu | paper\nREPORTS_DIR = None')
    params.metadata["tags"] = ["parameters"]
    (tmp_path / "nbs").mkdir()
    nb = new_notebook(cells=[params, new_code_cell(QUIET)], metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    nbformat.write(nb, tmp_path / "nbs" / "quiet.ipynb")
    proc = reproduce_cli("--profile", "cpu", "--notebooks-dir", str(tmp_path / "nbs"), "--reports-dir",
                      str(tmp_path / "reports"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    executed = nbformat.read(tmp_path / "reports/executed/cpu/quiet.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "a warning of ours" in text and "an error of ours" in text
    for noise in ("IProgress", "Loading weights", "is_gradient_checkpointing", "FutureWarning"):
        assert noise not in text, noise
    html = (tmp_path / "reports/executed/cpu/quiet.html").read_text()
    assert "UserWarning: a warning of ours" in html and "TqdmWarning" not in html and "is deprecated" not in html


def test_plan_table_shows_whole_run_ids_and_no_empty_columns():
    """06's plan cut its run ids and showed k and data_seed columns that no run sets (the NLG grid sets neither)."""
    from peftkit import studies

    specs = studies.grid("nlg", "cpu", runs_dir="/nonexistent/runs")
    table = studies.plan(specs)
    assert table.index.name == "run" and list(table.index) == [Path(s.out).name for s in specs]
    assert "k" not in table.columns and "data_seed" not in table.columns and table.notna().all().all()
    html = table._repr_html_()
    assert all(Path(s.out).name in html for s in specs)  # whole, never "sst2_adamix-lora_expert_in..."
    assert all(Path(s.out).name in studies.plan(studies.grid("ablation_adamix", "cpu", runs_dir="/nonexistent/runs"))
               ._repr_html_() for s in studies.grid("ablation_adamix", "cpu", runs_dir="/nonexistent/runs"))
    low = studies.plan(studies.grid("low_resource", "cpu", runs_dir="/nonexistent/runs"))
    assert {"k", "data_seed"} <= set(low.columns)  # where runs set them, they stay


def test_notebook_tables_never_wrap_their_labels():
    """A table's row labels and headers stay on one line ("SST-" / "2" was one label broken in two)."""
    import pandas as pd

    from peftkit.studies.reports import nowrap_headers

    html = nowrap_headers(pd.DataFrame({"SST-2 ours": ["81.00"]}, index=pd.Index(["Prefix-tuning"], name="method"))
                          ).to_html()
    assert "white-space: nowrap" in html and "SST-2 ours" in html and "Prefix-tuning" in html
