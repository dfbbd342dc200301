"""Seeded subsets and mixtures: sizes, stratification, reproducibility and fingerprints."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from synthworth.data.compose import concat, mix, subset
from synthworth.data.dataset import Dataset
from synthworth.errors import DataError

CLASSES = ["cat", "dog", "fox"]


def _dataset(per_class: dict[int, int], marker: int, size: int = 4) -> Dataset:
    """Images whose pixel [0, 0, 0] says which Dataset they come from (``marker``) and whose
    pixels [0, 1, :2] hold their own row number, so every row can be traced back."""
    labels = np.concatenate([np.full(n, c) for c, n in sorted(per_class.items())])
    images = np.zeros((len(labels), size, size, 3), np.uint8)
    images[:, 0, 0, 0] = marker
    images[:, 0, 1, 0] = np.arange(len(labels)) // 256
    images[:, 0, 1, 1] = np.arange(len(labels)) % 256
    splits = np.where(np.arange(len(labels)) % 5 == 0, "test", "train")
    return Dataset.from_arrays(images, labels, CLASSES, splits)


def _source_rows(ds: Dataset) -> list[tuple[int, int]]:
    """(marker, row number) of every image of a view, read from the pixels."""
    px = ds.take(np.arange(len(ds))).astype(int)
    return list(zip(px[:, 0, 0, 0].tolist(), (px[:, 0, 1, 0] * 256 + px[:, 0, 1, 1]).tolist()))


@pytest.fixture
def real() -> Dataset:
    return _dataset({0: 30, 1: 20, 2: 10}, marker=10)


@pytest.fixture
def synthetic() -> Dataset:
    return _dataset({0: 40, 1: 40, 2: 40}, marker=200)


def _per_class(ds: Dataset) -> dict[str, int]:
    return {ds.class_names[c]: n for c, n in Counter(ds.labels.tolist()).items()}


# ------------------------------------------------------------------------------------ subset
def test_subset_by_count_is_stratified_and_reproducible(real):
    a = subset(real, count=12, seed=7)
    b = subset(real, count=12, seed=7)
    c = subset(real, count=12, seed=8)

    assert len(a) == 12
    assert _per_class(a) == {"cat": 4, "dog": 4, "fox": 4}
    np.testing.assert_array_equal(a.row, b.row)
    assert a.fingerprint == b.fingerprint
    assert set(a.row.tolist()) != set(c.row.tolist())
    assert a.fingerprint != c.fingerprint
    # A view: the same backing array, labels and pixels that belong together.
    assert a.arrays[0] is real.arrays[0]
    np.testing.assert_array_equal(a.labels, real.labels[a.row])
    assert [r for _, r in _source_rows(a)] == a.row.tolist()


def test_subset_count_spreads_over_small_classes(real):
    ds = subset(real, count=45, seed=0)
    # fox has only 10: the rest is spread over the classes that still have images.
    assert _per_class(ds) == {"cat": 18, "dog": 17, "fox": 10}
    assert len(set(ds.row.tolist())) == 45


def test_subset_by_fraction_and_per_class(real):
    half = subset(real, fraction=0.5, seed=1)
    assert _per_class(half) == {"cat": 15, "dog": 10, "fox": 5}
    assert subset(real, fraction=0.5, seed=1).fingerprint == half.fingerprint

    three = subset(real, per_class=3, seed=1)
    assert _per_class(three) == {"cat": 3, "dog": 3, "fox": 3}
    np.testing.assert_array_equal(three.row, subset(real, per_class=3, seed=1).row)


def test_subset_fingerprint_follows_parameters_and_input(real, synthetic):
    fps = {
        subset(real, count=9, seed=0).fingerprint,
        subset(real, count=10, seed=0).fingerprint,
        subset(real, count=9, seed=1).fingerprint,
        subset(real, fraction=0.3, seed=0).fingerprint,
        subset(real, per_class=3, seed=0).fingerprint,
        subset(synthetic, count=9, seed=0).fingerprint,
    }
    assert len(fps) == 6
    assert real.fingerprint not in fps
    assert subset(real, count=9, seed=0).fingerprint == subset(real, count=9, seed=0).fingerprint


def test_subset_errors(real):
    with pytest.raises(DataError, match="asked for 61 images but only 60 exist"):
        subset(real, count=61)
    with pytest.raises(DataError, match="not enough images per class.*fox: asked 11, have 10"):
        subset(real, per_class=11)
    with pytest.raises(ValueError, match="exactly one of"):
        subset(real, count=3, per_class=1)
    with pytest.raises(ValueError, match="exactly one of"):
        subset(real)
    with pytest.raises(ValueError, match="fraction must be in"):
        subset(real, fraction=1.5)


def test_subset_of_a_prepared_dataset_keeps_items(tmp_path, class_tree, run_prepare):
    class_tree(tmp_path / "src", {"a": 6, "b": 6}, noise=True)
    ds = run_prepare(source="folder", path=tmp_path / "src", size=8, test_fraction=0.0)
    part = subset(ds, per_class=2, seed=3)
    items = part.items()
    assert len(items) == 4
    assert [i["source_file"] for i in items] == [ds.items()[r]["source_file"] for r in part.row]
    np.testing.assert_array_equal(part.take(np.arange(4)), ds.take(part.row))


# ------------------------------------------------------------------------------------ mix
@pytest.mark.parametrize("size,ratio,n_second", [(30, 0.5, 15), (30, 0.2, 6), (20, 0.75, 15),
                                                 (12, 0.0, 0), (12, 1.0, 12)])
def test_mix_takes_the_ratio_from_the_second_dataset(real, synthetic, size, ratio, n_second):
    mixed = mix(real, synthetic, size=size, ratio=ratio, seed=4)
    assert len(mixed) == size
    origins = Counter(marker for marker, _ in _source_rows(mixed))
    assert origins[200] == n_second
    assert origins[10] == size - n_second
    assert mixed.class_names == CLASSES


@pytest.mark.parametrize("size", [12, 9, 11, 7])
def test_mix_real_part_is_the_real_subset(real, synthetic, size):
    mixed = mix(real, synthetic, size=size, ratio=0.5, seed=5)
    rows = _source_rows(mixed)
    real_part = sorted(r for marker, r in rows if marker == 10)
    expected = subset(real, count=size // 2, seed=5)
    assert real_part == sorted(expected.row.tolist())
    assert len(real_part) == size // 2
    assert sum(marker == 200 for marker, _ in rows) == size - size // 2


def test_mix_parts_are_stratified(real, synthetic):
    mixed = mix(real, synthetic, size=24, ratio=0.5, seed=0)
    from_real = [l for (marker, _), l in zip(_source_rows(mixed), mixed.labels) if marker == 10]
    from_synth = [l for (marker, _), l in zip(_source_rows(mixed), mixed.labels) if marker == 200]
    assert Counter(from_real) == {0: 4, 1: 4, 2: 4}
    assert Counter(from_synth) == {0: 4, 1: 4, 2: 4}


def test_mix_is_reproducible_and_fingerprinted(real, synthetic):
    a = mix(real, synthetic, size=20, ratio=0.5, seed=1)
    b = mix(real, synthetic, size=20, ratio=0.5, seed=1)
    assert a.fingerprint == b.fingerprint
    assert _source_rows(a) == _source_rows(b)
    np.testing.assert_array_equal(a.labels, b.labels)
    others = {
        mix(real, synthetic, size=20, ratio=0.5, seed=2).fingerprint,
        mix(real, synthetic, size=20, ratio=0.25, seed=1).fingerprint,
        mix(real, synthetic, size=21, ratio=0.5, seed=1).fingerprint,
        mix(synthetic, real, size=20, ratio=0.5, seed=1).fingerprint,
    }
    assert a.fingerprint not in others and len(others) == 4
    assert _source_rows(mix(real, synthetic, size=20, ratio=0.5, seed=2)) != _source_rows(a)


def test_mix_rejects_bad_ratio_and_incompatible_inputs(real, synthetic):
    with pytest.raises(ValueError, match="ratio must be within"):
        mix(real, synthetic, size=10, ratio=1.5)
    other_classes = Dataset.from_arrays(np.zeros((6, 4, 4, 3), np.uint8), [0, 1] * 3, ["x", "y"])
    with pytest.raises(DataError, match="different classes"):
        mix(real, other_classes, size=6, ratio=0.5)
    bigger = Dataset.from_arrays(np.zeros((6, 8, 8, 3), np.uint8), [0, 1, 2] * 2, CLASSES)
    with pytest.raises(DataError, match="different image shapes"):
        mix(real, bigger, size=6, ratio=0.5)


def test_concat_keeps_order_and_pixels(real, synthetic):
    both = concat([real, synthetic])
    assert len(both) == len(real) + len(synthetic)
    rows = _source_rows(both)
    assert rows[: len(real)] == [(10, r) for r in range(len(real))]
    assert rows[len(real):] == [(200, r) for r in range(len(synthetic))]
    np.testing.assert_array_equal(both.splits[: len(real)], real.splits)
