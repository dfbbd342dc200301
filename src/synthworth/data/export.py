"""``synthworth data export``: a packed Dataset written back as PNG files, as a Hugging Face dataset
repository that torchvision's ``ImageFolder`` also reads::

    FOLDER/README.md                       dataset card (features with the class names, splits, provenance)
    FOLDER/<split>/<class>/<index>.png     split = train, validation (synthworth's "valid"), test
    FOLDER/<split>/metadata.parquet        file_name, label (a ClassLabel), each image's plain facts
                                           (source_file, seed, prompt, ...): what `datasets` reads
    FOLDER/metadata.jsonl                  every image: {"file_name": "<split>/<class>/<index>.png",
                                           "label": <int>, "class_name": ..., "split": ..., + its record}

Both ``datasets.load_dataset(FOLDER)`` and ``load_dataset("imagefolder", data_dir=FOLDER)`` give a
``DatasetDict`` of the real splits with a ``ClassLabel``; :mod:`synthworth.data.hf` says why the
layout is this one. The integer ``label`` always equals the class index that
``torchvision.datasets.ImageFolder`` assigns to the folder in a split folder (it numbers folders in
sorted order). Class names come from a manifest that may be someone else's, so folder names go
through :func:`synthworth.data.hf.class_folders` (no ``../``, separators, NUL, names that differ
only by case, or split words `datasets` would take for a split); the real name stays in the card
and the metadata. When that changes the sorted order, every folder gets its label as a
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

from synthworth.data.dataset import Dataset, atomic_folder, clean_stale_temps
from synthworth.data.hf import (UNLABELLED_FOLDER, class_folders, extra_columns, hf_split, hf_splits,
                                write_card, write_split_metadata)
from synthworth.data.prepare import check_output_folder
from synthworth.errors import DataError
from synthworth.safety import check_apart, check_replaceable, owned_kind

__all__ = ["UNLABELLED_FOLDER", "class_folders", "export_imagefolder"]


def export_imagefolder(dataset: Dataset, out: str | os.PathLike, *, split: str | None = None,
                       overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``dataset`` (or one of its splits) as PNG split and class folders with metadata and a card."""
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
    names = hf_splits(view.split_names)  # before anything is written: every split must have a name
    items = view.items()
    extras = extra_columns(items)  # per-image facts (source file, seed, prompt) as columns
    clean_stale_temps(out)
    with atomic_folder(out, kind="export", replace=True) as tmp:
        folders = class_folders(view.class_names) if view.class_names else [UNLABELLED_FOLDER]
        for name in names:
            for folder in folders:  # every class, even one without images here: indices stay labels
                (tmp / name / folder).mkdir(parents=True)
        rows = []
        per_split: dict[str, tuple[list[str], list[int], list[dict]]] = {name: ([], [], []) for name in names}
        bar = tqdm(total=len(view), desc="exporting", unit="img", disable=not progress,
                   file=sys.stderr, mininterval=0.5)
        for start in range(0, len(view), 512):
            idx = np.arange(start, min(start + 512, len(view)))
            for i, image in zip(idx, view.take(idx)):
                label = int(view.labels[i])
                name = hf_split(str(view.splits[i]))
                file_name = f"{folders[label] if label >= 0 else UNLABELLED_FOLDER}/{i:06d}.png"
                pixels = image[:, :, 0] if image.shape[2] == 1 else image
                Image.fromarray(pixels).save(tmp / name / file_name)
                per_split[name][0].append(file_name)
                per_split[name][1].append(label)
                per_split[name][2].append(items[i])
                row = {"file_name": f"{name}/{file_name}", "label": label if label >= 0 else None,
                       "class_name": view.class_names[label] if label >= 0 else None,
                       "split": str(view.splits[i])}
                extra = {k: v for k, v in items[i].items() if k not in row}
                rows.append({**row, **extra})
            bar.update(len(idx))
        bar.close()
        class_names = view.class_names or None
        for name, (files, labels, records) in per_split.items():
            write_split_metadata(tmp / name, files, labels, class_names, extras, records)
        with open(tmp / "metadata.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_card(tmp, class_names=class_names, extras=extras,
                   counts={n: len(f) for n, (f, _, _) in per_split.items()},
                   manifest={**view.manifest, "fingerprint": view.fingerprint},
                   note="`metadata.jsonl` lists every image with its class name, synthworth split and "
                        "where it came from.")
    return out
