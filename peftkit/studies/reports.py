"""What every study's report shares: the :class:`Report` (tables as Markdown + CSV, figures as PNG + PDF, claim
checks, all registered in REPORTS_DIR's index), :func:`start` (the report's folder, a variant's own), and the table
helpers. Functions of the runs' result dicts only (they never train).

Each study module's ``report(results, profile, reports_dir)`` returns a :class:`Report` (its tables as data frames,
its figure paths, its claim checks); ``report.show()`` displays them in a notebook. Files are named after the
notebook: ``tables/01_glue_main_vs_adamix.{md,csv}``, ``figures/05_ablation_bottleneck_curve.{png,pdf}``,
``claims/02_low_resource.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .. import reporting as rep
from ..reporting.frame import budget_summary, context, flagged, run_status, status_text
from ..reporting.names import metric_name, task_name
from ..reporting.stats import describe_values
from ..reporting.tables import (MISSING, chance_levels, delta_cell, format_ours, ours_note, single_runs,
                                status_notes)
from .common import NOTEBOOKS, command, reports_path
from .grids import variant_folder, variant_of, variant_text


@dataclass
class Report:
    """What a notebook's report wrote: ``tables`` (name -> displayed frame), ``titles``, ``figures`` (name -> PNG),
    ``claims`` (claim_check results), ``notes`` and every ``artifacts`` path (all registered in the index); the
    ``results`` it was built from, and :meth:`finding`, the closing finding the notebook ends with."""

    study: str
    notebook: str
    profile: str
    reports_dir: Path
    tables: dict = field(default_factory=dict)
    titles: dict = field(default_factory=dict)
    whats: dict = field(default_factory=dict)  # name -> what the table shows (its title without backbone, profile)
    figures: dict = field(default_factory=dict)
    claims: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    variant: dict = field(default_factory=dict)  # what differs from the profile's default runs ({}: nothing)
    results: list = field(default_factory=list, repr=False)  # the run records the report summarises
    headlines: list = field(default_factory=list)  # sentences a study adds to its closing finding's numbers

    @property
    def profile_label(self) -> str:
        """'cpu', or 'cpu with non-default parameters (max_steps=1)' for a variant run set."""
        return self.profile + (f" with non-default parameters ({variant_text(self.variant)})" if self.variant
                               else "")

    def variant_note(self) -> list[str]:
        """The note every output of a variant carries (none for the profile's default runs)."""
        if not self.variant:
            return []
        return [f"Not the {self.profile} profile's reports: these runs differ from its defaults in "
                f"{variant_text(self.variant)}, so they are written to {self.reports_dir.name}/ and never over the "
                "profile's own tables, figures and index."]

    def show(self) -> None:
        """Display notes, tables, claim verdicts and figures (in a notebook; plain text elsewhere)."""
        from IPython.display import Image, Markdown, display

        if self.notes or self.variant:
            display(Markdown("\n".join(f"- {n}" for n in self.variant_note() + list(self.notes))))
        for name, df in self.tables.items():
            display(Markdown(f"#### {self.titles[name]}"))
            for heading, part in ([(None, df)] if isinstance(df, pd.DataFrame) else df.items()):
                if heading is not None:
                    display(Markdown(f"##### {heading}"))
                display(nowrap_headers(part))
        if self.claims:
            display(Markdown(rep.claims_markdown(self.claims)))
        for png in self.figures.values():
            display(Image(filename=str(png)))
        display(Markdown(f"Written to `{self.reports_dir}` (index: `{self.reports_dir / 'README.md'}`)."))

    # -- writers ------------------------------------------------------------------------------------------------
    def _register(self, path: Path, description: str) -> None:
        rep.register_artifact(self.reports_dir, path, description, command(self.profile, self.notebook))
        self.artifacts.append(path)

    def table(self, name: str, df, what: str, description: str, *, frame: pd.DataFrame | None = None,
              paper_backbone: str | None = None, notes: Sequence[str] = (), csv: pd.DataFrame | None = None):
        """Write ``df`` as tables/<notebook>_<name>.{md,csv}; its title names backbone, profile and the paper's
        backbone where it differs (from ``df.attrs``, else from ``frame``, the runs it summarises). ``df`` may be
        {heading: frame}, several tables under one title and one set of notes; ``csv``: what the CSV holds
        instead of the displayed table(s) (see :func:`peftkit.reporting.write_table`)."""
        frames = [df] if isinstance(df, pd.DataFrame) else list(df.values())
        if frame is not None and frames and "backbone" not in frames[0].attrs:
            ctx = context(frame)
            for f in frames:
                f.attrs.update({"backbone": ctx["backbone"], "backbone_keys": ctx["backbone_keys"],
                                "profile": ctx["profile"] if len(frame) else self.profile,
                                "paper_backbone": paper_backbone})
        if self.variant:
            for f in frames:
                if "backbone" in f.attrs:
                    f.attrs["profile"] = f"{f.attrs['profile']} with non-default parameters"
            if any("backbone" in f.attrs for f in frames):
                notes = [*self.variant_note(), *notes]
        a = rep.merged_attrs(df)
        title = rep.table_title(what, a["backbone"], a["profile"], a.get("paper_backbone"), a.get("backbone_keys")) \
            if "backbone" in a else f"{what}, profile {self.profile_label}"
        budget = budget_summary(frame) if frame is not None and "schedule" in frame else None
        if budget:
            notes = [*notes, f"Training budget (from the result files): {budget}."]
        paths = rep.write_table(df, self.reports_dir / "tables" / f"{self.notebook}_{name}", what, notes=notes,
                                csv=csv)
        for p in paths:
            self._register(p, f"{description} ({p.suffix[1:].upper()})")
        self.tables[name], self.titles[name], self.whats[name] = df, title, what
        return df

    def caption(self, data, what: str | None = None) -> str:
        """What a figure shows (``what``), then backbone, profile and training budget of the runs behind it (a runs
        frame or result dicts): "UniPELT gate values per layer and component, per task and K. MiniLM-L6, profile
        cpu; budget: 100, 500 or 1,000 training examples, 5 epochs at batch 16" (each budget once, in order:
        :func:`peftkit.reporting.frame.budget_summary`)."""
        frame = data if isinstance(data, pd.DataFrame) and "backbone" in data else rep.runs_frame(
            data if isinstance(data, list) and all(isinstance(x, dict) for x in data) else [])
        ctx = context(frame)
        budget = budget_summary(frame) if "schedule" in frame else None
        text = (f"{what}. " if what else "") + f"{ctx['backbone']}, profile {self.profile_label}"
        return text + (f"; budget: {budget}" if budget else "")

    def figure(self, name: str, draw: Callable, description: str, *args, caption_from=None, **kwargs) -> Path:
        """``draw(*args, out, caption=..., **kwargs)`` (a reporting figure) into figures/<notebook>_<name>.{png,pdf};
        the caption says what the figure shows (``description``) and names backbone, profile and budget of
        ``caption_from`` (default: the first argument)."""
        caption = self.caption(caption_from if caption_from is not None else (args[0] if args else []), description)
        paths = draw(*args, self.reports_dir / "figures" / f"{self.notebook}_{name}", caption=caption, **kwargs)
        for p in paths:
            self._register(p, f"{description} ({p.suffix[1:].upper()})")
        self.figures[name] = paths[0]
        return paths[0]

    def claim_file(self, checks: list, heading: str) -> None:
        """The claim checks as claims/<notebook>.md."""
        from ..atomic import write_text

        self.claims = [c for c in checks if c]
        if not self.claims:
            return
        notes = "".join(f"> {n}\n\n" for n in self.variant_note())
        path = write_text(self.reports_dir / "claims" / f"{self.notebook}.md",
                          f"# {heading}, profile {self.profile_label}\n\n{notes}" + rep.claims_markdown(self.claims))
        self._register(path, f"{heading}: verdicts with paired Student-t CIs")

    # -- the closing finding ------------------------------------------------------------------------------------
    def finding_text(self) -> str:
        """The notebook's closing finding (Markdown, :func:`peftkit.reporting.findings.closing_finding`): its runs,
        each table's headline numbers and :attr:`headlines`, the claims' verdicts with their intervals, and what the
        scale means; generated from this report's results, tables and claims."""
        from ..reporting.findings import closing_finding

        paper_bb = next((rep.merged_attrs(t).get("paper_backbone") for t in self.tables.values()
                         if rep.merged_attrs(t).get("paper_backbone")), None)
        return closing_finding(self.results, profile=self.profile_label, tables=self.tables, titles=self.whats,
                               claims=self.claims, headlines=self.headlines, paper_backbone=paper_bb)

    def finding(self) -> None:
        """Register the closing finding (:meth:`finding_text`, after the variant's note where the runs differ from
        the profile's) as this notebook's part of the README's "What was found", and display it: the notebook's
        last cell."""
        from ..reporting.findings import show_markdown

        text = "\n\n".join([*self.variant_note(), self.finding_text()])
        rep.register_finding(self.reports_dir, self.notebook, text, "notebook")
        show_markdown(text)


def nowrap_headers(df: pd.DataFrame):
    """``df`` for a notebook's display with row labels and column headers that never wrap ("SST-" / "2"); the cells
    wrap as they need."""
    return df.style.set_table_styles([{"selector": "th", "props": [("white-space", "nowrap")]}])


def start(study: str, profile: str, reports_dir, results: Sequence[dict], grid: Callable[[str], list]) -> Report:
    """The report's folder: REPORTS_DIR (default: the profile's). Runs that differ from the profile's default grid
    (``grid(profile)``; any notebook parameter changed) go to ``<folder>/variants/<what differed>/`` instead when
    the folder is the profile's own, so they never overwrite its committed reports; their outputs say what
    differed."""
    notebook = {v: k for k, v in NOTEBOOKS.items()}[study]
    diff = variant_of(grid(profile), results)
    folder = reports_path(profile, reports_dir)
    if diff and folder.resolve() == reports_path(profile).resolve():
        folder = folder / "variants" / variant_folder(diff)
    return Report(study, notebook, profile, folder, variant=diff, results=list(results))


def keys_in_order(values, order: Sequence[str] = ()) -> list[str]:
    """Distinct keys of ``values`` in ``order`` first, then as they come."""
    seen = list(dict.fromkeys(str(v) for v in values if v is not None and v == v))
    return [o for o in order if o in seen] + [v for v in seen if v not in order]


def adamix_metric(task: str) -> str:
    return rep.paper_metric(task, "adamix")


def unipelt_metric(task: str) -> str:
    return rep.paper_metric(task, "unipelt")


def kit_metric(task: str) -> str:
    from ..metrics import primary_metric

    return primary_metric(task)


def ours_table(frame: pd.DataFrame, rows: Sequence[tuple[str, dict]], tasks: Sequence[str],
               metric_for: Callable[[str], str], paper: Callable[[dict, str], float | None] | None = None,
               index_name: str = "method") -> pd.DataFrame:
    """A display table: one row per (label, column filters); per task ``mean ± std [CI] n`` (Student-t; when every
    cell holds one run, the value alone and n = 1 said once in the notes, as
    :func:`peftkit.reporting.comparison_table`), and with ``paper(filters, task)`` the paper's cell and Δ as columns
    beside it ("–" where the paper has no cell, or where runs collapsed or are at chance), and where some cell's
    runs did, a "<task> status" column (:func:`peftkit.reporting.frame.status_text`). One precision per column:
    the metric's. ``attrs["notes"]``: how to read the cells (written with the table by :meth:`Report.table`)."""
    from ..reporting.names import decimals

    cells = {(label, t): rep.select(frame, task=t, metric=metric_for(t), **where) for label, where in rows
             for t in tasks}
    stats = {key: describe_values(sub["value"].to_numpy(dtype=float)) for key, sub in cells.items()}
    statuses = {key: run_status(sub) for key, sub in cells.items()}
    show_status = any(flagged(x) for x in statuses.values())
    single = single_runs([s["n"] for s in stats.values()])
    body, numbers = [], []
    for label, where in rows:
        row = {index_name: label}
        for t in tasks:
            m, d, s, status = metric_for(t), decimals(metric_for(t)), stats[(label, t)], statuses[(label, t)]
            name = task_name(t) + (" ours" if paper is not None else "")
            row[name] = format_ours(s["n"], s["mean"], s["std"], s["ci_lo"], s["ci_hi"], m, single=single)
            v = paper(where, t) if paper is not None else None
            delta = s["mean"] - v if v is not None and s["n"] and not flagged(status) else float("nan")
            numbers.append({"row": label, "task": t, "metric": m, "n": s["n"], "mean": s["mean"], "std": s["std"],
                            "status": status_text(status), "flagged": flagged(status),
                            "paper": float("nan") if v is None else v, "delta": delta})
            if paper is not None:
                row[f"{task_name(t)} paper"] = MISSING if v is None else f"{v:.{d}f}"
                row[f"{task_name(t)} Δ"] = delta_cell(s["mean"] - v if v is not None and s["n"] else None, v, m,
                                                      status)
            if show_status:
                row[f"{task_name(t)} status"] = status_text(status)
        body.append(row)
    out = pd.DataFrame(body).set_index(index_name) if body else pd.DataFrame()
    out.attrs["notes"] = [ours_note(single) + ("; Δ = ours mean − paper; – = no run or no paper cell." if paper
                                               is not None else "; – = no run."),
                          *status_notes(list(statuses.values())),
                          *chance_levels(frame, {t: metric_for(t) for t in tasks})]
    out.attrs["cells"] = numbers  # the long-format cells (peftkit.reporting.findings)
    return out


def metric_note(tasks, metric_for) -> str:
    """Which metric each task reports (how to read the "ours" cells is :func:`ours_table`'s note)."""
    return "Metrics: " + "; ".join(f"{task_name(t)} {metric_name(metric_for(t))}" for t in tasks) + "."


def paper_glue(where: dict, task: str) -> float | None:
    """AdaMix's BERT-base GLUE cell of a method (the ablations' b=48 / base settings only)."""
    label = where.get("method_label")
    if where.get("bottleneck") not in (None, 48) or where.get("variant") not in (None, "base"):
        return None
    return rep.paper_value("adamix", "glue", label, task, backbone="bert-base", metric=adamix_metric(task))


def no_paper_at_k(frame: pd.DataFrame) -> str | None:
    """Where a table's runs trained on K examples per data seed (the cpu profile), the note saying why it has no
    paper column: AdaMix's GLUE table (:func:`paper_glue`) trained on the full training sets and AdaMix published
    no number at any K, so a Δ against it would be mostly the data size. None where every run used the full sets."""
    ks = sorted(int(k) for k in frame["k"].dropna().unique()) if "k" in frame else []
    if not ks:
        return None
    at = " and ".join(f"{k:,}" for k in ks)
    return (f"No paper column: these runs train on K = {at} examples per data seed, and AdaMix published no number "
            "at any K (its BERT-base GLUE table uses the full training sets), so read the rows against each other, "
            "trained on the same examples.")
