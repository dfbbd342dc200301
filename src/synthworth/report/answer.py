"""The report's first section: the answer in sentences a reader can quote, and its figure.

How many synthetic images one real image is worth, per generator and training-set size, read
off the real learning curve (:mod:`synthworth.study.exchange`; the numbers are those of
``exchange_rates.csv``: the same deterministic computation on the same results). Beside each
generator, what its Dataset records about the data its generator saw (a generator trained on
all the real images helping a classifier that sees 50 is not free data). Every sentence and
name is escaped; every name drawn in the figure goes through :func:`figures.literal`.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from synthworth.report import figures
from synthworth.report.base import ReportBase
from synthworth.study.exchange import OK, SYNTHETIC_COMPOSITIONS, Curve, exchange_rates, has_sweep, provenance_of
from synthworth.study.exchange_text import WORSE, series_name
from synthworth.study.replicates import replicated
from synthworth.study.resample import BOTH, spend_sentence

MARKERS = {"artificial": "s", "mixed": "D", "augmented": "^", "ratio_sweep": "v"}
GEN_COLOURS = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def section(report: ReportBase) -> str:
    """The section's HTML ("" when the study has no synthetic cells); a study without a size
    sweep gets a short note saying what would give the answer."""
    # Filtered cells too: every sentence and the figure name the filter ("ddpm (confidence-filtered)").
    results = getattr(report, "all_results", report.t["results"])
    if results.empty or not results["composition"].isin(SYNTHETIC_COMPOSITIONS).any():
        return ""
    if not has_sweep(results):
        sizes = sorted(int(s) for s in results.loc[results["composition"] == "real", "size"].unique())
        return ("<h2>The answer: what a synthetic image is worth</h2><p class='note'>No exchange rate: it needs "
                f"real cells at 3 or more sizes to fit the real learning curve; this study has sizes {esc(sizes)}. "
                "Add sizes to the spec's <code>sizes</code> and run it again.</p>")
    table, curves = exchange_rates(results.assign(test_set="real_test"), provenance=provenance_of(report.inputs),
                                   grid=report.scope or "complete", predictions=predictions_of(report))
    curve = curves[0]
    scope = f"<span class='scope'>[{esc(report.scope)}]</span> " if report.scope else ""
    parts = ["<h2>The answer: what a synthetic image is worth</h2>",
             f"<p class='note'>{scope}Each synthetic or mixed result is placed on the real learning curve (error = "
             "a·n<sup>−b</sup> + c fitted by weighted least squares to the mean accuracy of the <code>real</code> "
             f"cells at {esc(', '.join(str(s) for s in curve.sizes))} real images, on the real test images, each "
             "mean weighted by the inverse of its variance over the seeds): it is worth the "
             "number of real images that reach its accuracy; a mixture below its own real part has a negative "
             "worth, the real images its synthetic part cost. Rate = synthetic images per real image. "
             f"{covers_text(curve, table)} Outside the real sizes measured the page gives a bound, not a number. "
             "The same numbers are in "
             "<code>exchange_rates.csv</code> and <code>synthworth study exchange RESULTS</code>.</p>"]
    if curve.status != OK:
        parts.append(f"<p class='warning'>{esc(curve.status)}.</p>")
    elif curve.lof.fails:
        parts.append(f"<p class='warning'>The power law {esc(curve.lof.text())}: it misses the real means by more "
                     "than their seed noise, so every number read from it depends on the model, and each says so. "
                     "The model check beside each result (a monotone interpolation of the real means) shows by how "
                     "much.</p>")
    else:
        parts.append(f"<p class='note'>The power law {esc(curve.lof.text())} against the seed noise of the real "
                     "means (p from curves simulated from the fit). Beside each result, the model check: what a "
                     "monotone interpolation of the real means in log n, instead of the power law, gives.</p>")
    parts += harm(table)
    if "filter" not in table.columns:
        table = table.assign(filter="")
    for gen, rows in table.groupby("generator", sort=True):
        parts.append(f"<h3>{esc(gen)}</h3><p class='note'>What this generator saw: "
                     f"{esc(rows['provenance'].iloc[0])}.</p><ul>")
        for _, r in rows.sort_values(["filter", "size", "composition", "ratio"]).iterrows():
            spend = spend_sentence(r)   # where the next run's effort would narrow this interval most
            spend = f" <span class='note'>{esc(spend)}</span>" if spend else ""
            parts.append(f"<li>{esc(r['statement'])}{model_check(r, curve)}{spend}</li>")   # it names the filter
        parts.append("</ul>")
    if curve.status == OK:
        path = plot(curve, table, report.target("exchange_curve.png"), scope=report.scope)
        parts.append(report.figure(path, "The real learning curve (line: power-law fit; band: 95 % bootstrap band; "
                                         "dots: measured real means with 95 % t-intervals) and each synthetic or "
                                         "mixed result placed at the real-image count it is worth, with its 95 % "
                                         "interval (triangles at the edge: outside the measured range)."))
    return "\n".join(parts)


def predictions_of(report: ReportBase) -> pd.DataFrame | None:
    """The study's per-image predictions (None: an older results folder without them, or none readable)."""
    from synthworth.errors import SynthworthError
    from synthworth.study.predictions import read_predictions

    try:
        return read_predictions(report.results, warn=False)
    except (SynthworthError, OSError, ValueError, KeyError, TypeError):
        return None


