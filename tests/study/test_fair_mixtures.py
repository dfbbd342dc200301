"""Fair mixtures: every composition of a study holds, class by class, as many images as the
``real`` cell of its size, also at sizes the classes do not divide (35, 50, 101) and when a
class has fewer images than its share; draws whose images did not change keep their old
fingerprints (so only the cells whose contents changed are retrained)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthworth.cli import main
from synthworth.data.compose import mix, subset
from synthworth.data.dataset import Dataset, derive_fingerprint
from synthworth.errors import DataError
from synthworth.study.plan import plan_study
from synthworth.study.spec import load_spec

ALL = ["real", "artificial", "mixed", "subset_real", "augmented", "ratio_sweep"]
AWKWARD = [35, 50, 101]


def per_class(ds: Dataset) -> list[int]:
    return np.bincount(ds.labels, minlength=len(ds.class_names)).tolist()


def _check_plan(plan) -> set[str]:
    """Every cell's classes against the real cell of its size and seed (``augmented``: a real
    draw of its whole size; ``subset_real``: the real cell of its own size). Returns the
    compositions checked."""
    real = {(p.cell.size, p.cell.seed): p.train_set for p in plan.cells if p.cell.composition == "real"}
    seen = set()
    for p in plan.cells:
        cell, got = p.cell, per_class(p.train_set)
        if cell.composition in ("augmented", "subset_real"):
            expected = per_class(subset(plan.inputs.pool, count=len(p.train_set), seed=cell.seed))
        else:
            expected = per_class(real[cell.size, cell.seed])
        assert got == expected, f"{cell.label()}: {got} but real holds {expected}"
        assert sum(got) == len(p.train_set)
        seen.add(cell.composition)
    return seen


def _plan(write_spec, **keys):
    spec = {"compositions": ALL, "sizes": AWKWARD, "seeds": [0, 1], "ratios": [0.3, 0.5, 1.0],
            "augment_factors": [0.5], **keys}
    return plan_study(load_spec(write_spec(**spec))[0], build_filters=False)


def test_every_composition_holds_real_s_classes_at_awkward_sizes(write_spec):
    plan = _plan(write_spec)
    assert _check_plan(plan) == set(ALL)
    mixed = {(p.cell.size, p.cell.seed, p.cell.generator): p for p in plan.cells if p.cell.composition == "mixed"}
    # The figures of the issue: 35 as 4,4,4,4,4,3,3,3,3,3 (not 4,4,4,4,4,4,4,3,2,2), 50 as 5 each (not 6 / 4).
    assert per_class(mixed[35, 0, "gan"].train_set) == [4] * 5 + [3] * 5
    assert per_class(mixed[50, 0, "gan"].train_set) == [5] * 10
    # subset_real is still exactly the real part of mixed.
    pool = plan.inputs.pool
    for p in plan.cells:
        if p.cell.composition == "subset_real":
            m = mixed[p.cell.size, p.cell.seed, "gan"].train_set
            real_part = sorted(r for a, r in zip(m.part, m.row) if m.arrays[a] is pool.arrays[0])
            assert real_part == sorted(p.train_set.row.tolist())


@pytest.fixture
def lopsided(digits16, dataset_writer, fake_generators, tmp_path):
    """(real Dataset path, synthetic path): the digits with only 4 training images of '9' (its
    share of 50 is 5), and a "generator" with only 3 images of '0'."""
    images = digits16.take(np.arange(len(digits16)))
    keep = ~((digits16.labels == 9) & (digits16.splits == "train")) | (np.cumsum(digits16.labels == 9) <= 4)
    real = dataset_writer(tmp_path / "real", images[keep], digits16.labels[keep], digits16.class_names,
                          digits16.splits[keep])
    assert per_class(real.split("train"))[9] == 4
    gan = Dataset.open(fake_generators["gan"])
    keep = (gan.labels != 0) | (np.cumsum(gan.labels == 0) <= 3)
    synthetic = dataset_writer(tmp_path / "gan", gan.take(np.flatnonzero(keep)), gan.labels[keep],
                               gan.class_names)
    return real.path, synthetic.path


def test_a_class_short_of_its_share_is_balanced_alike_everywhere(write_spec, lopsided):
    real, short_gan = lopsided
    # Real short of '9': every composition spreads the missing images exactly as real does.
    plan = _plan(write_spec, real=str(real))
    assert _check_plan(plan) == set(ALL)
    real101 = next(p for p in plan.cells if p.cell.composition == "real" and p.cell.size == 101)
    assert per_class(real101.train_set) == [11] * 7 + [10] * 2 + [4]
    # The synthetic pool short of '0' too: the mixtures take more real '0's and fewer of others.
    plan = _plan(write_spec, real=str(real), synthetic={"gan": str(short_gan)},
                 compositions=["real", "mixed", "subset_real", "ratio_sweep"], ratios=[0.3, 0.5])
    assert _check_plan(plan) == {"real", "mixed", "subset_real", "ratio_sweep"}
    # An artificial cell cannot hold real's classes from it: refused before any cell trains.
    with pytest.raises(DataError, match=r"artificial \[gan\] size 35 seed 0 \(which holds real's per-class "
                                        r"counts at its size\): not enough images per class \(0: asked 4, have 2\)"):
        _plan(write_spec, real=str(real), synthetic={"gan": str(short_gan)}, compositions=["real", "artificial"])


def test_the_counts_are_recorded_in_the_cell_and_the_table(write_spec, tmp_path):
    spec = write_spec(compositions=["real", "mixed"], sizes=[35], seeds=[0])
    assert main(["study", "run", str(spec), "-q"]) == 0
    out = tmp_path / "spec-results"
    table = pd.read_csv(out / "results.csv")
    expected = [4] * 5 + [3] * 5
    assert [json.loads(v) for v in table["class_counts"]] == [expected] * len(table)
    for key in table["key"]:
        assert json.loads((out / "cells" / key / "result.json").read_text())["class_counts"] == expected


# ------------------------------------------------------------------ old fingerprints, where the images are the same
def test_draws_that_hold_the_same_images_keep_their_old_fingerprints(digits16):
    from synthworth.data.compose import balanced_counts

    train, other = digits16.split("train"), digits16.split("test")
    fps = [train.fingerprint, other.fingerprint]
    # 50 + 50: each part was already balanced, so the images and the fingerprint are the old ones.
    same = mix(train, other, size=100, ratio=0.5, seed=3)
    assert same.fingerprint == derive_fingerprint("mix", {"size": 100, "ratio": 0.5, "seed": 3}, fps)
    old_rows = np.concatenate([subset(train, count=50, seed=3).row, subset(other, count=50, seed=4).row])
    np.testing.assert_array_equal(same.row, old_rows)
    # 25 + 25 changed (6 / 4 per class before): a new fingerprint, so its cells train again.
    changed = mix(train, other, size=50, ratio=0.5, seed=3)
    assert changed.fingerprint != derive_fingerprint("mix", {"size": 50, "ratio": 0.5, "seed": 3}, fps)
    # A real subset and an artificial draw of real's counts: unchanged.
    params = {"count": 35, "fraction": None, "per_class": None, "seed": 1}
    assert subset(train, count=35, seed=1).fingerprint == derive_fingerprint("subset", params, [fps[0]])
    art = subset(other, class_counts=balanced_counts(35, {c: 100 for c in range(10)}), seed=1)
    assert art.fingerprint == derive_fingerprint("subset", params, [fps[1]])


def test_counts_are_spread_by_water_filling():
    from synthworth.data.compose import balanced_counts

    # The old rounds gave {0: 3, 1: 2, 2: 1} here (two apart); one at a time to the smallest class:
    assert balanced_counts(6, {0: 100, 1: 100, 2: 100, 3: 0}) == {0: 2, 1: 2, 2: 2, 3: 0}
    assert balanced_counts(35, {c: 50 for c in range(10)}) == {c: 4 if c < 5 else 3 for c in range(10)}
    assert balanced_counts(45, {0: 30, 1: 20, 2: 10}) == {0: 18, 1: 17, 2: 10}
    # Past the pool's size the balance of a bigger pool (an artificial cell larger than the real pool).
    assert balanced_counts(9, {0: 1, 1: 5, 2: 1}) == {0: 2, 1: 5, 2: 2}
    # Monotone: a bigger draw never holds fewer images of a class (so a mixture's second part,
    # the whole minus its first part, is never negative).
    have = {0: 7, 1: 3, 2: 12, 3: 9}
    for n in range(1, 31):
        small, big = balanced_counts(n - 1, have), balanced_counts(n, have)
        assert all(big[c] >= small[c] for c in have) and sum(big.values()) == n
