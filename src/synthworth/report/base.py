"""The frame every section of a report page is written against: :class:`ReportBase` holds the
results folder's tables (the unfiltered cells apart from the filtered ones), the run folders and
Datasets it may read (a file of a run only inside its folder), the headline training size, and
the helpers a section uses to place its figures; small HTML pieces (a folded block, two-column
rows, an interval, the versions and machine) every page uses.

The study's page (:mod:`synthworth.report.page`), its sections (:mod:`synthworth.report.sections`,
:mod:`synthworth.report.answer`) and the comparison page (:mod:`synthworth.report.compare`) build
on it; none of them imports the page it is placed on.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import urllib.parse
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from synthworth.report import completeness, output
from synthworth.report.load import Results, inside
from synthworth.report.numbers import esc, fmt, num
from synthworth.safety import read_marker, safe_names

SOURCE_ROWS = ["real", "artificial", "mixed", "subset_real"]
LIBRARIES = ["torch", "torchvision", "diffusers", "accelerate", "transformers", "numpy", "pandas",
             "scikit-learn", "torchmetrics", "torch-fidelity", "matplotlib", "pillow"]
MAX_TEXT = 200_000  # bytes of a run's config shown at most


def interval(low: Any, high: Any, kind: str = "value") -> str:
    """``[low, high]`` of a 95 % interval, or "no interval" when either end is missing."""
    if fmt(low) == "—" or fmt(high) == "—":
        return "no interval"
    return f"[{num(low, kind)}, {num(high, kind)}]"


def _demo_study(results: Path) -> bool:
    """Whether ``results`` is the study folder of a demo: named ``study``, inside a folder whose
    own marker is the demo's and lists ``study`` and ``runs`` among what the demo wrote (so a
    stray marker file alone does not open a whole parent folder to the report)."""
    marker = read_marker(results.absolute().parent) or {}
    entries = marker.get("entries") if isinstance(marker.get("entries"), list) else []
    return results.absolute().name == "study" and marker.get("kind") == "demo" and {"study", "runs"} <= set(entries)


class ReportBase:
    """A page's state and helpers; the sections (each returns HTML, an empty string when it has
    nothing to show) are the subclasses' methods."""

    extra_css = ""  # a page built on this class (report/compare.py) adds its own rules here

    def __init__(self, data: Results, page: Path, figdir: Path, grid: completeness.Completeness | None,
                 runs: dict[str, Path], datasets: dict[str, Path]):
        self.results, self.page, self.figdir, self.grid = data.path, page, figdir, grid
        # Filtered cells (``filters`` of the spec) get their own block; every other section shows
        # the unfiltered cells only, as before filters existed.
        self.all_results, self.all_comparisons = (data.tables.get(k, pd.DataFrame()) for k in ("results", "comparisons"))
        self.t = _unfiltered(data.tables)
        self.filtered_summary = _only_filtered(data.tables.get("summary", pd.DataFrame()))
        self.spec = data.study.get("spec", {})
        self.classifier = data.study.get("classifier", {})
        self.inputs = data.inputs
        self.stage_seconds = data.stage_seconds
        self.name = str(self.spec.get("name") or data.path.name)
        self.class_names = self.inputs.get("real", {}).get("classes", [])
        self.notes: list[str] = []  # what the report left out, and why
        # Run folders: those named explicitly may be anywhere (files inside them are read);
        # those listed in runs.json only when they lie inside the results folder.
        # The demo keeps its runs and Datasets beside its results (DEMO/runs next to DEMO/study):
        # there runs.json and inputs.json are followed anywhere inside the demo's folder,
        # recognised by the demo's own marker; elsewhere only inside the results folder.
        self.home = home = self.results.parent if _demo_study(Path(self.results)) else self.results
        self.runs: dict[str, tuple[Path, Path]] = {}
        for name, path in data.runs.items():
            if name in runs:
                continue
            found = inside(Path(self.results).absolute() / path, home)
            if found is None or not found.is_dir():
                self.notes.append(f"run {name}: its folder {path} (named in runs.json) is not read, as it lies "
                                  f"outside the results folder or is missing; pass --run {name}=PATH to show it")
            else:
                self.runs[name] = (found, home.resolve())
        self.runs.update({name: (path, path.resolve()) for name, path in runs.items()})
        self.run_files = dict(zip(self.runs, safe_names(self.runs, fallback="run")))
        self.datasets = datasets
        self.scope = grid.scope if grid is not None else ""
        summary = self.t["summary"]
        self.sizes = sorted(int(s) for s in summary["size"].dropna().unique()) if len(summary) else []
        self.headline = self._headline_size()

    # ---------------------------------------------------------------- helpers
    def rel(self, path: Path) -> str:
        """A relative URL of a file beside the page; "./" first so no name reads as a scheme."""
        return "./" + urllib.parse.quote(os.path.relpath(path, self.page.parent).replace(os.sep, "/"))

    def img(self, path: Path, alt: str, style: str = "") -> str:
        style = f" style='{style}'" if style else ""
        return f"<img src='{esc(self.rel(path))}' alt='{esc(alt)}'{style}>"

    def figure(self, path: Path | None, caption: str, scope: str | None = None) -> str:
        """A figure with its caption; the caption starts with the grid's scope ("partial: ...")."""
        if path is None:
            return ""
        scope = self.scope if scope is None else scope
        mark = f"<span class='scope'>[{esc(scope)}]</span> " if scope else ""
        return f"<figure>{self.img(path, caption)}<figcaption>{mark}{esc(caption)}</figcaption></figure>"

    def target(self, name: str) -> Path:
        return output.claim(self.figdir, name)

    def _headline_size(self) -> int | None:
        """The training-set size of the headline: the first of the spec's ``sizes`` (the order
        the spec lists them in; the demo lists its headline size first) at which every
        composition of the study exists for every generator; without one in that order, the
        smallest such size; where no size has them all, the smallest of the most populated."""
        s = self.t["summary"]
        if s.empty:
            return None
        simple = s[s["composition"].isin(SOURCE_ROWS)]
        if simple.empty:
            return int(s["size"].min())
        groups = {(c, g) for c, g in zip(simple["composition"], simple["generator"])}
        full = [int(size) for size, part in simple.groupby("size")
                if {(c, g) for c, g in zip(part["composition"], part["generator"])} == groups]
        listed = self.spec.get("sizes") if isinstance(self.spec.get("sizes"), list) else []
        for size in listed:
            if isinstance(size, int) and size in full:
                return size
        if full:
            return min(full)
        counts = simple.groupby("size").size()
        return int(counts[counts == counts.max()].index.min())

    def table_scope(self) -> str:
        return f" <span class='scope'>[{esc(self.scope)}]</span>" if self.scope else ""

    def _run_file(self, name: str, path: Path) -> Path | None:
        """``path`` inside run ``name`` when it resolves inside the folder the run may be read from."""
        found = inside(path, self.runs[name][1])
        if found is None or not found.is_file():
            if path.exists() or path.is_symlink():
                self.notes.append(f"run {name}: {path.name} is not read (it points outside the run's folder)")
            return None
        return found

    def _copy(self, name: str, source: Path, file_name: str) -> Path | None:
        found = self._run_file(name, source)
        if found is None:
            return None
        target = self.target(file_name)
        shutil.copyfile(found, target)
        return target

    def _run_seconds(self, name: str) -> float | None:
        file = self._run_file(name, self.runs[name][0] / "metrics.jsonl")
        if file is None:
            return None
        last = None
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill: the earlier epochs still count
            if isinstance(row, dict) and row.get("kind") == "epoch" and isinstance(row.get("elapsed_s"), (int, float)):
                last = float(row["elapsed_s"])
        return last

    def run_configs(self) -> str:
        """Each run's config.yaml, folded away."""
        out = ""
        for name, (run, _) in self.runs.items():
            cfg = self._run_file(name, run / "config.yaml")
            if cfg is not None:
                text = cfg.read_bytes()[:MAX_TEXT].decode("utf-8", errors="replace")
                out += fold(f"{name}: training config (config.yaml)", f"<pre>{esc(text)}</pre>")
        return out

    def left_out(self) -> str:
        if not self.notes:
            return ""
        items = "".join(f"<li>{esc(n)}</li>" for n in dict.fromkeys(self.notes))
        return f"<h2>Left out of this report</h2><ul class='note'>{items}</ul>"