def covers_text(curve: Curve, table: pd.DataFrame | None = None) -> str:
    """What the 95 % intervals resample, and what they do not cover: a generator's retraining is
    covered only for the generators whose rows say their seeds each drew from their own replicate
    (``interval_covers``, see synthworth.study.replicates)."""
    images = curve.covers == BOTH
    how = ("a two-way bootstrap over seeds and test images (each resample draws the test images again, one draw "
           "shared by every cell so real and synthetic results stay paired on the same images, and each mean's "
           "seed effect from its Student-t distribution over the seeds), refitting the curve each time"
           if images else
           "a parametric bootstrap over seeds only (each mean drawn from its Student-t distribution over the "
           "seeds, refitting the curve each time): these results have no per-image predictions, so test-image "
           "noise is not in the interval (run the spec again to add them, nothing is retrained)")
    covered = []
    if table is not None and len(table) and "interval_covers" in table.columns:
        covered = sorted({str(g) for g, c in zip(table["generator"], table["interval_covers"]) if replicated(c)})
    if not covered:
        retrain = "They do not cover retraining the generator (it was trained once)"
    else:
        names = ", ".join(covered)
        others = set(table["generator"].astype(str)) - set(covered)
        retrain = (f"For {names}, each seed drew its synthetic images from its own trained generator replicate, so "
                   "the seeds' spread, and the intervals, also cover retraining the generator (the seeds' share of "
                   "the variance is the seeds' and the generators' together)"
                   + ("; they do not cover retraining the other generators (each was trained once)" if others else ""))
    return f"95 % intervals: {how}; {curve.resamples} resamples. {retrain}, and the results are conditional on this real test set."


def harm(table: pd.DataFrame) -> list[str]:
    """Plain words when synthetic data hurt: the mixtures whose interval lies below their own
    real part (status WORSE), or a line saying none did."""
    mixtures = table[table["composition"] != "artificial"]
    hurt = mixtures[mixtures["status"].astype(str).str.startswith(WORSE)]
    if len(hurt):
        items = "".join(f"<li>{esc(s)}</li>" for s in hurt["statement"])
        return [f"<div class='warning'><p><b>Synthetic data hurt</b> in {len(hurt)} of {len(mixtures)} mixed or "
                "augmented results: with them the classifier did worse than with their real images alone, by "
                f"more than the 95 % interval allows by chance.</p><ul>{items}</ul></div>"]
    if (~mixtures["status"].astype(str).str.startswith("no ")).any():   # some mixture was read off the curve
        return ["<p class='note'>No mixed or augmented result was measurably worse than its own real part.</p>"]
    return []


