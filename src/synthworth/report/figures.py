"""The report's figures: matplotlib PNGs with labelled axes, drawn from the study's tables only.

Every text drawn from data (composition, generator and class names) goes through
:func:`literal`, so a name is drawn as itself: matplotlib would otherwise read text between two
``$`` as math (and stop with an error on ``$\\foo`` or an unbalanced ``$``). Every title takes
a ``scope`` ("partial: 5 of 8 cells", ...) that says when the figure shows part of the grid.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from synthworth.report.numbers import fmt

COMPOSITION_ORDER = ["real", "artificial", "mixed", "subset_real", "augmented", "ratio_sweep"]
COLOURS = {"real": "#1f77b4", "artificial": "#d62728", "mixed": "#2ca02c", "subset_real": "#ff7f0e",
           "augmented": "#9467bd", "ratio_sweep": "#8c564b"}


SIMPLE = ["real", "artificial", "mixed", "subset_real"]


def simple(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the four source-study compositions (one cell group per generator and size)."""
    return df[df["composition"].isin(SIMPLE)]


def literal(value, limit: int = 60) -> str:
    """A name from data as a label matplotlib draws literally: every ``$`` escaped (no math
    text), newlines, tabs and control characters collapsed to one space, cut at ``limit``."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(value)).split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("$", r"\$")


def _title(ax, text: str, scope: str, width: int = 60) -> None:
    """The title wrapped to the axes' width (constrained layout keeps it inside the figure)."""
    full = f"[{literal(scope, 80)}] {text}" if scope else text
    ax.set_title("\n".join(textwrap.wrap(full, width)), fontsize=9, color="#b00020" if scope else "black")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    # A user's matplotlibrc must not turn escaped names back into TeX or math.
    matplotlib.rcParams.update({"text.usetex": False, "text.parse_math": True})
    import matplotlib.pyplot as plt

    return plt


def _figure(width: float, height: float):
    """A figure whose layout engine keeps titles, labels and legends inside its edges."""
    return _plt().subplots(figsize=(width, height), layout="constrained")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp, dpi=110)
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def _label(row) -> str:
    gen = row["generator"] if isinstance(row["generator"], str) and row["generator"] else ""
    return literal(row["composition"], 30) + (f"\n{literal(gen, 30)}" if gen else "")


def whiskers(mean, low, high) -> np.ndarray:
    """Error-bar lengths (below, above) of intervals [low, high] around ``mean``: a missing
    interval draws no whisker, and an interval that does not reach the mean (possible for a
    logit-scale interval) draws none on that side rather than failing."""
    mean, low, high = (np.asarray(v, dtype=float) for v in (mean, low, high))
    below, above = np.nan_to_num(mean - low), np.nan_to_num(high - mean)
    return np.vstack([np.clip(below, 0, None), np.clip(above, 0, None)])


def data_limits(low, high, mean, pad: float = 0.15) -> tuple[float, float]:
    """An axis range around the data (means and intervals), inside [0, 1], not from 0: a few
    points' difference stays visible. The axis label says the axis does not start at 0."""
    values = np.concatenate([np.asarray(v, dtype=float).ravel() for v in (low, high, mean)])
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    span = max(hi - lo, 0.02)
    return max(0.0, lo - pad * span), min(1.0, hi + pad * span)


