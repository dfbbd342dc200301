"""``synthworth report``: one offline HTML page from a study's results folder.

The report never trains or samples anything. It reads the study's tables (``results``,
``summary``, ``comparisons``, ``metrics``), ``grid.json`` (how much of the planned grid they
cover), ``study.yaml`` and ``inputs.json``, all checked by :mod:`synthworth.report.load`.
Everything in that folder is untrusted: every value printed is escaped, every name drawn in a
figure is made literal, and a path stored in it (a Dataset, a run folder) is followed only when
it resolves inside the results folder, or inside the demo's folder when the results folder is
the study of a demo (its parent carries the demo's own marker). Run folders (per-epoch sample grids, loss curves,
configs) and Datasets (sample grids) elsewhere are shown when named explicitly
(``--run NAME=PATH``, ``--dataset NAME=PATH``). Figures are PNG files in the page's own
figures folder (:mod:`synthworth.report.output`: nothing the report did not write is replaced);
no JavaScript, fonts or anything else from the network.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import yaml

from synthworth.report import answer, by_class, completeness, compute, figures, output, protocol
from synthworth.report.base import SOURCE_ROWS, fold, interval, table_rows, versions_and_machine
from synthworth.report.load import ResultsError, load
from synthworth.report.numbers import esc, fmt, num  # noqa: F401 (esc, num: used by callers too)
from synthworth.report.sections import Sections
from synthworth.study import leakage
from synthworth.study.replicates import replicated
from synthworth.study.stats import LOGIT_T, TWO_WAY

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.note{color:#555;font-size:.9em}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}img{max-width:100%;border:1px solid #eee}.grids{display:flex;gap:1em;flex-wrap:wrap}
.grids figure{flex:1 1 420px}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
.warning{border:2px solid #b00020;background:#fff4f4;padding:.6em 1em;margin:1em 0}
.complete{border:1px solid #2e7d32;background:#f3faf3;padding:.4em 1em;margin:1em 0}
.scope{color:#b00020;font-weight:bold}
details{margin:.6em 0}summary{cursor:pointer;color:#333}.wide{overflow-x:auto;max-width:100%}
.lgrid{display:flex;align-items:stretch;max-width:100%}.lgrid img{min-width:0;flex:0 1 auto;align-self:flex-start}
.rows{display:flex;flex-direction:column;font-size:.75em;padding-right:.35em;text-align:right;color:#333}
.rows span{flex:1;display:flex;align-items:center;justify-content:flex-end;min-height:0;line-height:1}
.ci{white-space:nowrap}.strip{display:flex;gap:.6em;flex-wrap:wrap}.strip figure{margin:.3em 0;flex:0 1 330px}
"""


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
    return render(page, lambda figdir: Report(data, page, figdir, grid, explicit_runs, explicit_data))


def render(page: Path, parts) -> Path:
    """Write ``page`` from the sections ``parts(figdir)`` builds while its figures folder is held."""
    try:
        with output.figures_folder(page) as figdir:
            return _write_page(page, parts(figdir))
    except OSError as exc:  # a read-only or full disk, a parent that is a file
        raise ResultsError(f"the report could not be written at {page}: {exc}") from None


def _explicit_folders(named: dict[str, str | os.PathLike] | None, flag: str) -> dict[str, Path]:
    out = {}
    for name, path in (named or {}).items():
        if not Path(path).is_dir():
            raise ResultsError(f"{flag} {name}={path}: no such folder")
        # Absolute now: the report joins files onto it and checks them against its resolved
        # form, and a relative folder joined twice (cwd, then the run) would point nowhere.
        out[str(name)] = Path(path).absolute()
    return out


def _write_page(page: Path, parts: Report) -> Path:
    body = parts.render()
    title = esc(f"synthworth report: {parts.name}")
    text = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>{output.head_html()}"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{title}</title><style>{CSS}{parts.extra_css}</style></head><body>\n{body}\n</body></html>\n")
    return output.write_page(page, text)