def model_check(r: pd.Series, curve: Curve) -> str:
    """The sensitivity of a result's worth to the curve's model, where the sentence does not say it."""
    point, alt = r.get("worth"), r.get("n_eff_interp")
    if curve.lof.fails or not (pd.notna(point) and pd.notna(alt) and math.isfinite(point) and math.isfinite(alt)):
        return ""
    alt = alt - (r["n_real"] if r["composition"] != "artificial" else 0)
    return (f" <span class='note'>(Model check: a monotone interpolation of the real means puts its worth at {alt:.0f} "
            f"real images, the power law at {point:.0f}.)</span>")


def plot(curve: Curve, table: pd.DataFrame, path: Path, scope: str = "") -> Path:
    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    lo, hi = curve.sizes[0], curve.sizes[-1]
    n = np.geomspace(lo, hi, 200)
    band_lo, band_hi = curve.band(n)
    # Accuracy lives in [0, 1]: neither the band nor a whisker is drawn past either end.
    ax.fill_between(n, np.clip(band_lo, 0, 1), np.clip(band_hi, 0, 1), color=figures.COLOURS["real"], alpha=0.18,
                    lw=0, label="95 % band")
    ax.plot(n, curve.accuracy(n), color=figures.COLOURS["real"], lw=1.8, label="real: fitted curve")
    means, half = np.asarray(curve.means, float), np.nan_to_num(np.asarray(curve.halfwidths, float))
    ax.errorbar(curve.sizes, means, yerr=figures.whiskers(means, np.clip(means - half, 0, 1),
                                                           np.clip(means + half, 0, 1)),
                fmt="o", color="black", capsize=3, label="real: measured (mean, 95 % CI)")
    # One colour per generator and filter: filtered and unfiltered results are distinct series.
    series = [series_name(g, f) for g, f in zip(table["generator"], table.get("filter", [""] * len(table)))]
    colours = {s: GEN_COLOURS[i % len(GEN_COLOURS)] for i, s in enumerate(sorted(set(series)))}
    shown_series: list = []
    shown_markers: dict[str, str] = {}  # marker -> what it means, in the order first drawn
    for name, (_, r) in zip(series, table.iterrows()):
        x, marker = r["n_eff"], MARKERS.get(r["composition"], "o")
        meaning = figures.literal(r["composition"], 20)
        if not math.isfinite(x):
            status = str(r["status"])   # may go on: "above range; the interval reaches into ..."
            if status.startswith("above range"):
                x, marker, meaning = hi, ">", "above the curve's range (drawn at its end)"
            elif status.startswith(("below range", "worth nothing measurable")) or status.endswith("below the measured range"):
                x, marker, meaning = lo, "<", "below the curve's range (drawn at its start)"
            elif status.startswith(WORSE):   # below its real part, the largest size measured
                x, marker, meaning = r["n_real"], "<", "below the curve (drawn at its real part's size)"
            else:
                continue
        low, high = r["n_eff_ci_low"], r["n_eff_ci_high"]
        xerr = [[x - low if math.isfinite(low) else 0.0], [high - x if math.isfinite(high) else 0.0]]
        ax.errorbar([x], [r["accuracy_mean"]], xerr=xerr, marker=marker, ls="none", ms=7, capsize=2, lw=0.8,
                    color=colours[name], markeredgecolor="black")
        shown_markers.setdefault(marker, meaning)
        if name not in shown_series:
            shown_series.append(name)
    # The legend keys the two codes apart: a colour per generator (and filter), a marker per
    # composition (or per point beyond the curve's range), so no entry shows one series' marker
    # for another's.
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color=colours[g], marker="o", ls="none", markeredgecolor="black", ms=7,
                       label=f"generator: {figures.literal(g, 50)}") for g in shown_series]
    handles += [Line2D([], [], color="white", marker=m, ls="none", markeredgecolor="black", ms=7,
                       label=f"marker: {meaning}") for m, meaning in shown_markers.items()]
    ax.set_xscale("log")
    ax.set_xticks(curve.sizes, [str(s) for s in curve.sizes])
    ax.minorticks_off()
    ax.set_xlabel("real training images (a synthetic result: the real images it is worth)")
    ax.set_ylabel("accuracy on real test images")
    figures._title(ax, "What a synthetic image is worth: results placed on the real learning curve", scope)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    return figures._save(fig, path)
