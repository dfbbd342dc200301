"""The exchange rates' bootstrap over classifier seeds **and** test images, and its variance breakdown.

Method (the decisions, and why):

- **Two sources, crossed.** A cell's accuracy is a mean over the test images of whether its
  classifier got each one right. Two things in it are samples: the seeds (each draws other
  training images and trains another classifier) and the test images (360 on the digits; another
  draw of the test set would give other accuracies, and it would move every cell together, since
  they all score the same images). Seeds and images are crossed (every seed of every cell scores
  every image), so the model is the two-way random-effects one, correct(s, i) = mu + a_s + b_i +
  e_si (seed effect, image difficulty, their interaction), and the variance of a mean over k seeds
  and N images is var(a)/k + var(b)/N + var(e)/(kN).
- **Why this bootstrap.** Resampling both seeds and images ("pigeonhole" bootstrap, Owen 2007,
  Ann. Appl. Stat. 1:2) counts the interaction term twice: the seeds' spread already holds
  var(e)/(kN) and so does the images' resample (McCullagh 2000, Bernoulli 6:2, shows no bootstrap
  of a crossed design is exact). With binary outcomes the interaction is most of the noise, so
  the double count would widen intervals by about 40 %. So each replicate:

  * draws **one** resample of the test images (multinomial counts, shared by every cell of the
    test set: real and synthetic cells stay paired on the same images, so a hard test set moves
    the curve and the group together, as it would in a rerun) and computes every cell's accuracy
    as a weighted count of its per-image correctness matrix (cells x images, one matrix product
    for all replicates: a demo-sized table takes well under a second);
  * draws each size's (and each group's) seed mean from the Student-t sampling distribution of k
    seeds, as the seeds-only bootstrap does (:mod:`synthworth.study.exchange` explains why not a
    percentile bootstrap of 3 values), but with the seed scale reduced to the seed effect alone:
    var(a) = s² − MS_int / N (two-way ANOVA method of moments; s²: the seeds' variance of their
    accuracies, MS_int: the seed x image interaction mean square), floored at 0. The image
    resample carries the rest.

  The weighted curve is refitted to each replicate with the same weights as the point fit, and
  n_eff and the rate are read off it as before.
- **Old results.** Cells finished before synthworth kept per-image predictions have no matrix;
  their test set falls back to the seeds-only bootstrap (the seeds' full spread, as before), and
  ``interval_covers`` says "seeds only" instead of "seeds + test images".
- **Where to spend the next run** (:func:`breakdown`). The same replicates are read twice more:
  with the seed draws only (images fixed) and with the image resample only (seeds fixed at their
  means). Each gives the n_eff interval's variance on the log scale ((log upper − log lower) /
  (2 · 1.96))²; their shares say which source the interval comes from. Doubling the seeds halves
  the seed part, doubling the test images halves the image part (the interaction term, in the
  image part, also shrinks with more seeds, so the seeds' gain is if anything understated).
- **Generator replicates.** Where a group's cells drew their synthetic images from two or more
  generator replicates, one per seed (:mod:`synthworth.study.replicates`), the seed effect above
  is a (generator retrain, seed) effect: the same draws carry the generator's retraining into the
  interval, ``interval_covers`` reads "seeds (each with its own generator replicate) + test
  images", and the breakdown's seed share is the seeds' and generators' together. Where seeds
  share a replicate, the seed mean's scale is the cluster-robust one over replicates, less the
  interaction's share MS_int / (kN), with G - 1 degrees of freedom (G replicates); with one
  replicate per seed that is exactly the scale above.
- **What the interval does not cover.** A generator trained once (a Dataset without replicates,
  or ``replicates: pooled``): its retraining noise is not in the interval. And the image
  resample treats the real test set as a sample of the images the task would see; the numbers
  themselves are conditional on this real test set.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from synthworth.study.replicates import COLUMN, clustered_variance, replicated, units
from synthworth.study.replicates import covers as replicate_covers

BOTH, SEEDS, IMAGES = "seeds + test images", "seeds only", "test images only"
MODES = (BOTH, SEEDS, IMAGES)
Z95 = 1.959963984540054
BREAKDOWN_COLUMNS = ["interval_covers", "var_share_seeds", "var_share_images", "narrower_2x_seeds",
                     "narrower_2x_images"]


def correctness(part: pd.DataFrame, predictions: pd.DataFrame | None, test_set: str) -> np.ndarray | None:
    """(rows of ``part``, images) 0/1 matrix of which test image each row's classifier got right,
    from :func:`synthworth.study.predictions.read_predictions`; None (seeds only) when a row has no
    predictions, the table has no cell keys, or the rows scored different images."""
    if predictions is None or not len(predictions) or "key" not in part.columns or not len(part):
        return None
    name, _, gen = str(test_set).partition(":")
    p = predictions[(predictions["test_set"].astype(str) == name)
                    & (predictions["test_generator"].fillna("").astype(str) == gen)]
    if not len(p):
        return None
    p = p.drop_duplicates(["key", "index"])   # a cell under several grid rows: one set of predictions
    table = (p["label"] == p["predicted"]).astype(float).groupby([p["key"].astype(str), p["index"]]).first().unstack()
    keys = part["key"].astype(str)
    if not keys.isin(table.index).all():
        return None
    x = table.loc[keys].to_numpy(float)
    return None if np.isnan(x).any() else x


class Sampler:
    """The replicates of one test set: the image resample shared by all its cells, and the draws
    of the mean accuracy of any set of its rows under each mode (:data:`MODES`)."""

    def __init__(self, part: pd.DataFrame, x: np.ndarray | None, resamples: int, rng: np.random.Generator):
        self.x, self.resamples = x, resamples
        self.row = {label: i for i, label in enumerate(part.index)}
        # each row's generator replicate (study/replicates.py): rows sharing one are one unit
        self.replicate = part[COLUMN].to_dict() if COLUMN in part.columns else {}
        self.covers = SEEDS if x is None else BOTH
        if x is not None:   # counts of each image in each replicate: (R, N), one multinomial draw per replicate
            n = x.shape[1]
            self.acc = (x @ rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).T.astype(float)) / n   # (C, R)

    def draws(self, labels, values: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """{mode: (R,) resampled mean accuracy} of the rows ``labels`` (seed accuracies ``values``);
        the t variates come from ``rng`` exactly as the seeds-only bootstrap draws them."""
        values = np.asarray(values, float)
        ids = units([self.replicate.get(label, "") for label in labels]) if self.replicate else None
        if ids is not None:
            return self._clustered(labels, values, ids, rng)
        k, mean, r = len(values), float(values.mean()), self.resamples
        t = rng.standard_t(k - 1, r) if k >= 2 else np.zeros(r)
        if self.x is None:
            se = float(values.std(ddof=1)) / math.sqrt(k) if k >= 2 else 0.0
            seeds = np.clip(mean + se * t, 0.0, 1.0)
            return {BOTH: seeds, SEEDS: seeds, IMAGES: np.full(r, mean)}
        rows = [self.row[label] for label in labels]
        se = seed_scale(self.x[rows]) / math.sqrt(k) if k >= 2 else 0.0
        images = self.acc[rows].mean(axis=0)
        return {BOTH: np.clip(images + se * t, 0.0, 1.0), SEEDS: np.clip(mean + se * t, 0.0, 1.0), IMAGES: images}

    def covers_of(self, group: pd.DataFrame) -> str:
        """``interval_covers`` of one cell group's row: this test set's, its seeds saying they carry
        the generator's retraining where the group's cells drew from two or more replicates."""
        return replicate_covers(self.covers, group[COLUMN].tolist() if COLUMN in group.columns else None)

    def _clustered(self, labels, values: np.ndarray, ids: np.ndarray, rng: np.random.Generator) -> dict:
        """:meth:`draws` where seeds share generator replicates: the replicate is the unit (module
        docstring), G - 1 degrees of freedom."""
        k, mean, r = len(values), float(values.mean()), self.resamples
        var, g = clustered_variance(values, ids)
        t = rng.standard_t(g - 1, r) if g >= 2 else np.zeros(r)
        if self.x is None:
            seeds = np.clip(mean + math.sqrt(var) * t, 0.0, 1.0)
            return {BOTH: seeds, SEEDS: seeds, IMAGES: np.full(r, mean)}
        rows = [self.row[label] for label in labels]
        se = math.sqrt(max(var - interaction(self.x[rows]) / (k * self.x.shape[1]), 0.0))
        images = self.acc[rows].mean(axis=0)
        return {BOTH: np.clip(images + se * t, 0.0, 1.0), SEEDS: np.clip(mean + se * t, 0.0, 1.0), IMAGES: images}


def interaction(x: np.ndarray) -> float:
    """The seed x image interaction mean square MS_int of a (seeds, images) 0/1 matrix."""
    k, n = x.shape
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float((resid ** 2).sum()) / ((k - 1) * (n - 1)) if n > 1 else 0.0


def seed_scale(x: np.ndarray) -> float:
    """The seed effect's standard deviation from a (seeds, images) 0/1 matrix: the seeds' variance
    of their accuracies less the interaction's share of it, MS_int / N (method of moments)."""
    n = x.shape[1]
    return math.sqrt(max(float(x.mean(axis=1).var(ddof=1)) - interaction(x) / n, 0.0))




