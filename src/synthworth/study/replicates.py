"""A study over generator replicates: the generator's retraining as a variance component.

One trained generator is one draw from its recipe (``synthworth train ... --replicates K``
trains K draws; ``generate --from`` that folder deals the images evenly over them, each image's
record naming its ``replicate``). A study that reads a Dataset of one trained generator measures
that network, and its intervals cannot hold what a retrain would change. When a synthetic
Dataset holds the images of K >= 2 replicates, the study measures the recipe instead:

- **Each seed draws from one replicate** (spec key ``replicates: per_seed``, the default). The
  i-th seed of the spec (in the order listed) draws its synthetic images from replicate
  ``i mod K`` (in the order the Dataset's provenance lists them), recorded per cell as
  ``synthetic_replicate`` (cell.json, result.json, results.csv). A synthetic cell of seed i is
  then one draw of (generator retrain, training draw, classifier seed): the seeds' spread of its
  group includes the generator's retraining variance, and the two-way bootstrap over seeds and
  test images (:mod:`synthworth.study.resample`, :mod:`synthworth.study.paired`) carries it
  into n_eff, the rate, the worth, the accuracy intervals and the paired comparisons without a
  new estimator. Why this and not the alternatives: drawing every cell from all K replicates
  (``pooled``) averages the generator noise inside each cell, but every seed then sees the
  same K networks, so the noise left (var_gen / K) is shared by all seeds and no interval holds
  it; a third, nested bootstrap over replicates on top of seeds would need K large enough to
  resample (a study has 2-5), while one replicate per seed needs nothing the seed level does
  not already do. Its cost: each cell draws from one replicate's share, about 1/K of the
  images, so the Dataset must hold K times what one cell needs (the size check says so).
- **Seeds beyond K** share replicates: seeds i and i + K draw from the same network, so their
  accuracies are correlated and k seeds are no longer k independent draws (treating them so
  would understate the generator's part K-fold at 2K seeds). The intervals then take the
  replicate as the unit: the seed level's variance of a mean is the cluster-robust one over
  replicates (:func:`clustered_variance`, which equals s^2 / k when every seed has its own
  replicate) with G - 1 degrees of freedom (G: replicates used), and a paired comparison
  averages the seeds of one replicate into one row. With every seed on its own replicate
  (seeds <= K) all of this is the plain seed level, bit for bit.
- **Warnings** (printed and kept in inputs.json's ``notes``): fewer seeds than replicates (the
  unused ones are named), seeds not a multiple of K (replicates used unevenly: their seeds'
  means weigh them unequally), a Dataset of one replicate (generator retraining not covered)
  and ``pooled`` (not covered either).
- **pooled** keeps every cell drawing from all the images, as a study of one Dataset does. A
  user wants it when the Dataset is too small to split K ways, or when the thing to value is
  the Dataset of the K networks together (an ensemble's images are more varied than one
  network's), not one retrained generator.

What the columns then say: ``interval_covers`` of an exchange-rate or comparison row whose
synthetic cells drew from two or more replicates reads "seeds (each with its own generator
replicate) + test images" (or "seeds (grouped by their K generator replicates) ..." where seeds
share them); the variance breakdown's ``var_share_seeds`` is the seeds' and the generators'
part together, and doubling the seeds means training as many new replicates. Cells of a Dataset
without replicates keep their keys and their wording: "seeds + test images", with the
generator trained once and its retraining not covered.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PER_SEED, POOLED = "per_seed", "pooled"
EACH = "seeds (each with its own generator replicate)"
COLUMN = "synthetic_replicate"


def grouped(n: int) -> str:
    return f"seeds (grouped by their {n} generator replicates)"


def deal(seeds: Sequence[int], names: Sequence[str]) -> dict[int, str]:
    """{seed: replicate}: the i-th seed (as listed) draws from replicate ``i mod K``."""
    return {int(s): str(names[i % len(names)]) for i, s in enumerate(seeds)}


def dealing(seeds: Sequence[int], use: str, names: dict[str, list[str]]) -> dict[str, dict[int, str]]:
    """{generator: {seed: replicate}} of the generators whose cells draw from one replicate per
    seed (``use`` per_seed and K >= 2); the others draw from their whole pool, as before."""
    if use != PER_SEED:
        return {}
    return {g: deal(seeds, n) for g, n in names.items() if len(n) >= 2}


def usage_notes(seeds: Sequence[int], use: str, names: dict[str, list[str]],
                from_replicates: dict[str, bool]) -> list[str]:
    """The warnings of how a study uses each generator's replicates (module docstring)."""
    notes, k = [], len(seeds)
    for gen, found in names.items():
        K = len(found)
        if not from_replicates.get(gen):
            continue
        if K < 2:
            notes.append(f"generator {gen!r}: its Dataset holds the images of one trained replicate "
                         f"({', '.join(found) or 'none in the pool'}): no interval covers retraining the generator "
                         "(train more with 'synthworth train ... --seeds', generate the Dataset again from the folder)")
        elif use == POOLED:
            notes.append(f"generator {gen!r}: replicates: pooled, so every cell draws from all {K} replicates' images "
                         "and no interval covers retraining the generator (per_seed, the default, gives each seed "
                         "its own replicate)")
        elif k < K:
            notes.append(f"generator {gen!r}: {K} replicates but {k} seed(s): replicates {', '.join(found[k:])} are "
                         f"unused; each seed draws from its own replicate, so the intervals cover the generator's "
                         f"retraining through {k} of them (give {K} seeds to use them all)")
        elif k % K:
            used = deal(seeds, found)
            share = ", ".join(f"{r}: {list(used.values()).count(r)}" for r in found)
            notes.append(f"generator {gen!r}: {k} seeds over {K} replicates use them unevenly (seeds per replicate: "
                         f"{share}); the intervals take each replicate as one unit ({K - 1} degrees of freedom), and "
                         f"the mean over seeds weighs the replicates unequally: give a multiple of {K} seeds")
    return notes