def bars(summary: pd.DataFrame, compositions: list[str], size: int, path: Path, *, title: str,
         metric: str = "accuracy", scope: str = "") -> Path | None:
    """Mean accuracy (a point) with its 95 % interval (whiskers) for some compositions at one
    size, per generator. Points, not bars: the axis spans the data rather than starting at 0,
    which a bar's length would misrepresent. The mean is written beside each point."""
    part = summary[(summary["composition"].isin(compositions)) & (summary["size"] == size)]
    if part.empty:
        return None
    part = part.assign(order=part["composition"].map(COMPOSITION_ORDER.index)).sort_values(["order", "generator"])
    fig, ax = _figure(max(4.2, 1.0 * len(part) + 1.6), 3.8)
    mean = part[f"{metric}_mean"].to_numpy(dtype=float)
    low, high = part[f"{metric}_ci_low"].to_numpy(dtype=float), part[f"{metric}_ci_high"].to_numpy(dtype=float)
    x = np.arange(len(part))
    colours = [COLOURS.get(c, "grey") for c in part["composition"]]
    err = whiskers(mean, low, high)
    for xi, m, e, c in zip(x, mean, err.T, colours):
        ax.errorbar([xi], [m], yerr=[[e[0]], [e[1]]], fmt="o", ms=7, capsize=5, lw=1.6, color=c)
    for xi, m in zip(x, mean):
        if np.isfinite(m):
            ax.annotate(fmt(m), (xi, m), xytext=(8, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_xticks(x, [_label(r) for _, r in part.iterrows()], fontsize=8)
    ax.set_xlim(-0.6, len(part) - 0.2)
    ax.set_ylim(*data_limits(low, high, mean))
    ax.set_ylabel(f"{metric.replace('_', ' ')} on real test images\n(axis does not start at 0)", fontsize=8)
    n = sorted({int(v) for v in part["n_seeds"].dropna()})
    seeds = f"{'/'.join(map(str, n))} seeds" if n else "seeds"
    _title(ax, f"{title}: training size {fmt(size, 'count')}; mean of {seeds}, 95 % CI", scope, width=48)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def dodge(n_series: int, sizes, step: float = 0.02) -> list[np.ndarray]:
    """x positions of ``n_series`` series at ``sizes`` on a log axis, each series shifted by
    a constant factor so that their whiskers sit side by side instead of on top of each other."""
    sizes = np.asarray(sizes, dtype=float)
    offsets = (np.arange(n_series) - (n_series - 1) / 2) * step
    return [sizes * 10 ** o for o in offsets]


def size_curves(summary: pd.DataFrame, path: Path, metric: str = "accuracy", scope: str = "") -> Path | None:
    """Accuracy against the training-set size, one line per composition and generator; the
    series are dodged sideways (:func:`dodge`) so that every whisker can be seen."""
    part = simple(summary)
    if part["size"].nunique() < 2:
        return None
    fig, ax = _figure(7.5, 4.6)
    generators = sorted(g for g in part["generator"].unique() if isinstance(g, str) and g)
    styles = {g: ls for g, ls in zip(generators, ["--", ":", "-.", (0, (5, 1)), (0, (1, 3))])}
    markers = {g: m for g, m in zip(generators, ["s", "^", "D", "v", "P"])}
    groups = list(part.groupby(["composition", "generator"], dropna=False, sort=False))
    groups.sort(key=lambda item: (COMPOSITION_ORDER.index(item[0][0]) if item[0][0] in COMPOSITION_ORDER else 99,
                                  str(item[0][1])))
    factors = [x[0] for x in dodge(len(groups), [1.0])]
    for ((comp, gen), g), factor in zip(groups, factors):
        g = g.sort_values("size")
        gen = gen if isinstance(gen, str) else ""
        label = literal(comp) + (f" ({literal(gen)})" if gen else "")
        ax.errorbar(g["size"].to_numpy(dtype=float) * factor, g[f"{metric}_mean"],
                    yerr=whiskers(g[f"{metric}_mean"], g[f"{metric}_ci_low"], g[f"{metric}_ci_high"]),
                    marker=markers.get(gen, "o"), ls=styles.get(gen, "-"), capsize=3, label=label,
                    color=COLOURS.get(comp), lw=1.6 if not gen else 1.2, ms=5)
    sizes = sorted(part["size"].unique())
    ax.set_xscale("log")
    ax.set_xticks(sizes, [fmt(x, "count") for x in sizes])
    ax.minorticks_off()
    ax.set_ylim(*data_limits(part[f"{metric}_ci_low"], part[f"{metric}_ci_high"], part[f"{metric}_mean"], pad=0.05))
    ax.set_xlabel("training-set size (images, log scale; series shifted sideways to keep whiskers apart; "
                  "subset_real = the real half of mixed)", fontsize=8)
    ax.set_ylabel(f"{metric.replace('_', ' ')} on real test images\n(axis does not start at 0)", fontsize=8)
    _title(ax, "Where synthetic data stops helping: accuracy against training-set size (mean, 95 % CI)", scope, 70)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return _save(fig, path)


def ratio_curves(summary: pd.DataFrame, path: Path, metric: str = "accuracy", scope: str = "") -> Path | None:
    """Accuracy against the synthetic share of the training set (ratio sweeps)."""
    part = summary[summary["composition"] == "ratio_sweep"]
    if part.empty:
        return None
    fig, ax = _figure(7.5, 4.4)
    groups = list(part.groupby(["generator", "size"], sort=True))
    span = float(part["ratio"].max() - part["ratio"].min()) or 1.0
    for i, ((gen, size), g) in enumerate(groups):
        g = g.sort_values("ratio")
        shift = (i - (len(groups) - 1) / 2) * 0.012 * span  # side by side, as in size_curves
        ax.errorbar(g["ratio"] + shift, g[f"{metric}_mean"],
                    yerr=whiskers(g[f"{metric}_mean"], g[f"{metric}_ci_low"], g[f"{metric}_ci_high"]),
                    marker="o", capsize=3, label=f"{fmt(size, 'count')} images, {literal(gen)}")  # a label starting
        # with "_" would be left out of the legend: the number goes first
    ax.set_xlabel("synthetic share of the training set")
    ax.set_ylabel(f"{metric.replace('_', ' ')} on real test images")
    _title(ax, "Accuracy against the synthetic share (fixed training-set size; mean, 95 % CI)", scope, 70)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def paired_differences(comparisons: pd.DataFrame, path: Path, scope: str = "") -> Path | None:
    """Paired differences (A - B on the same seeds, and test images where kept) with their 95 % intervals."""
    part = comparisons.dropna(subset=["diff"])
    if part.empty:
        return None
    labels = [f"{literal(r.composition_a, 24)}{'/' + literal(r.generator_a, 24) if r.generator_a else ''} − "
              f"{literal(r.composition_b, 24)}{'/' + literal(r.generator_b, 24) if r.generator_b else ''} @ {int(r.size)}"
              for r in part.itertuples()]
    fig, ax = _figure(7.5, 0.3 * len(part) + 1.6)
    y = np.arange(len(part))[::-1]
    ax.errorbar(part["diff"], y, xerr=whiskers(part["diff"], part["ci_low"], part["ci_high"]),
                fmt="o", capsize=3, color="black")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("difference in accuracy (A − B, paired), 95 % CI")
    _title(ax, "Paired comparisons: an interval that crosses 0 is not a demonstrated effect", scope, 70)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def per_class(results: pd.DataFrame, class_names: list[str], size: int, path: Path,
              scope: str = "") -> Path | None:
    """Per-class accuracy (mean over seeds) for each composition/generator at one size: a
    heatmap. ``per_class_accuracy`` holds one list of numbers per row (parsed on reading); rows
    whose list does not match the classes leave the figure out (None)."""
    part = simple(results)
    part = part[part["size"] == size]
    if part.empty or not class_names or "per_class_accuracy" not in part.columns:
        return None
    if any(len(v) != len(class_names) for v in part["per_class_accuracy"]):
        return None
    rows, labels = [], []
    for (comp, gen), g in part.groupby(["composition", "generator"], dropna=False, sort=False):
        values = np.array(list(g["per_class_accuracy"]), dtype=float)
        rows.append(np.nanmean(values, axis=0) if np.isfinite(values).any() else np.full(len(class_names), np.nan))
        labels.append(literal(comp) + (f" ({literal(gen)})" if isinstance(gen, str) and gen else ""))
    matrix = np.array(rows)
    fig, ax = _figure(max(5.5, 0.6 * len(class_names) + 3), 0.45 * len(rows) + 2.0)
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(class_names)), [literal(c, 30) for c in class_names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if len(class_names) <= 12:  # numbers only where the cells are wide enough to read them
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, fmt(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="accuracy on the class's real test images")
    ax.set_xlabel("class")
    _title(ax, f"Per-class accuracy, training size {fmt(size, 'count')} (mean over seeds)", scope, 70)
    return _save(fig, path)

