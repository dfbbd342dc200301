"""The plateau finding (:mod:`synthworth.metrics.plateau`): its false-call rate on flat curves and
its power on a 30 % fall, by simulation (numpy only), the interval by hand, and curves with
several draws per evaluation read from metrics.jsonl.

The simulated model: run k's evaluation at epoch e, draw d, is ``level(e) + u[k, e] + eps[k, e, d]``
with ``u`` the model's own wander (a stationary AR(1) over the evaluations with lag-1
``correlation``, standard deviation ``wander`` x 100) and ``eps`` the sampling error of a draw
(independent, standard deviation ``noise`` x 100). A flat curve has ``level = 100``; a 30 % fall
goes linearly from 100 at the window's first evaluation (the last half) to 70 at its last.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from synthworth.metrics.plateau import (
    ar1_correction,
    eval_curve,
    plateau,
    plateau_curves,
    plateau_of_runs,
)


def simulate(rng, *, runs, evaluations, draws, correlation, noise, wander, fall=0.0):
    """One simulated model: a list of ``runs`` curves {epoch: [draw values]} at epochs 1..evaluations."""
    first = evaluations - math.ceil(evaluations / 2)  # 0-based index of the window's first evaluation
    index = np.arange(evaluations)
    level = 100.0 * (1 - fall * (index - first) / (evaluations - 1 - first))
    u = np.empty((runs, evaluations))
    u[:, 0] = rng.normal(0, wander * 100, runs)
    shocks = rng.normal(0, wander * 100 * math.sqrt(1 - correlation ** 2), (runs, evaluations))
    for i in range(1, evaluations):
        u[:, i] = correlation * u[:, i - 1] + shocks[:, i]
    values = (level + u)[..., None] + rng.normal(0, noise * 100, (runs, evaluations, draws))
    return [{e + 1: list(values[k, e]) for e in range(evaluations)} for k in range(runs)]


def rates(trials, seed, correlation_assumed=None, **design):
    """Shares of improving, worsening and plateaued verdicts over ``trials`` simulated models."""
    rng = np.random.default_rng(seed)
    extra = {} if correlation_assumed is None else {"correlation": correlation_assumed}
    counts = {"improving": 0, "worsening": 0, "plateaued": 0, "undecided": 0}
    for _ in range(trials):
        counts[plateau_curves(simulate(rng, **design), **extra)["status"]] += 1
    return {k: v / trials for k, v in counts.items()}


def allowed(trials, level=0.05):
    """The false-call rate allowed: 5 % plus two Monte Carlo standard errors."""
    return level + 2 * math.sqrt(level * (1 - level) / trials)


# ------------------------------------------------------------------------------ false calls on flat curves
TRIALS = 1000


@pytest.mark.parametrize("design", [
    # one run, independent evaluations, 16 of them (window 8), 3 draws each
    dict(runs=1, evaluations=16, draws=3, correlation=0.0, noise=0.10, wander=0.05),
    # one run whose model wanders with correlation 0.5 between neighbouring evaluations, wander dominant
    dict(runs=1, evaluations=16, draws=3, correlation=0.5, noise=0.005, wander=0.08),
    dict(runs=1, evaluations=8, draws=1, correlation=0.5, noise=0.005, wander=0.08),
    # three runs with strongly correlated wander: the runs are the unit
    dict(runs=3, evaluations=16, draws=3, correlation=0.9, noise=0.005, wander=0.08),
    dict(runs=2, evaluations=8, draws=1, correlation=0.0, noise=0.10, wander=0.05),
], ids=["one-run-independent", "one-run-ar0.5", "one-run-4-points-ar0.5", "three-runs-ar0.9", "two-runs"])
def test_a_flat_curve_is_called_improving_or_worsening_at_most_5_percent_of_the_time(design):
    r = rates(TRIALS, seed=1, **design)
    assert r["improving"] + r["worsening"] <= allowed(TRIALS), r


def test_the_plain_line_that_ignores_the_correlation_calls_too_many_trends():
    """The check above can fail: the least-squares line through one run with independent errors
    assumed (correlation 0, the earlier finding) calls a trend in a flat AR(1) 0.5 curve far more
    often than 5 %."""
    design = dict(runs=1, evaluations=16, draws=3, correlation=0.5, noise=0.005, wander=0.08)
    plain = rates(TRIALS, seed=1, correlation_assumed=0.0, **design)
    assert plain["improving"] + plain["worsening"] > 0.12, plain


# ------------------------------------------------------------------------------ power on a 30 % fall
def test_a_30_percent_fall_is_called_improving_most_of_the_time_at_the_stated_designs():
    """Three runs, 16 evaluations (window 8), 3 draws each, draws 10 % noisy, the model wandering
    5 % with correlation 0.5: a true 30 % fall over the window is called improving about three
    times in four, and never plateaued. One run with 20 evaluations (window 10), 3 draws 5 %
    noisy, wander 3 %: nearly always."""
    runs = rates(400, seed=2, runs=3, evaluations=16, draws=3, correlation=0.5, noise=0.10, wander=0.05, fall=0.3)
    assert runs["improving"] >= 0.7 and runs["plateaued"] == 0 and runs["worsening"] == 0, runs
    one = rates(400, seed=3, runs=1, evaluations=20, draws=3, correlation=0.5, noise=0.05, wander=0.03, fall=0.3)
    assert one["improving"] >= 0.9 and one["plateaued"] == 0 and one["worsening"] == 0, one


# ------------------------------------------------------------------------------ the interval by hand
def test_the_correction_is_exact_for_independent_errors_and_widens_with_the_correlation():
    assert ar1_correction(8, 0.0) == pytest.approx((1.0, 6.0))
    factor, df = ar1_correction(8, 0.5)
    assert factor > 2 and df < 6
    # Checked by simulation: the slope's variance over the mean residual variance times (X'X)^-1.
    rng = np.random.default_rng(0)
    e = np.empty((20000, 8))
    e[:, 0] = rng.normal(size=20000)
    for i in range(1, 8):
        e[:, i] = 0.5 * e[:, i - 1] + rng.normal(0, math.sqrt(0.75), 20000)
    x = np.arange(8.0) - 3.5
    slopes = e @ x / (x @ x)
    residuals = e - e.mean(1, keepdims=True) - np.outer(slopes, x)
    assert slopes.var() / ((residuals ** 2).sum(1).mean() / 6 / (x @ x)) == pytest.approx(factor, rel=0.05)


def test_one_run_without_correlation_is_the_t_interval_of_the_least_squares_slope():
    points = [(1, 50.0), (2, 80.0), (3, 40.0), (4, 75.0), (5, 60.0), (6, 66.0)]
    result = plateau_curves([{e: [v] for e, v in points}], correlation=0.0)
    fit = stats.linregress([3, 4, 5, 6], [40, 75, 60, 66])  # the window: the last four
    half = stats.t.ppf(0.975, 2) * fit.stderr
    assert (result["slope"], result["low"], result["high"]) == pytest.approx((fit.slope, fit.slope - half,
                                                                              fit.slope + half))
    widened = plateau([(e, v) for e, v in points])
    factor, df = ar1_correction(4, 0.5)
    assert widened["high"] - widened["slope"] == pytest.approx(stats.t.ppf(0.975, df) * fit.stderr * math.sqrt(factor))
    assert widened["status"] == "undecided" and "eval.draws" in widened["statement"]


def test_several_runs_are_the_t_interval_of_their_changes():
    curves = [{e: [100 - s * e] for e in range(1, 9)} for s in (2.0, 3.0, 4.0)]
    result = plateau_curves(curves)
    changes = [-s * 3 / np.mean([100 - s * e for e in (5, 6, 7, 8)]) for s in (2.0, 3.0, 4.0)]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(changes), scale=stats.sem(changes))
    assert result["per_run"] == pytest.approx(changes)
    assert (result["relative_low"], result["relative_high"]) == pytest.approx((low, high))
    assert result["method"] == "runs" and result["df"] == 2 and result["correlation"] is None
    assert "3 runs, each run's change over the window one observation" in result["statement"]


def test_draws_set_a_floor_under_one_runs_interval():
    """Four evaluations lying exactly on a line, each the mean of draws spread by 10: the line's
    residuals say nothing about that spread, the draws do."""
    curve = {e: [100 - 2 * e - 10, 100 - 2 * e, 100 - 2 * e + 10] for e in range(1, 5)}
    result = plateau_curves([curve])
    x = np.arange(1, 5) - 2.5
    half = stats.t.ppf(0.975, 8) * math.sqrt(100 / 3 / (x @ x))
    assert result["draws"] == 3 and result["draw_sd"] == pytest.approx(10)
    assert result["high"] - result["slope"] == pytest.approx(half)
    assert "each the mean of 3 draws" in result["statement"]


def test_runs_join_at_the_epochs_all_of_them_evaluated():
    a = {e: [50.0 - e] for e in range(1, 9)}
    b = {e: [60.0 - e] for e in range(1, 9) if e != 8}
    result = plateau_curves([a, b])
    assert (result["first_epoch"], result["last_epoch"], result["points"]) == (4, 7, 4)
    assert plateau_curves([a, {1: [3.0]}])["status"] == "too few points"
    assert "all 2 runs evaluated" in plateau_curves([a, {1: [3.0]}])["statement"]


# ------------------------------------------------------------------------------ reading runs
def test_draws_logged_in_metrics_jsonl_are_read_and_other_settings_left_out(tmp_path):
    rows = [{"step": 1, "epoch": 1, "kind": "eval", "samples": 8, "fid": 90.0},
            *({"step": e, "epoch": e, "kind": "eval", "samples": 16, "fid": 80.0 - e,
               "fid_draws": [79.0 - e, 80.0 - e, 81.0 - e, float("nan")]} for e in range(2, 8)),
            {"step": 8, "epoch": 8, "kind": "eval", "samples": 16, "error": "out of memory"}]
    runs = []
    for k in range(2):
        run = tmp_path / f"seed-{k}"
        run.mkdir()
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(run)
    curve, left, _ = eval_curve(runs[0])
    assert left == 1 and sorted(curve) == list(range(2, 8)) and curve[2] == [77.0, 78.0, 79.0]
    result = plateau_of_runs(runs)
    assert result["runs"] == 2 and result["draws"] == 3 and result["points"] == 4
    assert "2 earlier evaluation(s) logged with other eval settings" in result["statement"]
