"""Exchange rates: how many synthetic images one real image is worth, read off the real learning curve.

Method (the decisions, and why):

- **The curve.** When the study has ``real`` cells at three or more sizes, the mean error over
  seeds at each size n is fitted with ``err(n) = a * n**-b + c`` (Mikami et al.; the usual
  learning-curve model: a power-law decay towards an irreducible error c) by weighted least
  squares, each size's mean weighted by the inverse of its variance over the seeds. It has three
  parameters, so three sizes pin it; it is monotone by construction when a > 0 and b > 0, and
  0 <= c < 1 keeps it an error rate. With four or more sizes a lack-of-fit test says whether
  it describes the real means within their seed noise (a curve that fails it puts a warning in
  every sentence read off it), and a monotone interpolation of the means (``n_eff_interp``)
  shows how much n_eff depends on the model: see :mod:`synthworth.study.curve`. A curve whose
  best mean is not clearly above chance (the majority class's share of the test images, plus a
  fifth of the way to 1) is refused: its classifiers barely learned.
- **The inversion.** A cell group (artificial / mixed / augmented cells of one generator, size,
  ratio; its accuracy = mean over seeds) is worth ``n_eff`` real images when the curve reaches
  its accuracy at n_eff. Rates: ``m / n_eff`` for artificial (m synthetic images), and
  ``m / (n_eff - n_real)`` for mixtures (the synthetic images added per real image they are
  worth beyond the real part). Synthetic images per real image: 2.3 reads "one real image is
  worth 2.3 synthetic ones".
- **Uncertainty.** The seeds are the replication unit (each seed draws other images and trains
  another classifier). A study runs few of them (3 by default), and a percentile bootstrap that
  resamples 3 values can never reach beyond their range: its intervals come out far too narrow
  (about 85 % coverage at 5 seeds in the tests, less at 3). So the bootstrap is parametric: each
  resample draws each real size's mean, and each cell group's mean, from the Student-t sampling
  distribution of a mean of k seeds (centre: the seeds' mean; scale: their sd / sqrt(k); k - 1
  degrees of freedom; clipped to [0, 1]), refits the curve and inverts again; the 95 % interval
  is the 2.5 / 97.5 percentiles. For a single mean this is exactly the Student-t interval a
  reader expects from k seeds; through the curve it carries that uncertainty to n_eff and the
  rate. With per-image predictions the bootstrap also resamples the test images, one draw shared
  by every cell (:mod:`synthworth.study.resample`; ``interval_covers`` says which); seeds that
  each drew from their own generator replicate carry its retraining too (study/replicates.py).
  The RNG is seeded (:data:`BOOTSTRAP_SEED`; each cell group's draws by its own key, :func:`group_rng`),
  so the same results give the same table on every run, and one group's interval does not
  depend on which other groups the study has.
- **Never extrapolate.** The curve is only trusted between the smallest and largest real size
  measured. A group beyond it gets a bound ("worth more than 500 real images"), not a number;
  an interval end beyond it is left empty and the status says which end.
- **Harm is a result.** A mixture whose accuracy is below what the curve gives its own real part
  (n_eff < n_real, the real part inside the measured range) has a negative worth, n_eff − n_real,
  with its interval (``worth``, ``worth_ci_low``, ``worth_ci_high``) and no rate. It is "worse
  than its real part" (the synthetic images hurt) only when the interval's upper end lies below
  the real part; otherwise "worth nothing measurable", with the numbers. Below the measured range
  the cost is a bound from the interval's upper end ("cost the equivalent of at least 25").
  A mixture above the curve's end whose real part is already the largest size has no gain to
  read off ("more than 0" would say nothing): it is set against its real part's measured mean
  ("worth less than its own real part" when below it).
- **Curves not worth inverting** give a status and no number: fewer than three real sizes, a
  mean accuracy that drops with more real data by more than its noise, no rise beyond noise
  from the smallest to the largest size, a fit that fails, or bootstrap refits failing often.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthworth.errors import SynthworthError
# The fitting lives in curve.py; fit_many, invert and power_law are used from here by callers too.
from synthworth.study.curve import (B_GRID, LackOfFit, Monotone, fit_curve, fit_many, invert, lack_of_fit,  # noqa: F401
                                    power_law, seed_variances)
from synthworth.study.exchange_text import WORSE, Group, beyond, harm_statement, statement
from synthworth.safety import one_line
from synthworth.study.grid import Cell, counts
from synthworth.study.resample import BOTH, BREAKDOWN_COLUMNS, MODES, SEEDS, Sampler, breakdown, correctness, n_eff_many

BOOTSTRAP_SEED = 20240611
RESAMPLES = 1000
CONFIDENCE = 0.95
MAX_FAILED_FITS = 0.10       # share of bootstrap refits that may fail before the curve is "too noisy"
NOISE_Z = 2.0                # "beyond noise": a change larger than 2 standard errors
SYNTHETIC_COMPOSITIONS = ("artificial", "mixed", "augmented", "ratio_sweep")
GROUP_KEYS = ["test_set", "filter", "generator", "composition", "size", "ratio", "augment_factor"]
OK = "in range"

COLUMNS = ["test_set", "filter", "generator", "composition", "size", "ratio", "augment_factor", "n_real",
           "n_synthetic", "n_seeds", "accuracy_mean", "n_eff", "n_eff_ci_low", "n_eff_ci_high", "rate",
           "rate_ci_low", "rate_ci_high", "worth", "worth_ci_low", "worth_ci_high", "n_eff_interp", "status",
           "bound", "statement", "provenance", "curve_a", "curve_b", "curve_c", "curve_sizes", "fit_min_size",
           "fit_max_size", "curve_status", "curve_fit", "lof_chi2", "lof_df", "lof_p", "chance", "failed_fits",
           "resamples", *BREAKDOWN_COLUMNS, "grid"]
CHANCE_MARGIN = 0.2   # "clearly above chance": a fifth of the way from chance to a perfect score


@dataclass
class Curve:
    """The real learning curve of one test set (and filter)."""

    test_set: str
    sizes: list[int]
    means: list[float]                      # mean accuracy per size
    halfwidths: list[float]                 # 95 % t half-width per size (NaN for one seed)
    status: str = OK                        # OK, or why no rate is given
    params: tuple[float, float, float] | None = None
    boot: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))   # refits that succeeded
    boots: dict = field(default_factory=dict)   # {mode: (R, 3) refits, NaN rows failed} (module resample.py)
    covers: str = SEEDS                     # what the interval resamples: seeds, or seeds + test images
    failed: int = 0
    resamples: int = 0
    lof: LackOfFit = field(default_factory=LackOfFit)
    alt: Monotone | None = None             # the second family (sensitivity of n_eff to the model)
    size_draws: dict = field(default_factory=dict)   # {size: {mode: (R,) resampled mean accuracy}}

    def accuracy(self, n) -> np.ndarray:
        return 1.0 - power_law(np.asarray(n, float), *self.params)

    def band(self, n, level: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap curves' accuracy at ``n``."""
        n = np.asarray(n, float)
        acc = 1.0 - (self.boot[:, :1] * np.power(n[None, :], -self.boot[:, 1:2]) + self.boot[:, 2:3])
        q = 100 * (1 - level) / 2
        return np.percentile(acc, q, axis=0), np.percentile(acc, 100 - q, axis=0)


