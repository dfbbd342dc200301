"""``synthbench report``: one offline HTML page from a study's results folder.

The report never trains or samples anything. It reads the study's tables (``results``,
``summary``, ``comparisons``, ``metrics``), its ``study.yaml`` and ``inputs.json``, the
synthetic Datasets they name (for sample grids) and, for trained generators, their run folders
(``runs.json`` in the results folder, written by ``synthbench demo``, or ``--run NAME=PATH``):
their per-epoch sample grids, loss curves and configs. Figures are PNG files beside the page;
no JavaScript, fonts or anything else from the network.
"""

from __future__ import annotations

import html
import json
import os
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from synthbench.errors import SynthbenchError
from synthbench.report import figures

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
"""


def build_report(results: str | os.PathLike, out: str | os.PathLike | None = None,
                 runs: dict[str, str] | None = None) -> Path:
    """Write the HTML report of a study results folder; returns the path of the page."""
    results = Path(results)
    if not (results / "results.csv").is_file():
        raise SynthbenchError(f"{results} is not a study results folder (no results.csv); run "
                              "'synthbench study run SPEC.yaml' first")
    page = Path(out) if out else results / "report" / "index.html"
    figdir = page.parent / "figures"
    if figdir.exists():
        shutil.rmtree(figdir)
    figdir.mkdir(parents=True)
    tables = {name: _read(results / f"{name}.csv") for name in ("results", "summary", "comparisons", "metrics")}
    study = yaml.safe_load((results / "study.yaml").read_text()) if (results / "study.yaml").is_file() else {}
    inputs = json.loads((results / "inputs.json").read_text()) if (results / "inputs.json").is_file() else {}
    runs = {**_saved_runs(results), **(runs or {})}
    parts = Report(results, page, figdir, tables, study, inputs, runs)
    demo = results / "demo.json"
    if demo.is_file():
        parts.stage_seconds = json.loads(demo.read_text()).get("stage_seconds", {})
    return _write_page(page, parts)


def build_runs_report(runs: dict[str, str | os.PathLike], page: str | os.PathLike, *, title: str,
                      stage_seconds: dict[str, float] | None = None) -> Path:
    """A report of trained generators alone (no study): sample grids per epoch side by side,
    loss curves, configs and provenance."""
    page = Path(page)
    figdir = page.parent / "figures"
    if figdir.exists():
        shutil.rmtree(figdir)
    figdir.mkdir(parents=True)
    empty = {name: pd.DataFrame() for name in ("results", "summary", "comparisons", "metrics")}
    parts = Report(page.parent, page, figdir, empty, {"spec": {"name": title}}, {},
                   {k: str(v) for k, v in runs.items()})
    parts.stage_seconds = dict(stage_seconds or {})
    return _write_page(page, parts)


def _write_page(page: Path, parts: Report) -> Path:
    body = parts.render()
    title = html.escape(f"synthbench report: {parts.name}")
    text = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
    tmp = page.with_name(page.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, page)
    return page


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    for col in ("generator", "generator_a", "generator_b"):
        if col in df.columns:
            df[col] = df[col].fillna("")
    return df


def _saved_runs(results: Path) -> dict[str, str]:
    file = results / "runs.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def esc(value: Any) -> str:
    return html.escape(str(value))


class Report:
    """Assembles the sections; each returns HTML (an empty string when it has nothing to show)."""

    def __init__(self, results: Path, page: Path, figdir: Path, tables: dict[str, pd.DataFrame],
                 study: dict[str, Any], inputs: dict[str, Any], runs: dict[str, str]):
        self.results, self.page, self.figdir = results, page, figdir
        self.t = tables
        self.spec = study.get("spec", {})
        self.classifier = study.get("classifier", {})
        self.inputs = inputs
        self.runs = runs
        self.stage_seconds: dict[str, float] = {}
        self.name = self.spec.get("name", results.name)
        self.class_names = inputs.get("real", {}).get("classes", [])
        summary = self.t["summary"]
        self.sizes = sorted(int(s) for s in summary["size"].dropna().unique()) if len(summary) else []
        self.headline = self._headline_size()

    # ---------------------------------------------------------------- helpers
    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.page.parent).replace(os.sep, "/")

    def figure(self, path: Path | None, caption: str) -> str:
        if path is None:
            return ""
        return f"<figure><img src='{esc(self.rel(path))}' alt='{esc(caption)}'><figcaption>{esc(caption)}</figcaption></figure>"

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
        sections = [self.header(), self.source_tables(), self.source_figures(), self.beyond(),
                    self.quality(), self.generators(), self.datasets(), self.provenance()]
        return "\n".join(s for s in sections if s)

    def header(self) -> str:
        r = self.t["results"]
        if r.empty:
            return (f"<h1>{esc(self.name)}</h1><p>Trained generators side by side: {esc(', '.join(self.runs))}. "
                    "No classifier study in this report.</p>")
        seeds = sorted(r["seed"].unique().tolist()) if len(r) else []
        real = self.inputs.get("real", {})
        return (f"<h1>{esc(self.name)}: can generated images stand in for real ones?</h1>"
                f"<p>Classifiers trained on real, artificial (generated), mixed and subset-of-real images and "
                f"tested on <b>real</b> test images ({esc(real.get('test', {}).get('images', '?'))} of them, "
                f"{esc(real.get('shape', ''))}, classes: {esc(', '.join(self.class_names))}). "
                f"{len(r)} trained classifiers, seeds {esc(seeds)}. Every figure is a mean over seeds with a "
                f"95 % confidence interval (Student t), so differences can be told from noise.</p>")

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
            head = "".join(f"<th>{esc(g)}</th>" for g in gens)
            rows = []
            for comp in SOURCE_ROWS:
                cells = []
                for g in gens:
                    gen = "" if comp in ("real", "subset_real") else g
                    hit = part[(part["composition"] == comp) & (part["generator"] == gen)]
                    cells.append(f"<td>{self._cell(hit.iloc[0]) if len(hit) else '—'}</td>")
                if any(c != "<td>—</td>" for c in cells):
                    rows.append(f"<tr><th class='l'>{esc(comp)}</th>{''.join(cells)}</tr>")
            sub = "" if len(self.sizes) == 1 else f" — training size {size}"
            mark = " (headline)" if size == self.headline and len(self.sizes) > 1 else ""
            out.append(f"<h3>{esc(self.name)}{esc(sub)}{esc(mark)}</h3><table><tr><th class='l'>composition</th>{head}</tr>"
                       + "".join(rows) + "</table>")
        return "\n".join(out)

    @staticmethod
    def _cell(row) -> str:
        mean, low, high = row["accuracy_mean"], row["accuracy_ci_low"], row["accuracy_ci_high"]
        half = (high - low) / 2 if pd.notna(high) and pd.notna(low) else float("nan")
        pm = f" ± {half:.3f}" if np.isfinite(half) else ""
        return f"{mean:.3f}{pm} <span class='note'>({int(row['n_seeds'])})</span>"

    def source_figures(self) -> str:
        s, size = self.t["summary"], self.headline
        if s.empty or size is None:
            return ""
        f = self.figdir
        pairs = [(["real", "artificial"], "Real vs artificial", "real_vs_artificial.png"),
                 (["real", "mixed"], "Real vs mixed", "real_vs_mixed.png"),
                 (["mixed", "subset_real"], "Mixed vs subset of real", "mixed_vs_subset_real.png"),
                 (["artificial", "mixed"], "The generators compared", "generators_compared.png")]
        html_parts = ["<h2>The source study's figures</h2><div class='grids'>"]
        for comps, title, name in pairs:
            html_parts.append(self.figure(figures.bars(s, comps, size, f / name, title=title),
                                          f"{title}: accuracy on real test images at training size {size}."))
        return "\n".join(html_parts) + "</div>"

    def beyond(self) -> str:
        s, r, c = self.t["summary"], self.t["results"], self.t["comparisons"]
        if s.empty:
            return ""
        parts = ["<h2>Beyond the source study</h2>"]
        parts.append(self.figure(figures.size_curves(s, self.figdir / "size_sweep.png"),
                                 "Accuracy against the training-set size: where the lines meet, synthetic data no longer helps."))
        parts.append(self.figure(figures.ratio_curves(s, self.figdir / "ratio_sweep.png"),
                                 "Accuracy against the synthetic share of a fixed-size training set."))
        if len(c):
            parts.append(self.figure(figures.paired_differences(c, self.figdir / "paired_differences.png"),
                                     "Paired differences between compositions on the same seeds (95 % CI)."))
            parts.append("<h3>Paired comparisons</h3>" + self._comparison_table(c))
        if self.headline is not None and len(r):
            parts.append(self.figure(figures.per_class(r, self.class_names, self.headline, self.figdir / "per_class.png"),
                                     f"Per-class accuracy at training size {self.headline}."))
        return "\n".join(p for p in parts if p)

    @staticmethod
    def _comparison_table(c: pd.DataFrame) -> str:
        head = ("<tr><th class='l'>A</th><th class='l'>B</th><th>size</th><th>seeds</th><th>mean A</th>"
                "<th>mean B</th><th>A − B</th><th>95 % CI</th><th>p</th></tr>")
        rows = []
        for r in c.itertuples():
            a = r.composition_a + (f" ({r.generator_a})" if r.generator_a else "")
            b = r.composition_b + (f" ({r.generator_b})" if r.generator_b else "")
            ci = f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]" if pd.notna(r.ci_low) else "—"
            p = f"{r.p_value:.3g}" if pd.notna(r.p_value) else "—"
            rows.append(f"<tr><td class='l'>{esc(a)}</td><td class='l'>{esc(b)}</td><td>{r.size}</td><td>{r.n}</td>"
                        f"<td>{r.mean_a:.3f}</td><td>{r.mean_b:.3f}</td><td>{r.diff:+.3f}</td><td>{ci}</td><td>{p}</td></tr>")
        return "<table>" + head + "".join(rows) + "</table>"

    def quality(self) -> str:
        m = self.t["metrics"]
        if m.empty:
            return ""
        names = [n for n in ("fid", "kid", "precision", "recall", "density", "coverage") if n in m.columns]
        head = "".join(f"<th>{n}</th><th>{n} real floor</th>" for n in names)
        rows = []
        for r in m.to_dict("records"):
            cells = "".join(f"<td>{_num(r.get(n))}</td><td>{_num(r.get(n + '_real_floor'))}</td>" for n in names)
            cas = f"{_num(r.get('cas'))} @ {r.get('cas_size', '')}" if pd.notna(r.get("cas")) else "—"
            rows.append(f"<tr><th class='l'>{esc(r['generator'])}</th>{cells}<td>{cas}</td></tr>")
        label = esc(m.iloc[0].get("features_label", m.iloc[0].get("features", "")))
        return ("<h2>Image quality per generator</h2>"
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
        for name, run in self.runs.items():
            run = Path(run)
            grids = sorted((run / "samples").glob("grid-epoch-*.png")) or sorted((run / "samples").glob("epoch-*.png"))
            per_epoch[name] = {int(p.stem.split("-")[-1]): p for p in grids}
        epochs = sorted({e for d in per_epoch.values() for e in d})
        if epochs:
            head = "".join(f"<th>{esc(n)}</th>" for n in per_epoch)
            rows = []
            for e in epochs:
                cells = []
                for name, d in per_epoch.items():
                    if e in d:
                        target = self._copy(d[e], f"run-{name}-epoch-{e:03d}.png")
                        cells.append(f"<td><img src='{esc(self.rel(target))}' alt='{esc(name)} epoch {e}' style='max-width:320px'></td>")
                    else:
                        cells.append("<td>—</td>")
                rows.append(f"<tr><th>epoch {e}</th>{''.join(cells)}</tr>")
            parts.append(f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>")
        for name, run in self.runs.items():
            run = Path(run)
            imgs = []
            for plot in sorted((run / "plots").glob("*.png")):
                target = self._copy(plot, f"run-{name}-{plot.name}")
                imgs.append(f"<figure><img src='{esc(self.rel(target))}' alt='{esc(name)} {esc(plot.stem)}'>"
                            f"<figcaption>{esc(name)}: {esc(plot.stem.replace('_', ' '))}</figcaption></figure>")
            log = run / "log.txt"
            seconds = _run_seconds(run)
            note = f"<p class='note'>{esc(name)}: run folder {esc(run)}"
            note += f", {seconds:.0f} s of training" if seconds else ""
            note += "</p>"
            if imgs or log.is_file():
                parts.append(f"<h3>{esc(name)}</h3>{note}<div class='grids'>{''.join(imgs)}</div>")
        return "\n".join(parts)

    def _copy(self, source: Path, name: str) -> Path:
        target = self.figdir / name
        shutil.copyfile(source, target)
        return target

    def datasets(self) -> str:
        synthetic = self.inputs.get("synthetic", {})
        real = self.inputs.get("real", {})
        if not synthetic and not real:
            return ""
        from synthbench.data.dataset import Dataset
        from synthbench.engine.plots import save_grid

        parts = ["<h2>Sample grids of the Datasets</h2><p class='note'>One row per class, the first images of each.</p>",
                 "<div class='grids'>"]
        for name, info in [("real", real)] + list(synthetic.items()):
            try:
                ds = Dataset.open(info["path"])
            except Exception:  # a moved or deleted Dataset only loses its picture
                continue
            picks = _per_class_rows(ds, per_class=10)
            if not len(picks):
                continue
            target = save_grid(ds.take(picks), self.figdir / f"dataset-{name}.png", nrow=min(10, len(picks)),
                               scale=max(1, 48 // ds.resolution))
            parts.append(f"<figure><img src='{esc(self.rel(target))}' alt='{esc(name)} samples'>"
                         f"<figcaption>{esc(name)}: {esc(info['path'])} ({len(ds)} images)</figcaption></figure>")
        parts.append("</div>")
        return "\n".join(parts)

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
            durations = {"classifier training (sum over cells)": f"{r['train_seconds'].sum():.1f} s",
                         "evaluation (sum over cells)": f"{r['eval_seconds'].sum():.1f} s",
                         "devices": ", ".join(sorted(map(str, r['device'].unique()))) if "device" in r else ""}
        for name, run in self.runs.items():
            seconds = _run_seconds(Path(run))
            if seconds:
                durations[f"training {name}"] = f"{seconds:.1f} s"
        for stage, seconds in self.stage_seconds.items():
            durations[f"demo stage: {stage}"] = f"{seconds:.1f} s"
        rows = lambda d: "".join(f"<tr><th class='l'>{esc(k)}</th><td class='l'>{esc(v)}</td></tr>" for k, v in d.items())
        spec_text = yaml.safe_dump({"spec": self.spec, "classifier": self.classifier}, sort_keys=False)
        run_configs = ""
        for name, run in self.runs.items():
            cfg = Path(run) / "config.yaml"
            if cfg.is_file():
                run_configs += f"<h3>{esc(name)} config</h3><pre>{esc(cfg.read_text())}</pre>"
        source = ("Every number above comes from results.csv / summary.csv / comparisons.csv / metrics.csv in "
                  "that folder." if len(r) else "")
        inputs = f"<h3>Inputs</h3><pre>{esc(json.dumps(self.inputs, indent=1))}</pre>" if self.inputs else ""
        spec = (f"<h3>Study spec and classifier</h3><pre>{esc(spec_text)}</pre>" if self.classifier else "")
        return ("<h2>What produced this</h2>"
                f"<p class='note'>Report written {esc(time.strftime('%Y-%m-%d %H:%M:%S'))} from {esc(self.results)}. "
                f"{source}</p>"
                f"<h3>Durations</h3><table>{rows(durations)}</table>"
                f"<h3>Versions</h3><table>{rows(versions)}</table>"
                f"<h3>Machine</h3><table>{rows(machine)}</table>"
                f"{inputs}{spec}{run_configs}")


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return esc(value)


def _per_class_rows(ds, per_class: int) -> np.ndarray:
    if not ds.labelled:
        return np.arange(min(len(ds), per_class * 4))
    picks = [np.flatnonzero(ds.labels == c)[:per_class] for c in range(ds.num_classes)]
    return np.concatenate(picks) if picks else np.array([], dtype=np.int64)


def _run_seconds(run: Path) -> float | None:
    file = run / "metrics.jsonl"
    if not file.is_file():
        return None
    last = None
    for line in file.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "epoch" and "elapsed_s" in row:
            last = row["elapsed_s"]
    return last
