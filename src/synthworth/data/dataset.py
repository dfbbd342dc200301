"""The Dataset: the one currency between synthworth's stages, real or synthetic.

On disk a *packed* Dataset is a folder::

    images.npy      uint8 array (N, H, W, C), opened memory-mapped
    labels.npy      int64 (N,), -1 for unlabelled images
    splits.npy      unicode (N,), e.g. "train" / "valid" / "test"
    items.jsonl     one JSON object per image (where it came from: file, seed, prompt, ...)
    manifest.json   written last: class names, counts, options, content fingerprint, skips

A folder without ``manifest.json`` is not a Dataset (a killed writer leaves its work under a
temporary name, never under the final one).

In memory a :class:`Dataset` is a *view*: rows of one or more packed arrays, picked by index.
Subsets and mixtures (see :mod:`synthworth.data.compose`) are views too, so composing never copies
images; a view carries its own fingerprint derived from its inputs and parameters.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthworth.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
UNLABELLED = -1


def fingerprint_arrays(images: np.ndarray, labels: np.ndarray, splits: np.ndarray,
                       class_names: Sequence[str], chunk: int = 4096) -> str:
    """Content hash of a packed Dataset: pixels, labels, splits and class names (BLAKE2b)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"shape": list(images.shape), "classes": list(class_names)}).encode())
    for start in range(0, len(images), chunk):
        h.update(np.ascontiguousarray(images[start:start + chunk]).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    h.update("\n".join(splits.tolist()).encode())
    return h.hexdigest()


def derive_fingerprint(operation: str, params: dict[str, Any], inputs: Sequence[str]) -> str:
    """Fingerprint of a Dataset made from others: a hash of the inputs' fingerprints and params."""
    payload = json.dumps({"op": operation, "params": params, "inputs": list(inputs)}, sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


@dataclass
class Dataset:
    """Images (uint8, N x H x W x C), integer labels, split names and class names.

    ``arrays`` are the backing image arrays (memory-mapped for packed Datasets); row ``i`` of the
    view is ``arrays[part[i]][row[i]]``.
    """

    arrays: list[np.ndarray]
    part: np.ndarray
    row: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    class_names: list[str]
    fingerprint: str
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def open(cls, path: str | os.PathLike) -> Dataset:
        """Open a packed Dataset folder; images stay on disk, memory-mapped."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"Dataset folder {path} does not exist")
        if not path.is_dir():  # "an interrupted run" below would send the user to redo work for nothing
            raise DataError(f"{path} is a file, not a Dataset folder (a folder holding {MANIFEST} and the packed arrays)")
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            raise DataError(
                f"{path} is not a complete Dataset (no {MANIFEST}); it may be an interrupted run: "
                "prepare or generate it again")
        manifest = _read_manifest(path)
        try:
            for name in ("images.npy", "labels.npy", "splits.npy"):
                if not (path / name).is_file():  # a FIFO there would block np.load forever
                    raise OSError(f"{name} is missing or not a regular file")
            images = np.load(path / "images.npy", mmap_mode="r")
            labels = np.load(path / "labels.npy")
            splits = np.load(path / "splits.npy")
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: Dataset files are unreadable ({exc}); prepare it again") from None
        _check_arrays(path, manifest, images, labels, splits)
        n = len(images)
        return cls(arrays=[images], part=np.zeros(n, np.int32), row=np.arange(n, dtype=np.int64),
                   labels=labels.astype(np.int64), splits=splits,
                   class_names=list(manifest["class_names"]), fingerprint=manifest["fingerprint"],
                   manifest=manifest, path=path)

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                    splits: np.ndarray | None = None) -> Dataset:
        """An in-memory Dataset (used by tests and by generators before writing)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(f"images must be uint8 N x H x W x C, got {images.dtype} {images.shape}")
        n = len(images)
        splits = np.full(n, "train") if splits is None else np.asarray(splits).astype(str)
        labels = np.asarray(labels, dtype=np.int64)
        return cls(arrays=[images], part=np.zeros(n, np.int32), row=np.arange(n, dtype=np.int64),
                   labels=labels, splits=splits, class_names=list(class_names),
                   fingerprint=fingerprint_arrays(images, labels, splits, class_names))

    # ---------------------------------------------------------------- basic facts
    def __len__(self) -> int:
        return len(self.row)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self.arrays[0].shape[1:])  # type: ignore[return-value]

    @property
    def resolution(self) -> int:
        return self.shape[0]

    @property
    def channels(self) -> int:
        return self.shape[2]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labelled(self) -> bool:
        return self.num_classes > 0

    @property
    def split_names(self) -> list[str]:
        order = {"train": 0, "valid": 1, "test": 2}
        return sorted(set(self.splits.tolist()), key=lambda s: (order.get(s, 9), s))

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of images per split and class (``"(unlabelled)"`` for label -1)."""
        out: dict[str, dict[str, int]] = {}
        names = {i: c for i, c in enumerate(self.class_names)}
        for split in self.split_names:
            mask = self.splits == split
            labels, num = np.unique(self.labels[mask], return_counts=True)
            out[split] = {names.get(int(l), "(unlabelled)"): int(c) for l, c in zip(labels, num)}
        return out

    # ---------------------------------------------------------------- views
    def select(self, indices: np.ndarray | Sequence[int], fingerprint: str | None = None) -> Dataset:
        """A view of some rows (no pixels are copied)."""
        idx = np.asarray(indices, dtype=np.int64)
        fp = fingerprint or derive_fingerprint(
            "select", {"indices": hashlib.blake2b(idx.tobytes(), digest_size=16).hexdigest()},
            [self.fingerprint])
        return Dataset(arrays=self.arrays, part=self.part[idx], row=self.row[idx],
                       labels=self.labels[idx], splits=self.splits[idx],
                       class_names=list(self.class_names), fingerprint=fp,
                       manifest=self.manifest, path=self.path)

    def split(self, name: str) -> Dataset:
        """The view of one split; an unknown split name is a DataError listing the known ones."""
        mask = self.splits == name
        if not mask.any():
            raise DataError(f"Dataset has no {name!r} split (it has: {', '.join(self.split_names)})")
        return self.select(np.flatnonzero(mask),
                           fingerprint=derive_fingerprint("split", {"name": name}, [self.fingerprint]))

    # ---------------------------------------------------------------- reading pixels
    def take(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Images at view positions ``indices`` as one uint8 array (n, H, W, C), in that order.

        Rows are gathered straight into the result in the requested order (one copy per
        image). Reading them in sorted order would not make the reads sequential (a shuffled
        batch's rows lie all over the file) and would cost a second copy to restore the order.
        """
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.row[idx]
        if len(self.arrays) == 1:
            present = [0]
        else:
            parts = self.part[idx]
            present = np.unique(parts).tolist()
        if len(present) == 1:
            # np.asarray: a plain ndarray view of the memory map (skips np.memmap's Python-level
            # indexing and returns an ordinary array).
            out = np.take(np.asarray(self.arrays[present[0]]), rows, axis=0)
            return out if out.dtype == np.uint8 else out.astype(np.uint8)
        out = np.empty((len(idx),) + self.shape, dtype=np.uint8)
        for p in present:
            where = np.flatnonzero(parts == p)
            out[where] = np.take(np.asarray(self.arrays[p]), rows[where], axis=0)
        return out

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.take([i])[0], int(self.labels[i])

    def batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate ``(images uint8 (b,H,W,C), labels int64 (b,))`` in (seeded) shuffled order."""
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            yield self.take(idx), self.labels[idx]

    def to_hf(self):
        """This Dataset as a Hugging Face ``datasets.DatasetDict``: one split per split (``valid`` is
        named ``validation``), an ``image`` column, when labelled ``label`` as a ``ClassLabel`` of
        the class names in this Dataset's order, and each image's plain facts (seed, prompt, source
        file, ...: :func:`synthworth.data.hf.extra_columns`); the same as loading its export or
        generation folder with ``datasets.load_dataset``. Each split's images are encoded as PNG in memory."""
        try:
            import datasets
        except ImportError:
            raise DataError("Dataset.to_hf() needs the Hugging Face datasets library: "
                            "pip install datasets") from None
        from PIL import Image

        from synthworth.data.hf import extra_columns, hf_split

        records = self.items()
        extras = extra_columns(records)
        features = {"image": datasets.Image()}
        if self.labelled:
            if (self.labels < 0).any():
                raise DataError("this Dataset mixes labelled and unlabelled images; a ClassLabel "
                                "cannot hold both: convert the labelled part only")
            features["label"] = datasets.ClassLabel(names=list(self.class_names))
        features.update({k: datasets.Value(dtype) for k, dtype in extras.items()})
        parts = {}
        for split in self.split_names:
            view = self.split(split)
            images = []
            for start in range(0, len(view), 512):
                for image in view.take(np.arange(start, min(start + 512, len(view)))):
                    buffer = io.BytesIO()
                    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
                    images.append({"bytes": buffer.getvalue(), "path": None})
            columns: dict[str, list] = {"image": images}
            if self.labelled:
                columns["label"] = view.labels.tolist()
            rows = np.flatnonzero(self.splits == split)
            for key, dtype in extras.items():
                values = [records[i].get(key) for i in rows]
                columns[key] = [float(v) if v is not None and dtype == "float64" else v for v in values]
            parts[hf_split(split)] = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
        order = ["train", "validation", "test"]
        return datasets.DatasetDict({k: parts[k] for k in sorted(parts, key=order.index)})

    def items(self) -> list[dict[str, Any]]:
        """Per-image records of a packed Dataset (``items.jsonl``), in view order."""
        if self.path is None or len(self.arrays) != 1:
            return [{} for _ in range(len(self))]
        records = read_items(self.path)
        if len(records) != len(self.arrays[0]):
            raise DataError(f"{self.path / 'items.jsonl'} has {len(records)} records for "
                            f"{len(self.arrays[0])} images; prepare or generate the Dataset again")
        return [records[int(r)] for r in self.row]


def _damaged(path: Path, what: str) -> DataError:
    return DataError(f"{path / MANIFEST} is damaged or was edited by hand ({what}); "
                     "prepare or generate the Dataset again")


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of ``path``, checked: it may come from someone else or be hand-edited, and
    every later step trusts these fields (a wrong one must not surface as a KeyError)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: invalid JSON or UTF-8
        raise _damaged(path, f"not readable as JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise _damaged(path, "not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: Dataset format {manifest.get('format_version')!r} is not "
                        f"supported (this synthworth reads format {FORMAT_VERSION})")
    checks = {
        "num_images": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "class_names": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
        "fingerprint": lambda v: isinstance(v, str),
    }
    for key, ok in checks.items():
        if key not in manifest:
            raise _damaged(path, f"no {key!r}")
        if not ok(manifest[key]):
            raise _damaged(path, f"{key!r} is {json.dumps(manifest[key])[:80]}")
    optional = {
        "source": lambda v: isinstance(v, dict),
        "skipped": lambda v: isinstance(v, list) and all(
            isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("reason"), str)
            for s in v),
    }
    for key, ok in optional.items():
        if key in manifest and not ok(manifest[key]):
            raise _damaged(path, f"{key!r} is {json.dumps(manifest[key])[:80]}")
    return manifest


