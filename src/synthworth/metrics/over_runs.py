"""Quality over training runs: the interval of a model's metric, and the test between two models.

A trained network is one draw from its recipe: retrained with another seed, the same recipe may
score far better or worse (a DCGAN retrained five times on the faces demo scored FID 2.3 to 5.7,
a spread many times the width of one run's interval over sample draws). So ``compare`` treats a
model as K runs (replicates, :mod:`synthworth.engine.replicates`), each scored on D sample draws,
and asks questions of the recipe, not of one network.

**The interval** (:func:`over_runs`). Draws are nested in runs: ``y[k, d] = mu + a[k] + e[k, d]``,
a run's effect ``a`` (seed: weights, noise, data order) and a draw's ``e`` (which images were
sampled). The K run means ``m[k]`` (each the mean of its D draws) are independent, each with
variance ``var(a) + var(e) / D``, so the Student-t interval of the run means, ``mean(m) ± t(K-1) *
sd(m) / sqrt(K)``, covers ``mu`` at 95 % when the run means are near normal, and its width holds
both components without estimating them apart. It is exact at any K >= 2 under that assumption; a
nested bootstrap (resample runs, then draws within them) would not be: with 3 runs there are 10
distinct resamples of the runs and its intervals are far too narrow. The components are reported
beside it, estimated as in a one-way ANOVA: the within-run sd (the draws' spread about their run's
mean, pooled) and the between-run sd (``sqrt(max(0, var(m) - within_var / D))``). With one run the
interval is the t interval of its D draws: it covers the sampling of images only, not a retrain.

**The test** (:func:`difference_test`), of "the two recipes score the same on average" on the run
means (never "the intervals overlap": two 95 % intervals may overlap while the difference is
clear, and a test of overlap has no stated error rate):

* paired by seed when both models have runs of the same seeds whose seed fed the same thing in
  both (the caller decides: same Dataset and batch size, so each seed gave both the same order of
  training images): the differences ``m_a[k] - m_b[k]``, sign-flip permutation test;
* else two-sample: the run means of both pooled and re-split, permutation test;
* each exact (every arrangement) when there are at most 100,000 of them, else 9,999 random ones
  (seeded: the same p every time), statistic the difference of the means, two-sided
  (scipy.stats.permutation_test). A permutation test needs no distribution, but with few runs
  it cannot reach 5 %: the smallest p a sign-flip test of K pairs can give is 2 / 2**K (0.25 for
  3, 0.0625 for 5), a two-sample test of 3 runs each 2 / 20 = 0.1. Where the smallest attainable
  p is above ``alpha``, the t test on the same run means is used instead (paired t, or Welch's t),
  and the result says it leans on the run means being near normal;
* with one run of either model no test is possible: the result says so (train replicates).

The claim "A is the closest" (:func:`closest`) is backed when the model with the best mean beats
every other one in its own test at ``alpha``: an intersection-union test, which needs no
correction for the number of rivals (the claim fails if any single test fails).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

ALPHA = 0.05
EXACT_LIMIT = 100_000     # arrangements enumerated exactly; above, random ones
RESAMPLES = 9_999


# ------------------------------------------------------------------------------ intervals
def t_interval(values: Sequence[float | None], bounds: tuple[float | None, float | None] = (None, None)
               ) -> dict[str, Any]:
    """Mean and Student-t 95 % interval of ``values`` (the finite ones), values kept; the
    interval is cut at ``bounds``, the range the metric can take."""
    from scipy.stats import t

    kept = [float(v) if v is not None and math.isfinite(v) else None for v in values]
    finite = np.array([v for v in kept if v is not None])
    out: dict[str, Any] = {"mean": float(finite.mean()) if len(finite) else None, "low": None, "high": None,
                           "values": kept}
    if len(finite) >= 2:
        half = t.ppf(0.975, len(finite) - 1) * finite.std(ddof=1) / math.sqrt(len(finite))
        low, high = float(finite.mean() - half), float(finite.mean() + half)
        out["low"] = low if bounds[0] is None else max(low, bounds[0])
        out["high"] = high if bounds[1] is None else min(high, bounds[1])
    return out


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def over_runs(per_run: Sequence[Sequence[float | None]],
              bounds: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """A metric of one model from the draws of each of its runs (``per_run[k]``: run k's values
    over its draws; see the module docstring).

    ``covers`` says what the interval is over: ``"runs"`` (K >= 2: the t interval of the run
    means, in ``values``) or ``"sampling"`` (one run: the t interval of its draws, in
    ``values``). ``runs`` counts the runs with a finite value; ``per_run`` keeps every draw;
    ``within_sd`` and ``between_sd`` are the components (None where they cannot be estimated)."""
    draws = [_finite(values) for values in per_run]
    scored = [d for d in draws if d]
    kept = [[float(v) if v is not None and math.isfinite(v) else None for v in values] for values in per_run]
    if len(scored) <= 1:
        out = t_interval(kept[draws.index(scored[0])] if scored else [], bounds)
        out.update(covers="sampling", runs=len(scored), per_run=kept, within_sd=_within_sd(scored),
                   between_sd=None)
        return out
    means = [float(np.mean(d)) for d in scored]
    out = t_interval(means, bounds)
    within = _within_sd(scored)
    between = None
    if within is not None:
        per = float(np.mean([len(d) for d in scored]))
        between = math.sqrt(max(0.0, float(np.var(means, ddof=1)) - within ** 2 / per))
    out.update(covers="runs", runs=len(scored), per_run=kept, within_sd=within, between_sd=between)
    return out


def _within_sd(runs: list[list[float]]) -> float | None:
    """The pooled within-run standard deviation of the draws (runs of 2 or more draws)."""
    spread = [(len(d) - 1, float(np.var(d, ddof=1))) for d in runs if len(d) >= 2]
    dof = sum(n for n, _ in spread)
    return math.sqrt(sum(n * v for n, v in spread) / dof) if dof else None


# ------------------------------------------------------------------------------ tests
def smallest_p(n_a: int, n_b: int, paired: bool) -> float:
    """The smallest two-sided p the exact permutation test of these run counts can give."""
    if paired:
        return 2.0 / 2 ** n_a
    arrangements = math.comb(n_a + n_b, n_a)
    return (2.0 if n_a == n_b else 1.0) / arrangements


def difference_test(a: Sequence[float], b: Sequence[float], *, paired: bool = False,
                 alpha: float = ALPHA) -> dict[str, Any]:
    """Do two models score the same on average? ``a``, ``b``: their run means (in the same seed
    order when ``paired``). Returns the method, the p value, whether it is at most ``alpha``
    (``different``), the difference of the means ``a - b`` with its 95 % t interval, and, when no
    test is possible, ``reason``."""
    from scipy import stats

    a, b = np.asarray(_finite(a)), np.asarray(_finite(b))
    paired = paired and len(a) == len(b)
    out: dict[str, Any] = {"runs": [len(a), len(b)], "paired": paired, "alpha": alpha, "method": None, "p": None,
                           "different": False, "difference": None, "low": None, "high": None, "reason": None,
                           "smallest_p": None, "note": None}
    if len(a) and len(b):
        out["difference"] = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        out["reason"] = "a test between models needs 2 or more runs of each"
        return out
    floor = smallest_p(len(a), len(b), paired)
    out["smallest_p"] = floor
    diffs = a - b if paired else None
    spread = float(np.ptp(diffs)) if paired else float(np.ptp(a)) + float(np.ptp(b))
    if spread == 0:  # the runs did not vary at all: no test has a scale to judge the difference by
        out["reason"] = "the runs did not vary at all, so there is no spread to judge a difference by"
        return out
    if floor <= alpha:
        count = 2 ** len(a) if paired else math.comb(len(a) + len(b), len(a))
        exact = count <= EXACT_LIMIT
        result = stats.permutation_test(
            (a, b), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis), vectorized=True,
            permutation_type="samples" if paired else "independent", alternative="two-sided",
            n_resamples=np.inf if exact else RESAMPLES, rng=np.random.default_rng(0))
        out["p"] = float(result.pvalue)
        out["method"] = (("sign-flip permutation test, paired by seed" if paired else "two-sample permutation test")
                         + (f" (exact, {count} arrangements)" if exact else f" ({RESAMPLES} random arrangements)"))
    else:
        test = stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)
        out["p"] = float(test.pvalue)
        out["method"] = "paired t test" if paired else "Welch's t test"
        out["note"] = (f"with these few runs a permutation test cannot reach p ≤ {alpha:g} (its smallest p is "
                       f"{floor:.3g}), so the test is a t test, which assumes the run means are near normal")
    low, high = _difference_interval(a, b, paired)
    out.update(low=low, high=high, different=bool(out["p"] <= alpha))
    return out


def _difference_interval(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float]:
    """The 95 % t interval of ``mean(a) - mean(b)``: of the paired differences, or Welch's."""
    from scipy import stats

    if paired:
        d = a - b
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        return float(d.mean() - half), float(d.mean() + half)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    centre = float(a.mean() - b.mean())
    return centre - half, centre + half


