"""Is a generator still improving when its training stopped, or has it plateaued? The second of
the findings of :mod:`synthworth.metrics.findings`, read from the quality curve logged during
training (``kind: eval`` rows of ``metrics.jsonl``; with ``eval.draws`` > 1 each row holds the
values of every draw, ``fid_draws``, and their mean, ``fid``).

The method. The window is the last half of the evaluated epochs (at least 4 when there are 4 or
more, all 3 when there are 3; with several runs, the epochs every run evaluated). Each
evaluation's value is the mean of its draws. Two sources of error move that value: the draw of
sample images (independent between draws, measured by their spread) and the model itself, which
wanders from one checkpoint to the next in a way that is correlated across neighbouring
checkpoints (training dynamics). Draws alone understate the second, and a plain least-squares
line through one run's evaluations treats neighbouring evaluations as independent: with a
lag-1 correlation of 0.5 its nominal 5 % test calls a trend in a flat curve about 10 % of the
time. So:

- **several runs of one recipe** (replicates): the run is the unit. Each run's line through its
  window gives its change over the window relative to its window mean; the verdict reads the
  Student-t 95 % interval of the mean change over the runs (K - 1 degrees of freedom). Runs are
  independent, so this holds however a run's evaluations are correlated;
- **one run**: the line through its evaluations, with the slope's standard error and degrees of
  freedom corrected for an AR(1) correlation of :data:`NEIGHBOUR_CORRELATION` (0.5) between
  neighbouring evaluations: the exact variance of the least-squares slope under that
  correlation over the variance the residuals estimate, and Satterthwaite's degrees of freedom
  of the residual variance. Its level holds for correlations up to 0.5; above that only
  replicates do. With several draws per evaluation the interval is never narrower than the one
  the draws' own spread gives (their pooled variance over the draws of each evaluation).

The verdict, with a ``tolerance`` (10 %): improving / worsening when the interval excludes 0 in
that direction and the estimated change is at least the tolerance; plateaued when the whole
interval lies within +-tolerance; otherwise undecided. For FID and KID lower is better, for the
others higher. ``tests/metrics/test_plateau.py`` checks the false-call rate on flat curves
(independent and autocorrelated noise) and the detection of a 30 % fall by simulation.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from synthworth.metrics.cost import read_rows, run_folder

LOWER_IS_BETTER = {"fid", "kid"}
NEIGHBOUR_CORRELATION = 0.5  # the lag-1 correlation of one run's evaluations its interval allows for
TOLERANCE = 0.10

# What makes two logged evaluations comparable: FID and KID depend on the sample count and the
# features, so a run resumed with other eval settings must not join its curves into one slope.
EVAL_SETTINGS = ("samples", "seed", "features", "features_label", "real_split", "real_images")

Curve = dict[int, list[float]]  # epoch -> the values of that evaluation's draws


# ------------------------------------------------------------------------------ the test
@lru_cache(maxsize=256)
def _t975(df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


@lru_cache(maxsize=256)
def ar1_correction(n: int, correlation: float) -> tuple[float, float]:
    """For a least-squares line through ``n`` equally spaced points whose errors are AR(1) with
    lag-1 ``correlation``: the factor by which the slope's true variance exceeds the variance
    estimated from the residuals (in expectation), and Satterthwaite's degrees of freedom of
    that residual variance. (1.0, n - 2) for independent errors.

    By hand rather than statsmodels (not a dependency): with X the design, S the correlation
    matrix and M = I - X(X'X)^-1X', the slope's variance is [(X'X)^-1 X'SX (X'X)^-1]_11, the
    residual variance's expectation tr(MS) / (n - 2) and its degrees of freedom
    tr(MS)^2 / tr(MSMS)."""
    x = np.c_[np.ones(n), np.arange(n, dtype=np.float64)]
    s = correlation ** np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(np.float64)
    inverse = np.linalg.inv(x.T @ x)
    true = (inverse @ x.T @ s @ x @ inverse)[1, 1]
    ms = (np.eye(n) - x @ inverse @ x.T) @ s
    estimated = inverse[1, 1] * np.trace(ms) / (n - 2)
    return float(true / estimated), float(np.trace(ms) ** 2 / np.trace(ms @ ms))


def _line(epochs: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and the residuals' sum of squares (0 for a constant curve: a
    collapsed generator scores the same every epoch and its slope 0 is certain)."""
    centred = epochs - epochs.mean()
    slope = float(centred @ (values - values.mean()) / (centred @ centred))
    if np.ptp(values) == 0:
        return 0.0, 0.0
    residuals = values - values.mean() - slope * centred
    return slope, float(residuals @ residuals)