def _check_arrays(path: Path, manifest: dict[str, Any], images: np.ndarray, labels: np.ndarray,
                  splits: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{path}: images.npy is {images.dtype} {images.shape}, not uint8 N x H x W x C; "
                        "prepare it again")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or splits.ndim != 1 or splits.dtype.kind != "U":
        raise DataError(f"{path}: labels.npy or splits.npy has the wrong type; prepare it again")
    if not (len(images) == len(labels) == len(splits) == manifest["num_images"]):
        raise DataError(f"{path}: array lengths disagree with {MANIFEST}; prepare it again")
    k = len(manifest["class_names"])
    low, high = (-1, -1) if k == 0 else (0, k - 1)
    if len(labels) and (labels.min() < low or labels.max() > high):
        raise _damaged(path, f"labels run from {labels.min()} to {labels.max()} but there are "
                             f"{k} class names")


def read_items(path: Path) -> list[dict[str, Any]]:
    file = Path(path) / "items.jsonl"
    if not file.is_file():
        return []
    try:
        with open(file, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError) as exc:
        raise DataError(f"{file} is damaged ({exc}); prepare or generate the Dataset again") from None
    if not all(isinstance(r, dict) for r in records):
        raise DataError(f"{file} is damaged (a line is not a JSON object); prepare or generate the "
                        "Dataset again")
    return records


