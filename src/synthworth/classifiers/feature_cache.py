"""Features of a frozen backbone kept on disk by image content, so a grid of linear probes
extracts each image once per backbone, however many cells draw it::

    FOLDER/source.json     the backbone they are features of (weights, SHA-256, preprocessing)
    FOLDER/<chunk>.npz     ``keys`` (N, 16 uint8: the BLAKE2b of each image's pixels and shape)
                           and ``features`` (N, D float32: the input of the classifier's last layer)

A Dataset's features are looked up image by image: the cells of a study draw subsets and
mixtures of a few pools, each with its own fingerprint, but they share images, and an image's
features do not depend on the Dataset it comes from (the backbone runs in eval mode). Chunks
are written whole under a temporary name and renamed, and never changed; extraction holds the
folder's lock, so a second process waits and then finds the features instead of extracting them
again. Chunks are read with ``allow_pickle=False``: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from synthworth import __version__
from synthworth.classifiers.extract import extract_features
from synthworth.data.dataset import Dataset
from synthworth.errors import SynthworthError
from synthworth.safety import output_lock

KEY_BYTES = 16


def backbone_key(backbone: dict[str, Any], name: str) -> str:
    """A name for the features of the pretrained network ``name`` with ``backbone`` (a
    Classifier's ``backbone`` record): its weights' SHA-256, its preprocessing and the package
    version (which may change how images are prepared)."""
    payload = {"name": name, "sha256": backbone["sha256"], "preprocess": backbone["preprocess"],
               "feature": "input of the last linear layer", "version": __version__}
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest()


def image_keys(dataset: Dataset, batch_size: int = 1024) -> np.ndarray:
    """(N, 16) uint8: the BLAKE2b of every image's bytes and shape, in the Dataset's order."""
    out = np.zeros((len(dataset), KEY_BYTES), np.uint8)
    row = 0
    for images, _ in dataset.batches(batch_size, shuffle=False):
        shape = np.asarray(images.shape[1:], np.int64).tobytes()
        for image in images:
            digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=KEY_BYTES)
            digest.update(shape)
            out[row] = np.frombuffer(digest.digest(), np.uint8)
            row += 1
    return out


class _Index:
    """The chunks of one folder read so far: image key -> (chunk, row)."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.names: set[str] = set()
        self.rows: dict[bytes, tuple[int, int]] = {}

    def refresh(self, folder: Path) -> None:
        for path in sorted(folder.glob("*.npz")):
            if path.name in self.names or path.name.startswith("."):  # read, or still being written
                continue
            with np.load(path, allow_pickle=False) as data:
                keys, features = data["keys"], data["features"]
            if self.chunks and features.shape[1] != self.chunks[0].shape[1]:
                raise SynthworthError(f"{path} holds {features.shape[1]}-d features where {folder} holds "
                                      f"{self.chunks[0].shape[1]}-d ones; delete the folder {folder} (a cache: it "
                                      "is extracted again)")
            self.names.add(path.name)
            self.chunks.append(features)
            for row, key in enumerate(keys):
                self.rows.setdefault(key.tobytes(), (len(self.chunks) - 1, row))


_INDEXES: dict[str, _Index] = {}  # per folder, in this process: a cell reads only the chunks new since the last


class FeatureCache:
    """The features of one backbone, in ``folder``."""

    def __init__(self, folder: str | os.PathLike, source: dict[str, Any]):
        self.folder = Path(folder)
        self.source = source
        self.extracted = 0  # images this object ran through the backbone

    def _index(self) -> _Index:
        index = _INDEXES.setdefault(str(self.folder.resolve()), _Index())
        if self.folder.is_dir():
            index.refresh(self.folder)
        return index

    def features(self, dataset: Dataset, model: Callable[[], Any], batch_size: int = 256,
                 progress: bool = False) -> np.ndarray:
        """(N, D) float32 features of every image of ``dataset`` in order; the images not cached
        yet go through ``model()`` (called only then: a classifier whose ``features`` method
        gives them) and are kept."""
        keys = image_keys(dataset)
        index = self._index()
        missing = [i for i, k in enumerate(keys) if k.tobytes() not in index.rows]
        if missing:
            with output_lock(self.folder, wait=True, what="these features"):
                index.refresh(self.folder)  # another process may have extracted them meanwhile
                missing = [i for i, k in enumerate(keys) if k.tobytes() not in index.rows]
                if missing:
                    self._extract(dataset, keys, missing, model(), batch_size, progress)
                    index.refresh(self.folder)
        return self._gather(index, keys)

    def _extract(self, dataset: Dataset, keys: np.ndarray, missing: list[int], model, batch_size: int,
                 progress: bool) -> None:
        # One copy of each image (a mixture may hold an image twice).
        first: dict[bytes, int] = {}
        for i in missing:
            first.setdefault(keys[i].tobytes(), i)
        rows = np.asarray(sorted(first.values()), np.int64)
        extractor = backbone_features(model)
        features = extract_features(extractor, dataset.select(rows), batch_size, progress).astype(np.float32)
        source = self.folder / "source.json"
        if not source.is_file():
            _write_atomic(source, json.dumps(self.source, indent=1, default=str).encode())
        name = hashlib.blake2b(keys[rows].tobytes(), digest_size=12).hexdigest()
        tmp = self.folder / f".{name}.{os.getpid()}.part.npz"
        np.savez(tmp, keys=keys[rows], features=features)
        os.replace(tmp, self.folder / f"{name}.npz")
        self.extracted += len(rows)

    @staticmethod
    def _gather(index: _Index, keys: np.ndarray) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros((0, index.chunks[0].shape[1] if index.chunks else 0), np.float32)
        out = np.empty((len(keys), index.chunks[0].shape[1]), np.float32)
        for i, key in enumerate(keys):
            chunk, row = index.rows[key.tobytes()]
            out[i] = index.chunks[chunk][row]
        return out


class _Features:
    """A classifier's penultimate features as an extractor (eval mode)."""

    kind = "backbone"

    def __init__(self, model) -> None:
        self.model = model.eval()

    def features(self, images):
        return self.model.features(images)


def backbone_features(model) -> _Features:
    """The extractor of a Classifier's features (the input of its last linear layer)."""
    return _Features(model)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
