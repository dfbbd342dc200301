"""Intervals over runs and the test between models, on simulated families of runs (pure numpy and
scipy: no training). A run's quality is ``mu + a_k + e_kd``: a run effect (its seed) and a draw
effect (which images were sampled), the between-run spread several times the draws'.

The test must call truly different models different in most simulations, and identical models
different in at most 5 % of them (plus the Monte Carlo error of that rate over the simulations)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from synthworth.metrics.over_runs import closest, difference_test, over_runs, smallest_p

SIMULATIONS = 1000
# A rate of 5 % measured over 1000 simulations has a standard error of sqrt(0.05 * 0.95 / 1000),
# 0.0069; allow two of them.
LIMIT = 0.05 + 2 * math.sqrt(0.05 * 0.95 / SIMULATIONS)


def family(rng, mu: float, runs: int, draws: int = 5, between: float = 1.0, within: float = 0.3) -> list[list[float]]:
    """One model's runs: each run's draws around its own mean."""
    return [list(mu + rng.normal(0, between) + rng.normal(0, within, draws)) for _ in range(runs)]


def run_means(runs: list[list[float]]) -> list[float]:
    return [float(np.mean(r)) for r in runs]


def calls(rng, runs: int, gap: float, paired: bool, n: int = SIMULATIONS) -> tuple[float, set[str]]:
    """Share of ``n`` simulated comparisons called different, and the methods used."""
    called, methods = 0, set()
    for _ in range(n):
        a = run_means(family(rng, 10.0, runs))
        b = run_means(family(rng, 10.0 + gap, runs))
        result = difference_test(a, b, paired=paired)
        called += result["different"]
        methods.add(result["method"].split(" (")[0].split(":")[0])
    return called / n, methods


# ------------------------------------------------------------------------------ the test
@pytest.mark.parametrize("runs, paired, method", [
    (5, False, "two-sample permutation test"),            # 252 arrangements: smallest p 0.008 (4 runs: 0.029)
    (6, True, "sign-flip permutation test, paired by seed"),  # 64 sign flips: smallest p 0.031
    (3, False, "Welch's t test"),                         # 20 arrangements: smallest p 0.1 > 5 %
])
def test_identical_models_are_called_different_in_at_most_5_percent_of_simulations(runs, paired, method):
    rate, methods = calls(np.random.default_rng(runs), runs, gap=0.0, paired=paired)
    assert methods == {method}
    assert rate <= LIMIT, f"false-call rate {rate:.3f} over {SIMULATIONS} simulations"


@pytest.mark.parametrize("runs, paired", [(5, False), (6, True), (3, False), (3, True)])
def test_models_that_truly_differ_are_called_different_in_most_simulations(runs, paired):
    # A gap of 4 between-run sds: the shape of the DCGAN against a latent model.
    rate, _ = calls(np.random.default_rng(100 + runs), runs, gap=4.0, paired=paired, n=200)
    assert rate >= 0.6, f"called different in only {rate:.2f} of 200 simulations"


def test_the_permutation_test_is_exact_and_falls_back_to_t_only_below_its_smallest_p():
    a, b = [1.0, 2.0, 3.5, 4.0, 5.0], [6.0, 7.0, 8.0, 9.5, 10.0]
    result = difference_test(a, b)
    # Every one of the 252 re-splits of the 10 run means; the observed split is the most extreme
    # one in each direction, so p = 2 / 252.
    assert result["method"].startswith("two-sample permutation test (exact, 252")
    assert result["p"] == pytest.approx(2 / 252) and result["different"]
    assert result["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    va, vb = np.var(a, ddof=1) / 5, np.var(b, ddof=1) / 5
    dof = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert (result["low"], result["high"]) == pytest.approx((result["difference"] - half, result["difference"] + half))
    assert smallest_p(3, 3, False) == pytest.approx(0.1) and smallest_p(5, 5, True) == 0.0625
    small = difference_test(a[:3], b[:3], paired=True)
    assert small["method"].startswith("paired t test") and small["smallest_p"] == 0.25
    assert small["p"] == pytest.approx(stats.ttest_rel(a[:3], b[:3]).pvalue)
    one = difference_test([1.0], b)
    assert one["method"] is None and not one["different"] and "2 or more runs" in one["reason"]
    flat = difference_test([1.0, 1.0], [2.0, 2.0])  # no spread at all: nothing to judge a difference by
    assert flat["method"] is None and not flat["different"] and "did not vary" in flat["reason"]


# ------------------------------------------------------------------------------ the interval
def test_one_run_gives_the_interval_of_its_draws_which_covers_sampling_only():
    draws = [[3.0, 4.0, 5.0]]
    stat = over_runs(draws)
    low, high = stats.t.interval(0.95, 2, loc=4.0, scale=stats.sem(draws[0]))
    assert (stat["covers"], stat["runs"], stat["values"]) == ("sampling", 1, [3.0, 4.0, 5.0])
    assert (stat["mean"], stat["low"], stat["high"]) == pytest.approx((4.0, low, high))


def test_several_runs_give_the_t_interval_of_the_run_means_and_the_variance_components():
    per_run = [[1.0, 3.0], [5.0, 7.0], [9.0, 11.0, None]]
    stat = over_runs(per_run, (0.0, None))
    means = [2.0, 6.0, 10.0]
    low, high = stats.t.interval(0.95, 2, loc=6.0, scale=stats.sem(means))
    assert (stat["covers"], stat["runs"], stat["values"]) == ("runs", 3, means)
    assert (stat["mean"], stat["low"], stat["high"]) == pytest.approx((6.0, max(low, 0.0), high))
    # Within: each run's draws spread by sd sqrt(2) (pooled); between: var(means) 16 less 2 / 2.
    assert stat["within_sd"] == pytest.approx(math.sqrt(2.0))
    assert stat["between_sd"] == pytest.approx(math.sqrt(16.0 - 2.0 / 2))
    assert stat["per_run"][2] == [9.0, 11.0, None]


def test_the_interval_over_runs_covers_the_recipes_mean_where_one_runs_interval_does_not():
    rng = np.random.default_rng(7)
    over, single = 0, 0
    for _ in range(400):
        runs = family(rng, 10.0, 4)
        stat = over_runs(runs)
        over += stat["low"] <= 10.0 <= stat["high"]
        first = over_runs(runs[:1])
        single += first["low"] <= 10.0 <= first["high"]
    assert over / 400 >= 0.92          # nominal 95 %: three standard errors of 400 simulations
    assert single / 400 <= 0.5         # the draws' interval ignores the between-run spread


# ------------------------------------------------------------------------------ the claim
def model(values, covers="runs", seeds=None, pairing=None):
    return {"values": values, "covers": covers, "seeds": seeds or list(range(len(values))), "pairing": pairing}


def test_the_closest_claim_is_backed_only_when_the_best_beats_every_other_model_in_its_test():
    far = {"gan": model([2.0, 2.5, 3.0, 2.2, 2.8]), "ldm": model([13.0, 13.5, 12.8, 14.0, 13.1]),
           "ddpm": model([25.0, 30.0, 27.0, 26.0, 29.0])}
    result = closest(far)
    assert (result["best"], result["claim"], result["tied"]) == ("gan", "backed", [])
    assert set(result["tests"]) == {"ldm", "ddpm"} and all(t["different"] for t in result["tests"].values())
    near = {**far, "ldm": model([2.1, 2.9, 3.3, 2.0, 2.6])}
    result = closest(near)
    assert (result["claim"], result["tied"]) == ("not shown", ["ldm"])
    single = {"gan": model([2.0, 2.5], covers="sampling"), "ldm": model([13.0, 13.5, 12.8])}
    assert closest(single)["claim"] == "untested"
    assert closest({"gan": model([2.0, 3.0])})["claim"] == "alone"


def test_runs_pair_by_seed_only_where_both_models_record_the_same_pairing():
    a = model([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], seeds=[5, 4, 3, 2, 1, 0], pairing="data:batch16")
    b = model([1.5, 2.4, 3.6, 4.5, 5.4, 6.6], seeds=[0, 1, 2, 3, 4, 5], pairing="data:batch16")
    paired = closest({"a": a, "b": b})["tests"]["b"]
    assert paired["paired"] and paired["method"].startswith("sign-flip permutation test, paired by seed")
    # Seed 0 of a (its last run) against seed 0 of b: the differences are not all of one sign.
    d = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]) - np.array(b["values"])
    assert paired["difference"] == pytest.approx(d.mean())
    other = closest({"a": a, "b": {**b, "pairing": "data:batch32"}})["tests"]["b"]
    assert not other["paired"] and other["method"].startswith("two-sample permutation test")


def test_the_closest_sentence_states_the_test_never_the_overlap_of_intervals():
    from synthworth.metrics.findings_text import _closest

    def entry(values, runs):
        stat = over_runs([[v] for v in values] if runs > 1 else [values])
        return {"runs": runs, "seeds": list(range(runs)), "quality": {"fid": stat}}

    models = {"gan": entry([2.0, 2.5, 3.0, 2.2, 2.8], 5), "ldm": entry([13.0, 13.5, 12.8, 14.0, 13.1], 5)}
    findings = {"features": "file", "floor": {"fid": {"mean": 0.5}}, "models": models}
    findings["closest_test"] = closest({n: {**m["quality"]["fid"], "seeds": m["seeds"], "pairing": None}
                                        for n, m in models.items()})
    findings["closest"] = findings["closest_test"]["best"]
    text = _closest(findings)
    assert text.startswith("gan is closest to the real images by FID") and "two-sample permutation test" in text
    assert "p = 0.00794 ≤ 0.05" in text and "overlap" not in text
    models["ldm"] = entry([2.1, 2.9, 3.3, 2.0, 2.6], 5)
    findings["closest_test"] = closest({n: {**m["quality"]["fid"], "seeds": m["seeds"], "pairing": None}
                                        for n, m in models.items()})
    text = _closest(findings)
    assert "cannot tell it apart from ldm" in text and "no model is shown to be the closest" in text
    models = {"gan": entry([2.0, 2.4, 2.1], 1), "ldm": entry([13.0, 13.5, 12.8], 1)}
    findings.update(models=models, closest_test=closest({n: {**m["quality"]["fid"], "seeds": m["seeds"],
                                                             "pairing": None} for n, m in models.items()}))
    text = _closest(findings)
    assert "a ranking not tested" in text and "may not survive a retrain" in text and "--replicates" in text
