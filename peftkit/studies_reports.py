"""The notebooks' reports: tables (Markdown + CSV), figures (PNG + PDF) and claim checks, written to REPORTS_DIR
and registered in its index. Functions of the runs' result dicts only (they never train).

Each ``<study>_report(results, profile, reports_dir)`` returns a :class:`Report` (its tables as data frames, its
figure paths, its claim checks); ``report.show()`` displays them in a notebook. Files are named after the
notebook: ``tables/01_glue_main_vs_adamix.{md,csv}``, ``figures/05_ablation_bottleneck_curve.{png,pdf}``,
``claims/02_low_resource.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from . import reporting as rep
from .reporting.frame import context
from .reporting.names import method_name, method_order, metric_name, task_key, task_name
from .reporting.stats import describe_values
from .reporting.tables import INTERVAL_NOTE, MISSING, format_ours


@dataclass
class Report:
    """What a notebook's report wrote: ``tables`` (name -> displayed frame), ``titles``, ``figures`` (name -> PNG),
    ``claims`` (claim_check results), ``notes`` and every ``artifacts`` path (all registered in the index)."""

    study: str
    notebook: str
    profile: str
    reports_dir: Path
    tables: dict = field(default_factory=dict)
    titles: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    claims: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    variant: dict = field(default_factory=dict)  # what differs from the profile's default runs ({}: nothing)

    @property
    def profile_label(self) -> str:
        """'cpu', or 'cpu with non-default parameters (max_steps=1)' for a variant run set."""
        from .studies import variant_text

        return self.profile + (f" with non-default parameters ({variant_text(self.variant)})" if self.variant
                               else "")

    def variant_note(self) -> list[str]:
        """The note every output of a variant carries (none for the profile's default runs)."""
        from .studies import variant_text

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
            display(df)
        if self.claims:
            display(Markdown(rep.claims_markdown(self.claims)))
        for png in self.figures.values():
            display(Image(filename=str(png)))
        display(Markdown(f"Written to `{self.reports_dir}` (index: `{self.reports_dir / 'README.md'}`)."))

    # -- writers ------------------------------------------------------------------------------------------------
    def _register(self, path: Path, description: str) -> None:
        from .studies import command

        rep.register_artifact(self.reports_dir, path, description, command(self.profile, self.notebook))
        self.artifacts.append(path)

    def table(self, name: str, df: pd.DataFrame, what: str, description: str, *, frame: pd.DataFrame | None = None,
              paper_backbone: str | None = None, notes: Sequence[str] = ()) -> pd.DataFrame:
        """Write ``df`` as tables/<notebook>_<name>.{md,csv}; its title names backbone, profile and the paper's
        backbone where it differs (from ``df.attrs``, else from ``frame``, the runs it summarises)."""
        if "backbone" not in df.attrs and frame is not None:
            ctx = context(frame)
            df.attrs.update({"backbone": ctx["backbone"], "backbone_keys": ctx["backbone_keys"],
                             "profile": ctx["profile"] if len(frame) else self.profile,
                             "paper_backbone": paper_backbone})
        a = df.attrs
        if self.variant and "backbone" in a:
            a["profile"] = f"{a['profile']} with non-default parameters"
            notes = [*self.variant_note(), *notes]
        title = rep.table_title(what, a["backbone"], a["profile"], a.get("paper_backbone"), a.get("backbone_keys")) \
            if "backbone" in a else f"{what}, profile {self.profile_label}"
        if frame is not None and "budget" in frame and frame["budget"].notna().any():
            notes = [*notes, "Training budget (from the result files): "
                     + "; ".join(sorted(set(frame["budget"].dropna()))) + "."]
        paths = rep.write_table(df, self.reports_dir / "tables" / f"{self.notebook}_{name}", what, notes=notes)
        for p in paths:
            self._register(p, f"{description} ({p.suffix[1:].upper()})")
        self.tables[name], self.titles[name] = df, title
        if a.get("deltas"):
            self._delta_finding(name, what, a, paths[0])
        return df

    def _delta_finding(self, name: str, what: str, attrs: dict, path: Path) -> None:
        """The table's headline deltas (range and median of ours − paper) as a line of the README summary."""
        from .reporting.names import backbone_name

        deltas = sorted(attrs["deltas"], key=lambda d: d[2])
        lo, hi = deltas[0], deltas[-1]
        median = float(pd.Series([d[2] for d in deltas]).median())
        rel = path.relative_to(self.reports_dir).as_posix()
        text = (f"[{what}]({rel}): Δ from {lo[2]:+.2f} ({lo[0]}, {lo[1]}) to {hi[2]:+.2f} ({hi[0]}, {hi[1]}), "
                f"median {median:+.2f} over {len(deltas)} cells")
        paper_bb = attrs.get("paper_backbone")
        caveat = (f"our runs use {attrs['backbone']}" + (f" where the papers used {backbone_name(paper_bb)}"
                                                          if paper_bb else "")
                  + f", with the {self.profile} profile's small training budgets, so a Δ against the paper mixes "
                  "the method with that gap in scale; the claims compare our own methods under one budget.")
        rep.register_finding(self.reports_dir, f"{self.notebook}_{name}", text, "delta",
                             caveat=caveat[0].upper() + caveat[1:])

    def caption(self, data) -> str:
        """Backbone, profile and training budget of the runs behind a figure (a runs frame or result dicts)."""
        frame = data if isinstance(data, pd.DataFrame) and "backbone" in data else rep.runs_frame(
            data if isinstance(data, list) and all(isinstance(x, dict) for x in data) else [])
        ctx = context(frame)
        budgets = sorted(set(frame["budget"].dropna())) if "budget" in frame else []
        text = f"{ctx['backbone']}, profile {self.profile_label}"
        return text + (f"; budget: {'; '.join(budgets)}" if budgets else "")

    def figure(self, name: str, draw: Callable, description: str, *args, caption_from=None, **kwargs) -> Path:
        """``draw(*args, out, caption=..., **kwargs)`` (a reporting figure) into figures/<notebook>_<name>.{png,pdf};
        the caption names backbone, profile and budget of ``caption_from`` (default: the first argument)."""
        caption = self.caption(caption_from if caption_from is not None else (args[0] if args else []))
        paths = draw(*args, self.reports_dir / "figures" / f"{self.notebook}_{name}", caption=caption, **kwargs)
        for p in paths:
            self._register(p, f"{description} ({p.suffix[1:].upper()})")
        self.figures[name] = paths[0]
        return paths[0]

    def claim_file(self, checks: list, heading: str) -> None:
        """The claim checks as claims/<notebook>.md."""
        from .atomic import write_text

        self.claims = [c for c in checks if c]
        if not self.claims:
            return
        notes = "".join(f"> {n}\n\n" for n in self.variant_note())
        path = write_text(self.reports_dir / "claims" / f"{self.notebook}.md",
                          f"# {heading}, profile {self.profile_label}\n\n{notes}" + rep.claims_markdown(self.claims))
        self._register(path, f"{heading}: verdicts with paired Student-t CIs")
        rel = path.relative_to(self.reports_dir).as_posix()
        for c in self.claims:
            rep.register_finding(self.reports_dir, f"{self.notebook}: {c['claim']}",
                                 f"[{c['claim']}]({rel}): **{c['verdict']}** ({c['summary']})", "claim")


def _start(study: str, profile: str, reports_dir, results: Sequence[dict]) -> Report:
    """The report's folder: REPORTS_DIR (default: the profile's). Runs that differ from the profile's default grid
    (any notebook parameter changed) go to ``<folder>/variants/<what differed>/`` instead when the folder is the
    profile's own, so they never overwrite its committed reports; their outputs say what differed."""
    from .studies import NOTEBOOKS, reports_path, variant, variant_folder

    notebook = {v: k for k, v in NOTEBOOKS.items()}[study]
    diff = variant(study, profile, results)
    folder = reports_path(profile, reports_dir)
    if diff and folder.resolve() == reports_path(profile).resolve():
        folder = folder / "variants" / variant_folder(diff)
    return Report(study, notebook, profile, folder, variant=diff)


def _present(values, order: Sequence[str] = ()) -> list[str]:
    """Distinct keys of ``values`` in ``order`` first, then as they come."""
    seen = list(dict.fromkeys(str(v) for v in values if v is not None and v == v))
    return [o for o in order if o in seen] + [v for v in seen if v not in order]


def _adamix_metric(task: str) -> str:
    return rep.paper_metric(task, "adamix")


def _unipelt_metric(task: str) -> str:
    return rep.paper_metric(task, "unipelt")


def _kit_metric(task: str) -> str:
    from .metrics import primary_metric

    return primary_metric(task)


def ours_table(frame: pd.DataFrame, rows: Sequence[tuple[str, dict]], tasks: Sequence[str],
               metric_for: Callable[[str], str], paper: Callable[[dict, str], float | None] | None = None,
               index_name: str = "method") -> pd.DataFrame:
    """A display table: one row per (label, column filters); per task ``mean ± std [CI] n`` (Student-t), and with
    ``paper(filters, task)`` the paper's cell and Δ as columns beside it ("–" where the paper has no cell, or where
    runs collapsed). One precision per column: the metric's."""
    from .reporting.names import decimals

    body = []
    for label, where in rows:
        row = {index_name: label}
        for t in tasks:
            m, d = metric_for(t), decimals(metric_for(t))
            sub = rep.select(frame, task=t, metric=m, **where)
            s = describe_values(sub["value"].to_numpy(dtype=float))
            collapsed = int(sub.drop_duplicates("run_id")["collapsed"].notna().sum()) if len(sub) else 0
            name = task_name(t) + (" ours" if paper is not None else "")
            row[name] = format_ours(s["n"], s["mean"], s["std"], s["ci_lo"], s["ci_hi"], m, collapsed)
            if paper is not None:
                v = paper(where, t)
                row[f"{task_name(t)} paper"] = MISSING if v is None else f"{v:.{d}f}"
                row[f"{task_name(t)} Δ"] = (MISSING if v is None or not s["n"] else "– (collapsed)" if collapsed
                                            else f"{s['mean'] - v:+.{d}f}")
        body.append(row)
    return pd.DataFrame(body).set_index(index_name) if body else pd.DataFrame()


def _metric_note(tasks, metric_for) -> str:
    return "Metrics: " + "; ".join(f"{task_name(t)} {metric_name(metric_for(t))}" for t in tasks) + \
        f". ours: {INTERVAL_NOTE}; – = no run or no paper cell."


# ---- 01 GLUE main ---------------------------------------------------------------------------------------------

def glue_main_report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """Ours beside AdaMix's BERT-base GLUE table and UniPELT's full-data table (Table 3)."""
    from .studies import GLUE_NOT_RUN, GLUE_TASKS

    r = _start("glue_main", profile, reports_dir, results)
    frame = rep.runs_frame(results)
    tasks, methods = _present(frame["task"], GLUE_TASKS), method_order(frame["method_label"])
    r.notes = [f"{task_name(t)}: not run, {why}." for t, why in GLUE_NOT_RUN.items()]
    for name, paper, table, bb, metric_for, source in (
            ("vs_adamix", "adamix", "glue", "bert-base", _adamix_metric, "AdaMix's BERT-base GLUE table"),
            ("vs_unipelt", "unipelt", "full", None, _unipelt_metric, "UniPELT Table 3 (full data)")):
        t = rep.comparison_table(frame, paper=paper, table=table, tasks=tasks, methods=methods, metric_for=metric_for,
                                 backbone=bb)
        r.table(name, t, f"GLUE dev, ours vs {source}", f"GLUE main table beside {source}", notes=r.notes,
                frame=frame)
    return r


# ---- 02 low resource ------------------------------------------------------------------------------------------

COMPONENTS = ("pfeiffer", "prefix", "lora")


def _upper_bound(frame: pd.DataFrame, tasks, ks) -> pd.DataFrame:
    """Per task and K: the best single component (adapter, prefix, LoRA) beside UniPELT, ours and the paper's."""
    rows = []
    for k in ks:
        nums = rep.comparison_numbers(frame, paper="unipelt", table="low-resource", tasks=tasks, k=k,
                                      methods=list(COMPONENTS) + ["unipelt-AP", "unipelt-APL"],
                                      metric_for=_unipelt_metric)
        for t in tasks:
            n = nums[nums["task"] == task_key(t)].set_index("method_label")
            comp = n.loc[list(COMPONENTS)]
            ours = comp[comp["n"] > 0]["mean"]
            papers = comp["paper"].dropna()
            best, pbest = (ours.idxmax() if len(ours) else None), (papers.idxmax() if len(papers) else None)
            row = {"K": k, "task": task_name(t),
                   "best component (ours)": f"{method_name(best)} {ours[best]:.2f}" if best else MISSING,
                   "best component (paper)": f"{method_name(pbest)} {papers[pbest]:.2f}" if pbest else MISSING}
            for u in ("unipelt-AP", "unipelt-APL"):
                x = n.loc[u]
                row[f"{method_name(u)} (ours)"] = f"{x['mean']:.2f}" if x["n"] else MISSING
                row[f"{method_name(u)} − best (ours)"] = (f"{x['mean'] - ours[best]:+.2f}" if x["n"] and best
                                                          else MISSING)
                row[f"{method_name(u)} (paper)"] = MISSING if pd.isna(x["paper"]) else f"{x['paper']:.2f}"
                row[f"{method_name(u)} − best (paper)"] = (f"{x['paper'] - papers[pbest]:+.2f}"
                                                           if pbest and not pd.isna(x["paper"]) else MISSING)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["K", "task"]) if rows else pd.DataFrame()


