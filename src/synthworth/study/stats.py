"""Statistics over seeds: mean, standard deviation and a 95 % t-interval per cell group, and
paired comparisons between compositions (or generators) run on the same seeds.

For ``n`` seeds with values x_1..x_n: mean m, sample standard deviation s (ddof 1) and the
Student-t interval ``m +- t_{0.975, n-1} s / sqrt(n)``. A paired comparison of A and B takes
the per-seed differences d_i = A_i - B_i (same seed: the same real draw and classifier seed),
and gives their mean, its t-interval and the two-sided p-value of the paired t-test
(``scipy.stats.ttest_rel``), so a reader can tell an effect from seed-to-seed noise.

Accuracies (and macro-F1) are shares in [0, 1], and a t-interval around a mean of 0.99 runs past
1.0. :func:`summarise` therefore gives their ``ci_low``/``ci_high`` as a *logit-scale t
interval* (:func:`proportion_interval`): the Student-t interval of the seeds' logits
``log(x / (1 - x))``, mapped back with the logistic function, so it always lies inside (0, 1);
a value of exactly 0 or 1 is moved half a test image inwards first (``0.5 / n`` with ``n`` the
number of test images; ``n`` unknown: 0.001). ``_mean`` and ``_sd`` stay the plain mean and
standard deviation of the seeds. Differences (:func:`paired`) keep the plain t-interval: they
may be negative.

Where the cells kept per-image predictions (``summarise(..., predictions=)``, from
:func:`synthworth.study.predictions.read_predictions`), the **accuracy** interval is instead the
one the exchange rates and paired comparisons use: the two-way bootstrap over seeds **and** the
shared test images of :mod:`synthworth.study.resample` (its :class:`~synthworth.study.resample.Sampler`:
one multinomial resample of the test images per replicate, plus a Student-t draw of the seed mean
with the seed scale reduced to the seed effect alone), read as a 95 % percentile interval of the
mean accuracy over the seeds. It is an interval for the plain mean ``accuracy_mean`` (a mean of
shares stays inside [0, 1] replicate by replicate). ``accuracy_interval`` says which interval a
row holds: :data:`TWO_WAY` ("seeds + test images") or :data:`LOGIT_T` ("seeds only (logit t)",
the fallback for a group whose cells lack predictions). Both are conditional on this real test
set's labels being right. Neither covers retraining a generator trained once; where each seed of
a group drew its synthetic images from its own generator replicate
(:mod:`synthworth.study.replicates`), the seeds' spread, and so both intervals, hold it, and
where seeds share replicates both take the replicate as the unit (the logit t over the
replicates' means).

The study's comparisons table is built by :mod:`synthworth.study.paired`: a two-way bootstrap
over seeds and test images where the cells kept per-image predictions (the t-test here where
they did not), and :func:`holm` over the spec's pre-specified comparisons only (Holm's step-down
method, which controls the chance of any false "significant" among them without assuming they
are independent).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from synthworth.study.replicates import COLUMN, unit_means, units
from synthworth.study.resample import BOTH, Sampler, correctness

GROUP_COLUMNS = ["composition", "generator", "filter", "size", "per_class", "ratio", "augment_factor"]
NO_FILTER = "none"
METRICS = ["accuracy", "macro_f1", "synthetic_accuracy"]
# results.csv's count of test images behind each metric (moves a share of 0 or 1 inwards)
TRIALS = {"accuracy": "n_test", "macro_f1": "n_test", "synthetic_accuracy": "n_synthetic_test"}
CONFIDENCE = 0.95
TWO_WAY, LOGIT_T = "seeds + test images", "seeds only (logit t)"
RESAMPLES = 2000          # replicates of the accuracy interval's two-way bootstrap
SUMMARY_SEED = 20240612   # its random stream (per group, keyed by the group), so the table repeats


def _present(values: Sequence[float]) -> np.ndarray:
    """The values that are there (no None, no NaN), as floats."""
    return np.asarray([v for v in values if v is not None and not _isnan(v)], dtype=np.float64)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, sd, low, high) of ``values``; sd and the interval are NaN for fewer than 2 values."""
    from scipy import stats

    x = _present(values)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else math.nan), math.nan, math.nan, math.nan
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return mean, sd, mean - half, mean + half