def plateau(points: list[tuple[int, float]], metric: str = "fid", tolerance: float = TOLERANCE) -> dict[str, Any]:
    """The verdict for one run's curve of single values, ``points`` ((epoch, value) pairs; the
    last value of an epoch given twice counts): :func:`plateau_curves` of that one curve."""
    curve: Curve = {}
    for epoch, value in points:
        curve[int(epoch)] = [value]
    return plateau_curves([curve], metric, tolerance)


def plateau_curves(curves: Sequence[Curve], metric: str = "fid", tolerance: float = TOLERANCE,
                   correlation: float = NEIGHBOUR_CORRELATION) -> dict[str, Any]:
    """Is the quality of the runs ``curves`` (one per run of the same recipe; each maps an epoch
    to the values of its draws) still improving, plateaued, worsening, or too uncertain to say?
    The method is the module's: the runs as the unit when there are several, else one run's
    line with its error corrected for ``correlation`` between neighbouring evaluations."""
    clean = [{int(e): [float(v) for v in vs if _finite(v)] for e, vs in c.items()} for c in curves]
    clean = [{e: vs for e, vs in c.items() if vs} for c in clean]
    common = sorted(set.intersection(*(set(c) for c in clean))) if clean else []
    runs = len(clean)
    name = metric.upper() if metric in LOWER_IS_BETTER else metric
    out: dict[str, Any] = {"metric": metric, "status": "too few points", "first_epoch": None, "last_epoch": None,
                           "points": len(common), "slope": None, "low": None, "high": None,
                           "relative_change": None, "relative_low": None, "relative_high": None,
                           "tolerance": tolerance, "method": "runs" if runs > 1 else "one run", "runs": runs,
                           "draws": None, "draw_sd": None, "df": None,
                           "correlation": None if runs > 1 else correlation, "per_run": None}
    if len(common) < 3:
        logged = f"only {len(common)} evaluation(s) of {name}" if common else f"no {name}"
        shared = f" at epochs all {runs} runs evaluated" if runs > 1 else ""
        out["statement"] = (f"too few points: {logged} logged during training{shared}, 3 are needed (train with "
                            f"eval.every set so that quality is logged at 3 or more epochs)")
        return out
    window = common[-max(math.ceil(len(common) / 2), min(len(common), 4)):]
    epochs = np.array(window, dtype=np.float64)
    means = np.array([[np.mean(c[e]) for e in window] for c in clean])  # runs x evaluations
    draws = min(len(c[e]) for c in clean for e in window)
    spread = [(np.var(c[e], ddof=1) * (len(c[e]) - 1), len(c[e]) - 1) for c in clean for e in window if len(c[e]) > 1]
    draw_df = sum(d for _, d in spread)
    draw_var = sum(s for s, _ in spread) / draw_df if draw_df else None
    span = epochs[-1] - epochs[0]
    out.update(first_epoch=int(epochs[0]), last_epoch=int(epochs[-1]), points=len(window), draws=draws,
               draw_sd=math.sqrt(draw_var) if draw_var is not None else None)
    where = f"over epochs {out['first_epoch']}–{out['last_epoch']}"
    lines = [_line(epochs, row) for row in means]
    centres = means.mean(axis=1)
    if not np.all(centres > 0):
        out["status"] = "undecided"
        out["statement"] = (f"undecided: {where} its mean {name} is {centres.min():.3g}, so a relative change cannot "
                            f"be measured (slope {np.mean([s for s, _ in lines]):.3g} per epoch)")
        return out
    if runs > 1:
        slopes = np.array([s for s, _ in lines])
        changes = slopes * span / centres
        df = runs - 1
        q = _t975(df)
        slope, slope_half = float(slopes.mean()), q * float(slopes.std(ddof=1)) / math.sqrt(runs)
        rel, rel_half = float(changes.mean()), q * float(changes.std(ddof=1)) / math.sqrt(runs)
        out["per_run"] = [float(c) for c in changes]
        basis = f"{runs} runs, each run's change over the window one observation"
    else:
        slope, sse = lines[0]
        n = len(window)
        factor, df = ar1_correction(n, correlation)
        sxx = float(((epochs - epochs.mean()) ** 2).sum())
        slope_half = _t975(df) * math.sqrt(sse / (n - 2) / sxx * factor)
        if draw_var is not None:  # never narrower than the draws' own sampling error
            per_point = np.array([draw_var / len(clean[0][e]) for e in window])
            draw_se = math.sqrt(float(((epochs - epochs.mean()) ** 2 * per_point).sum()) / sxx ** 2)
            slope_half = max(slope_half, _t975(draw_df) * draw_se)
        rel, rel_half = slope * span / centres[0], slope_half * span / centres[0]
        each = f", each the mean of {draws} draws" if draws > 1 else ""
        basis = (f"one run: a line through its {n} evaluations{each}, the interval allowing for neighbouring "
                 f"evaluations correlated up to {correlation:g}")
    out.update(slope=slope, low=slope - slope_half, high=slope + slope_half, df=float(df),
               relative_change=rel, relative_low=rel - rel_half, relative_high=rel + rel_half)
    return _verdict(out, name, where, basis)


