"""Figures of the comparison page: image quality tracked during training, every model on the
same axes, with the real-vs-real floor as a dashed line.

Each function returns the figure's path and the points it drew, read back from the drawn lines
themselves (:func:`drawn`), so the CSV written beside the figure holds exactly what the figure
shows. Model names are drawn literally (:func:`synthworth.report.figures.literal`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthworth.report.figures import _figure, _plt, _save, literal

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
LABELS = {"fid": "FID (lower is better)", "kid": "KID (raw; lower is better)",
          "precision": "precision (higher is better)", "recall": "recall (higher is better)"}
X_LABELS = {"epoch": "epoch", "train_s": "training time (s; evaluation, grids and checkpoints excluded)"}


def colours(names: list[str]) -> dict[str, tuple[str, str]]:
    """A colour and a marker per model, in the order the page lists the models."""
    return {n: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, n in enumerate(names)}


def floors(series: dict[str, pd.DataFrame], metric: str) -> dict[str, float]:
    """Each model's real-vs-real floor of ``metric`` (its last eval row's), finite ones only."""
    out = {}
    for name, rows in series.items():
        col = f"{metric}_real_floor"
        if col in rows.columns:
            values = pd.to_numeric(rows[col], errors="coerce").dropna()
            values = values[np.isfinite(values)]
            if len(values):
                out[name] = float(values.iloc[-1])
    return out


def _draw(ax, series: dict[str, pd.DataFrame], metric: str, x: str, style: dict[str, tuple[str, str]]) -> None:
    for name, rows in series.items():
        if metric not in rows.columns or x not in rows.columns:
            continue
        part = pd.DataFrame({"x": pd.to_numeric(rows[x], errors="coerce"),
                             "y": pd.to_numeric(rows[metric], errors="coerce")}).dropna().sort_values("x")
        if part.empty:
            continue
        colour, marker = style[name]
        ax.plot(part["x"].to_numpy(float), part["y"].to_numpy(float), marker=marker, color=colour, lw=1.5, ms=5,
                label=literal(name, 40), gid=f"model\t{name}")
    floor = floors(series, metric)
    if floor and np.allclose(list(floor.values()), next(iter(floor.values())), rtol=1e-6, atol=1e-12):
        ax.axhline(next(iter(floor.values())), color="black", ls="--", lw=1.1, label="real-vs-real floor",
                   gid="floor\tall models")
    else:
        for name, value in floor.items():
            ax.axhline(value, color=style[name][0], ls="--", lw=1.0, label=f"floor ({literal(name, 30)})",
                       gid=f"floor\t{name}")
    if x == "epoch":  # whole epochs only on the axis
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def log_if_spread(ax, metric: str) -> None:
    """FID and KID fall by orders of magnitude over a run, so the first evaluations flatten every
    later one on a linear axis: a log axis when every value drawn is positive (the label says so)."""
    if metric not in ("fid", "kid"):
        return
    ys = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()] or [np.array([])])
    ys = ys[np.isfinite(ys)]
    if len(ys) and (ys > 0).all() and ys.max() / ys.min() > 3:
        ax.set_yscale("log")
        ax.set_ylabel(f"{ax.get_ylabel() or LABELS[metric]} (log axis)", fontsize=9)


def drawn(ax, panel: str) -> list[dict]:
    """The points of every model line and floor line on ``ax``, as drawn (floors: y only)."""
    points = []
    for line in ax.get_lines():
        gid = line.get_gid() or ""
        if "\t" not in gid:
            continue
        what, name = gid.split("\t", 1)
        xs, ys = line.get_xdata(), line.get_ydata()
        if what == "floor":
            points.append({"panel": panel, "line": "floor", "model": name, "x": "", "y": float(ys[0])})
        else:
            points += [{"panel": panel, "line": "model", "model": name, "x": float(a), "y": float(b)}
                       for a, b in zip(xs, ys)]
    return points


def metric_against(series: dict[str, pd.DataFrame], metric: str, x: str, path: Path, *, features: str,
                   style: dict[str, tuple[str, str]]) -> tuple[Path | None, list[dict]]:
    """One metric against ``x`` ("epoch" or "train_s") for every model, floor dashed."""
    if not any(metric in r.columns and x in r.columns and r[[x, metric]].notna().all(axis=1).any()
               for r in series.values()):
        return None, []
    fig, ax = _figure(7.2, 4.2)
    _draw(ax, series, metric, x, style)
    ax.set_xlabel(X_LABELS[x], fontsize=9)
    ax.set_ylabel(LABELS.get(metric, metric), fontsize=9)
    log_if_spread(ax, metric)
    ax.set_title(f"{metric.upper()} against {'epoch' if x == 'epoch' else 'training time'} "
                 f"(features: {literal(features, 60)})", fontsize=9)
    ax.legend(fontsize=8)
    points = drawn(ax, f"{metric} vs {x}")
    return _save(fig, path), points


def panels(series: dict[str, pd.DataFrame], path: Path, *, features: str,
           style: dict[str, tuple[str, str]]) -> tuple[Path | None, list[dict]]:
    """KID, precision and recall against epoch, one small panel each, floors dashed."""
    metrics = ["kid", "precision", "recall"]
    if not any(m in r.columns and pd.to_numeric(r[m], errors="coerce").notna().any()
               for r in series.values() for m in metrics):
        return None, []
    fig, axes = _plt().subplots(1, 3, figsize=(10.5, 3.6), layout="constrained")
    points = []
    for ax, metric in zip(axes, metrics):
        _draw(ax, series, metric, "epoch", style)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_title(LABELS[metric], fontsize=9)
        log_if_spread(ax, metric)
        ax.tick_params(labelsize=7)
        points += drawn(ax, f"{metric} vs epoch")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # a floor drawn in one panel only (a metric only some runs have) still gets its entry
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=min(len(labels), 4))
    fig.suptitle(f"KID, precision and recall against epoch (features: {literal(features, 60)})", fontsize=9)
    return _save(fig, path), points
