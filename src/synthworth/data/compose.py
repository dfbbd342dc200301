"""Composing training sets from Datasets: seeded subsets, mixtures by ratio, augmentations.

Each result is a view (no pixels copied) with its own fingerprint, derived from its inputs'
fingerprints and its parameters, so a study cell that uses it can be cached by content.

Class balance. A draw of ``count`` images spreads them over the classes by water-filling:
each image goes to the class holding the fewest so far that still has images left, ties to
the lowest class index (:func:`balanced_counts`). A mixture is stratified *jointly*: its whole
holds the per-class counts a draw of the same size from the first Dataset (the real pool)
would hold, its first part holds what a draw of the first part's size would, and the second
part fills the difference (:func:`mix`, :func:`augment`). Drawing each part on its own would
hand both parts' leftover images to the lowest classes (25 + 25 digits: 6 of classes 0-4, 4 of
5-9, against 5 each in 50 real ones), a bias in every real-vs-mixture comparison.

Fingerprints of older versions are kept wherever a draw holds the same images as it did
then (same per-class counts, same seeded draw): only the draws whose counts changed get a
new fingerprint (their counts are hashed in), so only their study cells are retrained.
"""

from __future__ import annotations

import numpy as np

from synthworth.data.dataset import Dataset, derive_fingerprint
from synthworth.errors import DataError

Counts = dict[int, int]  # class index -> images


def class_sizes(dataset: Dataset) -> Counts:
    """Images per class present in ``dataset`` (unlabelled images under -1)."""
    classes, available = np.unique(dataset.labels, return_counts=True)
    return dict(zip(classes.tolist(), available.tolist()))


def _fill(start: Counts, add: int, cap: Counts | None) -> Counts:
    """``start`` plus ``add`` images, each to the class with the fewest that is below its cap
    (``None``: no cap), ties to the lowest index. Solved by level, not image by image: every
    class below a level L is raised to L (or its cap), the rest go one each to the lowest
    classes at L."""
    classes = sorted(start)
    s = np.array([start[c] for c in classes], dtype=np.int64)
    room = (np.array([cap[c] for c in classes], dtype=np.int64) - s if cap is not None
            else np.full(len(s), add, dtype=np.int64))
    room = np.maximum(room, 0)
    if add > room.sum():
        raise DataError(f"asked for {add} more images but only {int(room.sum())} are left")

    def need(level: int) -> int:
        return int(np.clip(level - s, 0, room).sum())

    lo, hi = int(s.min(initial=0)), int((s + room).max(initial=0))
    while lo < hi:  # the highest level whose filling fits in ``add``
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if need(mid) <= add else (lo, mid - 1)
    out = s + np.clip(lo - s, 0, room)
    rest = add - int((out - s).sum())
    eligible = np.flatnonzero((out == lo) & (out < s + room))
    out[eligible[:rest]] += 1
    return dict(zip(classes, out.tolist()))


def balanced_counts(count: int, have: Counts) -> Counts:
    """How a draw of ``count`` images from a pool with ``have`` images per class spreads over
    the classes (see the module docstring). Past the pool's size the rest is spread with no
    cap: the balance a pool of that size would have (an ``artificial`` cell larger than the
    real pool is still balanced like one)."""
    total = sum(have.values())
    if count <= total:
        return _fill({c: 0 for c in have}, count, have)
    return _fill(dict(have), count - total, None)


def proportional_counts(count: int, have: Counts) -> Counts:
    """``count`` images spread in the pool's own class proportions (``have``), not balanced: each
    class gets the whole part of ``count * have[c] / total`` and the images left over go to the
    largest remainders (ties to the lowest index; Hamilton's method). All of a pool when ``count``
    is its size. For a synthetic Dataset generated unevenly on purpose (``synthworth plan``)."""
    total = sum(have.values())
    if count > total:
        raise DataError(f"asked for {count} images but only {total} exist")
    classes = sorted(have)
    exact = np.array([count * have[c] / total if total else 0.0 for c in classes])
    out = np.floor(exact).astype(np.int64)
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[:count - int(out.sum())]:
        out[i] += 1
    return dict(zip(classes, out.tolist()))


