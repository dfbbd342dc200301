"""Fixtures for training tests: the bundled digits prepared once per session at 16x16."""

from __future__ import annotations

import pytest

from synthbench.data.compose import subset
from synthbench.data.prepare import PrepareConfig, prepare


@pytest.fixture(scope="session")
def digits16(tmp_path_factory):
    """The bundled digits at 16x16 grayscale (1,437 train / 360 test)."""
    return prepare(PrepareConfig(source="digits", size=16, fit="stretch", workers=0),
                   tmp_path_factory.mktemp("digits") / "digits16", progress=False)


@pytest.fixture(scope="session")
def digits_small(digits16, tmp_path_factory):
    """A 160-image labelled training Dataset (16 per class) written as its own packed folder."""
    from synthbench.data.dataset import atomic_folder, write_packed

    part = subset(digits16.split("train"), per_class=16, seed=0)
    out = tmp_path_factory.mktemp("digits-small") / "ds"
    with atomic_folder(out) as tmp:
        write_packed(tmp, part.take(range(len(part))), part.labels, part.splits, part.class_names,
                     [{} for _ in range(len(part))], {"kind": "test"})
    from synthbench.data.dataset import Dataset

    return Dataset.open(out)
