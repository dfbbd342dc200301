"""``synthbench report``: one offline HTML page from a study's results folder.

The report never trains or samples anything. It reads the study's tables (``results``,
``summary``, ``comparisons``, ``metrics``), ``grid.json`` (how much of the planned grid they
cover), ``study.yaml`` and ``inputs.json``, all checked by :mod:`synthbench.report.load`.
Everything in that folder is untrusted: every value printed is escaped, every name drawn in a
figure is made literal, and a path stored in it (a Dataset, a run folder) is followed only when
it resolves inside the results folder. Run folders (per-epoch sample grids, loss curves,
configs) and Datasets (sample grids) elsewhere are shown when named explicitly
(``--run NAME=PATH``, ``--dataset NAME=PATH``). Figures are PNG files in the page's own
figures folder (:mod:`synthbench.report.output`: nothing the report did not write is replaced);
no JavaScript, fonts or anything else from the network.
"""

from __future__ import annotations

import html
import json
import os
import platform
import shutil
import time
import urllib.parse
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from synthbench.report import answer, completeness, figures, output
from synthbench.report.load import Results, ResultsError, inside, load
from synthbench.safety import safe_names

SOURCE_ROWS = ["real", "artificial", "mixed", "subset_real"]
LIBRARIES = ["torch", "torchvision", "diffusers", "accelerate", "transformers", "numpy", "pandas",
             "scikit-learn", "torchmetrics", "torch-fidelity", "matplotlib", "pillow"]
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.note{color:#555;font-size:.9em}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}img{max-width:100%;border:1px solid #eee}.grids{display:flex;gap:1em;flex-wrap:wrap}
.grids figure{flex:1 1 300px}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
.warning{border:2px solid #b00020;background:#fff4f4;padding:.6em 1em;margin:1em 0}
.complete{border:1px solid #2e7d32;background:#f3faf3;padding:.4em 1em;margin:1em 0}
.scope{color:#b00020;font-weight:bold}
"""
MAX_TEXT = 200_000  # bytes of a run's config shown at most


def build_report(results: str | os.PathLike, out: str | os.PathLike | None = None,
                 runs: dict[str, str | os.PathLike] | None = None,
                 datasets: dict[str, str | os.PathLike] | None = None) -> Path:
    """Write the HTML report of a study results folder; returns the path of the page.

    ``runs`` and ``datasets`` name run folders and Datasets to show wherever they are (the
    caller vouches for them); those named inside the results folder are shown only when they
    lie inside it."""
    data = load(results)
    page = Path(out) if out else data.path / "report" / "index.html"
    explicit_runs = _explicit_folders(runs, "--run")
    explicit_data = _explicit_folders(datasets, "--dataset")
    grid = completeness.read(data.path, data.tables["results"])
    try:
        with output.figures_folder(page) as figdir:
            parts = Report(data, page, figdir, grid, explicit_runs, explicit_data)
            return _write_page(page, parts)
    except OSError as exc:  # a read-only or full disk, a parent that is a file
        raise ResultsError(f"the report could not be written at {page}: {exc}") from None


def build_runs_report(runs: dict[str, str | os.PathLike], page: str | os.PathLike, *, title: str,
                      stage_seconds: dict[str, float] | None = None) -> Path:
    """A report of trained generators alone (no study): sample grids per epoch side by side,
    loss curves, configs and provenance."""
    page = Path(page)
    explicit = _explicit_folders(runs, "run")
    empty = {name: pd.DataFrame() for name in ("results", "summary", "comparisons", "metrics")}
    data = Results(page.parent, empty, {"spec": {"name": title}}, stage_seconds=dict(stage_seconds or {}))
    try:
        with output.figures_folder(page) as figdir:
            parts = Report(data, page, figdir, None, explicit, {})
            return _write_page(page, parts)
    except OSError as exc:
        raise ResultsError(f"the report could not be written at {page}: {exc}") from None


def _explicit_folders(named: dict[str, str | os.PathLike] | None, flag: str) -> dict[str, Path]:
    out = {}
    for name, path in (named or {}).items():
        if not Path(path).is_dir():
            raise ResultsError(f"{flag} {name}={path}: no such folder")
        out[str(name)] = Path(path)
    return out


def _write_page(page: Path, parts: Report) -> Path:
    body = parts.render()
    title = esc(f"synthbench report: {parts.name}")
    text = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>{output.head_html()}"
            f"<title>{title}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
    return output.write_page(page, text)


def esc(value: Any) -> str:
    """Every value printed goes through here: names, paths and numbers read back from CSV alike."""
    return html.escape(str(value), quote=True)


def plain(value: Any, fmt: str = ".3f") -> str:
    """A number formatted (not escaped); "—" when missing, the value as text when not a number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value) if value is not None else "—"
    return format(value, fmt) if np.isfinite(value) else "—"


def num(value: Any, fmt: str = ".3f") -> str:
    """A number formatted and escaped, for the page."""
    return esc(plain(value, fmt))


class Report:
    """Assembles the sections; each returns HTML (an empty string when it has nothing to show)."""

    def __init__(self, data: Results, page: Path, figdir: Path, grid: completeness.Completeness | None,
                 runs: dict[str, Path], datasets: dict[str, Path]):
        self.results, self.page, self.figdir, self.grid = data.path, page, figdir, grid
        self.t = data.tables
        self.spec = data.study.get("spec", {})
        self.classifier = data.study.get("classifier", {})
        self.inputs = data.inputs
        self.stage_seconds = data.stage_seconds
        self.name = str(self.spec.get("name") or data.path.name)
        self.class_names = self.inputs.get("real", {}).get("classes", [])
        self.notes: list[str] = []  # what the report left out, and why
        # Run folders: those named explicitly may be anywhere (files inside them are read);
        # those listed in runs.json only when they lie inside the results folder.
        self.runs: dict[str, tuple[Path, Path]] = {}
        for name, path in data.runs.items():
            if name in runs:
                continue
            found = inside(path, self.results)
            if found is None or not found.is_dir():
                self.notes.append(f"run {name}: its folder {path} (named in runs.json) is not read, as it lies "
                                  f"outside the results folder or is missing; pass --run {name}=PATH to show it")
            else:
                self.runs[name] = (found, self.results)
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
        s = self.t["summary"]
        if s.empty:
            return None
        simple = s[s["composition"].isin(SOURCE_ROWS)]
        if simple.empty:
            return int(s["size"].min())
        counts = simple.groupby("size").size()
        return int(counts[counts == counts.max()].index.min())

    # ---------------------------------------------------------------- sections
    def render(self) -> str:
        sections = [self.header(), answer.section(self), self.source_tables(), self.source_figures(), self.beyond(),
                    self.quality(), self.generators(), self.datasets_section(), self.left_out(), self.provenance()]
        return "\n".join(s for s in sections if s)

    def header(self) -> str:
        r = self.t["results"]
        if r.empty:
            return (f"<h1>{esc(self.name)}</h1><p>Trained generators side by side: {esc(', '.join(self.runs))}. "
                    "No classifier study in this report.</p>")
        seeds = sorted(int(s) for s in r["seed"].unique())
        real = self.inputs.get("real", {})
        test = real.get("test", {})
        test_images = test.get("images", "?") if isinstance(test, dict) else "?"
        banner = completeness.banner(self.grid, esc) if self.grid is not None else ""
        return (f"<h1>{esc(self.name)}: can generated images stand in for real ones?</h1>{banner}"
                f"<p>Classifiers trained on real, artificial (generated), mixed and subset-of-real images and "
                f"tested on <b>real</b> test images ({esc(test_images)} of them, "
                f"{esc(real.get('shape', ''))}, classes: {esc(', '.join(self.class_names))}). "
                f"{esc(len(r))} trained classifiers, seeds {esc(', '.join(map(str, seeds)))}. Every figure is a "
                f"mean over seeds with a 95 % confidence interval (Student t), so differences can be told from noise.</p>")

    def table_scope(self) -> str:
        return f" <span class='scope'>[{esc(self.scope)}]</span>" if self.scope else ""

    def source_tables(self) -> str:
        s = self.t["summary"]
        simple = s[s["composition"].isin(SOURCE_ROWS)] if len(s) else s
        if simple.empty:
            return ""
        gens = sorted(g for g in simple["generator"].unique() if g)
        out = ["<h2>The source study's table</h2>",
               "<p class='note'>Rows: training-set composition; columns: the generator of the synthetic images. "
               "Cells: accuracy on real test images, mean ± half-width of the 95 % CI (number of seeds). "
               "<i>real</i> and <i>subset_real</i> use no generated image and are the same in every column. "
               "<i>subset_real</i> is the real half of <i>mixed</i>.</p>"]
        for size in self.sizes:
            part = simple[simple["size"] == size]
            if part.empty:
                continue
            head = "".join(f"<th>{esc(g)}</th>" for g in gens) or "<th>accuracy</th>"
            rows = []
            for comp in SOURCE_ROWS:
                cells = []
                for g in gens or [""]:
                    gen = "" if comp in ("real", "subset_real") else g
                    hit = part[(part["composition"] == comp) & (part["generator"] == gen)]
                    cells.append(f"<td>{self._cell(hit.iloc[0]) if len(hit) else '—'}</td>")
                if any(c != "<td>—</td>" for c in cells):
                    rows.append(f"<tr><th class='l'>{esc(comp)}</th>{''.join(cells)}</tr>")
            sub = "" if len(self.sizes) == 1 else f" — training size {size}"
            mark = " (headline)" if size == self.headline and len(self.sizes) > 1 else ""
            out.append(f"<h3>{esc(self.name)}{esc(sub)}{esc(mark)}{self.table_scope()}</h3><table><tr>"
                       f"<th class='l'>composition</th>{head}</tr>" + "".join(rows) + "</table>")
        return "\n".join(out)

    @staticmethod
    def _cell(row) -> str:
        low, high = row["accuracy_ci_low"], row["accuracy_ci_high"]
        half = (high - low) / 2 if pd.notna(high) and pd.notna(low) else float("nan")
        pm = f" ± {num(half)}" if np.isfinite(half) else ""
        return f"{num(row['accuracy_mean'])}{pm} <span class='note'>({num(row['n_seeds'], '.0f')})</span>"

    def source_figures(self) -> str:
        s, size = self.t["summary"], self.headline
        if s.empty or size is None:
            return ""
        pairs = [(["real", "artificial"], "Real vs artificial", "real_vs_artificial.png"),
                 (["real", "mixed"], "Real vs mixed", "real_vs_mixed.png"),
                 (["mixed", "subset_real"], "Mixed vs subset of real", "mixed_vs_subset_real.png"),
                 (["artificial", "mixed"], "The generators compared", "generators_compared.png")]
        html_parts = ["<h2>The source study's figures</h2><div class='grids'>"]
        for comps, title, name in pairs:
            path = figures.bars(s, comps, size, self.target(name), title=title, scope=self.scope)
            html_parts.append(self.figure(path, f"{title}: accuracy on real test images at training size {size}."))
        return "\n".join(html_parts) + "</div>"

    def beyond(self) -> str:
        s, r, c = self.t["summary"], self.t["results"], self.t["comparisons"]
        if s.empty:
            return ""
        scope = self.scope
        parts = ["<h2>Beyond the source study</h2>"]
        parts.append(self.figure(figures.size_curves(s, self.target("size_sweep.png"), scope=scope),
                                 "Accuracy against the training-set size: where the lines meet, synthetic data no longer helps."))
        parts.append(self.figure(figures.ratio_curves(s, self.target("ratio_sweep.png"), scope=scope),
                                 "Accuracy against the synthetic share of a fixed-size training set."))
        if len(c):
            parts.append(self.figure(figures.paired_differences(c, self.target("paired_differences.png"), scope=scope),
                                     "Paired differences between compositions on the same seeds (95 % CI)."))
            parts.append(f"<h3>Paired comparisons{self.table_scope()}</h3>" + self._comparison_table(c))
        if self.headline is not None and len(r):
            path = figures.per_class(r, self.class_names, self.headline, self.target("per_class.png"), scope=scope)
            if path is None and self.class_names and "per_class_accuracy" in r.columns:
                self.notes.append("the per-class figure: results.csv's per_class_accuracy lists do not match the "
                                  f"{len(self.class_names)} classes of inputs.json")
            parts.append(self.figure(path, f"Per-class accuracy at training size {self.headline}."))
        return "\n".join(p for p in parts if p)

    @staticmethod
    def _comparison_table(c: pd.DataFrame) -> str:
        head = ("<tr><th class='l'>A</th><th class='l'>B</th><th>size</th><th>seeds</th><th>mean A</th>"
                "<th>mean B</th><th>A − B</th><th>95 % CI</th><th>p</th></tr>")
        rows = []
        for r in c.itertuples():
            a = r.composition_a + (f" ({r.generator_a})" if r.generator_a else "")
            b = r.composition_b + (f" ({r.generator_b})" if r.generator_b else "")
            ci = f"[{num(r.ci_low, '+.3f')}, {num(r.ci_high, '+.3f')}]" if pd.notna(r.ci_low) else "—"
            rows.append(f"<tr><td class='l'>{esc(a)}</td><td class='l'>{esc(b)}</td><td>{num(r.size, '.0f')}</td>"
                        f"<td>{num(r.n, '.0f')}</td><td>{num(r.mean_a)}</td><td>{num(r.mean_b)}</td>"
                        f"<td>{num(r.diff, '+.3f')}</td><td>{ci}</td><td>{num(r.p_value, '.3g')}</td></tr>")
        return "<table>" + head + "".join(rows) + "</table>"

    def quality(self) -> str:
        m = self.t["metrics"]
        missing = self.grid.metrics_missing if self.grid is not None else []
        if m.empty and not missing:
            return ""
        names = [n for n in ("fid", "kid", "precision", "recall", "density", "coverage") if n in m.columns]
        head = "".join(f"<th>{n}</th><th>{n} real floor</th>" for n in names)
        rows = []
        for r in m.to_dict("records"):
            cells = "".join(f"<td>{num(r.get(n), '.4g')}</td><td>{num(r.get(n + '_real_floor'), '.4g')}</td>"
                            for n in names)
            cas = f"{num(r.get('cas'), '.4g')} @ {num(r.get('cas_size'), '.0f')}" if pd.notna(r.get("cas")) else "—"
            rows.append(f"<tr><th class='l'>{esc(r['generator'])}</th>{cells}<td>{cas}</td></tr>")
        label = esc(m.iloc[0].get("features_label", m.iloc[0].get("features", ""))) if len(m) else "—"
        gap = (f"<p class='warning'>Image-quality metrics missing for: {esc(', '.join(missing))} (the study did not "
               "finish them).</p>" if missing else "")
        return ("<h2>Image quality per generator</h2>" + gap +
                f"<p class='note'>Features: {label}. The real floor is the same metric between two disjoint halves "
                "of the real images: a generated set cannot be expected to beat it. CAS = classification accuracy "
                "score (train on generated, test on real) = the <i>artificial</i> composition above.</p>"
                f"<table><tr><th class='l'>generator</th>{head}<th>CAS</th></tr>{''.join(rows)}</table>")

    def generators(self) -> str:
        if not self.runs:
            return ""
        parts = ["<h2>Trained generators: samples per epoch and loss curves</h2>",
                 "<p class='note'>As in the source project: the same fixed noise after chosen epochs, and the "
                 "training losses per iteration and per epoch.</p>"]
        per_epoch: dict[str, dict[int, Path]] = {}
        for name, (run, _) in self.runs.items():
            grids = sorted((run / "samples").glob("grid-epoch-*.png")) or sorted((run / "samples").glob("epoch-*.png"))
            per_epoch[name] = {int(p.stem.split("-")[-1]): p for p in grids if p.stem.split("-")[-1].isdigit()}
        epochs = sorted({e for d in per_epoch.values() for e in d})
        if epochs:
            head = "".join(f"<th>{esc(n)}</th>" for n in per_epoch)
            rows = []
            for e in epochs:
                cells = []
                for name, d in per_epoch.items():
                    target = self._copy(name, d[e], f"run-{self.run_files[name]}-epoch-{e:03d}.png") if e in d else None
                    cells.append(f"<td>{self.img(target, f'{name} epoch {e}', 'max-width:320px')}</td>"
                                 if target else "<td>—</td>")
                rows.append(f"<tr><th>epoch {e}</th>{''.join(cells)}</tr>")
            parts.append(f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>")
        for name, (run, _) in self.runs.items():
            imgs = []
            for plot in sorted((run / "plots").glob("*.png")):
                target = self._copy(name, plot, f"run-{self.run_files[name]}-{plot.name}")
                if target:
                    imgs.append(f"<figure>{self.img(target, f'{name} {plot.stem}')}"
                                f"<figcaption>{esc(name)}: {esc(plot.stem.replace('_', ' '))}</figcaption></figure>")
            seconds = self._run_seconds(name)
            note = f"<p class='note'>{esc(name)}: run folder {esc(run)}"
            note += f", {num(seconds, '.0f')} s of training" if seconds else ""
            note += "</p>"
            if imgs or (run / "log.txt").is_file():
                parts.append(f"<h3>{esc(name)}</h3>{note}<div class='grids'>{''.join(imgs)}</div>")
        return "\n".join(parts)

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

    def datasets_section(self) -> str:
        """Sample grids of the study's Datasets: those named with --dataset, and those inputs.json
        names that lie inside the results folder; any other is named in a note, never opened."""
        synthetic = self.inputs.get("synthetic", {})
        real = self.inputs.get("real", {})
        known = {"real": real, **synthetic} if real or synthetic else {}
        chosen: dict[str, tuple[Path, str | None]] = {}
        for name, info in known.items():
            stored = info.get("path")
            if name in self.datasets:
                continue
            found = inside(stored, self.results) if stored else None
            if found is None or not found.is_dir():
                if stored:
                    self.notes.append(f"Dataset {name}: {stored} (named in inputs.json) is not read, as it lies "
                                      f"outside the results folder or is missing; pass --dataset {name}=PATH to show it")
                continue
            chosen[name] = (found, info.get("fingerprint"))
        for name, path in self.datasets.items():
            info = known.get(name, {})
            chosen[name] = (path, info.get("fingerprint"))
        if not chosen:
            return ""
        from synthbench.data.dataset import Dataset
        from synthbench.engine.plots import save_grid

        parts = ["<h2>Sample grids of the Datasets</h2><p class='note'>One row per class, the first images of each.</p>",
                 "<div class='grids'>"]
        for (name, (path, fingerprint)), file_name in zip(chosen.items(), safe_names(chosen, fallback="dataset")):
            try:
                ds = Dataset.open(path)
                picks = _per_class_rows(ds, per_class=10)
                if not len(picks):
                    continue
                target = save_grid(ds.take(picks), self.target(f"dataset-{file_name}.png"), nrow=min(10, len(picks)),
                                   scale=max(1, 48 // ds.resolution))
            except Exception as exc:  # a moved, damaged or foreign Dataset only loses its picture
                self.notes.append(f"Dataset {name}: {path} could not be shown ({' '.join(str(exc).split())[:160]})")
                continue
            differs = (f" — not the Dataset the study used (fingerprint {ds.fingerprint}, the study's {fingerprint})"
                       if fingerprint and ds.fingerprint != fingerprint else "")
            parts.append(f"<figure>{self.img(target, f'{name} samples')}"
                         f"<figcaption>{esc(name)}: {esc(path)} ({esc(len(ds))} images){esc(differs)}</figcaption></figure>")
        parts.append("</div>")
        return "\n".join(parts)

    def left_out(self) -> str:
        if not self.notes:
            return ""
        items = "".join(f"<li>{esc(n)}</li>" for n in dict.fromkeys(self.notes))
        return f"<h2>Left out of this report</h2><ul class='note'>{items}</ul>"

    def provenance(self) -> str:
        r = self.t["results"]
        versions = {}
        for lib in ["synthbench"] + LIBRARIES:
            try:
                versions[lib] = metadata.version(lib)
            except metadata.PackageNotFoundError:
                continue
        machine = {"python": platform.python_version(), "platform": platform.platform(),
                   "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
        durations = {}
        if len(r):
            for col, label in (("train_seconds", "classifier training (sum over cells)"),
                               ("eval_seconds", "evaluation (sum over cells)")):
                if col in r.columns:
                    durations[label] = f"{plain(r[col].sum(), '.1f')} s"
            if "device" in r.columns:
                durations["devices"] = ", ".join(sorted(map(str, r["device"].unique())))
        for name in self.runs:
            seconds = self._run_seconds(name)
            if seconds:
                durations[f"training {name}"] = f"{plain(seconds, '.1f')} s"
        for stage, seconds in self.stage_seconds.items():
            durations[f"demo stage: {stage}"] = f"{plain(seconds, '.1f')} s"
        rows = lambda d: "".join(f"<tr><th class='l'>{esc(k)}</th><td class='l'>{esc(v)}</td></tr>" for k, v in d.items())
        spec_text = yaml.safe_dump({"spec": self.spec, "classifier": self.classifier}, sort_keys=False)
        run_configs = ""
        for name, (run, _) in self.runs.items():
            cfg = self._run_file(name, run / "config.yaml")
            if cfg is not None:
                text = cfg.read_bytes()[:MAX_TEXT].decode("utf-8", errors="replace")
                run_configs += f"<h3>{esc(name)} config</h3><pre>{esc(text)}</pre>"
        source = ("Every number above comes from results.csv / summary.csv / comparisons.csv / metrics.csv in "
                  "that folder." if len(r) else "")
        inputs = f"<h3>Inputs</h3><pre>{esc(json.dumps(self.inputs, indent=1))}</pre>" if self.inputs else ""
        spec = (f"<h3>Study spec and classifier</h3><pre>{esc(spec_text)}</pre>" if self.classifier else "")
        return ("<h2>What produced this</h2>"
                f"<p class='note'>Report written {esc(time.strftime('%Y-%m-%d %H:%M:%S'))} from {esc(self.results)}. "
                f"{esc(source)}</p>"
                f"<h3>Durations</h3><table>{rows(durations)}</table>"
                f"<h3>Versions</h3><table>{rows(versions)}</table>"
                f"<h3>Machine</h3><table>{rows(machine)}</table>"
                f"{inputs}{spec}{run_configs}")


def _per_class_rows(ds, per_class: int) -> np.ndarray:
    if not ds.labelled:
        return np.arange(min(len(ds), per_class * 4))
    picks = [np.flatnonzero(ds.labels == c)[:per_class] for c in range(ds.num_classes)]
    return np.concatenate(picks) if picks else np.array([], dtype=np.int64)