def _verdict(out: dict[str, Any], name: str, where: str, basis: str) -> dict[str, Any]:
    rel, rel_low, rel_high, tolerance = (out[k] for k in ("relative_change", "relative_low", "relative_high",
                                                            "tolerance"))
    numbers = f"by {_pct(rel)} (95 % CI {_pct(rel_low)} to {_pct(rel_high)}; {basis})"
    tol = f"{tolerance * 100:.0f} %"
    if out["high"] < 0 and rel <= -tolerance or out["low"] > 0 and rel >= tolerance:
        better = (rel < 0) == (out["metric"] in LOWER_IS_BETTER)
        out["status"] = "improving" if better else "worsening"
        moved = "fell" if rel < 0 else "rose"
        tail = "; it had not converged" if better else "; it was getting worse"
        out["statement"] = f"{out['status']}: {where} its {name} {moved} {numbers}, more than {tol}{tail}"
    elif -tolerance <= rel_low and rel_high <= tolerance:
        out["status"] = "plateaued"
        out["statement"] = f"plateaued: {where} its {name} changed {numbers}, within ±{tol}"
    else:
        out["status"] = "undecided"
        more = ("more runs narrow it" if out["runs"] > 1 else
                "more evaluations in the window (eval.every), more draws per evaluation (eval.draws) or "
                "replicate runs narrow it")
        out["statement"] = (f"undecided: {where} its {name} changed {numbers}: too uncertain to say whether it "
                            f"is still changing by more than ±{tol} or has plateaued; {more}")
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pct(x: float) -> str:
    """A relative change as a signed percentage with a real minus sign (−2 %, +3 %)."""
    text = f"{x * 100:+.0f} %"
    return text.replace("-", "−") if not text.startswith("+0 ") and not text.startswith("-0 ") else "0 %"


# ------------------------------------------------------------------------------ reading runs
def eval_curve(run: str | Path, metric: str = "fid") -> tuple[Curve, int, tuple]:
    """A run's curve of ``metric`` from its ``kind: eval`` rows (failed evaluations skipped; an
    epoch evaluated twice, e.g. after a resume, keeps its last row): each epoch's draws
    (``<metric>_draws`` when logged, else the one value), only the rows logged with the same
    evaluation settings as the last one; how many rows were left out for other settings; and
    those settings."""
    rows = [r for r in read_rows(run_folder(run))
            if r.get("kind") == "eval" and "error" not in r and _finite(r.get(metric))
            and isinstance(r.get("epoch"), int) and not isinstance(r.get("epoch"), bool)]
    if not rows:
        return {}, 0, ()
    last = tuple(rows[-1].get(k) for k in EVAL_SETTINGS)
    kept = [r for r in rows if tuple(r.get(k) for k in EVAL_SETTINGS) == last]
    curve: Curve = {}
    for r in kept:
        draws = r.get(f"{metric}_draws")
        values = [float(v) for v in draws if _finite(v)] if isinstance(draws, list) else []
        curve[int(r["epoch"])] = values or [float(r[metric])]
    return curve, len(rows) - len(kept), last


def eval_points(run: str | Path, metric: str = "fid") -> list[tuple[int, float]]:
    """(epoch, value) of ``metric`` from a run's evaluations (the mean of its draws), only those
    logged with the same evaluation settings as the last one."""
    return [(e, float(np.mean(v))) for e, v in sorted(eval_curve(run, metric)[0].items())]


def plateau_of_runs(runs: Sequence[str | Path], metric: str = "fid") -> dict[str, Any]:
    """The plateau finding of one model from its runs (one run, or the runs of a replicates
    folder), read from their ``metrics.jsonl``; the statement says what was left out."""
    read = [eval_curve(run, metric) for run in runs]
    result = plateau_curves([curve for curve, _, _ in read], metric)
    other = sum(left for _, left, _ in read)
    if other:
        result["statement"] += (f" ({other} earlier evaluation(s) logged with other eval settings — sample "
                                "count, seed, features or real images — are left out: their values are not "
                                "comparable)")
    if len({settings for _, _, settings in read if settings}) > 1:
        result["statement"] += (" (its runs were evaluated with different eval settings — sample count, seed, "
                                "features or real images —: each run's change is relative to its own level)")
    return result


def _plateau_of(run: str | Path, metric: str = "fid") -> dict[str, Any]:
    """:func:`plateau_of_runs` of one run."""
    return plateau_of_runs([run], metric)
