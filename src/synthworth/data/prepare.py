"""``synthworth data prepare``: turn a real image source into a packed Dataset.

Every image is decoded once (in parallel worker processes), normalised by
:func:`synthworth.data.imageio.load_image` and written into one uint8 array. Files that cannot
be used are skipped and listed, with the reason, in ``manifest.json``. The Dataset is built
under a temporary name and renamed when complete; preparing the same unchanged source with the
same options again reuses the finished Dataset.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from synthworth.config import StrictModel
from synthworth.data.dataset import (
    MANIFEST,
    Dataset,
    atomic_folder,
    clean_stale_temps,
    new_image_array,
    write_packed,
)
from synthworth.data.imageio import ImageSkipped, ImageSpec, array_to_uint8, load_image
from synthworth.data.sources import BUNDLED, SOURCES, Listing
from synthworth.errors import DataError
from synthworth.safety import check_apart, check_replaceable, owned_kind

MAX_SEED = 2**32 - 1
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
SourceKind = Literal["folder", "animals10", "fruits", "celeba", "digits", "lfw"]


class PrepareConfig(StrictModel):
    """Options of ``synthworth data prepare`` (the ``data`` preset group)."""

    source: SourceKind = Field("folder", description="Kind of source: folder, animals10, fruits, celeba, digits or lfw.")
    path: str | None = Field(None, description="Folder of the download (not used by the bundled digits and lfw).")
    size: int = Field(64, ge=4, le=4096, description="Side of the square images in pixels.")
    channels: Literal[1, 3] | None = Field(None, description="1 (grayscale) or 3 (RGB); default: 1 for digits/lfw, 3 otherwise.")
    fit: Literal["crop", "pad", "stretch"] = Field("crop", description="Resize policy: centre crop, pad to square, or stretch.")
    resample: Literal["lanczos", "bicubic", "bilinear", "nearest", "box"] = Field("bicubic", description="Resampling filter used when resizing.")
    background: tuple[int, int, int] = Field((255, 255, 255), description="RGB colour behind transparent pixels and padding.")
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Share of each class held out as the test split when the source has no splits.")
    max_per_class: int | None = Field(None, ge=1, description="Keep at most this many images per class (per source split), drawn with the seed.")
    classes: list[str] | None = Field(None, description="Keep only these classes (names after translation, e.g. dog, cat).")
    label_attr: str | None = Field(None, description="CelebA only: label images by this attribute (e.g. Smiling gives two classes).")
    seed: int = Field(0, description="Seed for the class cap and the train/test split (0 to 4294967295).")
    workers: int | None = Field(None, ge=0, description="Decoding processes (0: in this process; default: number of CPUs).")
    strict: bool = Field(False, description="Fail instead of skipping when any file cannot be used.")
    max_pixels: int = Field(89_478_485, ge=1, description="Refuse images with more pixels than this (decompression bombs).")

    @model_validator(mode="after")
    def _check(self) -> PrepareConfig:
        if self.source not in BUNDLED and not self.path:
            raise ValueError(f"source {self.source!r} needs a path to the downloaded data (--path)")
        if self.label_attr and self.source != "celeba":
            raise ValueError("label_attr only applies to the celeba source")
        if not 0 <= self.seed <= MAX_SEED:
            # scikit-learn's split takes seeds below 2**32 (numpy's RandomState); numpy's
            # default_rng would take more, but one bound for every use of the seed is simpler.
            raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED} (2**32 - 1), got {self.seed}")
        if any(not 0 <= c <= 255 for c in self.background):
            raise ValueError("background colour values must be within 0..255")
        return self

    def image_spec(self, default_channels: int) -> ImageSpec:
        return ImageSpec(size=self.size, channels=self.channels or default_channels, fit=self.fit,
                         resample=self.resample, background=tuple(self.background),
                         max_pixels=self.max_pixels)

    def content_key(self, signature: str) -> str:
        """Hash of everything that decides the Dataset's content (not workers or strictness)."""
        options = self.model_dump(mode="json", exclude={"workers", "strict"})
        if options["path"]:
            options["path"] = str(Path(options["path"]).resolve())
        payload = json.dumps({"options": options, "source": signature}, sort_keys=True)
        return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def prepare(config: PrepareConfig, out: str | os.PathLike, *, overwrite: bool = False,
            progress: bool = True) -> Dataset:
    """Prepare ``config``'s source into the packed Dataset folder ``out`` and open it."""
    out = Path(out)
    start = time.perf_counter()
    check_output_folder(out)
    listing = SOURCES[config.source](Path(config.path) if config.path else None,
                                     label_attr=config.label_attr)
    if config.path:
        check_apart(out, [config.path])
    key = config.content_key(listing.signature)
    reused = _reusable(out, key, overwrite)
    if reused is not None:
        skipped = reused.manifest.get("skipped", [])
        if skipped and config.strict:
            # strict is not part of the content key, so check the earlier run's skips here.
            raise _strict_error(skipped)
        _say(progress, f"reusing {out}: already prepared from the same source with the same options")
        return reused
    listing = _select(listing, config)
    spec = config.image_spec(listing.default_channels)
    clean_stale_temps(out)
    with atomic_folder(out, kind="dataset", replace=overwrite) as tmp:
        kept, skipped = _decode_all(listing, spec, tmp, config, progress)
        skipped = listing.skipped + skipped
        if skipped and config.strict:
            raise _strict_error(skipped)
        if not kept:
            raise DataError(f"no usable images in {config.path or config.source}: all "
                            f"{len(skipped)} candidate files were skipped")
        labels = np.array([listing.labels[i] for i in kept], dtype=np.int64)
        splits = _assign_splits([listing.splits[i] for i in kept], labels, config)
        images = np.load(tmp / "images.npy", mmap_mode="r")
        items = [{"source_file": listing.relative(listing.refs[i])} for i in kept]
        manifest = write_packed(tmp, images, labels, splits, listing.class_names, items, {
            "kind": "prepared",
            "source": {"kind": config.source,
                       "path": str(Path(config.path).resolve()) if config.path else None},
            "options": config.model_dump(mode="json"),
            "content_key": key,
            "source_signature": listing.signature,
            "skipped": [{"file": listing.relative(s["file"]), "reason": s["reason"]} for s in skipped],
            "duration_s": round(time.perf_counter() - start, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        del images
    _say(progress, _summary(out, manifest))
    return Dataset.open(out)


def _strict_error(skipped: list[dict[str, str]]) -> DataError:
    first = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
    return DataError(f"--strict: {len(skipped)} file(s) could not be used ({first}"
                     f"{' ...' if len(skipped) > 3 else ''})")


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr)


def _summary(out: Path, manifest: dict) -> str:
    splits = ", ".join(f"{s} {sum(c.values())}" for s, c in manifest["counts"].items())
    h, w, c = manifest["shape"]
    line = (f"prepared {manifest['num_images']} images ({h}x{w}x{c}; {len(manifest['class_names'])} "
            f"classes; {splits}) into {out} in {manifest['duration_s']:.1f}s")
    if manifest["skipped"]:
        reasons: dict[str, int] = {}
        for s in manifest["skipped"]:
            reason = s["reason"].split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        line += f"; skipped {len(manifest['skipped'])} files ({detail}; listed in {out / MANIFEST})"
    return line


def check_output_folder(out: Path) -> None:
    """``out`` and its nearest existing parent must be folders: a file there is a user error,
    never something to rename or delete."""
    for place in (out, *out.parents):
        if place.exists():
            if not place.is_dir():
                raise DataError(f"{place} is a file, not a folder; choose another --out")
            return


def _reusable(out: Path, key: str, overwrite: bool) -> Dataset | None:
    """The finished Dataset at ``out`` when it was prepared with the same content key; None when
    ``out`` is free (absent, empty) or a Dataset synthworth may replace (``overwrite``)."""
    if not out.exists():
        return None
    if owned_kind(out) == "dataset" and not overwrite:
        try:
            manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
            previous = manifest.get("content_key") if isinstance(manifest, dict) else None
        except (OSError, ValueError):
            previous = None
        if previous == key:
            try:
                return Dataset.open(out)
            except DataError:
                pass  # damaged: fall through to the error below
        raise DataError(f"{out} already holds a Dataset prepared from another source or with other "
                        "options; choose a new --out, or pass --overwrite to replace that Dataset")
    check_replaceable(out, "dataset")
    if not any(out.iterdir()):
        out.rmdir()
    return None


def _select(listing: Listing, config: PrepareConfig) -> Listing:
    """Apply the class filter and the per-class cap (seeded), keeping the listing's order."""
    keep = np.ones(len(listing.refs), dtype=bool)
    labels = np.asarray(listing.labels, dtype=np.int64)
    class_names = listing.class_names
    remap = None
    if config.classes:
        unknown = sorted(set(config.classes) - set(class_names))
        if unknown:
            raise DataError(f"unknown class(es) {', '.join(unknown)}; this source has: {', '.join(class_names)}")
        wanted = sorted(set(config.classes))
        keep &= np.isin(labels, [class_names.index(c) for c in wanted])
        remap = {class_names.index(c): i for i, c in enumerate(wanted)}
        class_names = wanted
    if config.max_per_class:
        rng = np.random.default_rng(config.seed)
        groups: dict[tuple, list[int]] = {}
        for i in np.flatnonzero(keep):
            groups.setdefault((int(labels[i]), listing.splits[i]), []).append(int(i))
        for members in groups.values():
            if len(members) > config.max_per_class:
                drop = rng.permutation(len(members))[config.max_per_class:]
                keep[np.asarray(members)[drop]] = False
    idx = np.flatnonzero(keep)
    new_labels = [int(labels[i]) if remap is None else remap[int(labels[i])] for i in idx]
    return Listing(refs=[listing.refs[i] for i in idx], labels=new_labels,
                   splits=[listing.splits[i] for i in idx], class_names=class_names,
                   root=listing.root, arrays=listing.arrays, value_range=listing.value_range,
                   default_channels=listing.default_channels, skipped=listing.skipped,
                   signature=listing.signature)


def _die_with_parent(parent: int) -> None:
    """Worker initializer: have Linux kill this decoding worker when its parent dies.

    A pool worker waits on its job queue forever, so after a ``kill -9`` of ``prepare`` (or the
    OOM killer) nothing else would end it. ``PR_SET_PDEATHSIG`` fires when the thread that
    started the worker exits: the thread that called :func:`prepare`, which shuts the pool down
    before it returns. Other systems have no such call; there the workers keep the old behaviour.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _decode_one(job: tuple[str, ImageSpec]) -> np.ndarray | str:
    path, spec = job
    try:
        return load_image(path, spec)
    except ImageSkipped as exc:
        return str(exc)


def _decode_all(listing: Listing, spec: ImageSpec, folder: Path, config: PrepareConfig,
                progress: bool) -> tuple[list[int], list[dict[str, str]]]:
    """Decode every candidate into ``folder/images.npy``; return kept positions and skips."""
    n = len(listing.refs)
    if n == 0:
        raise DataError(f"no candidate images found in {config.path or config.source}")
    shape = (n, spec.size, spec.size, spec.channels)
    images = new_image_array(folder / "images.npy", shape)
    kept: list[int] = []
    skipped: list[dict[str, str]] = []
    bar = tqdm(total=n, desc=f"decoding {config.source}", unit="img", disable=not progress,
               file=sys.stderr, mininterval=0.5)
    if listing.arrays is not None:
        results = (array_to_uint8(listing.arrays[r], spec, listing.value_range) for r in listing.refs)
        pool = None
    else:
        workers = config.workers if config.workers is not None else (os.cpu_count() or 1)
        jobs = ((ref, spec) for ref in listing.refs)
        if workers > 0 and n > 1:
            pool = ProcessPoolExecutor(max_workers=min(workers, n), initializer=_die_with_parent,
                                       initargs=(os.getpid(),))
            results = pool.map(_decode_one, jobs, chunksize=max(1, min(64, n // (4 * workers) or 1)))
        else:
            pool = None
            results = map(_decode_one, jobs)
    try:
        for i, result in enumerate(results):
            if isinstance(result, str):
                skipped.append({"file": listing.refs[i], "reason": result})
            else:
                images[len(kept)] = result
                kept.append(i)
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    images.flush()
    if len(kept) < n:
        # Rare (only when files were skipped): copy the good rows into a right-sized array.
        final = new_image_array(folder / "images.part.npy", (len(kept),) + shape[1:])
        for start in range(0, len(kept), 4096):
            stop = min(start + 4096, len(kept))
            final[start:stop] = images[start:stop]
        final.flush()
        del images, final
        os.replace(folder / "images.part.npy", folder / "images.npy")
    else:
        del images
    return kept, skipped


def _assign_splits(source_splits: list[str | None], labels: np.ndarray,
                   config: PrepareConfig) -> np.ndarray:
    """Keep the source's own splits; elsewhere draw a seeded, class-stratified test split."""
    splits = np.array([s or "train" for s in source_splits], dtype=object)
    free = np.flatnonzero([s is None for s in source_splits])
    if len(free) and config.test_fraction > 0:
        from sklearn.model_selection import train_test_split

        stratify = labels[free] if (labels[free] >= 0).all() else None
        try:
            _, test = train_test_split(free, test_size=config.test_fraction,
                                       random_state=config.seed, stratify=stratify)
        except ValueError as exc:
            raise DataError(f"cannot hold out a test fraction of {config.test_fraction}: {exc}; "
                            "lower --test-fraction or add images to the smallest class") from None
        splits[test] = "test"
    return splits.astype(str)