def closest(models: dict[str, dict[str, Any]], *, lower_is_better: bool = True,
            alpha: float = ALPHA) -> dict[str, Any] | None:
    """The model with the best mean and whether the claim "it is the closest" is backed.

    ``models``: name -> ``{"values": run means (or, with one run, its draws), "covers": "runs" |
    "sampling", "seeds": the runs' seeds, "pairing": what a seed fed (e.g. the Dataset and batch
    size), or None; two models' runs pair by seed when their pairings are equal}`` (models without a finite mean are left out). ``claim`` is ``"backed"`` (it beats
    every other model in its own test), ``"not shown"`` (some test did not find a difference:
    those models are listed in ``tied``) or ``"untested"`` (a model has one run). ``tests`` holds
    each test of the best against another model. None when no model has a mean."""
    means = {n: float(np.mean(_finite(m["values"]))) for n, m in models.items() if _finite(m.get("values") or [])}
    if not means:
        return None
    best = (min if lower_is_better else max)(means, key=means.get)
    tests, tied, single = {}, [], []
    for name in means:
        if name == best:
            continue
        if models[best].get("covers") != "runs" or models[name].get("covers") != "runs":
            single.append(name)
            continue
        a, b, paired = _paired(models[best], models[name])
        result = difference_test(a, b, paired=paired, alpha=alpha)
        better = result["difference"] < 0 if lower_is_better else result["difference"] > 0
        result["different"] = bool(result["different"] and better)
        tests[name] = result
        if not result["different"]:
            tied.append(name)
    claim = "untested" if single or models[best].get("covers") != "runs" else ("not shown" if tied else "backed")
    if len(means) == 1:
        claim = "alone"
    return {"best": best, "claim": claim, "tied": tied, "untested": single, "tests": tests, "alpha": alpha,
            "means": means}


def _paired(x: dict[str, Any], y: dict[str, Any]) -> tuple[list[float], list[float], bool]:
    """The two models' run means, paired by seed when both may be and their seeds are the same."""
    sx, sy = x.get("seeds") or [], y.get("seeds") or []
    if x.get("pairing") is not None and x.get("pairing") == y.get("pairing") \
            and len(sx) == len(x["values"]) and len(sy) == len(y["values"]) and None not in sx \
            and sorted(sx) == sorted(sy) and len(set(sx)) == len(sx):
        order = sorted(sx)
        a = [x["values"][sx.index(s)] for s in order]
        b = [y["values"][sy.index(s)] for s in order]
        if all(v is not None for v in a + b):
            return a, b, True
    return list(x["values"]), list(y["values"]), False