def low_resource_report(results: list[dict], profile: str, reports_dir=None) -> Report:
    """UniPELT Table 1 per K, the "upper bound" comparison and the claim UniPELT (APL) at K=100 ≥ its components."""
    from .studies import GLUE_TASKS

    r = _start("low_resource", profile, reports_dir, results)
    frame = rep.runs_frame(results)
    tasks, methods = _present(frame["task"], GLUE_TASKS), method_order(frame["method_label"])
    ks = sorted(int(k) for k in frame["k"].dropna().unique())
    for k in ks:
        t = rep.comparison_table(frame, paper="unipelt", table="low-resource", tasks=tasks, methods=methods, k=k,
                                 metric_for=_unipelt_metric)
        r.table(f"k{k}", t, f"UniPELT Table 1, K = {k}, GLUE dev", f"Low-resource results at K={k} beside UniPELT "
                f"Table 1", frame=frame[frame["k"].eq(k).fillna(False)])
    ub = _upper_bound(frame, tasks, ks)
    ub_frame = rep.select(frame, method_label=list(COMPONENTS) + ["unipelt-AP", "unipelt-APL"])
    r.table("upper_bound", ub, "UniPELT vs the best single component per task", "UniPELT against the best of "
            "adapter, prefix-tuning and LoRA per task and K, ours and the paper's", frame=ub_frame,
            paper_backbone="bert-base", notes=[_metric_note(tasks, _unipelt_metric),
                                               "Best component: the highest mean of Adapter, Prefix-tuning, LoRA."])
    present = [c for c in COMPONENTS if c in methods]
    checks = []
    if 100 in ks and "unipelt-APL" in methods and present:
        checks.append(rep.claim_check(rep.select(frame, k=100), "unipelt-APL", present, _unipelt_metric, tasks,
                                      at_least=True, claim="UniPELT (APL) at K=100 ≥ best of its components ("
                                      + ", ".join(method_name(c) for c in present) + ")"))
    else:
        r.notes.append("Claim not checked: it needs K=100 runs of UniPELT (APL) and of at least one component.")
    r.claim_file(checks, "UniPELT low-resource claims")
    return r


def report(study: str, results: list[dict], profile: str, reports_dir=None) -> Report:
    """The report of ``study`` (see the ``<study>_report`` functions; 03-08 live in studies_reports2)."""
    from . import studies_reports2 as r2
    from .studies import _check_study

    _check_study(study)
    reports = {"glue_main": glue_main_report, "low_resource": low_resource_report, "fewshot": r2.fewshot_report,
               "nlg": r2.nlg_report, "ablation_bottleneck": r2.ablation_bottleneck_report,
               "ablation_adamix": r2.ablation_adamix_report, "unipelt_gates": r2.unipelt_gates_report,
               "efficiency": r2.efficiency_report}
    return reports[study](results, profile, reports_dir)
