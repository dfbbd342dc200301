"""Pictures a run shows: sample grids and curves read from ``metrics.jsonl``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def save_grid(images: np.ndarray, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    """Write uint8 images (n, H, W, C) as one PNG grid (``nrow`` images per row)."""
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if tensor.shape[1] == 1:
        tensor = tensor.repeat(1, 3, 1, 1)
    nrow = nrow or int(np.ceil(np.sqrt(len(images))))
    grid = make_grid(tensor, nrow=nrow, padding=2, pad_value=255)
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.png")
    picture.save(tmp)
    os.replace(tmp, path)
    return path


def plot_curves(rows: list[dict[str, Any]], keys: list[str], path: str | Path, *, title: str,
                ylabel: str, per_epoch: bool = False, smooth: int = 0) -> Path | None:
    """Plot ``keys`` against the iteration (or the epoch, from the epoch summary rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if per_epoch:
        rows = [r for r in rows if r.get("kind") == "epoch"]
        x_key, xlabel = "epoch", "epoch"
        keys = [f"{k}_mean" for k in keys]
    else:
        rows = [r for r in rows if r.get("kind") != "epoch"]
        x_key, xlabel = "step", "iteration (batch)"
    present = [k for k in keys if any(k in r for r in rows)]
    if not present:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key in present:
        pts = [(r[x_key], r[key]) for r in rows if key in r]
        x, y = np.array(pts, dtype=float).T
        ax.plot(x, y, marker="o" if per_epoch else None, lw=1 if not per_epoch else 1.5,
                alpha=0.35 if smooth and len(y) > smooth else 1.0, label=key)
        if smooth and len(y) > smooth:
            kernel = np.ones(smooth) / smooth
            ax.plot(x[smooth - 1:], np.convolve(y, kernel, mode="valid"), lw=1.5,
                    label=f"{key} (mean of {smooth})", color=ax.lines[-1].get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
