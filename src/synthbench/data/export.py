"""``synthbench data export``: a packed Dataset written back as class folders of PNG files.

The layout is the Hugging Face ``imagefolder`` convention, which torchvision's ``ImageFolder``
also reads::

    FOLDER/<class>/<index>.png
    FOLDER/metadata.jsonl     {"file_name": "<class>/<index>.png", "label": <int>, "class_name": ..., "split": ...}

Class names are sorted in every synthbench Dataset, so the integer ``label`` equals the class
index that ``torchvision.datasets.ImageFolder`` assigns to the same folder.
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
from synthbench.safety import check_apart, check_replaceable, owned_kind

UNLABELLED_FOLDER = "unlabelled"


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
    items = view.items()
    clean_stale_temps(out)
    with atomic_folder(out, kind="export", replace=True) as tmp:
        folders = view.class_names or [UNLABELLED_FOLDER]
        for name in folders:
            (tmp / name).mkdir()
        rows = []
        bar = tqdm(total=len(view), desc="exporting", unit="img", disable=not progress,
                   file=sys.stderr, mininterval=0.5)
        for start in range(0, len(view), 512):
            idx = np.arange(start, min(start + 512, len(view)))
            for i, image in zip(idx, view.take(idx)):
                label = int(view.labels[i])
                folder = view.class_names[label] if label >= 0 else UNLABELLED_FOLDER
                file_name = f"{folder}/{i:06d}.png"
                pixels = image[:, :, 0] if image.shape[2] == 1 else image
                Image.fromarray(pixels).save(tmp / file_name)
                row = {"file_name": file_name, "label": label if label >= 0 else None,
                       "class_name": folder if label >= 0 else None, "split": str(view.splits[i])}
                extra = {k: v for k, v in items[i].items() if k not in row}
                rows.append({**row, **extra})
            bar.update(len(idx))
        bar.close()
        with open(tmp / "metadata.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