# -------------------------------------------------------------------- writing
def temporary_sibling(final: Path) -> Path:
    """A unique temporary folder next to ``final`` (same filesystem, so rename is atomic)."""
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_folder(final: str | os.PathLike, *, kind: str, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success mark it as a synthworth output of ``kind`` (see
    :mod:`synthworth.safety`) and rename it to ``final``; on error remove it.

    Nothing ever appears under ``final`` until the content is complete, so a killed run leaves
    only a hidden ``.NAME.tmp-*`` folder (removed by the next run, see :func:`clean_stale_temps`).
    With ``replace``, an existing ``final`` is replaced only when it is a synthworth output of the
    same ``kind`` holding nothing else (checked before and again just before the swap).
    """
    from synthworth.safety import check_replaceable, mark_owned

    final = Path(final)
    if replace:
        check_replaceable(final, kind)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        mark_owned(tmp, kind)
        if final.exists() or final.is_symlink():
            if not replace:
                raise DataError(f"{final} already exists; choose a new folder")
            check_replaceable(final, kind)  # it may have changed while this run worked
            trash = temporary_sibling(final)
            final.rename(trash)
            tmp.rename(final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_stale_temps(final: Path) -> None:
    """Remove temporary folders left next to ``final`` by killed runs of dead processes."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            pid = int(tmp.name.split(".tmp-")[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_image_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A new uint8 ``.npy`` file at ``path`` of ``shape``, opened memory-mapped for writing.

    Its blocks are reserved on disk first (``posix_fallocate``): a memory map over a sparse file
    on a full disk kills the process with SIGBUS at the first write to a missing block, whereas
    the reservation fails here with an ordinary ``OSError(ENOSPC)`` that the CLI reports."""
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape).flush()  # header + size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # EOPNOTSUPP: no fallocate here
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)
    return np.lib.format.open_memmap(path, mode="r+")


def write_packed(folder: Path, images: np.ndarray, labels: np.ndarray, splits: np.ndarray,
                 class_names: Sequence[str], items: Sequence[dict[str, Any]],
                 manifest: dict[str, Any],
                 before_manifest: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Write labels, splits, items and (last) the manifest of a packed Dataset into ``folder``.

    ``images`` must already be ``folder/images.npy`` (written by the caller, usually through
    ``np.lib.format.open_memmap``) or an array, which is then saved. ``before_manifest`` is called
    with the full manifest just before it is written (for files that must exist once the Dataset
    is complete, made from the manifest). Returns the manifest.
    """
    folder = Path(folder)
    if not (folder / "images.npy").exists():
        np.save(folder / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    labels = np.asarray(labels, dtype=np.int64)
    splits = np.asarray(splits).astype(str)
    np.save(folder / "labels.npy", labels)
    np.save(folder / "splits.npy", splits)
    with open(folder / "items.jsonl", "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    view = Dataset(arrays=[images], part=np.zeros(len(labels), np.int32),
                   row=np.arange(len(labels)), labels=labels, splits=splits,
                   class_names=list(class_names), fingerprint="")
    from synthworth import __version__

    full = {
        "format_version": FORMAT_VERSION,
        "synthworth_version": __version__,
        "num_images": int(len(labels)),
        "shape": list(images.shape[1:]),
        "class_names": list(class_names),
        "splits": view.split_names,
        "counts": view.counts(),
        "fingerprint": fingerprint_arrays(images, labels, splits, class_names),
        **manifest,
    }
    if before_manifest is not None:
        before_manifest(full)
    tmp = folder / (MANIFEST + ".part")
    tmp.write_text(json.dumps(full, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.rename(folder / MANIFEST)
    return full