def n_eff_many(params: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """n_eff of each replicate: ``params`` (R, 3) refits (NaN rows: failed), ``accuracy`` (R,);
    inf above a refit's asymptote, NaN where its fit failed (vectorised :func:`curve.invert`)."""
    a, b, c = params[:, 0], params[:, 1], params[:, 2]
    excess = (1.0 - accuracy) - c
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out = np.where(excess > 0, np.power(np.where(excess > 0, excess, 1.0) / a, -1.0 / b), np.inf)
    return np.where(np.isnan(params).any(axis=1), np.nan, out)


def log_interval_variance(reps: np.ndarray, level: float = 0.95) -> float:
    """((log upper − log lower) / (2 z))² of the replicates' percentile interval; NaN when an end
    is not finite and positive (above the asymptote, or no gain)."""
    reps = reps[~np.isnan(reps)]
    if len(reps) < 10:
        return math.nan
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(np.minimum(reps, 1e18), [q, 100 - q])
    if not (0 < lo <= hi < 1e17):
        return math.nan
    return ((math.log(hi) - math.log(lo)) / (2 * Z95)) ** 2


def breakdown(boots: dict[str, np.ndarray], draws: dict[str, np.ndarray], covers: str,
              offset: float = 0.0) -> dict[str, Any]:
    """The variance-breakdown columns of one group (``boots``: the curve's refits per mode, R x 3;
    ``draws``: the group's mean accuracy per mode; ``offset``: n_real of a mixture, so the shares
    are of the synthetic part's worth n_eff − n_real)."""
    out: dict[str, Any] = {"interval_covers": covers, **{c: math.nan for c in BREAKDOWN_COLUMNS[1:]}}
    if covers != BOTH:
        return out
    vs, vi = (log_interval_variance(n_eff_many(boots[m], draws[m]) - offset) for m in (SEEDS, IMAGES))
    if not (math.isfinite(vs) and math.isfinite(vi)) or vs + vi <= 0:
        return out
    total = vs + vi
    out.update(var_share_seeds=vs / total, var_share_images=vi / total,
               narrower_2x_seeds=1 - math.sqrt((vs / 2 + vi) / total),
               narrower_2x_images=1 - math.sqrt((vs + vi / 2) / total))
    return out


def spend_sentence(row: dict[str, Any] | pd.Series) -> str:
    """'seeds account for 70 % of this interval's variance: ...' ("" without a breakdown). Where the
    seeds carry generator replicates, their share is the seeds' and the generators' together, and
    doubling the seeds means training as many new replicates."""
    s, i = row.get("var_share_seeds", math.nan), row.get("var_share_images", math.nan)
    if not (isinstance(s, float) and math.isfinite(s) and math.isfinite(i)):
        return ""
    ns, ni = row["narrower_2x_seeds"], row["narrower_2x_images"]
    gens = replicated(row.get("interval_covers"))
    who = "Seeds with their generator replicates" if gens else "Seeds"
    seeds = "seeds (each with a newly trained generator replicate)" if gens else "seeds"
    more, gain = (seeds, ns) if ns >= ni else ("test images", ni)
    return (f"{who} account for {100 * s:.0f} % of this interval's variance, test images for {100 * i:.0f} %: "
            f"doubling the {more} would narrow it most (by about {100 * gain:.0f} %; doubling the "
            f"{'test images' if more == seeds else seeds} by about {100 * min(ns, ni):.0f} %).")
