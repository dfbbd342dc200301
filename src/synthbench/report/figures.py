"""The report's figures: matplotlib PNGs with labelled axes, drawn from the study's tables only.

Every text drawn from data (composition, generator and class names) goes through
:func:`literal`, so a name is drawn as itself: matplotlib would otherwise read text between two
``$`` as math (and stop with an error on ``$\\foo`` or an unbalanced ``$``). Every title takes
a ``scope`` ("partial: 5 of 8 cells", ...) that says when the figure shows part of the grid.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

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


def _title(ax, text: str, scope: str) -> None:
    ax.set_title(f"[{literal(scope, 80)}] {text}" if scope else text, fontsize=9,
                 color="#b00020" if scope else "black")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    # A user's matplotlibrc must not turn escaped names back into TeX or math.
    matplotlib.rcParams.update({"text.usetex": False, "text.parse_math": True})
    import matplotlib.pyplot as plt

    return plt


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


def bars(summary: pd.DataFrame, compositions: list[str], size: int, path: Path, *, title: str,
         metric: str = "accuracy", scope: str = "") -> Path | None:
    """Mean accuracy with 95 % CI error bars for some compositions at one size, per generator."""
    part = summary[(summary["composition"].isin(compositions)) & (summary["size"] == size)]
    if part.empty:
        return None
    part = part.assign(order=part["composition"].map(COMPOSITION_ORDER.index)).sort_values(["order", "generator"])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(part) + 1.5), 4))
    mean = part[f"{metric}_mean"].to_numpy()
    low = mean - part[f"{metric}_ci_low"].to_numpy()
    high = part[f"{metric}_ci_high"].to_numpy() - mean
    x = np.arange(len(part))
    ax.bar(x, mean, yerr=np.nan_to_num(np.vstack([low, high])), capsize=4,
           color=[COLOURS.get(c, "grey") for c in part["composition"]], edgecolor="black", linewidth=0.5)
    for xi, m, n in zip(x, mean, part["n_seeds"]):
        ax.text(xi, m / 2, f"{m:.3f}\n(n={int(n)})", ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(x, [_label(r) for _, r in part.iterrows()], fontsize=8)
    ax.set_ylabel(f"{metric.replace('_', ' ')} on real test images")
    ax.set_ylim(0, 1)
    _title(ax, f"{title} (training size {size}; bars: mean, whiskers: 95 % CI)", scope)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def size_curves(summary: pd.DataFrame, path: Path, metric: str = "accuracy", scope: str = "") -> Path | None:
    """Accuracy against the training-set size, one line per composition and generator."""
    part = simple(summary)
    if part["size"].nunique() < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    generators = sorted(g for g in part["generator"].unique() if isinstance(g, str) and g)
    styles = {g: ls for g, ls in zip(generators, ["--", ":", "-.", (0, (5, 1)), (0, (1, 3))])}
    markers = {g: m for g, m in zip(generators, ["s", "^", "D", "v", "P"])}
    for (comp, gen), g in part.groupby(["composition", "generator"], dropna=False, sort=False):
        g = g.sort_values("size")
        gen = gen if isinstance(gen, str) else ""
        label = literal(comp) + (f" ({literal(gen)})" if gen else "")
        ax.errorbar(g["size"], g[f"{metric}_mean"],
                    yerr=np.nan_to_num([g[f"{metric}_mean"] - g[f"{metric}_ci_low"],
                                        g[f"{metric}_ci_high"] - g[f"{metric}_mean"]]),
                    marker=markers.get(gen, "o"), ls=styles.get(gen, "-"), capsize=3, label=label,
                    color=COLOURS.get(comp), lw=1.6 if not gen else 1.2)
    sizes = sorted(part["size"].unique())
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(int(x)) for x in sizes])
    ax.minorticks_off()
    low, high = ax.get_ylim()
    ax.set_ylim(max(0.0, low), min(1.0, high))
    ax.set_xlabel("training-set size (images; subset_real uses the real half of mixed)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} on real test images")
    _title(ax, "Where synthetic data stops helping: accuracy against training-set size", scope)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def ratio_curves(summary: pd.DataFrame, path: Path, metric: str = "accuracy", scope: str = "") -> Path | None:
    """Accuracy against the synthetic share of the training set (ratio sweeps)."""
    part = summary[summary["composition"] == "ratio_sweep"]
    if part.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (gen, size), g in part.groupby(["generator", "size"], sort=True):
        g = g.sort_values("ratio")
        ax.errorbar(g["ratio"], g[f"{metric}_mean"],
                    yerr=np.nan_to_num([g[f"{metric}_mean"] - g[f"{metric}_ci_low"],
                                        g[f"{metric}_ci_high"] - g[f"{metric}_mean"]]),
                    marker="o", capsize=3, label=f"{int(size)} images, {literal(gen)}")  # a label starting
        # with "_" would be left out of the legend: the number goes first
    ax.set_xlabel("synthetic share of the training set")
    ax.set_ylabel(f"{metric.replace('_', ' ')} on real test images")
    _title(ax, "Accuracy against the synthetic share (fixed training-set size)", scope)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def paired_differences(comparisons: pd.DataFrame, path: Path, scope: str = "") -> Path | None:
    """Paired differences (A - B on the same seeds) with their 95 % intervals."""
    part = comparisons.dropna(subset=["diff"])
    if part.empty:
        return None
    labels = [f"{literal(r.composition_a, 24)}{'/' + literal(r.generator_a, 24) if r.generator_a else ''} − "
              f"{literal(r.composition_b, 24)}{'/' + literal(r.generator_b, 24) if r.generator_b else ''} @ {int(r.size)}"
              for r in part.itertuples()]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(part) + 1.4))
    y = np.arange(len(part))[::-1]
    ax.errorbar(part["diff"], y, xerr=np.nan_to_num([part["diff"] - part["ci_low"], part["ci_high"] - part["diff"]]),
                fmt="o", capsize=3, color="black")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("difference in accuracy (A − B, same seeds), 95 % CI")
    _title(ax, "Paired comparisons: an interval that crosses 0 is not a demonstrated effect", scope)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.55 * len(class_names) + 3, 0.4 * len(rows) + 1.6))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(class_names)), [literal(c, 30) for c in class_names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if matrix[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="accuracy on the class's real test images")
    ax.set_xlabel("class")
    _title(ax, f"Per-class accuracy, training size {size} (mean over seeds)", scope)
    fig.tight_layout()
    return _save(fig, path)

