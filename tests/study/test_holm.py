"""Holm's step-down adjustment of the study's paired comparisons."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from synthworth.study.stats import compare, holm


def test_a_hand_computed_example():
    # sorted: 0.01 (x4) = 0.04, 0.02 (x3) = 0.06, 0.03 (x2) = 0.06, 0.04 (x1) = 0.04 -> running max 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])


def test_adjusted_values_never_exceed_one_and_never_fall_below_the_raw_ones():
    raw = [0.5, 0.2, 0.9, 0.001]
    adjusted = holm(raw)
    assert adjusted == pytest.approx([1.0, 0.6, 1.0, 0.004])
    assert all(a >= r for a, r in zip(adjusted, raw))


def test_ties_get_equal_adjusted_values():
    assert holm([0.01, 0.01, 0.04]) == pytest.approx([0.03, 0.03, 0.04])
    assert holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])


def test_nan_stays_nan_and_is_not_counted_as_a_test():
    adjusted = holm([0.01, math.nan, 0.02])
    assert math.isnan(adjusted[1])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)  # m = 2, not 3
    assert holm([]) == [] and all(math.isnan(v) for v in holm([math.nan, math.nan]))


def test_comparisons_carry_p_holm_over_every_row():
    rows = []
    for seed, (real, art, mix) in enumerate([(0.9, 0.5, 0.8), (0.8, 0.6, 0.85), (0.85, 0.4, 0.7)]):
        rows += [{"composition": "real", "generator": "", "size": 10, "seed": seed, "accuracy": real},
                 {"composition": "artificial", "generator": "g", "size": 10, "seed": seed, "accuracy": art},
                 {"composition": "mixed", "generator": "g", "size": 10, "seed": seed, "accuracy": mix}]
    table = compare(pd.DataFrame(rows), [("real", "artificial"), ("real", "mixed")])
    assert list(table["filter_a"]) == ["none", "none"]  # results from before filters: all unfiltered
    assert table["p_holm"].tolist() == pytest.approx(holm(table["p_value"].tolist()))
    assert (table["p_holm"] >= table["p_value"]).all()