def classifiers_trained(results: pd.DataFrame) -> int:
    """Distinct classifiers behind results.csv: a cell shared by two rows of the grid (subset_real
    at size 2N is real at size N, trained once) has one ``key`` and counts once."""
    if "key" in results.columns and results["key"].notna().all():
        return int(results["key"].nunique())
    cols = [c for c in ("composition", "generator", "size", "per_class", "ratio", "augment_factor", "seed")
            if c in results.columns]
    return int(len(results.drop_duplicates(cols)))


class Report(Sections):
    """Assembles the sections; each returns HTML (an empty string when it has nothing to show)."""

    def render(self) -> str:
        sections = [self.header(), answer.section(self), by_class.section(self), compute.section(self),
                    self.source_tables(),
                    self.source_figures(), self.beyond(), self.filtering(),
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
        banner = (completeness.banner(self.grid, esc) if self.grid is not None else "") + leakage.banner(self.inputs, esc)
        trained = classifiers_trained(r)
        shared = (f" ({num(len(r), 'count')} cells of the grid: {num(len(r) - trained, 'count')} of them share a "
                  "classifier with another cell, e.g. subset_real at size 2N is real at size N)"
                  if trained < len(r) else "")
        return (f"<h1>{esc(self.name)}: can generated images stand in for real ones?</h1>{banner}"
                f"<p>Classifiers trained on real, artificial (generated), mixed and subset-of-real images and "
                f"tested on <b>real</b> test images ({num(test_images, 'count')} of them, "
                f"{esc(real.get('shape', ''))}, classes: {esc(', '.join(self.class_names))}). "
                f"{num(trained, 'count')} classifiers trained{shared}, seeds {esc(', '.join(map(str, seeds)))}. "
                "Every accuracy is a mean over seeds with a 95 % confidence interval, so differences can be told "
                f"from noise: for accuracies {self.interval_method()}, for paired differences the interval the "
                "comparisons table names beside each (a paired bootstrap over seeds and test images where the "
                f"cells kept their predictions, else a Student-t interval over the seeds).{self.budget_text()}"
                f"{protocol.text(self.all_results, self.classifier, self.inputs)}"
                "</p>" + self.headline_text())

    def budget_text(self) -> str:
        """How long each classifier trained (results.csv's ``budget`` and ``optimizer_steps``): under
        a fixed number of epochs a bigger set also gets more steps, and the reader must know which
        of the two the learning curve measures. Results written before budgets existed say nothing."""
        r = self.t["results"]
        if "budget" not in r.columns or r["budget"].isna().all():
            return ""
        modes = sorted(set(r["budget"].dropna().astype(str)))
        what = {"steps": "the same number of optimizer steps for every classifier, so the learning curve measures "
                         "data, not compute",
                "epochs": "a fixed number of epochs, so bigger sets also got more optimizer steps: the learning "
                          "curve measures data and compute together",
                "converge": "until the validation loss on a share of each classifier's own training set stopped "
                            "falling (early stopping)",
                "linear_probe": "a linear probe fitted to convergence on frozen features (the study's budget "
                                "does not apply)"}
        said = "; ".join(f"{esc(m)}: {what.get(m, 'see results.csv')}" for m in modes)
        steps = pd.to_numeric(r["optimizer_steps"], errors="coerce").dropna() if "optimizer_steps" in r.columns \
            else pd.Series(dtype=float)
        span = ("" if steps.empty else f" ({num(steps.min(), 'count')} optimizer steps per classifier)"
                if steps.min() == steps.max() else
                f" ({num(steps.min(), 'count')}–{num(steps.max(), 'count')} optimizer steps per classifier)")
        return f" Training budget, {said}{span}."

    def interval_method(self) -> str:
        """Which interval summary.csv holds (its ``accuracy_interval`` column): the two-way bootstrap
        over seeds and test images, the logit-scale t over the seeds, or both (row by row). A
        summary without the column was written by an older synthworth: logit-scale t, or a plain t
        when every interval is symmetric (it can run past 0 or 1)."""
        s = self.t["summary"]
        logit = "a logit-scale Student-t interval over the seeds (it stays inside [0, 1])"
        if s.empty:
            return logit
        if "accuracy_interval" in s.columns:
            kinds = set(s["accuracy_interval"].fillna("").astype(str)) - {""}
            both = ("a 95 % bootstrap interval of the mean over seeds and the shared real test images "
                    "(the resampling the exchange rates use; conditional on this real test set)")
            if kinds == {TWO_WAY}:
                return both
            if TWO_WAY in kinds:
                return (f"{both} where the cells kept per-image predictions, else (marked †) {logit}")
        mean, low, high = s["accuracy_mean"], s["accuracy_ci_low"], s["accuracy_ci_high"]
        spread = (high - low) > 1e-9
        symmetric = ((high - mean) - (mean - low)).abs() < 1e-9
        if spread.any() and symmetric[spread].all():
            return ("a plain Student-t interval over the seeds, as an older synthworth wrote summary.csv (it can "
                    "run past 0 or 1; this version writes logit-scale intervals, which stay inside [0, 1])")
        return logit

    def interval_short(self) -> str:
        """The table note's few words for the accuracy interval (see :meth:`interval_method`)."""
        s = self.t["summary"]
        kinds = (set(s["accuracy_interval"].fillna("").astype(str)) - {""}
                 if "accuracy_interval" in s.columns and len(s) else set())
        if kinds == {TWO_WAY}:
            return "bootstrap over seeds and test images"
        if TWO_WAY in kinds:
            return "bootstrap over seeds and test images; †: logit-scale t over the seeds, no predictions kept"
        return "logit-scale t over the seeds"

    def headline_text(self) -> str:
        """One sentence with the headline size's accuracies, and how that size was chosen."""
        s, size = self.t["summary"], self.headline
        if s.empty or size is None:
            return ""
        part = s[(s["size"] == size) & s["composition"].isin(SOURCE_ROWS)]
        part = part.assign(order=part["composition"].map(SOURCE_ROWS.index)).sort_values(["order", "generator"])
        items = [f"{esc(r.composition)}{' (' + esc(r.generator) + ')' if r.generator else ''} "
                 f"<b>{num(r.accuracy_mean)}</b> {interval(r.accuracy_ci_low, r.accuracy_ci_high)}{self._mark(r)}"
                 for r in part.itertuples()]
        if not items:
            return ""
        return (f"<p><b>Headline, at {num(size, 'count')} training images</b> (real: {num(size, 'count')} real "
                f"images; mixed: half real, half generated): accuracy on the real test images, mean "
                f"[95 % CI, {esc(self.interval_short())}], {'; '.join(items)}.</p><p class='note'>The headline size is the first size the study's spec lists "
                "at which every composition exists for every generator (the smallest such size when the spec "
                "lists none).</p>")

    def source_tables(self) -> str:
        s = self.t["summary"]
        simple = s[s["composition"].isin(SOURCE_ROWS)] if len(s) else s
        if simple.empty:
            return ""
        gens = sorted(g for g in simple["generator"].unique() if g)
        out = ["<h2>The source study's table</h2>",
               "<p class='note'>Rows: training-set composition; columns: the generator of the synthetic images. "
               f"Cells: accuracy on real test images, mean [95 % CI, {esc(self.interval_short())}] (number of "
               "seeds). "
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
            sub = "" if len(self.sizes) == 1 else f" — training size {fmt(size, 'count')}"
            mark = " (headline)" if size == self.headline and len(self.sizes) > 1 else ""
            out.append(f"<h3>{esc(self.name)}{esc(sub)}{esc(mark)}{self.table_scope()}</h3><div class='wide'>"
                       f"<table><tr><th class='l'>composition</th>{head}</tr>" + "".join(rows) + "</table></div>")
        return "\n".join(out)

    def _mark(self, row) -> str:
        """† beside a logit-t interval in a summary that mixes it with bootstrap intervals."""
        mixed = "†" in self.interval_short()
        return "†" if mixed and getattr(row, "accuracy_interval", "") == LOGIT_T else ""

    def _cell(self, row) -> str:
        ci = interval(row["accuracy_ci_low"], row["accuracy_ci_high"])
        return (f"{num(row['accuracy_mean'])} <span class='note'><span class='ci'>{ci}</span>{self._mark(row)} "
                f"({num(row['n_seeds'], 'count')})</span>")

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
            html_parts.append(self.figure(path, f"{title}: accuracy on real test images at training size "
                                                f"{fmt(size, 'count')} (points: mean over seeds; whiskers: 95 % CI; "
                                                "the axis spans the data and does not start at 0)."))
        return "\n".join(html_parts) + "</div>"

    def beyond(self) -> str:
        s, r, c = self.t["summary"], self.t["results"], self.t["comparisons"]
        if s.empty:
            return ""
        scope = self.scope
        parts = ["<h2>Beyond the source study</h2>"]
        parts.append(self.figure(figures.size_curves(s, self.target("size_sweep.png"), scope=scope),
                                 "Accuracy against the training-set size: where the lines meet, synthetic data no "
                                 "longer helps. The series are shifted slightly sideways so that each whisker (95 % CI) "
                                 "shows; the accuracy axis does not start at 0."))
        parts.append(self.figure(figures.ratio_curves(s, self.target("ratio_sweep.png"), scope=scope),
                                 "Accuracy against the synthetic share of a fixed-size training set."))
        if len(c):
            parts.append(self.figure(figures.paired_differences(c, self.target("paired_differences.png"), scope=scope),
                                     "Paired differences between compositions on the same seeds (and, where the cells kept "
                                     "per-image predictions, the same test images), with 95 % intervals: the note "
                                     "below the table says what each covers."))
            parts.append(f"<h3>Paired comparisons{self.table_scope()}</h3><div class='wide'>"
                         + self._comparison_table(c) + "</div>" + self.holm_note())
        if self.headline is not None and len(r):
            path = figures.per_class(r, self.class_names, self.headline, self.target("per_class.png"), scope=scope)
            if path is None and self.class_names and "per_class_accuracy" in r.columns:
                self.notes.append("the per-class figure: results.csv's per_class_accuracy lists do not match the "
                                  f"{len(self.class_names)} classes of inputs.json")
            parts.append(self.figure(path, f"Per-class accuracy at training size {fmt(self.headline, 'count')}."))
        return "\n".join(p for p in parts if p)

    @staticmethod
    def _comparison_table(c: pd.DataFrame) -> str:
        """The paired comparisons. With a ``family`` column (this synthworth), a primary row shows
        only its Holm-adjusted p and an exploratory row only its raw p, each labelled; older
        tables show both."""
        holm = "p_holm" in c.columns
        families = "family" in c.columns
        if families:
            p_head = "<th>p (primary: Holm-adjusted; exploratory: raw)</th>"
        else:
            p_head = "<th>p</th>" + ("<th>p (Holm)</th>" if holm else "")
        images = "n_images" in c.columns and bool(pd.to_numeric(c["n_images"], errors="coerce").notna().any())
        head = ("<tr>" + ("<th class='l'>family</th>" if families else "") + "<th class='l'>A</th><th class='l'>B</th>"
                "<th>size</th><th>seeds</th>" + ("<th>test images</th>" if images else "")
                + "<th>mean A</th><th>mean B</th><th>A − B</th><th>95 % CI</th>" + p_head
                + ("<th class='l'>interval from</th>" if "method" in c.columns else "") + "</tr>")
        rows = []
        for r in c.itertuples():
            a = r.composition_a + (f" ({r.generator_a})" if r.generator_a else "")
            b = r.composition_b + (f" ({r.generator_b})" if r.generator_b else "")
            if getattr(r, "kind", "") == "filter":
                a, b = f"{a} filtered: {r.filter_a}", f"{b} unfiltered"
            ci = interval(r.ci_low, r.ci_high, "signed")
            if families:
                primary = r.family == "primary"
                p_cells = (f"<td>{num(r.p_holm)} (Holm)</td>" if primary else f"<td>{num(r.p_value)} (raw)</td>")
            else:
                p_cells = f"<td>{num(r.p_value)}</td>" + (f"<td>{num(r.p_holm)}</td>" if holm else "")
            rows.append("<tr>" + (f"<td class='l'>{esc(r.family)}</td>" if families else "")
                        + f"<td class='l'>{esc(a)}</td><td class='l'>{esc(b)}</td><td>{num(r.size, 'count')}</td>"
                        f"<td>{num(r.n, 'count')}</td>" + (f"<td>{_images(r.n_images)}</td>" if images else "")
                        + f"<td>{num(r.mean_a)}</td><td>{num(r.mean_b)}</td>"
                        f"<td>{num(r.diff, 'signed')}</td><td>{ci}</td>{p_cells}"
                        + (f"<td class='l'>{esc(r.method)}</td>" if "method" in c.columns else "") + "</tr>")
        return "<table>" + head + "".join(rows) + "</table>"

    def holm_note(self) -> str:
        """Says which comparisons form the primary family, how many tests Holm covers, and what
        the intervals cover (seeds and test images, or seeds only where predictions are missing)."""
        c = self.all_comparisons
        if "p_holm" not in c.columns or "p_value" not in c.columns:
            return ("<p>p-values are not adjusted for the number of comparisons (comparisons.csv has no p_holm "
                    "column: run the study again with this synthworth to get them).</p>")
        tests = int(pd.to_numeric(c["p_value"], errors="coerce").notna().sum())
        if "family" not in c.columns:
            return (f"<p>p: the paired t-test's p-value; p (Holm): the same, Holm-adjusted over all {tests} "
                    "paired comparisons of this study (comparisons.csv), so that a small adjusted p is unlikely "
                    "to be one lucky test among many.</p>")
        primary = c["family"] == "primary"
        n_primary = int(pd.to_numeric(c.loc[primary, "p_value"], errors="coerce").notna().sum())
        method = c["method"].fillna("").astype(str) if "method" in c.columns else pd.Series("", index=c.index)
        boot = int(method.str.startswith("paired bootstrap").sum())
        fallback = len(c) - boot
        covers = c["interval_covers"] if "interval_covers" in c.columns else pd.Series("", index=c.index)
        retrained = int(covers.map(replicated).sum())
        how = (f"{boot} of {len(c)} comparisons use a paired bootstrap over seeds and the same test images (seeds "
               "paired by seed, images by index): their 95 % intervals and p-values cover the seed-to-seed and the "
               "test-image variation, not the retraining of a generator trained once, and hold for test images like "
               "these. ")
        if retrained:
            how += (f"{retrained} comparisons involve a generator whose seeds each drew from their own trained "
                    "replicate (interval_covers says so): their intervals cover its retraining too. ")
        if fallback:
            how += (f"{fallback} fall back to the paired t-test on seed means (their cells lack per-image "
                    "predictions: the method column says why), which covers the seeds only, conditional on this "
                    "test set. ")
        return (f"<p>{esc(how)}Primary: the {n_primary} comparisons the spec names under <code>comparisons</code> "
                "(each pair at each size and generator), decided before the results; their p is Holm-adjusted over "
                "those only, so a small adjusted p is unlikely to be one lucky test among them. Exploratory: the "
                f"other {tests - n_primary} (generators, filters), shown with their raw p and no adjustment: leads to "
                "test in a new study, not findings.</p>")

    def filtering(self) -> str:
        """The effect of the spec's filters: filtered against unfiltered cells on the same seeds."""
        c = self.all_comparisons
        if self.filtered_summary.empty and (c.empty or "kind" not in c.columns):
            return ""
        pairs = c[c["kind"] == "filter"] if "kind" in c.columns else c.iloc[0:0]
        if self.filtered_summary.empty and pairs.empty:
            return ""
        said = self._filters_said()
        parts = [f"<h2>Filtering synthetic data</h2><p>{said}Filtered and unfiltered cells of the same composition, "
                 "size and seed are compared pairwise (filtered − unfiltered accuracy).</p>"]
        if len(pairs):
            parts.append(self._comparison_table(pairs) + self.holm_note())
        return "\n".join(parts)

    def _filters_said(self) -> str:
        """One sentence per filter the study ran (the spec's, else those in its tables)."""
        keep = self.spec.get("filter_keep")
        names = [f for f in self.spec.get("filters") or [] if f != "none"]
        if not names and "filter" in self.filtered_summary.columns:
            names = sorted(set(self.filtered_summary["filter"].astype(str)))
        said = {"confidence": f"The confidence filter kept {esc(keep)} of each class of each synthetic Dataset: the "
                              "images a classifier trained only on the generator's own real data labels as their "
                              "intended class with the highest confidence. ",
                "clip": f"The clip filter kept {esc(keep)} of each class of each synthetic Dataset: the images whose "
                        f"CLIP image embedding ({esc(self.spec.get('clip_model') or 'the default CLIP model')}) is "
                        "closest to the embedding of their class's prompts (the theme the images were generated "
                        "with, else the spec's clip_theme); CLIP saw no real image of this study. "}
        return "".join(said.get(f, f"The {esc(f)} filter kept {esc(keep)} of each class. ") for f in names)

    def provenance(self) -> str:
        r = self.t["results"]
        versions, machine = versions_and_machine()
        durations = {}
        if len(r):
            for col, label in (("train_seconds", "classifier training (sum over cells)"),
                               ("eval_seconds", "evaluation (sum over cells)")):
                if col in r.columns:
                    durations[label] = f"{fmt(r[col].sum())} s"
            if "device" in r.columns:
                durations["devices"] = ", ".join(sorted(map(str, r["device"].unique())))
        for name in self.runs:
            seconds = self._run_seconds(name)
            if seconds:
                durations[f"training {name}"] = f"{fmt(seconds)} s"
        for stage, seconds in self.stage_seconds.items():
            durations[f"demo stage: {stage}"] = f"{fmt(seconds)} s"
        rows = table_rows
        spec_text = yaml.safe_dump({"spec": self.spec, "classifier": self.classifier}, sort_keys=False)
        run_configs = self.run_configs()
        source = ("Every number above comes from results.csv / summary.csv / comparisons.csv / metrics.csv in "
                  "that folder." if len(r) else "")
        inputs = (fold("Inputs (inputs.json: the Datasets, their fingerprints and classes)",
                       f"<pre>{esc(json.dumps(self.inputs, indent=1))}</pre>") if self.inputs else "")
        spec = (fold("Study spec and classifier (study.yaml)", f"<pre>{esc(spec_text)}</pre>")
                if self.classifier else "")
        return ("<h2>What produced this</h2>"
                f"<p class='note'>Report written {esc(time.strftime('%Y-%m-%d %H:%M:%S'))} from {esc(self.results)}. "
                f"{esc(source)}</p>"
                f"<h3>Durations</h3><table>{rows(durations)}</table>"
                "<p class='note'>The raw inputs, spec and configs are folded away below: click to open.</p>"
                + fold("Versions and machine", f"<table>{rows(versions)}</table><table>{rows(machine)}</table>")
                + f"{inputs}{spec}{run_configs}")


def _images(n) -> str:
    """The test images a paired comparison resampled; a t-test row used the seed means only."""
    return "seed means only" if pd.isna(n) else num(n, "count")
