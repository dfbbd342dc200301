"""Is a generator still improving when its training stopped, or has it plateaued? The second of
the findings of :mod:`synthworth.metrics.findings`: a line through the last half of the quality
curve logged during training (``kind: eval`` rows of ``metrics.jsonl``), its slope's 95 %
interval turned into a relative change over that span and read against a tolerance.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from synthworth.metrics.cost import read_rows, run_folder

LOWER_IS_BETTER = {"fid", "kid"}


def plateau(points: list[tuple[int, float]], metric: str = "fid", tolerance: float = 0.10) -> dict[str, Any]:
    """Is the quality curve ``points`` ((epoch, value) pairs) still improving, plateaued,
    worsening, or is it too uncertain to say?

    A line is fitted (scipy.stats.linregress) through the last half of the finite points (at
    least 4 when there are 4 or more; all 3 when there are 3). Its change over that span,
    relative to the window's mean value, and the change's 95 % interval (slope +- t * stderr)
    decide: improving / worsening when the slope's interval excludes 0 in that direction and the
    change is at least ``tolerance``; plateaued when the change's whole interval lies within
    +-``tolerance``; otherwise undecided. For FID and KID lower is better; for the others higher.
    """
    from scipy.stats import linregress, t

    finite = {int(e): float(v) for e, v in points if v is not None and math.isfinite(v)}  # last value per epoch
    ordered = sorted(finite.items())
    out: dict[str, Any] = {"metric": metric, "status": "too few points", "first_epoch": None, "last_epoch": None,
                           "points": len(ordered), "slope": None, "low": None, "high": None,
                           "relative_change": None, "relative_low": None, "relative_high": None,
                           "tolerance": tolerance}
    name = metric.upper() if metric in LOWER_IS_BETTER else metric
    if len(ordered) < 3:
        logged = f"only {len(ordered)} evaluation(s) of {name}" if ordered else f"no {name}"
        out["statement"] = (f"too few points: {logged} logged during training, 3 are needed (train with "
                            f"eval.every set so that quality is logged at 3 or more epochs)")
        return out
    size = max(math.ceil(len(ordered) / 2), min(len(ordered), 4))
    window = ordered[-size:]
    epochs = np.array([e for e, _ in window], dtype=np.float64)
    values = np.array([v for _, v in window])
    fit = linregress(epochs, values)
    # a perfectly flat curve (a collapsed generator scores the same every epoch): scipy gives no
    # stderr (r is undefined), but the line fits exactly, so its slope 0 is certain
    stderr = 0.0 if np.ptp(values) == 0 else fit.stderr
    half = t.ppf(0.975, len(window) - 2) * stderr
    span, mean = epochs[-1] - epochs[0], values.mean()
    out.update(first_epoch=int(epochs[0]), last_epoch=int(epochs[-1]), points=len(window),
               slope=float(fit.slope), low=float(fit.slope - half), high=float(fit.slope + half))
    where = f"over epochs {out['first_epoch']}–{out['last_epoch']}"
    if not mean > 0:
        out["status"] = "undecided"
        out["statement"] = (f"undecided: {where} its mean {name} is {mean:.3g}, so a relative change cannot be "
                            f"measured (slope {fit.slope:.3g} per epoch)")
        return out
    rel, rel_low, rel_high = fit.slope * span / mean, out["low"] * span / mean, out["high"] * span / mean
    out.update(relative_change=float(rel), relative_low=float(rel_low), relative_high=float(rel_high))
    sign = -1 if metric in LOWER_IS_BETTER else 1  # a better value: lower FID, higher precision
    numbers = f"by {_pct(rel)} (95 % CI {_pct(rel_low)} to {_pct(rel_high)})"
    tol = f"{tolerance * 100:.0f} %"
    if out["high"] < 0 and rel <= -tolerance or out["low"] > 0 and rel >= tolerance:
        better = (rel < 0) == (sign < 0)
        out["status"] = "improving" if better else "worsening"
        moved = "fell" if rel < 0 else "rose"
        tail = "; it had not converged" if better else "; it was getting worse"
        out["statement"] = f"{out['status']}: {where} its {name} {moved} {numbers}, more than {tol}{tail}"
    elif -tolerance <= rel_low and rel_high <= tolerance:
        out["status"] = "plateaued"
        out["statement"] = f"plateaued: {where} its {name} changed {numbers}, within ±{tol}"
    else:
        out["status"] = "undecided"
        out["statement"] = (f"undecided: {where} its {name} changed {numbers}: too uncertain to say whether it "
                            f"is still changing by more than ±{tol} or has plateaued")
    return out


def _pct(x: float) -> str:
    """A relative change as a signed percentage with a real minus sign (−2 %, +3 %)."""
    text = f"{x * 100:+.0f} %"
    return text.replace("-", "−") if not text.startswith("+0 ") and not text.startswith("-0 ") else "0 %"


# What makes two logged evaluations comparable: FID and KID depend on the sample count and the
# features, so a run resumed with other eval settings must not join its curves into one slope.
EVAL_SETTINGS = ("samples", "seed", "features", "features_label", "real_split", "real_images")


def eval_points(run: str | Path, metric: str = "fid") -> list[tuple[int, float]]:
    """(epoch, value) of ``metric`` from a run's ``kind: eval`` rows (failed evaluations skipped),
    only those logged with the same evaluation settings as the last one."""
    return _eval_points(run, metric)[0]


def _eval_points(run: str | Path, metric: str = "fid") -> tuple[list[tuple[int, float]], int]:
    """:func:`eval_points` and how many evaluations were left out for other settings."""
    rows = [r for r in read_rows(run_folder(run))
            if r.get("kind") == "eval" and "error" not in r and isinstance(r.get(metric), (int, float))
            and not isinstance(r.get(metric), bool) and isinstance(r.get("epoch"), int)]
    if not rows:
        return [], 0
    last = [rows[-1].get(k) for k in EVAL_SETTINGS]
    kept = [r for r in rows if [r.get(k) for k in EVAL_SETTINGS] == last]
    return [(int(r["epoch"]), float(r[metric])) for r in kept], len(rows) - len(kept)


def _plateau_of(run: str | Path, metric: str = "fid") -> dict[str, Any]:
    points, other = _eval_points(run, metric)
    result = plateau(points, metric)
    if other:
        result["statement"] += (f" ({other} earlier evaluation(s) logged with other eval settings — sample "
                                "count, seed, features or real images — are left out: their values are not "
                                "comparable)")
    return result


