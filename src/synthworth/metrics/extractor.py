"""What every feature extractor of the image-quality metrics is (:class:`FeatureExtractor`), and
the SHA-256 of the weight files they read (:func:`file_sha256`), shared by the extractors of
:mod:`synthworth.metrics.features` and :mod:`synthworth.metrics.dinov2`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch


class FeatureExtractor:
    """Maps uint8 image batches (N, C, H, W) to feature vectors (N, D)."""

    kind = "features"
    label = ""
    source: dict | None = None  # where the weights came from (path, fingerprint), for the results

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (remembered per path, size and mtime in this process: weights are large)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]
