"""The notebooks' studies, one module each (like :mod:`peftkit.methods`): which runs a notebook trains under each
profile (the module's ``DEFAULTS``), where they go, and the report it writes (the module's ``report``).

    specs = studies.grid("glue_main", "cpu", tasks=["rte"], seeds=[42])   # RunSpecs, nothing trained yet
    studies.plan(specs)                                                   # the grid as a table
    results = studies.run_specs(specs)                                    # trains what is missing
    report = studies.glue_main_report(results, "cpu", None)               # tables, figures, claims -> reports/

or, per study, ``from peftkit.studies import glue_main``: ``glue_main.grid("cpu")``, ``glue_main.report(...)``,
``glue_main.DEFAULTS``. A notebook parameter left at ``None`` takes the profile's default from :data:`DEFAULTS`
(the study modules' tables, so the notebooks, ``peftkit reproduce`` and the docs never disagree).

Layers (each imports only those above it): :mod:`.common` (profiles, notebooks, method labels, paths) and
:mod:`.tasks` (which tasks the data holds); :mod:`.grids` (building grids, run names, plan, run_specs, variants);
:mod:`.reports` (the :class:`Report` and table helpers); the study modules; this package (the registry by name).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..experiment import RunSpec
from . import (ablation_adamix, ablation_bottleneck, efficiency, fewshot, glue_main, low_resource, nlg,
               unipelt_gates)
from .common import (COMMON_PARAMETERS, GLUE_NOT_RUN, GLUE_TASKS, METHODS, NOTEBOOKS, PROFILES, STUDIES,  # noqa: F401
                     check_study, command, project_root, reports_path, runs_path)
from .grids import (GridError, canonical_options, plan, run_name, run_specs, variant_folder, variant_of,  # noqa: F401
                   variant_text)
from .nlg import NLG_NOT_RUN, NLG_OPTIONS, NLG_OPTIONS_BY_TASK  # noqa: F401
from .reports import Report, ours_table  # noqa: F401
from .tasks import PAPER_TASKS, missing_data  # noqa: F401

#: study name -> its module (grid defaults, PARAMETERS, points, grid, report)
MODULES = {m.NAME: m for m in (glue_main, low_resource, fewshot, nlg, ablation_bottleneck, ablation_adamix,
                               unipelt_gates, efficiency)}
assert tuple(MODULES) == STUDIES, "NOTEBOOKS and the study modules disagree"
#: per study and profile: the grid's defaults and the training budget (each study module's DEFAULTS)
DEFAULTS: dict[str, dict[str, dict]] = {name: m.DEFAULTS for name, m in MODULES.items()}
#: the parameters each study's grid takes (beyond COMMON_PARAMETERS), notebook names in upper case
STUDY_PARAMETERS = {name: m.PARAMETERS for name, m in MODULES.items()}


def module(study: str):
    """The module of ``study`` (e.g. :mod:`peftkit.studies.glue_main`); a clear error for an unknown name."""
    check_study(study)
    return MODULES[study]


def defaults(study: str, profile: str) -> dict:
    """The grid defaults of a study under a profile (a copy; ``budget``: RunSpec fields)."""
    from .grids import profile_defaults

    return profile_defaults(study, profile, module(study).DEFAULTS)


def grid(study: str, profile: str, **params) -> list[RunSpec]:
    """The RunSpecs of ``study`` under ``profile``; every argument left at None takes the profile's default (see
    :func:`peftkit.studies.grids.build`: model, seeds, max_steps, epochs, max_train, runs_dir, follow_data and the
    study's own parameters, :data:`STUDY_PARAMETERS`). Nothing is trained."""
    return module(study).grid(profile, **params)


def variant(study: str, profile: str, results: Sequence[dict]) -> dict[str, str]:
    """What makes ``results`` differ from the runs of the profile's default grid: {} when they are exactly those
    runs, else {field: our values}, e.g. {"max_steps": "1"} (see :func:`peftkit.studies.grids.variant_of`)."""
    return variant_of(grid(study, profile), results)


def run_study(study: str, profile: str, force: bool = False, verbose: bool = False, executor: str | None = None,
              **params) -> list[dict]:
    """:func:`grid` then :func:`run_specs`: the study's results, training only what is missing."""
    return run_specs(grid(study, profile, **params), force=force, verbose=verbose, executor=executor)


def report(study: str, results: list[dict], profile: str, reports_dir: str | Path | None = None) -> Report:
    """The report of ``study`` (its module's ``report``)."""
    return module(study).report(results, profile, reports_dir)


glue_main_report = glue_main.report
low_resource_report = low_resource.report
fewshot_report = fewshot.report
nlg_report = nlg.report
ablation_bottleneck_report = ablation_bottleneck.report
ablation_adamix_report = ablation_adamix.report
unipelt_gates_report = unipelt_gates.report
efficiency_report = efficiency.report
efficiency_timing = efficiency.time_inference  # 08: interleaved inference timing of the runs' methods

__all__ = ["PROFILES", "NOTEBOOKS", "STUDIES", "DEFAULTS", "METHODS", "MODULES", "grid", "plan", "run_specs",
           "run_study", "GridError", "run_name", "runs_path", "reports_path", "variant", "project_root", "defaults",
           "command", "module", "Report", "report", "glue_main_report", "low_resource_report", "fewshot_report",
           "nlg_report", "ablation_bottleneck_report", "ablation_adamix_report", "unipelt_gates_report",
           "efficiency_report", "efficiency_timing", "glue_main", "low_resource", "fewshot", "nlg",
           "ablation_bottleneck", "ablation_adamix", "unipelt_gates", "efficiency"]
