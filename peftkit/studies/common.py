"""What every study shares: the profiles, the notebook -> study table, the method labels and their settings, the
tasks the data holds, the budgets several studies use, and where runs and reports go. Imports no study module."""
from __future__ import annotations

from pathlib import Path

PROFILES = ("smoke", "cpu", "paper")
#: notebook (file stem in notebooks/) -> study name (the module of that name in :mod:`peftkit.studies`)
NOTEBOOKS = {"01_glue_main": "glue_main", "02_low_resource": "low_resource", "03_fewshot": "fewshot", "04_nlg": "nlg",
             "05_ablation_bottleneck": "ablation_bottleneck", "06_ablation_adamix": "ablation_adamix",
             "07_unipelt_gates": "unipelt_gates", "08_efficiency": "efficiency"}
STUDIES = tuple(NOTEBOOKS.values())

#: GLUE tasks with train and dev files in the shared data; QNLI has dev only, MNLI and QQP are absent.
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "rte")
GLUE_NOT_RUN = {"qnli": "the data directory has QNLI's dev set but no train file",
                "mnli": "MNLI is absent from the data directory", "qqp": "QQP is absent from the data directory"}

#: method_label -> (registry name, options): the papers' settings (peftkit's defaults are the papers').
METHODS = {
    "full": ("full", {}), "bitfit": ("bitfit", {}), "prompt": ("prompt", {}), "prefix": ("prefix", {}),
    "lora": ("lora", {}), "pfeiffer": ("pfeiffer", {}), "houlsby": ("houlsby", {}),
    "adamix-adapter": ("adamix", {"base": "adapter"}),
    "adamix-pfeiffer": ("adamix", {"base": "pfeiffer"}), "adamix-houlsby": ("adamix", {"base": "houlsby"}),
    "adamix-lora": ("adamix", {"base": "lora"}),
    # AdaMix over prefix- / prompt-tuning: peftkit's extension (the AdaMix paper's future work, docs/adamix_prefix.md)
    "adamix-prefix": ("adamix", {"base": "prefix"}), "adamix-prompt": ("adamix", {"base": "prompt"}),
    "unipelt-AP": ("unipelt", {"variant": "AP"}), "unipelt-APL": ("unipelt", {"variant": "APL"}),
}
#: The parameters every study's grid takes (each study module's PARAMETERS adds its own), notebook names upper case.
#: ``k`` / ``data_seeds``: the training sets (K examples per data seed, "full" for the whole training set).
COMMON_PARAMETERS = ("model", "seeds", "max_steps", "epochs", "max_train", "runs_dir")

# Method lists, seeds and budgets that several studies use (each study module holds its own grid per profile).
ALL_GLUE_METHODS = ("full", "bitfit", "pfeiffer", "prefix", "lora", "unipelt-AP", "unipelt-APL", "adamix-adapter",
                    "adamix-lora")
LOWRES_SEEDS = (111, 222, 333, 444, 555)
SEEDS3 = (42, 43, 44)
# smoke: 2 steps on 16 examples (32 tokens), one evaluation on 16
SMOKE = dict(max_steps=2, eval_steps=2, max_train=16, max_eval=16, max_length=32)
# The cpu profile keeps every protocol whole (rates, batch, epochs, early stopping, selection, padding) and scales
# only the backbone (MiniLM-L6), the token length and the training data, as UniPELT's own low-resource table does:
# K training examples per data seed (Table 1's seeds), the next 1,000 training examples select the epoch and stop
# early, GLUE dev scores (peftkit.protocols.SCALING; docs/protocols.md). The GLUE tables train on K = 1,000.
#: training sets of a GLUE table at the cpu profile: K = 1,000 with three of Table 1's data seeds, model seed 42
CPU_DRAWS = dict(k=(1000,), data_seeds=LOWRES_SEEDS[:3], seeds=(42,))
#: the same with all five data seeds, where a claim is checked (a verdict needs 5 pairs, reporting.claims)
CPU_DRAWS5 = dict(k=(1000,), data_seeds=LOWRES_SEEDS, seeds=(42,))
#: the full training set (the paper profile's GLUE tables), each model seed
FULL_DATA = dict(k=("full",), data_seeds=LOWRES_SEEDS)


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"invalid PROFILE={profile!r}: allowed one of {', '.join(PROFILES)}")


def check_study(study: str) -> None:
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}: allowed one of {', '.join(STUDIES)}")


def project_root() -> Path:
    """The checkout this package lives in (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() and (here / "peftkit").is_dir() else Path.cwd()


def under_root(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def runs_path(study: str, profile: str, runs_dir: str | Path | None = None) -> Path:
    """The run store: ``reports/runs/<profile>`` under the checkout, or ``runs_dir`` (relative paths: from the
    checkout). The cpu profile's run records (``result.json``, never weights) are committed there, so the reports
    re-render without training and every number traces to its run.

    One store for every study: a run directory is named by :func:`peftkit.studies.grids.run_name` (readable parts
    plus a hash of every other resolved setting), so a run that two notebooks ask for (06's adapter baseline and
    01's Pfeiffer, 07's K-shot UniPELT and 02's) is trained once and read by both. ``study`` is validated, not used
    in the path."""
    check_study(study)
    check_profile(profile)
    return under_root(runs_dir) if runs_dir is not None else project_root() / "reports" / "runs" / profile


def reports_path(profile: str, reports_dir: str | Path | None = None) -> Path:
    """``reports/`` for the cpu profile (the committed reports), ``reports/<profile>/`` for smoke and paper, so a
    smoke or paper build never overwrites the committed cpu reports; or ``reports_dir`` (relative: from the
    checkout). Runs that differ from the profile's default grid are reported one level down, in
    ``variants/<what differed>/`` (see :func:`peftkit.studies.variant`)."""
    check_profile(profile)
    if reports_dir is not None:
        return under_root(reports_dir)
    return project_root() / "reports" if profile == "cpu" else project_root() / "reports" / profile


def command(profile: str, notebook: str) -> str:
    """The command that rebuilds a notebook's artifacts (what the reports index prints)."""
    return f"peftkit reproduce --profile {profile} --only {notebook}"
