"""Holm's step-down adjustment of the study's paired comparisons."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from synthworth.study.paired import compare
from synthworth.study.stats import holm


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


def test_holm_runs_over_the_primary_family_only():
    rows = []
    # generator h: a noisy shift against g, so its (exploratory) p-values are neither 0 nor 1
    for seed, (real, art, mix, dh) in enumerate([(0.9, 0.5, 0.8, 0.1), (0.8, 0.6, 0.85, 0.05),
                                                 (0.85, 0.4, 0.7, 0.12)]):
        rows += [{"composition": "real", "generator": "", "size": 10, "seed": seed, "accuracy": real},
                 {"composition": "artificial", "generator": "g", "size": 10, "seed": seed, "accuracy": art},
                 {"composition": "artificial", "generator": "h", "size": 10, "seed": seed, "accuracy": art - dh},
                 {"composition": "mixed", "generator": "g", "size": 10, "seed": seed, "accuracy": mix},
                 {"composition": "mixed", "generator": "h", "size": 10, "seed": seed, "accuracy": mix - dh / 2}]
    table = compare(pd.DataFrame(rows), [("real", "artificial"), ("real", "mixed")])
    assert list(table["filter_a"].unique()) == ["none"]  # results from before filters: all unfiltered
    primary = table[table["family"] == "primary"]
    exploratory = table[table["family"] == "exploratory"]
    assert set(primary["kind"]) == {"composition"} and len(primary) == 4  # 2 pairs x 2 generators
    assert set(exploratory["kind"]) == {"generator"} and len(exploratory) == 2  # artificial, mixed: g vs h
    # m = 4 (the primary rows), not 6: the exploratory rows neither count nor get an adjusted p
    assert primary["p_holm"].tolist() == pytest.approx(holm(primary["p_value"].tolist()))
    assert primary["p_holm"].tolist() != pytest.approx(holm(table["p_value"].tolist())[:4])
    assert exploratory["p_holm"].isna().all() and exploratory["p_value"].notna().all()
    # no predictions given: every row is the t-test on seed means, and says so
    assert table["method"].str.startswith("paired t-test on seed means (no per-image predictions)").all()
    assert (table["p_value"] == table["t_p_value"]).all()
