"""How much of the planned grid the results cover, and the banner that says so.

The study writes ``RESULTS/grid.json``::

    {"planned_cells": M, "finished_cells": N, "planned_trainings": m, "finished_trainings": n,
     "complete": bool, "missing": [{"composition", "generator", "size", "ratio", "seed", "state"}],
     "metrics_missing": [generator names], "written_at": str}

The report never claims more than it can check: without grid.json (an older results folder) or
with one it cannot read, completeness is *unknown*; when grid.json, the count of rows in
results.csv and the ``planned_cells``/``finished_cells`` columns of results.csv (when present)
disagree, the results are not called complete. A corrupt grid.json is not an error: the tables
may still be worth reading, so the page says, before any table, that completeness is unknown
and why.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

STATES = ("not started", "interrupted", "failed")
LIST_LIMIT = 12  # groups of missing cells listed before "... and K more"


@dataclass
class Completeness:
    state: str                      # "complete", "partial" or "unknown"
    planned: int | None = None      # cells
    finished: int | None = None
    planned_trainings: int | None = None
    finished_trainings: int | None = None
    missing: list[dict[str, Any]] = field(default_factory=list)
    metrics_missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # why the counts cannot be trusted
    written_at: str = ""

    @property
    def cells_partial(self) -> bool:
        """Some planned cell has no result: every figure and table is built from part of the grid."""
        return self.state == "partial" and (self.finished is None or self.planned is None
                                            or self.finished < self.planned or bool(self.missing))

    @property
    def scope(self) -> str:
        """What a caption or title built from the tables must say ("" for a complete grid)."""
        if self.state == "unknown":
            return "grid completeness unknown"
        if self.cells_partial:
            if self.finished is not None and self.planned is not None:
                return f"partial: {self.finished} of {self.planned} cells"
            return "partial grid"
        return "partial grid" if self.problems else ""


def read(results: Path, table: pd.DataFrame) -> Completeness:
    """The completeness of ``results`` from grid.json, cross-checked with results.csv (``table``)."""
    path = results / "grid.json"
    if not path.exists():
        c = Completeness("unknown", problems=["this results folder has no grid.json (it was written by an older "
                                              "synthworth), so the report cannot tell whether every planned cell "
                                              "finished"])
    else:
        try:
            if not path.is_file():  # never open a FIFO or a device: reading one may never return
                raise ValueError("not a regular file")
            c = _parse(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:120]
            c = Completeness("unknown", problems=[f"grid.json is unreadable ({reason}), so the report cannot tell "
                                                  "whether every planned cell finished"])
    _cross_check(c, table)
    return c


def _parse(data: Any) -> Completeness:
    """A checked Completeness from grid.json's content; ValueError when it has another shape."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    counts = {}
    for key in ("planned_cells", "finished_cells", "planned_trainings", "finished_trainings"):
        value = data.get(key)
        if not _count(value):
            raise ValueError(f"{key} is not a count")
        counts[key] = value
    if not isinstance(data.get("complete"), bool):
        raise ValueError("complete is not true or false")
    missing = data.get("missing")
    if not isinstance(missing, list) or not all(_missing_entry(m) for m in missing):
        raise ValueError("missing is not a list of cells")
    metrics_missing = data.get("metrics_missing", [])
    if not isinstance(metrics_missing, list) or not all(isinstance(g, str) for g in metrics_missing):
        raise ValueError("metrics_missing is not a list of generator names")
    c = Completeness("complete", counts["planned_cells"], counts["finished_cells"], counts["planned_trainings"],
                     counts["finished_trainings"], missing, metrics_missing, written_at=str(data.get("written_at", "")))
    if c.finished > c.planned:
        raise ValueError(f"finished_cells {c.finished} exceeds planned_cells {c.planned}")
    short = c.finished < c.planned or missing or metrics_missing or c.finished_trainings < c.planned_trainings
    if short or not data["complete"]:
        c.state = "partial"
    if data["complete"] and short:
        c.problems.append("grid.json says complete but counts unfinished work")
    if not data["complete"] and not short:
        c.problems.append("grid.json says incomplete but lists nothing missing")
    return c


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _missing_entry(m: Any) -> bool:
    return (isinstance(m, dict) and isinstance(m.get("composition"), str)
            and isinstance(m.get("generator"), (str, type(None)))
            and (m.get("size") is None or _count(m.get("size")))
            and (m.get("ratio") is None or (isinstance(m.get("ratio"), (int, float)) and not isinstance(m.get("ratio"), bool)))
            and isinstance(m.get("seed"), int) and not isinstance(m.get("seed"), bool)
            and m.get("state") in STATES)