def units(replicates: Sequence | None) -> np.ndarray | None:
    """The unit of each row of a group: its replicate where it names one, else the row itself;
    None when every row is its own unit (no replicate shared by two rows)."""
    if replicates is None:
        return None
    ids = [f"r:{r}" if isinstance(r, str) and r else f"#{i}" for i, r in enumerate(replicates)]
    return None if len(set(ids)) == len(ids) else np.asarray(ids, dtype=object)


def clustered_variance(values: np.ndarray, ids: np.ndarray) -> tuple[float, int]:
    """(variance of the mean of ``values``, units) with rows of one unit correlated: the
    cluster-robust estimate G / (G - 1) * sum_g (sum_{i in g} (v_i - mean))^2 / k^2, which is
    s^2 / k when every row is its own unit, and var(unit means) / G for equal units. Written out
    (a few lines) rather than fitting a mixed model: it is the sandwich of an intercept-only
    regression, the same number statsmodels' cluster-robust covariance would give."""
    values = np.asarray(values, float)
    k, mean = len(values), float(values.mean())
    labels, inverse = np.unique(np.asarray(ids, dtype=str), return_inverse=True)
    g = len(labels)
    if g < 2:
        return 0.0, g
    sums = np.bincount(inverse, weights=values - mean, minlength=g)
    return g / (g - 1) * float((sums ** 2).sum()) / k ** 2, g


def unit_means(values: Sequence[float], replicates: Sequence | None) -> np.ndarray:
    """The mean of each unit (replicate) of ``values``, or ``values`` when no unit is shared."""
    values = np.asarray(values, float)
    ids = units(replicates)
    if ids is None:
        return values
    labels, inverse = np.unique(ids.astype(str), return_inverse=True)
    return np.bincount(inverse, weights=values) / np.bincount(inverse)


def covers(base: str, replicates: Sequence | None) -> str:
    """``interval_covers`` of a group whose rows name ``replicates``: ``base`` ("seeds + test
    images", "seeds only", ...) with the seeds saying they carry the generator's retraining where
    the group drew from two or more replicates; ``base`` unchanged otherwise."""
    named = sorted({r for r in (replicates if replicates is not None else []) if isinstance(r, str) and r})
    if len(named) < 2 or not base.startswith("seeds"):
        return base
    shared = units(replicates) is not None
    return (grouped(len(named)) if shared else EACH) + base[len("seeds"):]


def replicated(interval_covers: object) -> bool:
    """Whether an ``interval_covers`` text says the generator's retraining is in the interval."""
    return isinstance(interval_covers, str) and "generator replicate" in interval_covers
