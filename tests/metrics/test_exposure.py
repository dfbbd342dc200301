"""The exposure finding as a two-sample comparison (:mod:`synthworth.metrics.exposure`): the
issue's case (29 of 200 samples against 4 of 30 held-out faces) is no difference, a clear one
is, the range's coverage is checked on the held-out images, and the sentences say so."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from synthworth.metrics.exposure import range_coverage, sentence, summary, versus_heldout
from synthworth.metrics.findings import exposure, real_range

TRAIN = np.linspace(60.0, 180.0, 70)  # 70 training images: the range is about 61.2-178.8


def values(inside: int, dark: int, bright: int, seed: int = 0) -> np.ndarray:
    """Brightness values: ``inside`` within the training range, ``dark`` below it, ``bright`` above."""
    rng = np.random.default_rng(seed)
    return np.r_[rng.uniform(70, 170, inside), rng.uniform(5, 50, dark), rng.uniform(200, 250, bright)]


def findings_of(samples: np.ndarray, heldout: np.ndarray) -> dict:
    low, high = real_range(TRAIN)
    model = {"exposure": {**exposure(samples, low, high), "versus_heldout": versus_heldout(samples, TRAIN, heldout)}}
    rng = {"low": low, "high": high, "coverage": 0.98, "from": "the 70 real 'train' images",
           "heldout_share": exposure(heldout, low, high)["share"], "heldout_n": len(heldout),
           "check": range_coverage(TRAIN, heldout)}
    return {"models": {"ddpm": model}, "exposure_range": rng}


def test_29_of_200_samples_against_4_of_30_held_out_faces_is_no_difference():
    samples, heldout = values(171, 8, 21), values(26, 1, 3, seed=1)
    v = versus_heldout(samples, TRAIN, heldout)
    assert (v["heldout_outside"], v["heldout_n"]) == (4, 30)
    assert v["difference"] == pytest.approx(29 / 200 - 4 / 30)
    assert v["p_value"] == pytest.approx(stats.fisher_exact([[29, 171], [4, 26]]).pvalue) and v["p_value"] > 0.9
    assert v["difference_low"] < 0 < v["difference_high"] and v["verdict"] == "no clear difference"
    findings = findings_of(samples, heldout)
    text = sentence(findings["models"]["ddpm"], findings["exposure_range"])
    assert text.startswith("29 of its 200 samples (14.5 %) and 4 of the 30 held-out real images (13.3 %) lie outside")
    assert "a difference of +1.2 points (95 % CI −" in text and "Fisher's exact p = 1" in text
    assert "no clear difference from real images" in text and "more often" not in text
    # 4 of 30 outside a nominal 98 % range: said, with the binomial test
    assert "the range is not a 98 % range for the held-out real images (13.3 % of them lie outside it" in text
    assert f"p = {stats.binomtest(4, 30, 0.02).pvalue:.2g}" in text
    line = summary(findings)
    assert line.startswith("exposure: no model's samples fall outside the real brightness range clearly more")
    assert "misses 4 of the 30 held-out real images (13.3 %), not 2.0 %" in line


def test_a_clear_excess_of_badly_exposed_samples_is_called_more_often():
    samples, heldout = values(100, 40, 60), values(30, 0, 0, seed=1)
    findings = findings_of(samples, heldout)
    v = findings["models"]["ddpm"]["exposure"]["versus_heldout"]
    assert v["verdict"] == "more" and v["p_value"] < 1e-6 and v["difference_low"] > 0.3
    text = sentence(findings["models"]["ddpm"], findings["exposure_range"])
    assert "its samples fall outside the range more often than real images do" in text
    assert "not a 98 % range" not in text  # 0 of 30 held-out images outside: nothing to say about the range
    assert summary(findings).startswith("exposure: the samples of ddpm fall outside the real brightness range more "
                                        "often than the held-out real images (0.0 % of them)")
    fewer = versus_heldout(values(200, 0, 0), TRAIN, values(20, 5, 5, seed=1))
    assert fewer["verdict"] == "fewer"


def test_the_interval_carries_the_uncertainty_of_the_range():
    """With the range held fixed (a huge training set) the bootstrap interval is narrower than
    with a range from 70 images, whose extremes move from resample to resample."""
    samples, heldout = values(171, 8, 21), values(26, 1, 3, seed=1)
    rng = np.random.default_rng(5)
    few = rng.normal(120, 30, 70)
    many = rng.normal(120, 30, 20000)
    wide = versus_heldout(samples, few, heldout, seed=3)
    narrow = versus_heldout(samples, many, heldout, seed=3)
    assert wide["difference_high"] - wide["difference_low"] > narrow["difference_high"] - narrow["difference_low"]
    # each group of samples (a run, a draw) is resampled within itself; the counts are the same
    split = versus_heldout([samples[:100], samples[100:]], TRAIN, heldout)
    assert split["difference"] == pytest.approx(versus_heldout(samples, TRAIN, heldout)["difference"])


def test_the_range_coverage_check_on_exchangeable_and_on_shifted_real_images():
    rng = np.random.default_rng(0)
    real = rng.normal(120, 20, 100)
    same = range_coverage(real[:70], real[70:])
    # a range from 70 images leaves out about 2 * 1.7 / 71 of new images (the interpolated 1st and
    # 99th percentiles lie 0.69 of the way between the two most extreme), not 2 %
    assert 0.035 < same["expected_share"] < 0.06
    assert same["permutation_p"] > 0.05
    shifted = range_coverage(real[:70], rng.normal(170, 20, 30))
    assert shifted["off"] and shifted["binomial_p"] < 1e-6 and shifted["permutation_p"] < 0.01
    low, high = real_range(real[:70])
    assert same["heldout_outside"] == int(((real[70:] < low) | (real[70:] > high)).sum())
