"""Exposure failures compared with real images: the third finding of
:mod:`synthworth.metrics.findings`, as a two-sample comparison and in words.

A sample is badly exposed when its brightness (mean pixel value) lies outside the range that
holds ``coverage`` (98 %) of the real training images. Whether a model's share of such samples
is a failure depends on the share of held-out real images outside the same range, so:

- :func:`versus_heldout` compares the two shares. Its p-value is Fisher's exact test of the two
  counts (given the range, samples and held-out images are two independent binomial samples).
  Its 95 % interval for the difference of the shares is a percentile bootstrap that re-estimates
  the range from a resample of the training images in every replicate, so the uncertainty of
  the threshold is in it, and resamples the held-out images and the samples (each group of
  samples, e.g. each run's, within itself). A difference is claimed only when the test rejects
  at 5 % and the interval excludes 0.
- :func:`range_coverage` checks the range itself on the held-out images: their share outside
  against the nominal 2 % (an exact binomial test) and against what a range estimated from so
  few training images leaves out of exchangeable real images (a permutation test re-splitting
  all the real images into training and held-out sets of the same sizes; its mean is the
  expected share). A 1st-99th percentile range from 70 images leaves out about 5 % of new real
  images, not 2 %.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

BOOTSTRAPS = 2000
PERMUTATIONS = 2000
CELLS = 2_000_000  # values resampled at once (a bootstrap of a large training split goes in chunks)


def _range(values: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """The central ``coverage`` range of each row of ``values`` (numpy's linear percentiles, as
    :func:`synthworth.metrics.findings.real_range`)."""
    tail = (1 - coverage) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=-1)
    return low, high


def _outside_share(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """For each range (low[b], high[b]) the share of ``values`` outside it (by sorting once)."""
    ordered = np.sort(values)
    below = np.searchsorted(ordered, low, side="left")
    above = len(ordered) - np.searchsorted(ordered, high, side="right")
    return (below + above) / len(ordered)


def _bootstrap_ranges(train: np.ndarray, coverage: float, count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    lows, highs = [], []
    chunk = max(1, CELLS // len(train))
    for start in range(0, count, chunk):
        rows = min(chunk, count - start)
        low, high = _range(train[rng.integers(0, len(train), (rows, len(train)))], coverage)
        lows.append(low)
        highs.append(high)
    return np.concatenate(lows), np.concatenate(highs)


def versus_heldout(samples: np.ndarray | Sequence[np.ndarray], train: np.ndarray, heldout: np.ndarray, *,
                   coverage: float = 0.98, bootstraps: int = BOOTSTRAPS, seed: int = 0) -> dict[str, Any]:
    """Samples against held-out real images, outside the brightness range of the training
    images: the counts, the difference of the shares (samples minus held-out) with its bootstrap
    95 % interval, Fisher's exact two-sided p-value and the verdict ("more", "fewer" or "no
    clear difference"). ``samples``: brightness values, or a list of them (one per run or draw:
    each resampled within itself); ``train``, ``heldout``: brightness values."""
    from scipy.stats import fisher_exact

    groups = [np.asarray(g, np.float64) for g in (samples if isinstance(samples, (list, tuple)) else [samples])]
    groups = [g for g in groups if len(g)]
    train, heldout = np.asarray(train, np.float64), np.asarray(heldout, np.float64)
    out: dict[str, Any] = {"difference": None, "difference_low": None, "difference_high": None, "p_value": None,
                           "verdict": None, "heldout_outside": None, "heldout_n": len(heldout),
                           "bootstraps": bootstraps}
    if not groups or not len(heldout) or not len(train):
        return out
    low, high = _range(train, coverage)
    n = sum(len(g) for g in groups)
    k = int(sum(((g < low) | (g > high)).sum() for g in groups))
    k_real = int(((heldout < low) | (heldout > high)).sum())
    p = float(fisher_exact([[k, n - k], [k_real, len(heldout) - k_real]]).pvalue)
    rng = np.random.default_rng(seed)
    lows, highs = _bootstrap_ranges(train, coverage, bootstraps, rng)
    # Resampling a group with replacement and counting it outside a range is a binomial draw
    # with that group's share outside the range.
    fake = sum(rng.binomial(len(g), _outside_share(g, lows, highs)) for g in groups) / n
    real = rng.binomial(len(heldout), _outside_share(heldout, lows, highs)) / len(heldout)
    diff_low, diff_high = np.percentile(fake - real, [2.5, 97.5])
    verdict = "no clear difference"
    if p < 0.05 and diff_low > 0:
        verdict = "more"
    elif p < 0.05 and diff_high < 0:
        verdict = "fewer"
    out.update(difference=k / n - k_real / len(heldout), difference_low=float(diff_low),
               difference_high=float(diff_high), p_value=p, verdict=verdict, heldout_outside=k_real)
    return out


def range_coverage(train: np.ndarray, heldout: np.ndarray, *, coverage: float = 0.98,
                   permutations: int = PERMUTATIONS, seed: int = 0) -> dict[str, Any]:
    """Does the range hold ``coverage`` of the held-out real images? Their count outside; the
    exact binomial two-sided p-value against the nominal share 1 - ``coverage``; the share a
    range from this many training images leaves out of exchangeable real images (the mean over
    ``permutations`` random re-splits of all the real images) and the permutation two-sided
    p-value of the count against it; ``off``: the binomial test rejects at 5 %."""
    from scipy.stats import binomtest

    train, heldout = np.asarray(train, np.float64), np.asarray(heldout, np.float64)
    out: dict[str, Any] = {"heldout_outside": None, "heldout_n": len(heldout), "nominal": round(1 - coverage, 12),
                           "binomial_p": None, "expected_share": None, "permutation_p": None,
                           "permutations": permutations, "off": None, "train_n": len(train)}
    if not len(heldout) or not len(train):
        return out
    low, high = _range(train, coverage)
    k = int(((heldout < low) | (heldout > high)).sum())
    pool = np.concatenate([train, heldout])
    rng = np.random.default_rng(seed)
    counts = []
    chunk = max(1, CELLS // len(pool))
    for start in range(0, permutations, chunk):
        rows = min(chunk, permutations - start)
        shuffled = rng.permuted(np.broadcast_to(pool, (rows, len(pool))), axis=1)
        lows, highs = _range(shuffled[:, :len(train)], coverage)
        rest = shuffled[:, len(train):]
        counts.append(((rest < lows[:, None]) | (rest > highs[:, None])).sum(axis=1))
    counts = np.concatenate(counts)
    tail = min(1.0, 2 * min(np.mean(counts >= k), np.mean(counts <= k)))
    binomial = float(binomtest(k, len(heldout), out["nominal"]).pvalue)
    out.update(heldout_outside=k, binomial_p=binomial, expected_share=float(counts.mean() / len(heldout)),
               permutation_p=float(tail), off=binomial < 0.05)
    return out


# ------------------------------------------------------------------------------ words
def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


def _points(x: float) -> str:
    """A difference of shares in percentage points, signed with a real minus sign."""
    return f"{x * 100:+.1f}".replace("-", "−")


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def sentence(model: dict[str, Any], exposure_range: dict[str, Any]) -> str:
    """The exposure finding of one model: its samples and the held-out real images outside the
    range, the comparison with its interval and p-value, and when the range's coverage is off."""
    e, r = model["exposure"], exposure_range
    if e.get("share") is None:
        return "no samples, so no exposure share"
    v = e.get("versus_heldout") or {}
    where = (f"the brightness range {r['low']:.1f}–{r['high']:.1f} that holds {r['coverage'] * 100:.0f} % of "
             f"{r['from']}")
    counts = f"{e['dark_count'] + e['bright_count']} of its {e['n']} samples ({_share(e['share'])})"
    if v.get("difference") is None:
        text = f"{counts} lie outside {where}; the held-out real images: {_share(r.get('heldout_share'))}"
    else:
        words = {"more": "its samples fall outside the range more often than real images do",
                 "fewer": "its samples fall outside the range less often than real images do",
                 "no clear difference": "no clear difference from real images at these sample sizes"}
        text = (f"{counts} and {v['heldout_outside']} of the {v['heldout_n']} held-out real images "
                f"({_share(v['heldout_outside'] / v['heldout_n'])}) lie outside {where}: a difference of "
                f"{_points(v['difference'])} points (95 % CI {_points(v['difference_low'])} to "
                f"{_points(v['difference_high'])}, the range re-estimated in each of {v['bootstraps']} bootstraps of "
                f"the training images; Fisher's exact p = {_p(v['p_value'])}): {words[v['verdict']]}")
    text += f"; of its samples {_share(e['dark'])} are too dark, {_share(e['bright'])} too bright"
    check = r.get("check") or {}
    if check.get("off"):
        text += (f"; the range is not a {r['coverage'] * 100:.0f} % range for the held-out real images "
                 f"({_share(check['heldout_outside'] / check['heldout_n'])} of them lie outside it, binomial "
                 f"p = {_p(check['binomial_p'])} against {_share(check['nominal'])})")
    return text