def _cross_check(c: Completeness, table: pd.DataFrame) -> None:
    """results.csv holds one row per finished cell, and may carry the counts itself: any
    disagreement is listed, and results that disagree are never called complete."""
    if c.finished is not None and len(table) != c.finished:
        c.problems.append(f"results.csv holds {len(table)} cell(s) but grid.json counts {c.finished} finished")
    for col, attr in (("planned_cells", "planned"), ("finished_cells", "finished")):
        values = sorted({int(v) for v in table[col].dropna()}) if col in table.columns else []
        if not values:
            continue
        if getattr(c, attr) is None:  # no usable grid.json: results.csv's own counts are all there is
            setattr(c, attr, values[-1])
        if len(values) > 1 or values[0] != getattr(c, attr):
            c.problems.append(f"results.csv says {col} = {', '.join(map(str, values))}, grid.json "
                              f"{getattr(c, attr)}")
    if c.planned is not None and c.finished is not None and c.finished < c.planned:
        c.state = "partial"
    elif c.state == "complete" and c.problems:
        c.state = "unknown"


# ------------------------------------------------------------------------------------ HTML
def banner(c: Completeness, esc) -> str:
    """The box that opens the page, before any table: how much of the grid the results cover."""
    counts = _counts_text(c)
    problems = "".join(f"<li>{esc(p)}</li>" for p in c.problems)
    problems = f"<ul>{problems}</ul>" if problems else ""
    if c.state == "complete":
        return (f"<div class='complete'><b>Complete:</b> {esc(counts)} finished"
                f"{esc(f' (grid.json written {c.written_at})' if c.written_at else '')}.</div>")
    if c.state == "unknown":
        return (f"<div class='warning'><b>Completeness unknown.</b> {esc(counts) + ' finished. ' if counts else ''}"
                "The tables and figures below show whatever cells finished; they may cover only part of the "
                f"planned grid.{problems}</div>")
    parts = [f"<div class='warning'><b>Partial results: {esc(counts or 'part of the grid')} finished.</b> "
             "Every table and figure below is built from the finished cells only; means, intervals and "
             f"comparisons may change when the rest finishes.{problems}"]
    if c.missing:
        states = Counter(m["state"] for m in c.missing)
        parts.append(f"<p>Missing cells ({esc(', '.join(f'{n} {s}' for s, n in states.items()))}):</p>"
                     + _missing_list(c.missing, esc))
    if c.metrics_missing:
        parts.append(f"<p>Image-quality metrics missing for: {esc(', '.join(c.metrics_missing))}.</p>")
    parts.append("<p>Resume the study (run the same 'synthworth study run' command again) to fill in the rest.</p></div>")
    return "".join(parts)


def _counts_text(c: Completeness) -> str:
    if c.planned is None or c.finished is None:
        return ""
    text = f"{c.finished} of {c.planned} cells"
    if c.planned_trainings is not None and c.finished_trainings is not None:
        text += f" ({c.finished_trainings} of {c.planned_trainings} classifier trainings)"
    return text


def _missing_list(missing: list[dict[str, Any]], esc) -> str:
    """Missing cells grouped by everything but the seed, one line per group, condensed when long."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for m in missing:
        key = (m["composition"], m.get("generator") or "", m.get("size"), m.get("ratio"), m["state"])
        groups[key].append(m["seed"])
    lines = []
    for (comp, gen, size, ratio, state), seeds in groups.items():
        what = comp + (f" · {gen}" if gen else "") + (f" · size {size}" if size is not None else "")
        what += f" · ratio {ratio:g}" if ratio is not None else ""
        lines.append(f"<li>{esc(what)}: seed{'s' if len(seeds) > 1 else ''} {esc(_ranges(seeds))} "
                     f"<span class='note'>({esc(state)})</span></li>")
    more = ""
    if len(lines) > LIST_LIMIT:
        rest = list(groups.values())[LIST_LIMIT:]
        more = f"<li>… and {len(rest)} more group(s), {sum(map(len, rest))} cell(s) in all</li>"
        lines = lines[:LIST_LIMIT]
    return "<ul>" + "".join(lines) + more + "</ul>"


def _ranges(seeds: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0–2, 5``."""
    seeds = sorted(set(seeds))
    out, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            out.append(str(start) if start == s else f"{start}–{s}")
            start = None
    return ", ".join(out)
