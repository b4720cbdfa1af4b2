"""The README's Python example runs as written, and its commands are the ones the CLI accepts."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    (code,) = _blocks("python")
    monkeypatch.chdir(tmp_path)  # it saves to run/
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert "peftkit method adamix" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"peftkit_config.json", "peftkit_weights.safetensors"}


def test_readme_train_commands_parse_and_set_a_small_budget(monkeypatch):
    """Every `peftkit train` line is accepted by the CLI parser and RunSpec validation (not run: see the note)."""
    from peftkit import experiment
    from peftkit.cli import main

    seen = []
    monkeypatch.setattr(experiment, "run", lambda spec, **k: seen.append(experiment.preflight(spec)) or
                        {"best_metrics": {}})
    text = "\n".join(_blocks("bash")).replace("\\\n", " ")
    lines = [line.split("#")[0] for line in text.splitlines() if line.startswith("peftkit train")]
    assert len(lines) == 5
    for line in lines:
        assert main(shlex.split(line)[1:]) == 0, line
    prefix = [s for s in seen if s.options.get("base") == "prefix"][0]  # AdaMix over prefix: prefix-tuning's rate
    assert prefix.protocol == "adamix-glue" and prefix.lr == 2e-4 and prefix.inference_modes
    e2e = [s for s in seen if s.task == "e2e"][0]
    assert e2e.max_steps and e2e.max_eval and e2e.max_eval <= 10  # beam search over the eval set dominates