def summary(findings: dict[str, Any]) -> str | None:
    """The exposure line of the summary: which models' samples fall outside the real range more
    (or less) often than held-out real images, and the range's coverage check."""
    r = findings["exposure_range"]
    verdicts = {n: (m["exposure"].get("versus_heldout") or {}).get("verdict") for n, m in findings["models"].items()
                if m["exposure"].get("share") is not None}
    if not verdicts:
        return None
    more = [n for n, v in verdicts.items() if v == "more"]
    fewer = [n for n, v in verdicts.items() if v == "fewer"]
    if more or fewer:
        parts = [f"the samples of {_names(names)} fall outside the real brightness range {how} often than the "
                 f"held-out real images ({_share(r.get('heldout_share'))} of them)" for names, how in ((more, "more"),
                                                                                                   (fewer, "less"))
                 if names]
        text = "exposure: " + "; ".join(parts)
    elif any(v is not None for v in verdicts.values()):
        text = ("exposure: no model's samples fall outside the real brightness range clearly more or less often "
                f"than the held-out real images ({_share(r.get('heldout_share'))} of them)")
    else:
        shares = {n: m["exposure"]["share"] for n, m in findings["models"].items() if n in verdicts}
        text = (f"exposure: shares of samples outside the real brightness range "
                + ", ".join(f"{n} {_share(s)}" for n, s in shares.items())
                + f"; the held-out real images: {_share(r.get('heldout_share'))}")
    check = r.get("check") or {}
    if check.get("off"):
        text += (f". The range misses {check['heldout_outside']} of the {check['heldout_n']} held-out real images "
                 f"({_share(check['heldout_outside'] / check['heldout_n'])}), not {_share(check['nominal'])} "
                 f"(binomial p = {_p(check['binomial_p'])}); a range from {check['train_n']} training images "
                 f"misses {_share(check['expected_share'])} of new real images on average, and the held-out ones "
                 + ("differ from that too (re-splitting the real images: p = "
                    if check["permutation_p"] < 0.05 else "are within what that allows (re-splitting the real "
                    "images: p = ") + f"{_p(check['permutation_p'])})")
    return text
