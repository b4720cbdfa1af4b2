"""The paper plan (runs, examples x epochs, GPU-hours), the one run store shared by the studies, the grids' tasks
following the data that can be loaded, and the Makefile's data directory rule."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import needs_data
from peftkit import studies
from peftkit.cli import main
from peftkit.plan import plan

ROOT = Path(__file__).resolve().parents[1]


def test_paper_plan_counts_every_run_once_and_shares_repeated_ones(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the plan counts the paper's full grid whatever the data
    rows = {r.notebook: r for r in plan("paper")}
    assert set(rows) == set(studies.NOTEBOOKS)
    for nb, study in studies.NOTEBOOKS.items():
        assert rows[nb].runs == len(studies.grid(study, "paper", follow_data=False))
        assert 0 <= rows[nb].gpu_h_low <= rows[nb].gpu_h_high
    assert rows["07_unipelt_gates"].shared == rows["07_unipelt_gates"].runs  # 07 reads 02's and 01's runs
    assert rows["05_ablation_bottleneck"].shared > 0  # its b=48 runs are 01's Pfeiffer runs
    assert {t for t in studies.PAPER_TASKS["glue_main"]} >= {"mnli", "qqp", "qnli"}
    mnli = [s for s in studies.grid("glue_main", "paper", follow_data=False) if s.task == "mnli"]
    d = studies.defaults("glue_main", "paper")
    assert len(mnli) == len(d["methods"]) * len(d["seeds"]) > 0  # counted even where MNLI is not on disk


def test_plan_cli_prints_the_table_and_rejects_bad_arguments(capsys):
    assert main(["plan", "--profile", "paper", "--only", "06_ablation_adamix"]) == 0
    out = capsys.readouterr().out
    assert "| 06_ablation_adamix | 90 |" in out and "GPU-hours on one A100" in out and "**total**" in out
    assert main(["plan", "--profile", "gpu"]) == 2 and "invalid --profile" in capsys.readouterr().err
    assert main(["plan", "--gpu", "tpu"]) == 2 and "a100, h100, h200" in capsys.readouterr().err


def test_one_run_store_for_every_study():
    gates = studies.grid("unipelt_gates", "smoke")
    low = studies.grid("low_resource", "smoke")
    assert gates[0].out in {s.out for s in low}  # 07's smoke run is 02's: one directory, trained once
    assert Path(gates[0].out).parent == studies.project_root() / "reports" / "runs" / "smoke"


def test_paper_tasks_follow_the_data_that_can_be_loaded(monkeypatch, tmp_path, capsys):
    data = tmp_path / "data"
    for task in ("RTE", "SST-2"):
        (data / "glue" / task).mkdir(parents=True)
        for split in ("train", "dev"):
            (data / "glue" / task / f"{split}.tsv").write_text("")
    monkeypatch.setenv("PEFTKIT_DATA_DIR", str(data))
    specs = studies.grid("glue_main", "paper")
    assert {s.task for s in specs} == {"rte", "sst2"}
    out = capsys.readouterr().out
    assert "glue_main: mnli left out:" in out and "glue/MNLI/train.tsv is missing" in out
    with pytest.raises(ValueError, match=r"invalid task 'qqp' in TASKS: .*QQP/train.tsv is missing"):
        studies.grid("glue_main", "paper", tasks=["qqp"])
    nlg = studies.grid("nlg", "paper")
    assert nlg == [] and "dart left out" in capsys.readouterr().out
    # no data directory: GLUE comes from the hub, all eight tasks (unless the hub is switched off)
    monkeypatch.delenv("PEFTKIT_DATA_DIR")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert len({s.task for s in studies.grid("glue_main", "paper")}) == 8
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert studies.grid("glue_main", "paper") == [] and "HF_DATASETS_OFFLINE is set" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_sets_the_data_dir_only_where_it_exists(tmp_path):
    probe = "include Makefile\nprobe:\n\t@echo \"[$$PEFTKIT_DATA_DIR]\"\n"
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    (repo / "probe.mk").write_text(probe)
    env = {"PATH": "/usr/bin:/bin"}

    def show(**extra) -> str:
        return subprocess.run(["make", "-s", "-f", "probe.mk", "probe"], cwd=repo, env={**env, **extra},
                              capture_output=True, text=True, check=True).stdout.strip()

    assert show() == "[]"  # no ../shared/data: unset, so the hub / data fetch path applies
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert show() == f"[{tmp_path / 'shared' / 'data'}]"
    assert show(PEFTKIT_DATA_DIR="/elsewhere") == "[/elsewhere]"  # the user's choice wins


def _readme_table(title: str) -> str:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| notebook ({title}"))
    end = next(i for i in range(start, len(lines) + 1) if i == len(lines) or not lines[i].startswith("|"))
    return "\n".join(lines[start:end])


def test_the_readme_plan_figures_are_the_commands_live_output():
    """The README's plan table and its cpu run count are what `peftkit plan` prints today (regenerate them with
    `peftkit plan --profile paper` / `--profile cpu` when a grid changes)."""
    import re

    from peftkit.plan import table, total

    live = table(plan("paper"), "paper", "a100")
    assert _readme_table("paper profile") == live, f"the README's table is stale; today's:\n{live}"
    cpu = total(plan("cpu"))
    said = re.search(r"`peftkit plan --profile cpu` counts ([\d,]+) runs \(([\d,]+) to train\)",
                     (ROOT / "README.md").read_text(encoding="utf-8"))
    assert said and said.groups() == (f"{cpu.runs:,}", f"{cpu.runs - cpu.shared:,}"), \
        f"the README's cpu count is stale: today {cpu.runs:,} runs ({cpu.runs - cpu.shared:,} to train)"


def test_plan_downloads_nothing(monkeypatch):
    """A paper plan names hub backbones (GPT-2 medium here): their configs are read from the cache only, never
    downloaded (weights included) nor waited for without a network."""
    import huggingface_hub

    asked = []

    def snapshot_download(name, local_files_only=False, **k):
        asked.append((name, local_files_only))
        raise OSError("not in the cache")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    rows = plan("paper", only="04_nlg")
    assert rows[0].runs == 12 and asked and all(offline for _, offline in asked), asked
    assert "HF_HUB_OFFLINE" not in os.environ  # put back as it was


def test_plan_accepts_every_flag_its_docstring_names(capsys):
    import re

    from peftkit import plan as plan_module

    usage = plan_module.__doc__.split("\n\n")[1]
    flags = re.findall(r"--[a-z-]+", usage)
    assert flags == ["--profile", "--only", "--gpu"], usage
    assert main(["plan", "--profile", "smoke", "--only", "08_efficiency", "--gpu", "h100"]) == 0
    assert "| 08_efficiency |" in capsys.readouterr().out


@needs_data
def test_the_cpu_cost_model_is_within_30_percent_of_the_committed_runs():
    """For every notebook whose cpu grid has all its run records committed, the cost model behind `peftkit plan
    --profile cpu` (peftkit.cpucost) estimates the runs' summed wall time (result.json's wall_time_s) within ±30%:
    the calibration it states holds on the records the reports are built from."""
    import json

    from peftkit import cpucost
    from peftkit.experiment import resolve

    checked = 0
    for study in studies.STUDIES:
        specs = studies.grid(study, "cpu")
        paths = [Path(s.out) / "result.json" for s in specs]
        if not all(p.is_file() for p in paths):
            continue
        measured = sum(json.loads(p.read_text())["wall_time_s"] for p in paths)
        estimated = sum(cpucost.run_seconds(resolve(s)) for s in specs)
        assert 0.7 <= measured / estimated <= 1.3, (study, round(measured), round(estimated))
        checked += 1
    if not checked:
        pytest.skip("no notebook's cpu records are all committed yet")


def test_one_epoch_rule_for_the_trainer_and_both_plans():
    """The trainer's schedule, the cpu cost model and the paper plan count an epoch's steps with one rule:
    AdaMix's NLG loader drops the last incomplete batch (42,061 E2E rows at batch 8: 5,257 steps, not 5,258)."""
    from peftkit.cpucost import epoch_steps

    assert epoch_steps(42061, 8, drop_last=True) == 5257
    assert epoch_steps(42061, 8, drop_last=False) == epoch_steps(42061, 8, drop_last=None) == 5258
    assert epoch_steps(1000, 16) == 63 and epoch_steps(1000, 64) == 16
    assert epoch_steps(5, 8, drop_last=True) == 1  # never zero steps