def _seed_values(df: pd.DataFrame, sizes: list[int]) -> list[np.ndarray]:
    return [df.loc[df["size"] == s, "accuracy"].to_numpy(float) for s in sizes]


def real_curve(real: pd.DataFrame, test_set: str, *, resamples: int = RESAMPLES,
               rng: np.random.Generator | None = None, chance: tuple[float, str] | None = None,
               sampler: Sampler | None = None) -> Curve:
    """Fit and bootstrap the curve of the ``real`` rows (columns size, seed, accuracy);
    ``chance``: (the accuracy of always guessing the majority class, how that is known);
    ``sampler``: the test set's image resample (None: seeds only)."""
    from scipy import stats

    rng = np.random.default_rng(BOOTSTRAP_SEED) if rng is None else rng
    real = real[np.isfinite(real["accuracy"].to_numpy(float))]
    sizes = sorted(int(s) for s in real["size"].unique())
    values = _seed_values(real, sizes)
    means = [float(v.mean()) for v in values]
    ses = [float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan for v in values]
    half = [se * float(stats.t.ppf(0.975, len(v) - 1)) if len(v) > 1 else math.nan for se, v in zip(ses, values)]
    curve = Curve(test_set, sizes, means, half, resamples=resamples)
    if len(sizes) < 3:
        curve.status = f"no curve: needs real cells at 3 or more sizes; this study has sizes {sizes}"
        return curve
    if chance is not None:
        best = int(np.argmax(means))
        need = chance[0] + max(CHANCE_MARGIN * (1 - chance[0]), NOISE_Z * np.nan_to_num(ses[best]))
        if means[best] < need:
            curve.status = (f"no rate: the real learning curve stays near chance (best mean accuracy {means[best]:.3f} "
                            f"at {sizes[best]} real images; {chance[1]} {chance[0]:.3f}): the classifiers barely "
                            f"learned, most likely too few training steps or a classifier preset meant for tests")
            return curve
    se = [0.0 if math.isnan(s) else s for s in ses]
    for i in range(len(sizes) - 1):
        drop = means[i] - means[i + 1]
        if drop > NOISE_Z * math.hypot(se[i], se[i + 1]):
            curve.status = (f"no rate: the real learning curve is not monotone (mean accuracy {means[i]:.3f} at "
                            f"{sizes[i]} real images, {means[i + 1]:.3f} at {sizes[i + 1]}, beyond seed noise)")
            return curve
    if means[-1] - means[0] <= NOISE_Z * math.hypot(se[0], se[-1]):
        curve.status = (f"no rate: the real learning curve does not rise beyond seed noise ({means[0]:.3f} at "
                        f"{sizes[0]} real images, {means[-1]:.3f} at {sizes[-1]})")
        return curve
    var = seed_variances(values, sizes)   # weights 1 / var (module curve.py); NaN: no seed noise, unweighted
    weights = 1.0 / var if np.isfinite(var).all() else None
    curve.params = fit_curve(np.array(sizes), 1.0 - np.array(means), weights)
    if curve.params is None:
        curve.status = "no rate: the power-law fit of the real learning curve failed"
        return curve
    if curve.params[1] >= B_GRID.max():
        # b at its limit: the fit is a step (all the gain before the second size, flat after), and
        # every accuracy below the plateau would map to just above the smallest size.
        curve.status = (f"no rate: the real learning curve is a step, not a curve (the power law's exponent "
                        f"reached its limit, {B_GRID.max():g}): more real sizes between {sizes[0]} and {sizes[1]} "
                        "would be needed")
        return curve
    # Draws in a fixed order (size by size, all resamples at once) so a plain loop can repeat them.
    sampler = sampler or Sampler(real, None, resamples, rng)
    draws = [sampler.draws(real.index[real["size"] == s], v, rng) for s, v in zip(sizes, values)]
    curve.covers = sampler.covers
    curve.size_draws = dict(zip(sizes, draws))
    for mode in MODES if sampler.covers == BOTH else (BOTH,):
        curve.boots[mode] = fit_many(sizes, 1.0 - np.stack([d[mode] for d in draws], axis=1), weights)
    boot = curve.boots[BOTH]
    ok = ~np.isnan(boot).any(axis=1)
    curve.boot, curve.failed = boot[ok], int((~ok).sum())
    if curve.failed > MAX_FAILED_FITS * resamples:
        curve.status = f"no rate: the real learning curve is too noisy ({curve.failed} of {resamples} bootstrap refits failed)"
        return curve
    # Its own stream (seeded by the test set), so the bootstrap's draws above stay as they were.
    curve.lof = lack_of_fit(sizes, values, curve.params, keyed_rng("lack-of-fit", test_set), resamples)
    curve.alt = Monotone(sizes, means, var)
    return curve


