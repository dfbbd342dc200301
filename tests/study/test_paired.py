"""Paired comparisons with power (study/paired.py): a known-answer simulation where the t-test on
3 seed means misses a real difference that the two-way bootstrap over seeds and test images
finds, a null where it stays quiet, the fallback for cells without predictions, and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthworth.cli import main
from synthworth.study.paired import BOOTSTRAP, compare, two_way_bootstrap
from synthworth.study.stats import paired

SEEDS, IMAGES, STUDIES = 3, 360, 60


def _study(rng, gain: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeds x images correctness of B (image j right with probability p_j) and of A (p_j + gain),
    with a seed shift both share (the same real draw and classifier seed): truth A - B = gain."""
    p_b = rng.uniform(0.5, 0.9, IMAGES)
    shift = rng.normal(0, 0.02, (SEEDS, 1))
    a = rng.random((SEEDS, IMAGES)) < p_b + gain + shift
    b = rng.random((SEEDS, IMAGES)) < p_b + shift
    return a, b


def _simulate(gain: float):
    rng = np.random.default_rng(7)
    boot, t = [], []
    for _ in range(STUDIES):
        a, b = _study(rng, gain)
        boot.append(two_way_bootstrap(a, b, n_boot=2000))
        t.append(paired(a.mean(axis=1), b.mean(axis=1)))
    return boot, t


def test_a_known_difference_the_t_test_on_3_means_misses_is_found_and_covered():
    gain = 0.06  # 6 points of accuracy, on 360 test images, 3 seeds
    boot, t = _simulate(gain)
    found_boot = np.array([r["p_value"] < 0.05 for r in boot])
    found_t = np.array([r["p_value"] < 0.05 for r in t])
    # Where the seeds differ no more than the image noise explains (the F-test pools them, about
    # 3 studies in 4), the image-level variance has 359 degrees of freedom instead of 2.
    pooled = np.array([r["df"] > 100 for r in boot])
    assert pooled.mean() >= 0.6
    assert found_t.mean() <= 0.55, found_t.mean()          # 2 degrees of freedom: t_0.975 = 4.30
    assert found_boot[pooled].mean() >= 0.8 and found_boot[pooled].mean() >= found_t[pooled].mean() + 0.15
    assert found_boot.mean() >= found_t.mean() + 0.1
    assert np.mean([r["ci_low"] <= gain <= r["ci_high"] for r in boot]) >= 0.9
    for r in boot:  # the estimate is the mean of the seeds' accuracy differences, and p matches the interval
        assert r["ci_low"] <= r["diff"] <= r["ci_high"]
        assert (r["p_value"] < 0.05) == (r["ci_low"] > 0 or r["ci_high"] < 0)


def test_a_null_difference_gives_p_values_that_are_not_small():
    boot, _ = _simulate(0.0)
    p = np.array([r["p_value"] for r in boot])
    assert np.mean(p < 0.05) <= 0.1 and np.median(p) > 0.3
    assert np.mean([r["ci_low"] <= 0 <= r["ci_high"] for r in boot]) >= 0.9
    same = np.random.default_rng(0).random((SEEDS, IMAGES)) < 0.8
    r = two_way_bootstrap(same, same)
    assert (r["diff"], r["ci_low"], r["ci_high"], r["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_bad_tables_are_one_clear_error():
    with pytest.raises(ValueError, match="equal, non-empty seeds x images"):
        two_way_bootstrap(np.ones((3, 10)), np.ones((3, 9)))


def _cells(rng, gain):
    """results rows and per-image predictions of real and mixed (one generator) at one size."""
    rows, preds = [], []
    labels = np.arange(IMAGES) % 10
    p = rng.uniform(0.6, 0.9, IMAGES)
    for seed in range(SEEDS):
        for comp, gen, g in (("real", "", 0.0), ("mixed", "gan", gain)):
            right = rng.random(IMAGES) < p + g
            predicted = np.where(right, labels, (labels + 1) % 10)
            rows.append({"composition": comp, "generator": gen, "size": 50, "seed": seed, "accuracy": right.mean()})
            preds.append(pd.DataFrame({"composition": comp, "generator": gen, "filter": "none", "size": 50,
                                       "seed": seed, "test_set": "real_test", "test_generator": "",
                                       "index": np.arange(IMAGES), "label": labels, "predicted": predicted}))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


def test_compare_uses_the_predictions_and_falls_back_to_the_t_test_where_a_cell_lacks_them():
    results, preds = _cells(np.random.default_rng(3), 0.08)
    table = compare(results, [("mixed", "real")], predictions=preds)
    row = table.iloc[0]
    assert (row["family"], row["method"], row["n_images"], row["n"]) == ("primary", BOOTSTRAP, IMAGES, SEEDS)
    assert row["interval_covers"] == "seeds, test images"
    diffs = results[results["composition"] == "mixed"]["accuracy"].to_numpy() - \
        results[results["composition"] == "real"]["accuracy"].to_numpy()
    assert row["diff"] == pytest.approx(diffs.mean())
    assert row["t_p_value"] == pytest.approx(paired(*[results[results["composition"] == c]["accuracy"]
                                                      for c in ("mixed", "real")])["p_value"])
    assert row["p_holm"] == row["p_value"]  # one primary comparison: Holm changes nothing
    # one cell's predictions missing (an older synthworth): that row is the t-test, and says so
    lacking = preds[~((preds["composition"] == "real") & (preds["seed"] == 1))]
    old = compare(results, [("mixed", "real")], predictions=lacking).iloc[0]
    assert old["method"] == "paired t-test on seed means (1 of 6 cells lack per-image predictions)"
    assert old["interval_covers"].startswith("seeds") and np.isnan(old["n_images"])
    assert (old["ci_low"], old["ci_high"], old["p_value"]) == (row["t_ci_low"], row["t_ci_high"], row["t_p_value"])


@pytest.mark.usefixtures("single_thread")
def test_a_study_with_comparisons_in_its_spec_gets_families_and_bootstrap_intervals(write_spec, tmp_path, capsys):
    spec = write_spec(compositions=["real", "artificial", "mixed"], seeds=[0, 1],
                      comparisons=[["mixed", "real"]])
    assert main(["study", "run", str(spec), "-q", "--workers", "1"]) == 0
    out = tmp_path / "spec-results"
    table = pd.read_csv(out / "comparisons.csv")
    assert {"family", "method", "interval_covers", "n_images", "t_ci_low", "t_ci_high", "t_p_value",
            "p_holm"} <= set(table.columns)
    primary = table[table["family"] == "primary"]
    assert set(zip(primary["composition_a"], primary["composition_b"])) == {("mixed", "real")}
    assert sorted(primary["generator_a"]) == ["ddpm", "gan"] and primary["p_holm"].notna().all()
    exploratory = table[table["family"] == "exploratory"]
    assert set(exploratory["kind"]) == {"generator"} and exploratory["p_holm"].isna().all()
    assert (table["method"] == BOOTSTRAP).all() and set(table["n_images"]) == {360}
    assert ((table["ci_low"] <= table["diff"]) & (table["diff"] <= table["ci_high"])).all()
    from synthworth.report import build_report

    page = build_report(out, tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "p (primary: Holm-adjusted; exploratory: raw)" in page and "Primary: the 2 comparisons the spec names" in page
    assert page.count(" (Holm)</td>") == 2 and page.count(" (raw)</td>") == 2
    assert "Exploratory: the other 2" in page
