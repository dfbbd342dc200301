"""Features of images from a frozen network, shared by the linear probes of this room and the
image-quality metrics of :mod:`synthworth.metrics` (which re-exports these names):

- :class:`FeatureExtractor`: maps uint8 image batches (N, C, H, W) to feature vectors (N, D);
- :func:`extract_features`: every image of a Dataset through an extractor, in order;
- :func:`file_sha256`: the SHA-256 of a weights file (remembered per path, size and mtime), so
  results can name the exact weights they were computed with.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from synthworth.data.dataset import Dataset


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


@torch.no_grad()
def extract_features(extractor: FeatureExtractor, dataset: Dataset, batch_size: int = 256,
                     progress: bool = False) -> np.ndarray:
    """Features of every image of ``dataset`` in order, float64 (N, D). Extractors run in eval
    mode, so each image's features do not depend on the batch it is in."""
    from tqdm.auto import tqdm

    out = []
    bar = tqdm(total=len(dataset), desc=f"{extractor.kind} features", unit="img", disable=not progress,
               leave=False, mininterval=1.0)
    for images, _ in dataset.batches(batch_size, shuffle=False):
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        out.append(extractor.features(x).detach().cpu().to(torch.float64).numpy())
        bar.update(len(images))
    bar.close()
    return np.concatenate(out) if out else np.zeros((0, 0))
