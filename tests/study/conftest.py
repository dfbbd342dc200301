"""Fixtures of the study tests: "synthetic" Datasets made from the bundled digits, and specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset, atomic_folder, write_packed


def write_dataset(path: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                  splits: np.ndarray | None = None) -> Dataset:
    """A packed Dataset folder at ``path`` (replaced if it exists)."""
    splits = np.full(len(images), "train") if splits is None else splits
    with atomic_folder(path, kind="dataset", replace=True) as tmp:
        write_packed(tmp, images, labels, splits, class_names, [{} for _ in range(len(images))],
                     {"kind": "synthetic"})
    return Dataset.open(path)


@pytest.fixture
def dataset_writer():
    """``dataset_writer(path, images, labels, class_names, splits=None)`` -> the opened Dataset."""
    return write_dataset


@pytest.fixture(scope="session")
def fake_generators(digits16, tmp_path_factory):
    """Two "generators": 200 real train digits each, drawn with different seeds, one with mild
    and one with strong pixel noise. Returns {name: path}."""
    root = tmp_path_factory.mktemp("synthetic")
    train = digits16.split("train")
    out = {}
    for name, seed, noise in (("gan", 11, 8), ("ddpm", 12, 60)):
        part = subset(train, count=200, seed=seed)
        pixels = part.take(np.arange(len(part))).astype(int)
        pixels += np.random.default_rng(seed).integers(-noise, noise + 1, pixels.shape)
        write_dataset(root / name, np.clip(pixels, 0, 255).astype(np.uint8), part.labels, part.class_names)
        out[name] = root / name
    return out


@pytest.fixture
def write_spec(tmp_path, digits16, fake_generators):
    """``write_spec(**keys)``: a spec file for the digits and the two fake generators, with the
    tiny classifier, sizes [40] and seeds [0, 1] unless overridden. Returns its path."""

    def write(name: str = "spec", **keys) -> Path:
        spec = {"name": "test-study", "real": str(digits16.path),
                "synthetic": {k: str(v) for k, v in fake_generators.items()},
                "sizes": [40], "seeds": [0, 1], "classifier_preset": "tiny",
                "classifier": {"train": {"epochs": 2, "batch_size": 16}}, **keys}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write