def versions_and_machine() -> tuple[dict[str, str], dict[str, object]]:
    """The installed versions of synthworth and the libraries behind the numbers, and the machine."""
    versions = {}
    for lib in ["synthworth"] + LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    machine = {"python": platform.python_version(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    return versions, machine


def table_rows(d: dict) -> str:
    """Rows of a two-column table: each key a header cell, its value beside it (both escaped)."""
    return "".join(f"<tr><th class='l'>{esc(k)}</th><td class='l'>{esc(v)}</td></tr>" for k, v in d.items())


def fold(summary: str, body: str) -> str:
    """A raw block (a spec, a config) folded away behind its one-line summary."""
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def _unfiltered(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables with filtered cells and filter comparisons left out (tables from before filters
    have no filter column: kept whole)."""
    out = dict(tables)
    for name in ("results", "summary"):
        t = tables.get(name)
        if t is not None and "filter" in t.columns:
            out[name] = t[t["filter"].fillna("none").isin(["none", ""])].reset_index(drop=True)
    c = tables.get("comparisons")
    if c is not None and "kind" in c.columns:
        out["comparisons"] = c[c["kind"] != "filter"].reset_index(drop=True)
    return out


def _only_filtered(summary: pd.DataFrame) -> pd.DataFrame:
    if "filter" not in summary.columns:
        return summary.iloc[0:0]
    return summary[~summary["filter"].fillna("none").isin(["none", ""])]
