"""The two-way bootstrap (seeds and test images) of the exchange rates: known answers."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from synthworth.study.exchange import exchange_rates
from synthworth.study.resample import BOTH, SEEDS, seed_scale, spend_sentence

SIZES = [50, 100, 200, 400, 800]
TRUE_N = 150          # the synthetic group reaches the real curve's accuracy at 150 real images
IMAGES, SEEDS_K = 360, 3


def true_accuracy(n):
    return 1.0 - (0.9 * np.power(n, -0.5) + 0.05)   # a power law, the model the curve fits


def simulate(rng: np.random.Generator, *, rho: float = 0.5, seed_sd: float = 0.01):
    """One study: results and per-image predictions. Each cell gets right the images whose latent
    ``rho z_i + sqrt(1 - rho²) eps_ci`` lies below its quantile (z_i: the image's difficulty, shared by
    every cell; a Gaussian copula, so a cell's expected accuracy is its true one exactly), plus a
    seed effect on its accuracy."""
    z = rng.standard_normal(IMAGES)
    cells = [("real", "", n, n) for n in SIZES] + [("artificial", "sim", 200, TRUE_N)]
    rows, preds = [], []
    for comp, gen, size, level in cells:
        for seed in range(SEEDS_K):
            p = np.clip(true_accuracy(level) + seed_sd * rng.standard_normal(), 0.01, 0.99)
            ok = rho * z + math.sqrt(1 - rho ** 2) * rng.standard_normal(IMAGES) < stats.norm.ppf(p)
            key = f"{comp}-{size}-{seed}"
            rows.append({"composition": comp, "generator": gen, "size": size, "ratio": 0.0, "seed": seed,
                         "key": key, "accuracy": ok.mean()})
            preds.append(pd.DataFrame({"key": key, "test_set": "real_test", "test_generator": "",
                                       "index": np.arange(IMAGES), "label": 0, "predicted": np.where(ok, 0, 1)}))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


def covered(row) -> bool:
    lo, hi = row["n_eff_ci_low"], row["n_eff_ci_high"]   # an empty end lies beyond the measured range
    return (math.isnan(lo) or lo <= TRUE_N) and (math.isnan(hi) or TRUE_N <= hi)


def coverage(studies: int, resamples: int, *, images: bool = True) -> float:
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(studies):
        results, preds = simulate(rng)
        table, _ = exchange_rates(results, resamples=resamples, predictions=preds if images else None)
        hits += covered(table.iloc[0])
    return hits / studies


def test_the_two_way_intervals_cover_a_simulated_power_law_studys_true_worth():
    # Known answer with test-image noise: 95 % intervals of n_eff cover the truth in >= 93 % of
    # simulated studies (200 studies at 1000 resamples measured 95.5 %; here fewer, to stay fast).
    assert coverage(100, 300) >= 0.93


def test_a_study_without_predictions_keeps_the_seeds_only_interval_and_says_so():
    results, preds = simulate(np.random.default_rng(1))
    seeds, _ = exchange_rates(results, resamples=200)
    both, _ = exchange_rates(results, resamples=200, predictions=preds)
    assert seeds["interval_covers"].tolist() == [SEEDS] and both["interval_covers"].tolist() == [BOTH]
    assert seeds["n_eff"].iloc[0] == both["n_eff"].iloc[0]   # the point estimate does not depend on the bootstrap
    assert math.isnan(seeds["var_share_seeds"].iloc[0])
    # one cell without predictions: that test set falls back to seeds only
    partial, _ = exchange_rates(results, resamples=200, predictions=preds[preds["key"] != "real-50-0"])
    assert partial["interval_covers"].tolist() == [SEEDS]
    assert partial["n_eff_ci_low"].iloc[0] == seeds["n_eff_ci_low"].iloc[0]


def test_the_variance_breakdown_names_the_source_that_dominates():
    # Large seed effects: seeds dominate; none: the test images do (the seeds' spread is then all
    # per-image noise, which the image resample carries).
    for seed_sd, most, study in ((0.02, "seeds", 3), (0.0, "test images", 4)):
        results, preds = simulate(np.random.default_rng(study), seed_sd=seed_sd)
        table, _ = exchange_rates(results, resamples=300, predictions=preds)
        row = table.iloc[0]
        share = row["var_share_seeds"] if most == "seeds" else row["var_share_images"]
        assert share > 0.6, (seed_sd, row["var_share_seeds"])
        assert row["var_share_seeds"] + row["var_share_images"] == pytest.approx(1.0)
        assert f"doubling the {most} would narrow it most" in spend_sentence(row)


def test_seed_scale_removes_the_per_image_noise_from_the_seeds_spread():
    rng = np.random.default_rng(0)
    # no seed effect: every seed's images right with probability 0.8, independently
    x = (rng.random((3, 5000)) < 0.8).astype(float)
    assert seed_scale(x) < 0.005   # the raw spread (about 0.006) is all binomial noise
    # a seed effect of 0.05 on the accuracy
    y = (rng.random((3, 5000)) < np.array([[0.75], [0.8], [0.85]])).astype(float)
    assert seed_scale(y) == pytest.approx(0.05, abs=0.01)


def test_a_demo_sized_table_takes_seconds():
    results, preds = simulate(np.random.default_rng(2))
    # 16 groups of 3 seeds beside the real curve, like the demo's table
    extra = [results[results["composition"] == "artificial"].assign(size=s, generator=g)
             for g in ("a", "b") for s in (50, 100, 200, 400)]
    results = pd.concat([results, *extra], ignore_index=True)
    start = time.perf_counter()
    table, _ = exchange_rates(results, predictions=preds)
    assert time.perf_counter() - start < 10
    assert set(table["interval_covers"]) == {BOTH}