def chance_of(part: pd.DataFrame, whole: pd.DataFrame) -> tuple[float, str] | None:
    """(chance accuracy, what it is) of one test set: the majority class's share of its images,
    from a confusion matrix (rows: true classes) of the rows of ``part``; else 1 / classes from a
    per-class accuracy of any row of ``whole``; None when the table records neither."""
    for col, rows in (("confusion_matrix", part), ("per_class_accuracy", whole)):
        if col not in rows.columns:
            continue
        for text in rows[col].dropna():
            try:
                data = json.loads(text) if isinstance(text, str) else text
                if col == "confusion_matrix":
                    totals = np.asarray(data, float).sum(axis=1)
                    if totals.sum() > 0:
                        return float(totals.max() / totals.sum()), "chance (the majority class's share of the test images)"
                elif len(data) > 1:
                    return 1.0 / len(data), f"chance (1 / {len(data)} classes)"
            except (ValueError, TypeError):
                continue
    return None


def mean_draws(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resampled means of k seed accuracies: draws from the Student-t sampling distribution of
    their mean (see the module's docstring for why not the plain percentile bootstrap)."""
    values = np.asarray(values, dtype=np.float64)
    k, mean = len(values), float(values.mean())
    if k < 2:
        return np.full(resamples, mean)
    se = float(values.std(ddof=1)) / math.sqrt(k)
    return np.clip(mean + se * rng.standard_t(k - 1, resamples), 0.0, 1.0)


def group_rng(test_set, filt, generator, composition, size, ratio, augment_factor) -> np.random.Generator:
    """The random stream of one cell group's draws, seeded by the group's key. One stream shared
    by every group in turn would tie each group's interval to the groups drawn before it (adding
    a generator would change another's interval). The key goes through SHA-256, not hash():
    Python salts the hash of a string per process, and the table must repeat across runs."""
    af = "" if augment_factor is None or pd.isna(augment_factor) else f"{float(augment_factor):g}"
    key = json.dumps([str(test_set), str(filt), str(generator), str(composition), int(size),
                      f"{float(ratio):g}", af])
    return keyed_rng(key)


def keyed_rng(*key: str) -> np.random.Generator:
    """A random stream seeded by a text key through SHA-256 (repeatable across processes)."""
    digest = int.from_bytes(hashlib.sha256(" ".join(key).encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([BOOTSTRAP_SEED + 1, digest])


def rate_row(curve: Curve, g: Group, draws: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The row of ``exchange_rates.csv`` for one cell group (``draws``: its bootstrap means per
    mode of :mod:`synthworth.study.resample`, replicate by replicate with the curve's refits)."""
    row: dict[str, Any] = {"generator": g.generator, "composition": g.composition, "size": g.size,
                           "ratio": g.ratio, "augment_factor": g.augment_factor, "n_real": g.n_real,
                           "n_synthetic": g.n_synthetic, "n_seeds": len(g.values),
                           "accuracy_mean": float(g.values.mean()),
                           **{k: math.nan for k in ("n_eff", "n_eff_ci_low", "n_eff_ci_high", "rate", "rate_ci_low",
                                                    "rate_ci_high", "worth", "worth_ci_low", "worth_ci_high",
                                                    "n_eff_interp")}, "bound": "",
                           **breakdown({}, {}, SEEDS)}
    gen, m, n_real = g.label, g.n_synthetic, g.n_real
    mixture = g.composition != "artificial"
    what = (f"{m} {gen} images alone" if not mixture
            else f"adding {m} {gen} images to {n_real} real ones")
    if m == 0:   # a ratio_sweep cell at ratio 0: real images only, nothing to exchange
        row.update(status="no rate: no synthetic images", statement=f"No exchange rate for {what}: the cell "
                   "trains on real images only.")
        return row
    if curve.status != OK:
        row.update(status=curve.status, statement=f"No exchange rate for {what}: {curve.status.removeprefix('no rate: ')}.")
        return row
    lo_n, hi_n = curve.sizes[0], curve.sizes[-1]
    point = invert(curve.params, row["accuracy_mean"])
    reps = n_eff_many(curve.boots[BOTH], draws[BOTH])   # paired: replicate r of the curve with r of the group
    reps = reps[~np.isnan(reps)]
    q = 100 * (1 - CONFIDENCE) / 2
    ci = np.percentile(np.minimum(reps, 1e18), [q, 100 - q])   # inf (above the asymptote) sorts last
    if curve.alt is not None:
        row["n_eff_interp"] = curve.alt.invert(row["accuracy_mean"])
    real = curve.size_draws.get(n_real) if mixture else None   # paired: the same image resample
    diff = None if real is None else tuple(np.percentile(draws[BOTH] - real[BOTH], [q, 100 - q]))
    _read(row, g, point, ci, lo_n, hi_n, diff)
    row.update(breakdown(curve.boots, draws, curve.covers) if math.isfinite(row["n_eff"]) else
               {"interval_covers": curve.covers})
    for end in ("", "_ci_low", "_ci_high"):   # real images the synthetic part is worth (< 0: it cost)
        row[f"worth{end}"] = row[f"n_eff{end}"] - (n_real if mixture else 0)
    if curve.lof.fails:   # beside every number read off this curve
        alt = row["n_eff_interp"] - (n_real if mixture else 0)
        also = (f"; a monotone interpolation of the real means puts this result at {alt:.0f} real images"
                if math.isfinite(alt) and math.isfinite(row["n_eff"]) else "")
        row["statement"] += (f" Warning: the real learning curve {curve.lof.text()}: the power law misses the real "
                             f"means by more than their seed noise, so this number depends on the model{also}.")
    return row


def _read(row: dict[str, Any], g: Group, point: float, ci: np.ndarray, lo_n: int, hi_n: int,
          diff: tuple[float, float] | None = None) -> None:
    """Fill ``row``'s n_eff, interval, rate, status and sentence from the point and interval
    (``diff``: the interval of a mixture's accuracy minus its real part's, where that was measured)."""
    m, n_real = g.n_synthetic, g.n_real
    mixture = g.composition != "artificial"
    inside = lambda v: lo_n <= v <= hi_n  # noqa: E731

    def gain(v):  # real images the synthetic part is worth
        return v - n_real if mixture else v

    # The point estimate decides the status; the interval's ends only where they lie in range.
    if mixture and point > hi_n and gain(hi_n) <= 0:
        # Its real part is the largest real size measured: above the curve's end, no gain can be read
        # off it ("worth more than 0" says nothing), so the mixture is set against its real part.
        row["status"], row["statement"] = beyond(g, row, hi_n, diff)
        return
    if mixture and lo_n <= n_real <= hi_n and point <= n_real and (point >= lo_n or ci[1] < n_real):
        # Below its own real part, where the curve can say by how much: harm is a result, with its
        # interval; whether the synthetic images hurt is decided by the interval, not the point.
        if point >= lo_n:
            row["n_eff"] = point
        row["n_eff_ci_low"] = ci[0] if point >= lo_n and inside(ci[0]) else math.nan
        row["n_eff_ci_high"] = ci[1] if inside(ci[1]) else math.nan
        if ci[1] < n_real:
            row["status"] = WORSE + ("" if point >= lo_n else "; below the measured range")
            if point < lo_n:
                row["bound"] = f"cost the equivalent of at least {n_real - max(ci[1], lo_n):.0f} real images"
        else:
            row["status"] = "worth nothing measurable"
        row["statement"] = harm_statement(g, row, lo_n, hi_n)
        return
    if point > hi_n:
        status = "above range"
        bound = f"worth more than {gain(hi_n):.0f} real images"
    elif mixture and n_real >= lo_n and point <= n_real:
        status, bound = "worth nothing measurable", "worth nothing measurable"
    elif point < lo_n:
        status = "below range"
        bound = (f"worth fewer than {gain(lo_n):.0f} real images" if gain(lo_n) > 0 else "worth nothing measurable")
    else:
        status, bound = OK, ""
    row["bound"] = bound
    if status != OK:
        # The point lies outside; an interval end inside the measured range is given (and said).
        if status == "above range" and ci[0] <= hi_n:
            row["n_eff_ci_low"] = ci[0] if ci[0] >= lo_n and not (mixture and ci[0] <= n_real) else math.nan
            status += "; the interval reaches into the measured range"
        elif status != "above range" and ci[1] >= max(lo_n, n_real if mixture else 0):
            row["n_eff_ci_high"] = ci[1] if ci[1] <= hi_n else math.nan
            status += "; the interval reaches into the measured range"
    if status == OK:
        ends = []
        if ci[1] > hi_n:
            ends.append(f"the interval's upper end lies above the measured range (> {hi_n} real images)")
        if ci[0] < lo_n:
            ends.append(f"the interval's lower end lies below the measured range (< {lo_n} real images)")
        if mixture and ci[0] <= n_real:
            ends.append("the interval includes no gain over the real part")
        if ends:
            status = f"{OK}; " + "; ".join(ends)
        row["n_eff"] = point
        row["n_eff_ci_low"] = ci[0] if inside(ci[0]) and not (mixture and ci[0] <= n_real) else math.nan
        row["n_eff_ci_high"] = ci[1] if inside(ci[1]) else math.nan
        row["rate"] = m / gain(point)
        if math.isfinite(row["n_eff_ci_high"]):
            row["rate_ci_low"] = m / gain(row["n_eff_ci_high"])
        if math.isfinite(row["n_eff_ci_low"]):
            row["rate_ci_high"] = m / gain(row["n_eff_ci_low"])
    row["status"] = status
    row["statement"] = statement(g, row, lo_n, hi_n)


def with_counts(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``n_real`` / ``n_synthetic`` per row as the study defines them
    (:func:`grid.counts` of the cell: composition, size, ratio, augment factor); a table's own
    columns are used only for rows the definition cannot place (``subset_real``, unknown kinds)."""
    nr, ns = [], []
    for _, r in df.iterrows():
        af = r.get("augment_factor")
        try:
            cell = Cell(str(r["composition"]), str(r.get("generator") or ""), int(r["size"]), int(r["seed"]),
                        float(r.get("ratio") or 0.0), None if af is None or pd.isna(af) else float(af))
            if cell.composition == "subset_real":   # needs the study's mixed ratio; not used here
                raise ValueError
            a, b = counts(cell, 0.0)
        except (ValueError, TypeError, SynthworthError):  # a row the definition cannot place
            a, b = r.get("n_real", math.nan), r.get("n_synthetic", math.nan)
        nr.append(a), ns.append(b)
    return df.assign(n_real=nr, n_synthetic=ns)


def provenance_text(prov: Any) -> str:
    """One line saying what a generator's Dataset records about its training data."""
    if not isinstance(prov, dict):
        return "provenance not recorded"
    kind = str(prov.get("kind", ""))
    note = str(prov.get("note") or "")
    if kind == "filtered":
        filt = prov.get("filter")
        # filtering.py records the filter's name as "method"
        name = filt.get("method") or filt.get("name") or filt.get("kind", "") if isinstance(filt, dict) else filt
        return f"filtered ({name or 'filter'}) from a generator {provenance_text(prov.get('parent'))}"
    seen = prov.get("trained_on")
    if kind == "trained" and isinstance(seen, dict):
        from synthworth.data.provenance import autoencoder_part

        split = f", split {seen['split']}" if seen.get("split") else ""
        ae = prov.get("autoencoder")   # a latent model learnt from its autoencoder's data as well
        return (f"trained on {seen.get('images', '?')} real images ({seen.get('name') or seen.get('path') or 'a Dataset'}"
                f"{split}, fingerprint {str(seen.get('fingerprint', '?'))[:12]})"
                + (f"; its autoencoder {provenance_text(ae)}" if isinstance(ae, dict) and ae.get("trained_on")
                   else autoencoder_part(ae)))
    if kind == "pretrained":
        return "pretrained on external data" + (f" ({note})" if note else "")
    return f"{kind or 'unknown kind'}" + (f" ({note})" if note else "")


def study_frame(results: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows :func:`exchange_rates` reads: results.csv's (test set ``real_test``) and, from
    evaluations.csv, each generator's synthetic test set (``synthetic_test:NAME``) scored by the
    real cells and that generator's cells."""
    parts = [results.assign(test_set="real_test")]
    if evaluations is not None and len(evaluations) and "test_generator" in evaluations.columns:
        ev = evaluations[evaluations["test_set"] == "synthetic_test"]
        for name, part in ev.groupby("test_generator", sort=True):
            gen = part["generator"].fillna("").astype(str)
            keep = part[(gen == "") | (gen == name)]
            if (keep["composition"] == "real").any() and (gen == name).any():
                parts.append(keep.assign(test_set=f"synthetic_test:{name}"))
    return pd.concat(parts, ignore_index=True)


def provenance_of(inputs: Any) -> dict[str, Any]:
    """{generator: recorded provenance or None} from a study's inputs.json content."""
    synthetic = inputs.get("synthetic") if isinstance(inputs, dict) else None
    if not isinstance(synthetic, dict):
        return {}
    return {str(k): v.get("provenance") if isinstance(v, dict) else None for k, v in synthetic.items()}


def has_sweep(results: pd.DataFrame) -> bool:
    """Whether the results hold real cells at three or more sizes (the learning curve)."""
    real = results[results["composition"] == "real"]
    return real["size"].nunique() >= 3


def exchange_rates(results: pd.DataFrame, *, provenance: dict[str, Any] | None = None, grid: str = "",
                   resamples: int = RESAMPLES, predictions: pd.DataFrame | None = None
                   ) -> tuple[pd.DataFrame, list[Curve]]:
    """(the exchange-rate table, the curves) of a tidy results table.

    ``results`` has one row per cell: composition, generator, size, ratio, augment_factor, seed,
    accuracy, and optionally test_set (default ``real_test``), filter, n_real, n_synthetic.
    ``provenance`` maps a generator to its recorded provenance (dict or None); ``grid`` is the
    completeness scope ("" when complete, else e.g. "partial: 5 of 8 cells"). ``predictions``
    (:func:`synthworth.study.predictions.read_predictions`, joined by the cells' ``key``) adds the
    test images to the bootstrap of every test set whose cells all have them."""
    df = results.copy()
    if "test_set" not in df.columns:
        df["test_set"] = "real_test"
    has_filter = "filter" in df.columns
    df["filter"] = df["filter"].fillna("").astype(str) if has_filter else ""
    df["generator"] = df["generator"].fillna("").astype(str)
    df["accuracy"] = pd.to_numeric(df["accuracy"], errors="coerce")
    df = df[np.isfinite(df["accuracy"].to_numpy(float))]
    if "augment_factor" not in df.columns:
        df["augment_factor"] = math.nan
    df = with_counts(df)
    rows, curves = [], []
    for test_set, part in df.groupby("test_set", sort=True):
        real = part[part["composition"] == "real"]
        synth = part[part["composition"].isin(SYNTHETIC_COMPOSITIONS)]
        chance = chance_of(real, df)
        used = pd.concat([real, synth])
        sampler = Sampler(used, correctness(used, predictions, str(test_set)), resamples,
                          keyed_rng("test images", str(test_set)))
        curve = real_curve(real, str(test_set), resamples=resamples, chance=chance, sampler=sampler)
        curves.append(curve)
        curve_cols = {"curve_a": curve.params[0] if curve.params else math.nan,
                      "curve_b": curve.params[1] if curve.params else math.nan,
                      "curve_c": curve.params[2] if curve.params else math.nan,
                      "curve_sizes": " ".join(str(s) for s in curve.sizes),
                      "fit_min_size": curve.sizes[0] if curve.sizes else math.nan,
                      "fit_max_size": curve.sizes[-1] if curve.sizes else math.nan,
                      "curve_status": curve.status, "failed_fits": curve.failed, "resamples": curve.resamples,
                      "curve_fit": curve.lof.text() if curve.params else "", "lof_chi2": curve.lof.chi2,
                      "lof_df": curve.lof.df if curve.params else math.nan, "lof_p": curve.lof.p,
                      "chance": chance[0] if chance else math.nan,
                      "grid": grid or "complete"}
        keys = ["filter", "generator", "composition", "size", "ratio", "augment_factor"]
        for (filt, gen, comp, size, ratio, af), g in synth.groupby(keys, sort=True, dropna=False):
            n_real = int(g["n_real"].iloc[0])
            real_acc = curve.means[curve.sizes.index(n_real)] if n_real in curve.sizes else None
            group = Group(gen, comp, int(size), float(ratio), None if pd.isna(af) else float(af), n_real,
                          int(g["n_synthetic"].iloc[0]), g["accuracy"].to_numpy(float), filt, real_acc)
            rng = group_rng(test_set, filt, gen, comp, size, ratio, af)
            draws = sampler.draws(g.index, group.values, rng) if curve.status == OK else None
            row = rate_row(curve, group, draws)
            row.update(test_set=test_set, filter=filt,
                       provenance=one_line(provenance_text((provenance or {}).get(gen))),
                       # what the bootstrap resampled, wherever one ran (its interval may be open at
                       # both ends); a row that got no bootstrap (no curve to read) claims nothing
                       **{**curve_cols, "interval_covers": sampler.covers_of(g) if draws is not None else ""})
            rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    if not has_filter:
        table = table.drop(columns="filter")
    return table, curves
