"""The page that compares trained generators (the faces demo's report, ``synthworth compare``'s).

It opens with the findings (:mod:`synthworth.report.compare_findings`: closeness to the real
images, still improving or plateaued, exposure failures, training cost), then the sample grids
per epoch side by side (one row per epoch, one column per model), the quality curves tracked
during training (``eval`` rows of each run's ``metrics.jsonl``; :mod:`compare_figures`), the
loss curves, and what produced the page.

The same rules as the study report (:mod:`synthworth.report.page`, whose :class:`Report` this
page builds on): every text printed is escaped, files are read only inside each run's folder (a
link pointing out of it is not followed, and a note says so), figures go to the page's own
figures folder, and only a page synthworth wrote is replaced.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import time
from pathlib import Path

import numpy as np
import pandas as pd

from synthworth.generators.base import model_config_file
from synthworth.data import provenance as prov
from synthworth.generators.provenance import of_run
from synthworth.report import compare_autoencoder, compare_figures, compare_findings
from synthworth.report.load import Results
from synthworth.report.numbers import esc, fmt, num
from synthworth.engine.run import parse_rows
from synthworth.report.base import MAX_TEXT, fold, table_rows, versions_and_machine
from synthworth.report.page import Report, _explicit_folders, render
from synthworth.safety import safe_name

COMPARE_CSS = """
table.findings{width:100%}table.findings td,table.findings th{vertical-align:top}table.findings td p{margin:0 0 .4em}
table.findings tr.floor{background:#f7f7f7}.nums{font-size:.92em;color:#333;line-height:1.5}
.best{background:#2e7d32;color:#fff;border-radius:3px;padding:0 .35em;font-size:.8em;font-weight:normal}
table.side{table-layout:fixed;width:100%}table.side td{vertical-align:top;text-align:center}
table.side th{vertical-align:top}td.missing{color:#b00020;background:#fff4f4;vertical-align:middle!important}
table.side figure{margin:.2em 0}table.side img{width:100%}
"""


def build_compare_report(findings: dict | None, runs: dict[str, Path], page: Path, *, title: str,
                         stage_seconds: dict[str, float] | None = None, notes: list[str] | None = None) -> Path:
    """Write the comparison page of the trained generators ``runs`` (name -> run folder) at
    ``page``; ``findings`` is ``synthworth compare``'s findings (CONTRACT14 §4) or None when they
    were not computed. ``notes`` are printed under the title. Returns the page's path."""
    page = Path(page)
    runs, shown_notes = shown_runs(runs)
    notes = [*shown_notes, *(notes or [])]
    explicit = _explicit_folders(runs, "run")
    empty = {name: pd.DataFrame() for name in ("results", "summary", "comparisons", "metrics")}
    data = Results(page.parent, empty, {"spec": {"name": title}}, stage_seconds=dict(stage_seconds or {}))
    return render(page, lambda figdir: Compare(data, page, figdir, explicit, findings, notes))


def shown_runs(runs: dict[str, Path]) -> tuple[dict[str, Path], list[str]]:
    """The run folder the page shows for each model (a folder of replicates: its first run, and a
    note saying so; the findings cover every run) and those notes."""
    from synthworth.engine.replicates import shown_run

    shown, notes = {}, []
    for name, path in runs.items():
        shown[name], note = shown_run(path) if Path(path).is_dir() else (Path(path), None)
        if note:
            notes.append(f"{name}: {note}; the findings are measured on every replicate")
    return shown, notes


def _number(value) -> float | None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    return float(value)


class Compare(Report):
    """The comparison page's sections (each returns HTML)."""

    extra_css = COMPARE_CSS

    def __init__(self, data: Results, page: Path, figdir: Path, runs: dict[str, Path], findings: dict | None,
                 notes: list[str] | None):
        super().__init__(data, page, figdir, None, runs, {})
        self.findings = findings if isinstance(findings, dict) else None
        self.given_notes = [str(n) for n in notes or []]
        self.rows = {name: self._metrics_rows(name) for name in self.runs}
        self.style = compare_figures.colours(list(self.runs))

    # ---------------------------------------------------------------- reading a run
    def _metrics_rows(self, name: str) -> list[dict] | None:
        """The run's metrics.jsonl rows (lines that do not parse are skipped: a line cut short by
        a kill); None when the file is missing or not read."""
        path = self.runs[name][0] / "metrics.jsonl"
        found = self._run_file(name, path)
        if found is None:
            if not (path.exists() or path.is_symlink()):
                self.notes.append(f"run {name}: no metrics.jsonl (no quality curve, no training time)")
            return None
        return parse_rows(found.read_text(encoding="utf-8", errors="replace"))

    def training_seconds(self, name: str) -> tuple[float | None, str]:
        """Seconds of training from the last epoch row: ``train_s`` (training alone), else
        ``elapsed_s`` (an older run's wall time, evaluation included); and which of the two."""
        epochs = [r for r in self.rows.get(name) or [] if r.get("kind") == "epoch"]
        if not epochs:
            return None, ""
        for key in ("train_s", "elapsed_s"):
            value = _number(epochs[-1].get(key))
            if value is not None:
                return value, key
        return None, ""

    def _run_seconds(self, name: str) -> float | None:
        return self.training_seconds(name)[0]

    def epochs_trained(self, name: str) -> int | None:
        values = [_number(r.get("epoch")) for r in self.rows.get(name) or [] if r.get("kind") == "epoch"]
        values = [v for v in values if v is not None]
        return int(max(values)) if values else None

    def grid_files(self, name: str) -> dict[int, Path]:
        """The run's sample grids by epoch: ``samples/grid-epoch-NNN.png``, else DCGAN's
        ``samples/epoch-NNN.png``."""
        samples = self.runs[name][0] / "samples"
        grids = sorted(samples.glob("grid-epoch-*.png")) or sorted(samples.glob("epoch-*.png"))
        return {int(p.stem.split("-")[-1]): p for p in grids if p.stem.split("-")[-1].isdigit()}

    # ---------------------------------------------------------------- sections
    def render(self) -> str:
        sections = [self.header(), compare_findings.section(self.findings), self.grids(),
                    compare_autoencoder.section(self), self.curves(),
                    self.losses(), self.left_out(), self.provenance()]
        return "\n".join(s for s in sections if s)

    def header(self) -> str:
        names = ", ".join(self.runs) or "none"
        notes = "".join(f"<li>{esc(n)}</li>" for n in self.given_notes)
        models = _d(self.findings.get("models")) if self.findings else {}
        unmatched = [m for m in models if m not in self.runs]
        if unmatched:
            self.notes.append(f"the findings name models with no run folder on this page: {', '.join(unmatched)}")
        said = (self.findings or {}).get("warnings")  # e.g. a generator trained on another Dataset than --real
        warned = "".join(f"<p class='warning'>{esc(w)}</p>" for w in (said if isinstance(said, list) else []))
        return (f"<h1>{esc(self.name)}</h1>{warned}<p>Trained generators compared: {esc(names)}. The page opens with the "
                "four findings measured on each model, then the samples per epoch side by side, the image quality "
                "tracked during training, the loss curves, and what produced it.</p>"
                + (f"<ul class='note'>{notes}</ul>" if notes else ""))

    def grids(self) -> str:
        head = "<h2>Samples per epoch, side by side</h2>"
        per = {name: self.grid_files(name) for name in self.runs}
        epochs = sorted(set().union(*per.values())) if per else []
        if not epochs:
            return head + "<p class='note'>No run saved a sample grid.</p>"
        rows = []
        for e in epochs:
            cells = []
            for name in self.runs:
                source = per[name].get(e)
                trained = self.epochs_trained(name)
                if source is None:
                    why = (f"not trained this far ({num(trained, 'count')} epochs)" if trained is not None
                           and e > trained else "no grid saved at this epoch")
                    cells.append(f"<td class='missing'>{esc(name)}: {why}</td>")
                    continue
                target = self._copy(name, source, f"grid-{self.run_files[name]}-epoch-{e:03d}.png")
                if target is None:
                    cells.append(f"<td class='missing'>{esc(name)}: grid not shown (it points outside the run's "
                                 "folder)</td>")
                else:
                    cells.append(f"<td><figure>{self.img(target, f'{name} epoch {e}', 'image-rendering:pixelated')}"
                                 "</figure></td>")
            rows.append(f"<tr><th>{num(e, 'count')}</th>{''.join(cells)}</tr>")
        cols = "<col style='width:4.5em'>" + "".join("<col>" for _ in self.runs)
        heads = "<tr><th>epoch</th>" + "".join(f"<th class='l'>{esc(n)}</th>" for n in self.runs) + "</tr>"
        return (head + "<p class='note'>Each model's grid after the epoch on the left, from the same fixed noise "
                "throughout its training. A cell marked in red has no grid: the model saved none at that epoch.</p>"
                f"<table class='side'><colgroup>{cols}</colgroup>{heads}{''.join(rows)}</table>")

    def curves(self) -> str:
        head = "<h2>Image quality during training</h2>"
        series, failed, without, labels = {}, [], [], {}
        for name in self.runs:
            rows = self.rows.get(name)
            if rows is None:
                continue
            evals = [r for r in rows if r.get("kind") == "eval"]
            failed += [f"{name}, epoch {fmt(r.get('epoch'), 'count')}: {' '.join(str(r['error']).split())[:300]}"
                       for r in evals if "error" in r]
            good = [r for r in evals if "error" not in r]
            if not good:
                without.append((name, bool(evals)))
                continue
            series[name] = pd.DataFrame(good)
            for r in good:
                label = str(r.get("features_label") or r.get("features") or "unnamed features")
                labels.setdefault(label, []).append(name)
        parts = [head]
        features = "; ".join(labels) or "—"
        if len(labels) > 1:
            parts.append("<p class='warning'>The runs were evaluated on different features: "
                         + esc("; ".join(f"{k} ({', '.join(dict.fromkeys(v))})" for k, v in labels.items()))
                         + ". Their numbers are not comparable across models.</p>")
        if series:
            parts.append(f"<p>Features: <b>{esc(features)}</b>. Every evaluation draws {esc(_counts(series, 'samples'))} "
                         f"samples from fixed seeds and scores them against {esc(_counts(series, 'real_images'))} "
                         f"{_against(series)}; "
                         "the dashed line is the real-vs-real floor (two disjoint halves of those real images), one "
                         "line when every run has the same floor. Training time counts training alone (evaluation, "
                         "grids and checkpoints excluded), so the models' costs can be read off the x axis.</p>")
            points = []
            figs = []
            for metric, x, file, caption in (
                    ("fid", "epoch", "quality-fid-epoch.png", "FID against epoch"),
                    ("fid", "train_s", "quality-fid-time.png", "FID against training time")):
                path, drawn = compare_figures.metric_against(series, metric, x, self.target(file), features=features,
                                                             style=self.style)
                points += drawn
                if path is not None:
                    figs.append(f"<figure>{self.img(path, caption)}<figcaption>{esc(caption)}</figcaption></figure>")
            path, drawn = compare_figures.panels(series, self.target("quality-kid-precision-recall.png"),
                                                 features=features, style=self.style)
            points += drawn
            parts.append(f"<div class='grids'>{''.join(figs)}</div>")
            if path is not None:
                parts.append(f"<figure>{self.img(path, 'KID, precision and recall against epoch')}<figcaption>KID, "
                             "precision and recall against epoch</figcaption></figure>")
            parts.append(self._last_evaluations(series))
            data = self._write_points(points)
            parts.append(f"<p class='note'>The plotted values: <a href='{esc(self.rel(data))}'>{esc(data.name)}</a> "
                         "(one row per point drawn; floors have no x).</p>")
        else:
            parts.append("<p class='note'>No run evaluated itself during training.</p>")
        for name, tried in without:
            why = ("every evaluation during its training failed (listed below)" if tried else
                   "it was trained without <code>eval.every</code> (its metrics.jsonl has no evaluation)")
            parts.append(f"<p class='note'>{esc(name)}: no quality curve: {why}.</p>")
        if failed:
            items = "".join(f"<li>{esc(f)}</li>" for f in failed)
            parts.append(f"<div class='warning'>Evaluations that failed, left out of the curves:<ul>{items}</ul></div>")
        return "\n".join(parts)

    @staticmethod
    def _last_evaluations(series: dict[str, pd.DataFrame]) -> str:
        """Each model's last evaluation during training, in numbers (the curves' end points)."""
        cols = [("epoch", "epoch", "count"), ("train_s", "training s", "value"), ("fid", "FID", "value"),
                ("kid", "KID", "value"), ("precision", "precision", "value"), ("recall", "recall", "value"),
                ("fid_real_floor", "FID floor", "value"), ("samples", "samples", "count")]
        head = "<tr><th class='l'>model</th>" + "".join(f"<th>{esc(label)}</th>" for _, label, _ in cols) + "</tr>"
        rows = []
        for name, frame in series.items():
            last = frame.iloc[-1]
            rows.append(f"<tr><th class='l'>{esc(name)}</th>"
                        + "".join(f"<td>{num(_number(last.get(c)), kind)}</td>" for c, _, kind in cols) + "</tr>")
        return f"<p class='note'>The last evaluation of each run during training:</p><table>{head}{''.join(rows)}</table>"

    def _write_points(self, points: list[dict]) -> Path:
        target = self.target("quality-curves.csv")
        with open(target, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["panel", "line", "model", "x", "y"])
            writer.writeheader()
            writer.writerows(points)
        return target

    def losses(self) -> str:
        cells, any_plot = [], False
        for name, (run, _) in self.runs.items():
            figs = []
            for plot in sorted((run / "plots").glob("*.png")):
                target = self._copy(name, plot, f"loss-{self.run_files[name]}-{safe_name(plot.stem, fallback='plot')}.png")
                if target is not None:
                    caption = f"{name}: {plot.stem.replace('_', ' ')}"
                    figs.append(f"<figure>{self.img(target, caption)}<figcaption>{esc(caption)}</figcaption></figure>")
            any_plot = any_plot or bool(figs)
            cells.append(f"<td>{''.join(figs)}</td>" if figs else f"<td class='missing'>{esc(name)}: no loss plot</td>")
        if not any_plot:
            return "<h2>Loss curves</h2><p class='note'>No run saved a loss plot.</p>"
        heads = "".join(f"<th class='l'>{esc(n)}</th>" for n in self.runs)
        return ("<h2>Loss curves</h2><p class='note'>Each run's training losses (per iteration and per epoch), as the "
                f"run drew them.</p><table class='side'><tr>{heads}</tr><tr>{''.join(cells)}</tr></table>")

    def provenance(self) -> str:
        durations = {}
        for name in self.runs:
            seconds, key = self.training_seconds(name)
            how = {"train_s": "train_s: training alone",
                   "elapsed_s": "elapsed_s: an older run without train_s, evaluation and grids included"}.get(
                       key, "no epoch row in metrics.jsonl")
            durations[f"training {name}"] = f"{fmt(seconds)} s ({how})"
        for stage, seconds in self.stage_seconds.items():
            durations[f"stage: {stage}"] = f"{fmt(seconds)} s"
        versions, machine = versions_and_machine()
        folders = {name: str(run) for name, (run, _) in self.runs.items()}
        # What each generator learnt from (a latent model: its autoencoder's data as well); read only
        # where its run.json and synthworth.json lie inside the run, as every other file here.
        seen = {}
        for name, (run, _) in self.runs.items():
            present = [f for f in (run / "run.json", model_config_file(run / "model"), model_config_file(run))
                       if f.exists() or f.is_symlink()]
            seen[name] = (prov.describe(of_run(run)) if all(self._run_file(name, f) for f in present)
                          else "not read (a file of the run points outside its folder)")
        rows = table_rows
        configs = self.run_configs()
        found = (fold("The findings as computed (findings.json)",
                      f"<pre>{esc(json.dumps(_nulls(self.findings), indent=1, default=str)[:MAX_TEXT])}</pre>")
                 if self.findings else "")
        return ("<h2>What produced this</h2>"
                f"<p class='note'>Page written {esc(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p>"
                f"<h3>Durations</h3><table>{rows(durations)}</table><h3>Run folders</h3><table>{rows(folders)}</table>"
                f"<h3>Real data each generator saw</h3><table>{rows(seen)}</table>"
                "<p class='note'>The configs, the findings and the versions are folded away below: click to open.</p>"
                + configs + found
                + fold("Versions and machine", f"<table>{rows(versions)}</table><table>{rows(machine)}</table>"))


def _counts(series: dict[str, pd.DataFrame], column: str) -> str:
    """The distinct whole numbers of ``column`` over every run's eval rows ("64", "64, 128" or "—")."""
    values = {int(v) for frame in series.values() if column in frame.columns
              for v in pd.to_numeric(frame[column], errors="coerce").dropna()}
    return ", ".join(fmt(v, "count") for v in sorted(values)) or "—"


def _against(series: dict[str, pd.DataFrame]) -> str:
    """Which real images the evaluations scored against: held-out ones, or (eval.real_split set to
    the training split) the training images themselves, which a memorising model matches best."""
    from synthworth.metrics.tracking import HELD_OUT

    splits = sorted({str(v) for frame in series.values() if "real_split" in frame.columns
                     for v in frame["real_split"].dropna()})
    other = [s for s in splits if s not in HELD_OUT]
    if not other:
        return "held-out real images"
    return (f"real images of the {', '.join(repr(s) for s in splits)} split(s) ({', '.join(repr(s) for s in other)}"
            " not a held-out split: where a model trained on those images, one that memorises them scores best)")


def _d(value) -> dict:
    return value if isinstance(value, dict) else {}


def _nulls(value):
    """``value`` with every NaN or infinite number written as null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
