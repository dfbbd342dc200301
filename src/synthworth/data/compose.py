"""Composing training sets from Datasets: seeded subsets and mixtures by ratio.

Each result is a view (no pixels copied) with its own fingerprint, derived from its inputs'
fingerprints and its parameters, so a study cell that uses it can be cached by content.
"""

from __future__ import annotations

import numpy as np

from synthworth.data.dataset import Dataset, derive_fingerprint
from synthworth.errors import DataError


def _per_class_counts(dataset: Dataset, count: int | None, fraction: float | None,
                      per_class: int | None) -> dict[int, int]:
    """How many images to draw from each class for the requested size."""
    classes, available = np.unique(dataset.labels, return_counts=True)
    have = dict(zip(classes.tolist(), available.tolist()))
    given = sum(x is not None for x in (count, fraction, per_class))
    if given != 1:
        raise ValueError("give exactly one of count, fraction or per_class")
    if per_class is not None:
        want = {c: per_class for c in have}
    elif fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        want = {c: int(round(n * fraction)) for c, n in have.items()}
    else:
        if count > len(dataset):
            raise DataError(f"asked for {count} images but only {len(dataset)} exist")
        want = _split_evenly(count, have)
    short = {c: (w, have[c]) for c, w in want.items() if w > have[c]}
    if short:
        names = dataset.class_names
        detail = ", ".join(f"{names[c] if c >= 0 else 'unlabelled'}: asked {w}, have {h}"
                           for c, (w, h) in short.items())
        raise DataError(f"not enough images per class ({detail})")
    return want


def _split_evenly(count: int, have: dict[int, int]) -> dict[int, int]:
    """Spread ``count`` over classes as evenly as their sizes allow (largest classes first)."""
    want = {c: 0 for c in have}
    left = count
    open_classes = sorted(have)
    while left > 0 and open_classes:
        share, extra = divmod(left, len(open_classes))
        for j, c in enumerate(open_classes):
            want[c] += share + (1 if j < extra else 0)
        over = 0
        for c in open_classes:
            if want[c] > have[c]:
                over += want[c] - have[c]
                want[c] = have[c]
        left = over
        open_classes = [c for c in open_classes if want[c] < have[c]]
    return want


def subset(dataset: Dataset, *, count: int | None = None, fraction: float | None = None,
           per_class: int | None = None, seed: int = 0) -> Dataset:
    """A class-stratified, seeded random subset: ``count`` images in all, a ``fraction`` of
    each class, or ``per_class`` images of each class. Same inputs, same subset."""
    want = _per_class_counts(dataset, count, fraction, per_class)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in sorted(want):
        members = np.flatnonzero(dataset.labels == c)
        chosen.append(np.sort(rng.choice(members, size=want[c], replace=False)))
    idx = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
    params = {"count": count, "fraction": fraction, "per_class": per_class, "seed": seed}
    return dataset.select(idx, fingerprint=derive_fingerprint("subset", params, [dataset.fingerprint]))


def concat(datasets: list[Dataset], fingerprint: str | None = None) -> Dataset:
    """All rows of several Datasets with the same classes and image shape, in order."""
    first = datasets[0]
    for other in datasets[1:]:
        if other.class_names != first.class_names:
            raise DataError(f"cannot combine Datasets with different classes: {first.class_names} "
                            f"vs {other.class_names}")
        if other.shape != first.shape:
            raise DataError(f"cannot combine Datasets with different image shapes: {first.shape} "
                            f"vs {other.shape}")
    arrays, parts, rows = [], [], []
    for ds in datasets:
        ids = {id(a): i for i, a in enumerate(arrays)}
        mapping = []
        for a in ds.arrays:
            if id(a) not in ids:
                ids[id(a)] = len(arrays)
                arrays.append(a)
            mapping.append(ids[id(a)])
        parts.append(np.asarray(mapping, dtype=np.int32)[ds.part])
        rows.append(ds.row)
    fp = fingerprint or derive_fingerprint("concat", {}, [d.fingerprint for d in datasets])
    return Dataset(arrays=arrays, part=np.concatenate(parts), row=np.concatenate(rows),
                   labels=np.concatenate([d.labels for d in datasets]),
                   splits=np.concatenate([d.splits for d in datasets]),
                   class_names=list(first.class_names), fingerprint=fp)


def mix(first: Dataset, second: Dataset, *, size: int, ratio: float, seed: int = 0) -> Dataset:
    """``size`` images: a share ``ratio`` drawn from ``second`` and the rest from ``first``,
    each part class-stratified and seeded (the source study's ``mixed`` is ratio 0.5)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be within [0, 1], got {ratio}")
    # Round half up, not Python's half-to-even: for ratio 0.5 the first part is always
    # size // 2, whether size // 2 is odd or even.
    n_second = int(np.floor(size * ratio + 0.5))
    n_first = size - n_second
    parts = []
    if n_first:
        parts.append(subset(first, count=n_first, seed=seed))
    if n_second:
        parts.append(subset(second, count=n_second, seed=seed + 1))
    params = {"size": size, "ratio": ratio, "seed": seed}
    return concat(parts, fingerprint=derive_fingerprint(
        "mix", params, [first.fingerprint, second.fingerprint]))