def _legacy_split(count: int, have: Counts) -> Counts:
    """Versions up to 0.x spread ``count`` in rounds (equal shares, leftovers to the lowest
    classes, a full class's surplus re-spread), which can leave classes two apart. Kept only to
    tell which draws hold the same images as they did then, so their fingerprints stay."""
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


def _same(a: Counts, b: Counts) -> bool:
    return {c: n for c, n in a.items() if n} == {c: n for c, n in b.items() if n}


def _as_list(counts: Counts) -> list[list[int]]:
    return [[c, n] for c, n in sorted(counts.items()) if n]


def _per_class_counts(dataset: Dataset, count: int | None, fraction: float | None,
                      per_class: int | None, class_counts: Counts | None) -> Counts:
    """How many images to draw from each class for the requested size."""
    have = class_sizes(dataset)
    given = sum(x is not None for x in (count, fraction, per_class, class_counts))
    if given != 1:
        raise ValueError("give exactly one of count, fraction, per_class or class_counts")
    if class_counts is not None:
        want = {c: int(n) for c, n in class_counts.items() if n}
        for c, n in want.items():
            if n < 0:
                raise ValueError(f"class_counts: class {c} has a negative count {n}")
            have.setdefault(c, 0)
    elif per_class is not None:
        want = {c: per_class for c in have}
    elif fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        want = {c: int(round(n * fraction)) for c, n in have.items()}
    else:
        if count > len(dataset):
            raise DataError(f"asked for {count} images but only {len(dataset)} exist")
        want = balanced_counts(count, have)
    short = {c: (w, have[c]) for c, w in want.items() if w > have[c]}
    if short:
        names = dataset.class_names
        detail = ", ".join(f"{names[c] if 0 <= c < len(names) else 'unlabelled'}: asked {w}, have {h}"
                           for c, (w, h) in short.items())
        raise DataError(f"not enough images per class ({detail})")
    return want


def _draw(dataset: Dataset, want: Counts, seed: int, fingerprint: str) -> Dataset:
    """The seeded draw of ``want`` images per class. Classes go in ascending order, each with
    one ``rng.choice`` (also for a count of 0), as every version did: same counts and seed,
    same images."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in sorted(class_sizes(dataset)):
        members = np.flatnonzero(dataset.labels == c)
        chosen.append(np.sort(rng.choice(members, size=want.get(c, 0), replace=False)))
    idx = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
    return dataset.select(idx, fingerprint=fingerprint)


def subset(dataset: Dataset, *, count: int | None = None, fraction: float | None = None,
           per_class: int | None = None, class_counts: Counts | None = None, seed: int = 0) -> Dataset:
    """A class-stratified, seeded random subset: ``count`` images in all (spread as
    :func:`balanced_counts` says), a ``fraction`` of each class, ``per_class`` images of each
    class, or ``class_counts`` (class index -> images) exactly. Same inputs, same subset."""
    want = _per_class_counts(dataset, count, fraction, per_class, class_counts)
    have = class_sizes(dataset)
    total = sum(want.values())
    if count is not None or class_counts is not None:
        # Hashed as a plain count wherever that count drew the same images in older versions.
        params = {"count": total, "fraction": None, "per_class": None, "seed": seed}
        if not (total <= len(dataset) and _same(want, _legacy_split(total, have))):
            params["class_counts"] = _as_list(want)
    else:
        params = {"count": count, "fraction": fraction, "per_class": per_class, "seed": seed}
    return _draw(dataset, want, seed, derive_fingerprint("subset", params, [dataset.fingerprint]))


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


def _class_name(ds: Dataset, c: int) -> str:
    return ds.class_names[c] if 0 <= c < len(ds.class_names) else "unlabelled"


def _rebalance(first: Counts, second: Counts, have_second: Counts, what: str, ds: Dataset) -> None:
    """Where the second Dataset lacks images of a class, take them from the first instead and
    give the first's surplus back to the second in the classes where the first holds the most
    (ties: the highest index): the per-class totals and both parts' sizes stay (in place)."""
    short = {c: n - have_second.get(c, 0) for c, n in second.items() if n > have_second.get(c, 0)}
    for c, d in short.items():
        second[c] -= d
        first[c] += d
    for _ in range(sum(short.values())):
        room = [c for c in first if c not in short and first[c] > 0 and second[c] < have_second.get(c, 0)]
        if not room:
            names = ", ".join(f"{_class_name(ds, c)} (short by {d})" for c, d in short.items())
            raise DataError(f"{what}: the second Dataset has too few images of {names} and no other class "
                            "can make up for them")
        c = max(room, key=lambda k: (first[k], k))
        first[c] -= 1
        second[c] += 1


