"""Statistics over seeds on hand-computed cases, and the grid's compositions and sharding."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from synthworth.data.dataset import Dataset
from synthworth.study.grid import Cell, build_grid, check_sizes, shard_of, training_set
from synthworth.study.inputs import StudyInputs
from synthworth.study.spec import StudySpec
from synthworth.study.paired import compare
from synthworth.study.stats import paired, summarise, t_interval

T_975_2 = 4.302652729911275  # Student t, 97.5 % quantile, 2 degrees of freedom


# ------------------------------------------------------------------------------ statistics
def test_t_interval_of_three_seeds():
    mean, sd, low, high = t_interval([0.8, 0.9, 1.0])
    assert (mean, sd) == pytest.approx((0.9, 0.1))
    half = T_975_2 * 0.1 / math.sqrt(3)  # 0.24841
    assert (low, high) == pytest.approx((0.9 - half, 0.9 + half))
    assert t_interval([0.7])[0] == 0.7 and math.isnan(t_interval([0.7])[2])
    assert all(math.isnan(v) for v in t_interval([]))


def test_paired_difference_interval_and_p_value():
    result = paired([0.8, 0.9, 1.0], [0.7, 0.85, 0.9])
    # differences 0.1, 0.05, 0.1: mean 1/12, sd 0.05/sqrt(3), t = 5 with 2 degrees of freedom
    d_sd = 0.05 / math.sqrt(3)
    assert result["n"] == 3 and result["diff"] == pytest.approx(1 / 12) and result["diff_sd"] == pytest.approx(d_sd)
    half = T_975_2 * d_sd / math.sqrt(3)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((1 / 12 - half, 1 / 12 + half))
    # two-sided p of t = 5 with 2 df: 1 - 5 / sqrt(27) (closed form of the t(2) distribution)
    assert result["p_value"] == pytest.approx(1 - 5 / math.sqrt(27))
    assert paired([0.5, 0.6], [0.4, 0.5])["p_value"] == 0.0  # the same shift on every seed
    assert paired([0.5, 0.6], [0.5, 0.6])["p_value"] == 1.0


def _rows() -> pd.DataFrame:
    rows = []
    acc = {("real", ""): [0.9, 0.92, 0.94], ("subset_real", ""): [0.8, 0.82, 0.81],
           ("mixed", "gan"): [0.85, 0.88, 0.86], ("mixed", "ddpm"): [0.87, 0.9, 0.89],
           ("artificial", "gan"): [0.5, 0.6, 0.55], ("artificial", "ddpm"): [0.7, 0.72, 0.71]}
    for (comp, gen), values in acc.items():
        for seed, a in enumerate(values):
            rows.append({"composition": comp, "generator": gen, "size": 100, "per_class": None, "ratio": 0.5,
                         "augment_factor": None, "seed": seed, "accuracy": a, "macro_f1": a - 0.01,
                         "synthetic_accuracy": None if not gen else 0.9})
    return pd.DataFrame(rows)


def test_summary_and_comparisons_on_a_known_table():
    table = _rows()
    summary = summarise(table).set_index(["composition", "generator"])
    assert len(summary) == 6 and set(summary["n_seeds"]) == {3}
    assert summary.loc[("real", ""), "accuracy_mean"] == pytest.approx(0.92)
    # accuracies: the t interval of the logits, mapped back (it stays inside [0, 1])
    z = [math.log(a / (1 - a)) for a in (0.9, 0.92, 0.94)]
    high = float(np.mean(z)) + T_975_2 * float(np.std(z, ddof=1)) / math.sqrt(3)
    assert summary.loc[("real", ""), "accuracy_ci_high"] == pytest.approx(1 / (1 + math.exp(-high)))
    assert summary.loc[("artificial", "gan"), "macro_f1_mean"] == pytest.approx(0.54)
    assert math.isnan(summary.loc[("real", ""), "synthetic_accuracy_mean"])
    comparisons = compare(table, [("mixed", "subset_real"), ("real", "subset_real")])
    by = comparisons.set_index(["kind", "composition_a", "generator_a", "composition_b", "generator_b"])
    gan = by.loc[("composition", "mixed", "gan", "subset_real", "")]
    assert gan["diff"] == pytest.approx(np.mean([0.05, 0.06, 0.05])) and gan["n"] == 3
    assert gan["p_value"] == pytest.approx(paired([0.85, 0.88, 0.86], [0.8, 0.82, 0.81])["p_value"])
    assert ("composition", "mixed", "ddpm", "subset_real", "") in by.index
    # Two real-only compositions: one comparison, not one per generator.
    assert len(by.loc[("composition", "real", "", "subset_real", "")].shape) == 1
    generators = comparisons[comparisons["kind"] == "generator"]
    assert sorted(generators["composition_a"]) == ["artificial", "mixed"]
    art = generators[generators["composition_a"] == "artificial"].iloc[0]
    assert {art["generator_a"], art["generator_b"]} == {"ddpm", "gan"}
    assert abs(art["diff"]) == pytest.approx(0.16)


# ------------------------------------------------------------------------------ the grid
@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    real = Dataset.from_arrays(rng.integers(0, 255, (400, 4, 4, 1), dtype=np.uint8), np.arange(400) % 4,
                               list("abcd"))
    synth = Dataset.from_arrays(rng.integers(0, 255, (300, 4, 4, 1), dtype=np.uint8), np.arange(300) % 4,
                                list("abcd"))
    from synthworth.study.inputs import SyntheticInput

    return StudyInputs(real=real, pool=real, test=real, synthetic={
        "g": SyntheticInput(name="g", path="g", fingerprint=synth.fingerprint, pool=synth, test=synth,
                            resized_from=None)})


def _spec(**keys) -> StudySpec:
    return StudySpec(real="r", synthetic={"g": "g", "h": "h"}, **keys)


def _ids(view: Dataset) -> set[tuple[int, int]]:
    return {(id(view.arrays[p]), int(r)) for p, r in zip(view.part, view.row)}


def test_subset_real_is_exactly_the_real_half_of_mixed(inputs):
    for size, seed in ((100, 0), (101, 3)):
        mixed = training_set(Cell("mixed", "g", size, seed, 0.5), inputs, 0.5)
        alone = training_set(Cell("subset_real", "", size, seed, 0.0), inputs, 0.5)
        real_array = id(inputs.pool.arrays[0])
        real_part = {x for x in _ids(mixed) if x[0] == real_array}
        assert real_part == _ids(alone) and len(alone) == size - int(np.floor(size * 0.5 + 0.5))
        assert len(mixed) == size


def test_augmented_and_ratio_sweep_sizes(inputs):
    cell = [c for c in build_grid(_spec(compositions=["augmented"], augment_factors=[2.0], sizes=[50]), 4)
            if c.generator == "g"][0]
    augmented = training_set(cell, inputs, 0.5)
    assert len(augmented) == 150 and cell.ratio == pytest.approx(100 / 150)
    assert len(_ids(augmented) & _ids(training_set(Cell("real", "", 50, cell.seed, 0.0), inputs, 0.5))) == 50
    sweep = build_grid(_spec(compositions=["ratio_sweep"], ratios=[0.0, 0.25, 1.0], sizes=[40], seeds=[0]), 4)
    assert [(c.generator, c.ratio) for c in sweep] == [("g", 0.0), ("g", 0.25), ("g", 1.0),
                                                      ("h", 0.0), ("h", 0.25), ("h", 1.0)]
    quarter = training_set(sweep[1], inputs, 0.5)
    assert len(quarter) == 40 and sum(x[0] != id(inputs.pool.arrays[0]) for x in _ids(quarter)) == 10


def test_grid_runs_real_only_compositions_once_and_per_class_sizes(inputs):
    grid = build_grid(_spec(compositions=["real", "artificial", "mixed", "subset_real"], sizes=None,
                            per_class=[5, 10], seeds=[0, 1, 2]), 4)
    assert len(grid) == 3 * 2 * (1 + 2 + 2 + 1)
    assert grid[0].seed == 0 and grid[-1].seed == 2  # seeds outermost
    assert {c.size for c in grid} == {20, 40} and {c.per_class for c in grid} == {5, 10}
    with pytest.raises(Exception, match="needs 500 real training images but only 400 exist"):
        check_sizes([Cell("real", "", 500, 0, 0.0)], inputs, 0.5)


def test_shards_are_a_deterministic_partition():
    items = [f"key{i:03d}" for i in range(23)] + ["key005"]  # a repeated key runs once
    parts = [shard_of(items, (i, 4)) for i in range(4)]
    assert set().union(*parts) == set(items)
    assert sum(len(p) for p in parts) == 23
    assert [len(p) for p in parts] == [6, 6, 6, 5]
    assert parts == [shard_of(list(reversed(items)), (i, 4)) for i in range(4)]  # order does not matter