def proportion_interval(values: Sequence[float], n: float | None = None,
                        confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, sd, low, high) of shares in [0, 1] (accuracies): mean and sd of the values, and the
    logit-scale t-interval (see the module's docstring), which lies inside [0, 1]. ``n`` is the
    number of trials behind each share (test images), used to move a 0 or 1 half a trial
    inwards. Seeds that all agree give the interval [value, value]."""
    from scipy import stats

    x = _present(values)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else math.nan), math.nan, math.nan, math.nan
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if sd == 0:  # every seed gave the same share: no spread to widen the interval by
        return mean, sd, mean, mean
    eps = 0.5 / n if n and np.isfinite(n) and n >= 1 else 1e-3
    p = np.clip(x, eps, 1 - eps)
    z = np.log(p / (1 - p))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(z) - 1)) * float(z.std(ddof=1)) / math.sqrt(len(z))
    centre = float(z.mean())
    low, high = _logistic(centre - half), _logistic(centre + half)
    return mean, sd, min(max(low, 0.0), 1.0), min(max(high, 0.0), 1.0)


def _logistic(z: float) -> float:
    return float(1.0 / (1.0 + math.exp(-z))) if z > -700 else 0.0


def paired(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Paired comparison of equally long, seed-aligned ``a`` and ``b``."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a - b
    mean, sd, low, high = t_interval(d, confidence)
    if len(d) < 2:
        p = math.nan
    elif sd == 0:
        # Every seed moved by the same amount: no spread to test against (t is infinite, or
        # undefined when nothing changed).
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    return {"n": int(len(d)), "mean_a": float(a.mean()) if len(a) else math.nan,
            "mean_b": float(b.mean()) if len(b) else math.nan, "diff": mean, "diff_sd": sd,
            "ci_low": low, "ci_high": high, "p_value": p}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given; NaN stays NaN and does not count as a test.

    Written out because scipy has no Holm (``scipy.stats.false_discovery_control`` is
    Benjamini-Hochberg, a different error rate) and statsmodels is not a dependency: with the m
    p-values sorted ascending, p_(i) becomes max over j <= i of min(1, (m - j + 1) p_(j)). Tied
    p-values get equal adjusted values (the running maximum carries the first one's).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _isnan(v) -> bool:
    try:
        return math.isnan(v)
    except TypeError:
        return False


def summarise(results: pd.DataFrame, metrics: Iterable[str] = METRICS, *,
              predictions: pd.DataFrame | None = None, resamples: int = RESAMPLES) -> pd.DataFrame:
    """One row per cell group (every column of GROUP_COLUMNS) with n_seeds and, per metric,
    ``<metric>_mean``, ``_sd``, ``_ci_low``, ``_ci_high``. The accuracy interval is the two-way
    bootstrap over seeds and test images where every cell of the group has per-image
    ``predictions`` on the real test set, else (and for the other metrics) the logit-scale t
    interval of :func:`proportion_interval`; ``accuracy_interval`` says which (module docstring)."""
    metrics = [m for m in metrics if m in results.columns]
    results = _with_filter(results)
    columns = GROUP_COLUMNS + ["n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "sd", "ci_low", "ci_high")]
    if "accuracy" in metrics:
        columns.insert(columns.index("accuracy_ci_high") + 1, "accuracy_interval")
    if results.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for group, part in results.groupby(GROUP_COLUMNS, dropna=False, sort=False):
        # One value per seed: a row that somehow appears twice must never weigh twice.
        part = part.drop_duplicates("seed")
        row = dict(zip(GROUP_COLUMNS, group))
        row["n_seeds"] = int(part["seed"].nunique())
        replicates = part[COLUMN].tolist() if COLUMN in part.columns else None
        for m in metrics:
            mean, sd, low, high = proportion_interval(part[m].tolist(), _trials(part, m))
            if units(replicates) is not None:  # seeds sharing generator replicates: the replicate is the unit
                low, high = proportion_interval(unit_means(part[m], replicates), _trials(part, m))[2:]
            row.update({f"{m}_mean": mean, f"{m}_sd": sd, f"{m}_ci_low": low, f"{m}_ci_high": high})
        if "accuracy" in metrics:
            two_way = accuracy_interval(part, predictions, group, resamples)
            row["accuracy_interval"] = LOGIT_T if two_way is None else TWO_WAY
            if two_way is not None:
                row["accuracy_ci_low"], row["accuracy_ci_high"] = two_way
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def accuracy_interval(part: pd.DataFrame, predictions: pd.DataFrame | None, group,
                      resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """(low, high) of the mean accuracy over the seeds of ``part`` (one row per seed) from the
    two-way bootstrap of :mod:`synthworth.study.resample`, or None when a cell lacks per-image
    predictions on the real test set (or the group has no accuracy)."""
    part = part[np.isfinite(pd.to_numeric(part["accuracy"], errors="coerce").to_numpy(float))]
    # One seed has no seed spread to draw from: its interval would cover the test images only.
    x = correctness(part, predictions, "real_test") if len(part) >= 2 else None
    if x is None:
        return None
    # The group's own random stream (SHA-256 of its key, not hash(): Python salts it per process).
    digest = hashlib.sha256(json.dumps([str(v) for v in group]).encode("utf-8")).digest()[:8]
    rng = np.random.default_rng([SUMMARY_SEED, int.from_bytes(digest, "little")])
    # The mean over seeds is the mean of the correctness matrix's rows, so the point estimate the
    # replicates centre on is accuracy_mean itself (each row's accuracy is its row mean).
    draws = Sampler(part, x, resamples, rng).draws(part.index, x.mean(axis=1), rng)[BOTH]
    q = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [q, 100 - q])
    return float(low), float(high)


def _trials(part: pd.DataFrame, metric: str) -> float | None:
    col = TRIALS.get(metric)
    if col not in part.columns:
        return None
    n = pd.to_numeric(part[col], errors="coerce").dropna()
    return float(n.min()) if len(n) else None


def _with_filter(results: pd.DataFrame) -> pd.DataFrame:
    """Tables from before filters existed have no ``filter`` column: every cell was unfiltered."""
    if "filter" in results.columns:
        return results.assign(filter=results["filter"].fillna(NO_FILTER))
    return results.assign(filter=pd.Series(NO_FILTER, index=results.index, dtype=object))
