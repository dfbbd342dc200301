"""One block of a generation: its images rendered in one sampling call and each PNG written
whole (a hidden temporary name, then a rename), the training-size file last: its presence marks
the image as done. The same in one process (:mod:`synthworth.generate.run`) and on a Ray actor
(:mod:`synthworth.generate.ray_blocks`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from synthworth.data.imageio import ImageSpec, _fit
from synthworth.generate.folder import _mark_native
from synthworth.generate.plan import PNG_KEY, _Layout, native_folder


def write_block(out: Path, plan: dict[str, Any], layout: _Layout, source, block: range,
                session) -> tuple[int, float]:
    """Render one block (its seeds, in one sampling call) and write its missing PNGs; returns how
    many were written and the seconds the sampling call took (the images come back as arrays on
    the CPU, so the device has finished; writing is not counted). ``session.native_marked``
    remembers that OUT-native was marked."""
    size, channels = plan["size"], plan["channels"]
    spec = ImageSpec(size=size, channels=channels, fit="crop", resample=plan["resample"])
    native = native_folder(out)
    subjects = [layout.subjects[i] for i in block]
    seeds = [int(layout.seeds[i]) for i in block]
    written = 0
    started = time.perf_counter()
    rendered = source.render(subjects, seeds)
    sampled = time.perf_counter() - started
    for i, (image, extra) in zip(block, rendered):
        target = out / layout.files[i]
        if target.is_file():  # made by an earlier run, from the same batch: identical
            continue
        record = {"file_name": layout.files[i],
                  "label": int(layout.labels[i]) if layout.labels[i] >= 0 else None,
                  "class_name": layout.subjects[i], "generator": plan["name"],
                  "seed": int(layout.seeds[i]), **source.details(layout.subjects[i], int(layout.seeds[i])),
                  **extra}
        pixels = np.asarray(image, dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.shape[:2] != (size, size):
            if plan["keep_native"]:
                if not session.native_marked:
                    _mark_native(out, plan)
                    session.native_marked = True
                _write_png(native / layout.files[i], pixels, record)
            pixels = _resize(pixels, spec)
        # The training-size file is written last: its presence marks the image as done.
        _write_png(target, pixels, record)
        written += 1
    return written, sampled


def _resize(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    img = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    resized = np.asarray(_fit(img, spec))
    return resized[:, :, None] if resized.ndim == 2 else resized


def _write_png(path: Path, pixels: np.ndarray, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, json.dumps(record, ensure_ascii=True))
    # A hidden name ending in .tmp: image readers skip it, and only a finished file gets the real name.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)
