"""``synthbench data export``: a packed Dataset written back as class folders of PNG files.

The layout is the Hugging Face ``imagefolder`` convention, which torchvision's ``ImageFolder``
also reads::

    FOLDER/<class>/<index>.png
    FOLDER/metadata.jsonl     {"file_name": "<class>/<index>.png", "label": <int>, "class_name": ..., "split": ...}

The integer ``label`` always equals the class index that ``torchvision.datasets.ImageFolder``
assigns to the folder (it numbers folders in sorted order). Class names come from a manifest
that may be someone else's, so folder names go through :func:`synthbench.safety.safe_names`
(no ``../``, separators, NUL or names that differ only by case); the real name stays in
``class_name``. When that changes the sorted order, every folder gets its label as a
zero-padded prefix (``00_cat``) so that the order holds again.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from synthbench.data.dataset import Dataset, atomic_folder, clean_stale_temps
from synthbench.data.prepare import check_output_folder
from synthbench.errors import DataError
from synthbench.safety import check_apart, check_replaceable, owned_kind, safe_names

UNLABELLED_FOLDER = "unlabelled"


def class_folders(class_names: list[str]) -> list[str]:
    """The folder name of each class: file-name safe, distinct ignoring case, and sorting in
    label order (so that ``ImageFolder``'s index of folder ``i`` is ``i``)."""
    folders = safe_names(class_names)
    if folders != sorted(folders):
        width = len(str(len(folders) - 1))
        folders = [f"{i:0{width}d}_{name}" for i, name in enumerate(folders)]
    return folders


def export_imagefolder(dataset: Dataset, out: str | os.PathLike, *, split: str | None = None,
                       overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``dataset`` (or one of its splits) as PNG class folders with ``metadata.jsonl``."""
    out = Path(out)
    check_output_folder(out)
    check_apart(out, [dataset.path])
    if out.exists() and any(out.iterdir()) and not overwrite:
        kind = owned_kind(out)
        advice = " or pass --overwrite to replace that export" if kind == "export" else ""
        raise DataError(f"{out} already exists; choose a new --out{advice}")
    check_replaceable(out, "export")
    view = dataset.split(split) if split else dataset
    if view.class_names and (view.labels < 0).any():
        raise DataError("this Dataset mixes labelled and unlabelled images; an image folder "
                        "cannot hold both: export the labelled part only")
    items = view.items()
    clean_stale_temps(out)
    with atomic_folder(out, kind="export", replace=True) as tmp:
        folders = class_folders(view.class_names) if view.class_names else [UNLABELLED_FOLDER]
        for name in folders:
            (tmp / name).mkdir()
        rows = []
        bar = tqdm(total=len(view), desc="exporting", unit="img", disable=not progress,
                   file=sys.stderr, mininterval=0.5)
        for start in range(0, len(view), 512):
            idx = np.arange(start, min(start + 512, len(view)))
            for i, image in zip(idx, view.take(idx)):
                label = int(view.labels[i])
                folder = folders[label] if label >= 0 else UNLABELLED_FOLDER
                file_name = f"{folder}/{i:06d}.png"
                pixels = image[:, :, 0] if image.shape[2] == 1 else image
                Image.fromarray(pixels).save(tmp / file_name)
                row = {"file_name": file_name, "label": label if label >= 0 else None,
                       "class_name": view.class_names[label] if label >= 0 else None,
                       "split": str(view.splits[i])}
                extra = {k: v for k, v in items[i].items() if k not in row}
                rows.append({**row, **extra})
            bar.update(len(idx))
        bar.close()
        with open(tmp / "metadata.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
