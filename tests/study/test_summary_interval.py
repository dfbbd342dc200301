"""summary.csv's accuracy interval: the two-way bootstrap over seeds and test images (the one the
exchange rates use) where the cells kept per-image predictions, the logit-t otherwise, labelled."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthworth.study.resample import BOTH, Sampler
from synthworth.study.stats import LOGIT_T, TWO_WAY, proportion_interval, summarise


def _study(rng, seeds=3, images=200, p=0.8, seed_sd=0.02, key="a"):
    """One cell group: per seed a 0/1 row over the same images (image difficulty shared by seeds)."""
    difficulty = rng.normal(0, 1.2, images)
    rows, preds = [], []
    for s in range(seeds):
        shift = rng.normal(0, seed_sd * 8)
        logit = np.log(p / (1 - p)) + difficulty + shift
        right = rng.random(images) < 1 / (1 + np.exp(-logit))
        k = f"{key}{s}"
        rows.append({"composition": "real", "generator": "", "filter": "none", "size": 50, "per_class": 5,
                     "ratio": 0.0, "augment_factor": np.nan, "seed": s, "key": k,
                     "accuracy": right.mean(), "n_test": images})
        preds.append(pd.DataFrame({"key": k, "index": np.arange(images), "test_set": "real_test",
                                   "test_generator": "", "label": 1, "predicted": np.where(right, 1, 0)}))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


def test_the_interval_is_the_two_way_bootstrap_where_predictions_exist_and_logit_t_otherwise():
    results, preds = _study(np.random.default_rng(0))
    two = summarise(results, predictions=preds).iloc[0]
    assert two["accuracy_interval"] == TWO_WAY
    assert two["accuracy_mean"] == results["accuracy"].mean()   # the point estimate is unchanged
    # the same draws resample.py gives the group (its Sampler, its seed scale)
    x = (preds["label"] == preds["predicted"]).to_numpy(float).reshape(3, -1)
    lone = Sampler(results, x, 2000, np.random.default_rng(1)).draws(results.index, x.mean(axis=1),
                                                                      np.random.default_rng(2))[BOTH]
    lo, hi = np.percentile(lone, [2.5, 97.5])
    assert abs(two["accuracy_ci_low"] - lo) < 0.01 and abs(two["accuracy_ci_high"] - hi) < 0.01
    assert two["accuracy_ci_low"] < two["accuracy_mean"] < two["accuracy_ci_high"]

    old = summarise(results).iloc[0]   # no predictions kept: the logit-t interval, labelled
    _, _, low, high = proportion_interval(results["accuracy"].tolist(), 200)
    assert old["accuracy_interval"] == LOGIT_T
    assert (old["accuracy_ci_low"], old["accuracy_ci_high"]) == (low, high)
    # a group whose one cell lacks predictions falls back too
    part = summarise(results, predictions=preds[preds["key"] != "a2"]).iloc[0]
    assert part["accuracy_interval"] == LOGIT_T and part["accuracy_ci_low"] == low


def test_the_two_way_interval_covers_the_true_mean_accuracy():
    """Simulated studies whose true mean accuracy is known (a fixed population of test images and
    seed shifts): the 95 % interval contains it in roughly 95 % of them (test-set noise included)."""
    rng = np.random.default_rng(7)
    population = rng.normal(0, 1.2, 20000)   # the image difficulties the task would see
    base, seed_sd = np.log(0.8 / 0.2), 0.3
    # the true mean accuracy: over images and seed shifts
    shifts = rng.normal(0, seed_sd, 400)
    truth = float(np.mean(1 / (1 + np.exp(-(base + population[None, :2000] + shifts[:, None])))))
    hits, studies = 0, 120
    for i in range(studies):
        images = rng.choice(population[:2000], 150)
        rows, preds = [], []
        for s in range(3):
            right = rng.random(150) < 1 / (1 + np.exp(-(base + images + rng.normal(0, seed_sd))))
            rows.append({"composition": "real", "generator": "", "filter": "none", "size": 50, "per_class": 5,
                         "ratio": 0.0, "augment_factor": np.nan, "seed": s, "key": f"{i}-{s}",
                         "accuracy": right.mean(), "n_test": 150})
            preds.append(pd.DataFrame({"key": f"{i}-{s}", "index": np.arange(150), "test_set": "real_test",
                                       "test_generator": "", "label": 1, "predicted": right.astype(int)}))
        row = summarise(pd.DataFrame(rows), metrics=["accuracy"], predictions=pd.concat(preds),
                        resamples=400).iloc[0]
        assert row["accuracy_interval"] == TWO_WAY
        hits += row["accuracy_ci_low"] <= truth <= row["accuracy_ci_high"]
    assert 0.88 <= hits / studies <= 1.0, hits