def mix(first: Dataset, second: Dataset, *, size: int, ratio: float, seed: int = 0,
        second_as_is: bool = False) -> Dataset:
    """``size`` images: a share ``ratio`` drawn from ``second`` and the rest from ``first``,
    stratified jointly (module docstring): the whole holds the per-class counts of
    ``subset(first, count=size)``, the first part those of ``subset(first, count=size - m)`` (the
    very same images, seed ``seed``), the second part (seed ``seed + 1``) the difference. Where
    ``second`` lacks images of a class, the first part gives up images of other classes for
    them. The source study's ``mixed`` is ratio 0.5. ``second_as_is``: the second part keeps
    ``second``'s own class proportions (:func:`proportional_counts`) and the first part is the
    balanced draw of its size alone, so the whole is not balanced."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be within [0, 1], got {ratio}")
    # Round half up, not Python's half-to-even: for ratio 0.5 the first part is always
    # size // 2, whether size // 2 is odd or even.
    n_second = int(np.floor(size * ratio + 0.5))
    n_first = size - n_second
    if n_first > len(first):
        raise DataError(f"asked for {n_first} images but only {len(first)} exist")
    have1, have2 = class_sizes(first), class_sizes(second)
    part1 = balanced_counts(n_first, have1)
    if second_as_is:
        part2 = proportional_counts(n_second, have2)
    else:
        target = balanced_counts(size, have1)
        part2 = {c: target[c] - part1[c] for c in target}
        _rebalance(part1, part2, have2, f"mixing {size} images at ratio {ratio:g}", first)
    parts = []
    if n_first:
        parts.append(subset(first, class_counts=part1, seed=seed))
    if n_second:
        parts.append(subset(second, class_counts=part2, seed=seed + 1))
    params = {"size": size, "ratio": ratio, "seed": seed}
    if not (_same(part1, _legacy_split(n_first, have1)) and _same(part2, _legacy_split(n_second, have2))):
        params["class_counts"] = [_as_list(part1), _as_list(part2)]
    if second_as_is:   # only then: every other draw keeps its fingerprint
        params["second"] = "as generated"
    return concat(parts, fingerprint=derive_fingerprint(
        "mix", params, [first.fingerprint, second.fingerprint]))


def augment(first: Dataset, second: Dataset, *, count: int, extra: int, seed: int = 0,
            second_as_is: bool = False) -> Dataset:
    """``subset(first, count=count, seed=seed)`` (the very same images) plus ``extra`` images of
    ``second`` (seed ``seed + 1``), spread so the whole holds the per-class counts of a draw of
    ``count + extra`` from ``first`` (module docstring); ``second_as_is``: spread in ``second``'s
    own class proportions instead (:func:`proportional_counts`)."""
    have1, have2 = class_sizes(first), class_sizes(second)
    base = subset(first, count=count, seed=seed)
    part1 = balanced_counts(count, have1)
    if second_as_is:
        part2 = proportional_counts(extra, have2)
    else:
        target = balanced_counts(count + extra, have1)
        part2 = {c: target[c] - part1[c] for c in target}
    short = {c: (n, have2.get(c, 0)) for c, n in part2.items() if n > have2.get(c, 0)}
    if short:
        detail = ", ".join(f"{_class_name(first, c)}: needs {n}, has {h}" for c, (n, h) in short.items())
        raise DataError(f"adding {extra} images to {count}: the second Dataset has too few images per class "
                        f"({detail})")
    parts = [base] + ([subset(second, class_counts=part2, seed=seed + 1)] if extra else [])
    params = {"real": count, "synthetic": extra, "seed": seed}
    if not (_same(part1, _legacy_split(count, have1)) and _same(part2, _legacy_split(extra, have2))):
        params["class_counts"] = [_as_list(part1), _as_list(part2)]
    if second_as_is:
        params["second"] = "as generated"
    return concat(parts, fingerprint=derive_fingerprint(
        "augment", params, [first.fingerprint, second.fingerprint]))
