"""Paired comparisons with power: a two-way bootstrap over seeds and test images, and Holm over
the spec's pre-specified comparisons only.

**Why not the t-test on seed means.** A study has 3 seeds per cell, so a paired t-test on the
seeds' accuracies has 2 degrees of freedom (critical value 4.30): a difference of a few points,
measured on 360 test images, is almost never "significant", and Holm over every comparison of
the study leaves none (issue 21: 15 of 42 raw p < 0.05, none after Holm). Every cell keeps its
per-image predictions (:mod:`synthworth.study.predictions`), so the comparison can use the
seeds x images table of correctness instead of three numbers.

**The method.** For A vs B at one size, ``d[i, j] = correct_A[i, j] - correct_B[i, j]`` for seed
``i`` (A's and B's cells of one seed share the real draw and classifier seed) and real test
image ``j`` (the same image for A and B). The estimate is ``mean(d)``, which is exactly the
mean over seeds of the accuracy differences. Its interval comes from the two-way ("pigeonhole")
bootstrap of Owen (2007, *The pigeonhole bootstrap*, Ann. Appl. Stat. 1(2)), for a design where
rows (seeds) and columns (images) are both samples: each resample draws the seeds with
replacement **and**, independently, the test images with replacement, and takes the weighted
mean of ``d`` -- paired twice over: a drawn seed brings A's and B's models of that seed, a drawn
image is scored for A and B alike, in every seed. It is vectorised with numpy over blocks of
resamples (``N_BOOT`` = 4000): a demo-shaped table (32 comparisons, 3 seeds, 360 images) takes
about 1 s on one core. The resamples come from a fixed RNG seed, so a table is reproducible and
every comparison of the same shape uses the same draws.

Owen's bootstrap counts the seed x image noise twice (once in each direction), and drawing S
seeds from S shrinks their spread by (S - 1) / S; at 3 seeds both matter. So the seed part of
each resample is scaled to the two-way ANOVA's estimate of the seed variance *beyond* the image
noise, ``(MS_seed - MS_resid) / N`` (:func:`variance_components`), which makes the resamples'
variance the unbiased ``(MS_seed + MS_image - MS_resid) / (S N)``. At 3 seeds that estimate rests
on 2 degrees of freedom, so the seed part counts only when an F-test at the 25 % level finds
seed variance (Bancroft's "sometimes pool" rule; Bozivich, Bancroft & Hartley 1956); otherwise
the seeds differ no more than the image noise explains, and they are pooled with it. The
bootstrap deviations are then widened by ``t(df) / z`` with Satterthwaite's (1946) degrees of
freedom of that variance: about N - 1 when the seeds are pooled, about S - 1 when their variance
dominates, where the interval tends to the t-test's width. So the power comes from the test
images only where the seeds allow it; in simulations (tests/study/test_paired.py) a 6-point
difference at 3 seeds and 360 images is found in about 63 % of studies against 47 % for the
t-test (88 % where the seeds are pooled), its interval covers the truth in 98 %, and with no
difference 3 % of p-values fall below 0.05 (the t-test: 10 %); 60 simulated studies each.

The interval is the widened bootstrap's 2.5-97.5 % percentiles. The p-value is the one that
interval inverts, ``2 min(P*(D* <= 0), P*(D* >= 0))`` with the (count + 1) / (B + 1) convention,
so a 95 % interval excludes 0 exactly when p < 0.05. No sign-flip test: at 3 seeds flipping whole
seeds has a smallest p of 0.25, and flipping single images would ignore the seeds. The interval
covers seeds and test images, not the retraining of a generator trained once, and holds for
test images drawn like this test set. Where each seed's synthetic cells drew from their own
generator replicate (:mod:`synthworth.study.replicates`), a drawn seed brings its generator too, and the interval
covers the generator's retraining (``interval_covers`` says so); where seeds share replicates,
each replicate's seeds are averaged into one row first, so the replicate is what is resampled
(and the t-test runs on the replicates' means).

Where per-image predictions are missing (results of an older synthworth, another metric than
accuracy, cells scored on different test images), a row falls back to the paired t-test on the
seed means (:func:`synthworth.study.stats.paired`) and ``method`` says so.

**Families.** The spec's ``comparisons`` are pre-specified: their rows (each pair at each size
and generator) are the ``primary`` family, and ``p_holm`` is Holm-adjusted over them only
(Holm 1979, controls the chance of any false positive among them). Every other row (generator
vs generator, filtered vs unfiltered) is ``exploratory``: its raw p is shown, ``p_holm`` is
empty, and it is a lead to test in a new study, not a finding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from synthworth.study.replicates import COLUMN, unit_means, units
from synthworth.study.replicates import covers as replicate_covers
from synthworth.study.stats import CONFIDENCE, NO_FILTER, _with_filter, holm, paired

N_BOOT = 4000
RNG_SEED = 20240521  # fixed: the same results give the same table
_CHUNK = 1_000_000  # image weights drawn per block: at most this many numbers in memory at once
POOL_LEVEL = 0.25  # the preliminary F-test's level of the sometimes-pool rule (variance_components)
PRIMARY, EXPLORATORY = "primary", "exploratory"
BOOTSTRAP = "paired bootstrap over seeds and test images"
T_TEST = "paired t-test on seed means"
COVERS_BOTH, COVERS_SEEDS = "seeds, test images", "seeds (conditional on this test set)"
UNITS = "seeds sharing a generator replicate averaged: the replicate is the unit"
COLUMNS = ["kind", "family", "composition_a", "generator_a", "filter_a", "composition_b", "generator_b", "filter_b",
           "size", "metric", "n", "n_images", "mean_a", "mean_b", "diff", "diff_sd", "ci_low", "ci_high", "p_value",
           "p_holm", "method", "interval_covers", "t_ci_low", "t_ci_high", "t_p_value"]
CellKey = tuple[str, str, str, int, int]  # composition, generator, filter, size, seed


def variance_components(d: np.ndarray) -> dict[str, float]:
    """Two-way ANOVA of a seeds x images table without replication: the mean squares of seeds,
    images and residual, the unbiased variance of ``d.mean()`` (seed variance floored at 0) and
    its Satterthwaite (1946) degrees of freedom."""
    n_seeds, n_images = d.shape
    m = d.mean()
    rows, cols = d.mean(axis=1), d.mean(axis=0)
    ms_img = n_seeds * float(((cols - m) ** 2).sum()) / max(n_images - 1, 1)
    if n_seeds < 2:
        return {"ms_seed": math.nan, "ms_image": ms_img, "ms_resid": math.nan, "seed_var": 0.0,
                "var": ms_img / n_images, "df": float(n_images - 1)}
    ms_seed = n_images * float(((rows - m) ** 2).sum()) / (n_seeds - 1)
    resid = d - rows[:, None] - cols[None, :] + m
    ms_e = float((resid ** 2).sum()) / ((n_seeds - 1) * max(n_images - 1, 1))
    # E[MS_seed] = N s2_seed + s2_e, E[MS_image] = S s2_image + s2_e, E[MS_e] = s2_e, and
    # Var(mean) = s2_seed / S + s2_image / N + s2_e / (S N) = (MS_seed + MS_image - MS_e) / (S N).
    # Bancroft's sometimes-pool rule: the seed component counts when its F-test at the 25 % level
    # finds one (Bozivich, Bancroft & Hartley 1956); at 3 seeds counting it whenever
    # MS_seed > MS_e would inflate the variance by about a third when there is none.
    from scipy import stats

    f_crit = float(stats.f.ppf(1 - POOL_LEVEL, n_seeds - 1, (n_seeds - 1) * max(n_images - 1, 1)))
    seeds_count = ms_seed > ms_e and (ms_e == 0 or ms_seed / ms_e > f_crit)
    if seeds_count:
        total = ms_seed + ms_img - ms_e
        denom = ms_seed ** 2 / (n_seeds - 1) + ms_img ** 2 / max(n_images - 1, 1) + \
            ms_e ** 2 / ((n_seeds - 1) * max(n_images - 1, 1))
    else:  # the seeds differ no more than the image noise explains: pooled, no seed component
        total, denom = ms_img, ms_img ** 2 / max(n_images - 1, 1)
    df = total ** 2 / denom if denom > 0 else math.inf
    return {"ms_seed": ms_seed, "ms_image": ms_img, "ms_resid": ms_e,
            "seed_var": (ms_seed - ms_e) / n_images if seeds_count else 0.0,
            "var": total / (n_seeds * n_images), "df": df}


def two_way_bootstrap(a: np.ndarray, b: np.ndarray, *, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                      seed: int = RNG_SEED) -> dict[str, float]:
    """Paired difference of correctness tables ``a`` and ``b`` (seeds x images, 0/1 or bool,
    row i of both from the same seed, column j the same test image): estimate, bootstrap
    standard error, interval, p-value and degrees of freedom (see the module's docstring)."""
    from scipy import stats

    if np.ndim(a) != 2 or np.size(a) == 0 or np.shape(a) != np.shape(b):
        raise ValueError(f"two_way_bootstrap needs two equal, non-empty seeds x images tables; got {np.shape(a)} "
                         f"and {np.shape(b)}")
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n_seeds, n_images = d.shape
    estimate = float(d.mean())
    parts = variance_components(d)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    spread = float(d.mean(axis=1).var(ddof=1)) if n_seeds > 1 else 0.0
    # The seed part of a resample is scaled to the seed variance beyond the image noise (which
    # the image part already carries), with ddof 1: see the module's docstring.
    scale = math.sqrt(n_seeds / (n_seeds - 1) * parts["seed_var"] / spread) if spread > 0 else 0.0
    step = max(1, _CHUNK // (n_images * n_seeds))
    for start in range(0, n_boot, step):
        m = min(step, n_boot - start)
        images = rng.integers(0, n_images, (m, n_images))      # the same drawn images for A and B, every seed
        rows = d[:, images].mean(axis=2).T                     # (m, S): each seed's mean over the drawn images
        centre = rows.mean(axis=1)                             # every seed once: the image part alone
        if n_seeds > 1:
            seeds = rng.integers(0, n_seeds, (m, n_seeds))     # a drawn seed brings A's and B's models of it
            drawn = np.take_along_axis(rows, seeds, axis=1).mean(axis=1)
            draws[start:start + m] = centre + scale * (drawn - centre)
        else:
            draws[start:start + m] = centre
    # Widen the percentiles by t(df) / z: with few seeds and a dominant seed variance the
    # variance is known from few degrees of freedom (df -> S - 1, the t-test's width).
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    widen = float(stats.t.ppf(0.5 + confidence / 2, parts["df"])) / z if np.isfinite(parts["df"]) else 1.0
    draws = estimate + widen * (draws - estimate)
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    below, above = int((draws <= 0).sum()), int((draws >= 0).sum())
    p = min(1.0, 2 * min(below + 1, above + 1) / (n_boot + 1))
    if not d.any():  # identical predictions: no difference and no spread
        low = high = 0.0
        p = 1.0
    return {"diff": estimate, "se": float(draws.std(ddof=1)) / widen, "ci_low": float(low), "ci_high": float(high),
            "p_value": p, "df": float(parts["df"])}


def correctness(predictions: pd.DataFrame | None) -> dict[CellKey, np.ndarray]:
    """{(composition, generator, filter, size, seed): correct (bool, by test image index)} of
    the cells' real test images, from :func:`synthworth.study.predictions.read_predictions`."""
    if predictions is None or predictions.empty:
        return {}
    p = predictions[predictions["test_set"] == "real_test"]
    if p.empty:
        return {}
    filt = p["filter"].fillna(NO_FILTER).astype(str) if "filter" in p.columns else pd.Series(NO_FILTER, p.index)
    p = p.assign(generator=p["generator"].fillna("").astype(str), filter=filt,
                 right=(p["predicted"].to_numpy() == p["label"].to_numpy()))
    out = {}
    keys = ["composition", "generator", "filter", "size", "seed"]
    # ratio_sweep / augmented hold several cells per key; they are not compared here
    p = p[~p["composition"].isin(["ratio_sweep", "augmented"])]
    for key, part in p.groupby(keys, sort=False):
        part = part.drop_duplicates("index").sort_values("index")
        out[(str(key[0]), str(key[1]), str(key[2]), int(key[3]), int(key[4]))] = part["right"].to_numpy(bool)
    return out


def compare(results: pd.DataFrame, pairs: Iterable[tuple[str, str]], metric: str = "accuracy",
            predictions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paired comparisons on the same seeds (and, with ``predictions``, the same test images).

    - ``kind="composition"`` (family ``primary``): for each pair (A, B) of ``pairs`` (the
      spec's ``comparisons``), generator and size, A's and B's cells on the seeds both have. A
      composition without synthetic data (real, subset_real) pairs with every generator's
      cells of the other.
    - ``kind="generator"`` (``exploratory``): for each composition with synthetic data and
      size, every pair of generators.
    - ``kind="filter"`` (``exploratory``): filtered cells against the unfiltered ones of the
      same composition, generator, size and seeds.

    The composition and generator comparisons are between unfiltered cells. ``ci_low``,
    ``ci_high`` and ``p_value`` come from ``method`` (the two-way bootstrap where every cell of
    the row has predictions, else the t-test on seed means); ``t_*`` are the t-test's always.
    ``p_holm``: Holm over the primary rows only; empty on exploratory rows.
    """
    rows: list[dict] = []
    if results.empty:
        return pd.DataFrame(columns=COLUMNS)
    results = _with_filter(results)
    simple = results[~results["composition"].isin(["ratio_sweep", "augmented"])]
    simple = simple.assign(generator=simple["generator"].fillna("").astype(str))
    right = correctness(predictions) if metric == "accuracy" else {}
    reason = "no per-image predictions" if metric == "accuracy" else f"{metric} is not a mean of per-image scores"

    def series(comp: str, gen: str, size: int, filt: str = NO_FILTER) -> pd.DataFrame:
        part = simple[(simple["composition"] == comp) & (simple["generator"] == gen) & (simple["size"] == size)
                      & (simple["filter"] == filt)]
        return part.drop_duplicates("seed").set_index("seed")

    def row(kind, comp_a, gen_a, comp_b, gen_b, size, filters=(NO_FILTER, NO_FILTER)) -> None:
        fa, fb = series(comp_a, gen_a, size, filters[0]), series(comp_b, gen_b, size, filters[1])
        a, b = fa[metric], fb[metric]
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            return
        # Each seed's generator replicates (A's, B's): seeds sharing them are one unit (study/replicates.py)
        reps = [_replicates(fa, fb, s) for s in seeds]
        ids = units(reps)
        t = paired(a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy())
        unit_t = t if ids is None else paired(unit_means(a.loc[seeds], reps), unit_means(b.loc[seeds], reps))
        out = {"kind": kind, "family": PRIMARY if kind == "composition" else EXPLORATORY,
               "composition_a": comp_a, "generator_a": gen_a, "filter_a": filters[0], "composition_b": comp_b,
               "generator_b": gen_b, "filter_b": filters[1], "size": int(size), "metric": metric, "n": t["n"],
               "mean_a": t["mean_a"], "mean_b": t["mean_b"], "diff": t["diff"], "diff_sd": t["diff_sd"],
               "t_ci_low": unit_t["ci_low"], "t_ci_high": unit_t["ci_high"], "t_p_value": unit_t["p_value"]}
        tables, why = _tables(right, reason, (comp_a, gen_a, filters[0]), (comp_b, gen_b, filters[1]), int(size),
                              seeds)
        units_note = "" if ids is None else f"; {UNITS}"
        if tables is None:
            out.update(ci_low=unit_t["ci_low"], ci_high=unit_t["ci_high"], p_value=unit_t["p_value"],
                       n_images=math.nan, method=f"{T_TEST} ({why}{units_note})",
                       interval_covers=replicate_covers(COVERS_SEEDS, reps))
        else:
            boot = two_way_bootstrap(*(tables if ids is None else [_by_unit(x, ids) for x in tables]))
            out.update(ci_low=boot["ci_low"], ci_high=boot["ci_high"], p_value=boot["p_value"],
                       n_images=int(tables[0].shape[1]), method=BOOTSTRAP + (f" ({UNITS})" if ids is not None else ""),
                       interval_covers=(replicate_covers(COVERS_BOTH, reps) if len(seeds) > 1
                                        else "test images (one seed)"))
        rows.append(out)

    generators = sorted(g for g in simple["generator"].unique() if g)
    sizes = sorted(simple["size"].unique())
    filters = sorted(f for f in simple["filter"].unique() if f != NO_FILTER)
    for comp_a, comp_b in pairs:
        for size in sizes:
            for gen in generators or [""]:
                gen_a = "" if comp_a in ("real", "subset_real") else gen
                gen_b = "" if comp_b in ("real", "subset_real") else gen
                row("composition", comp_a, gen_a, comp_b, gen_b, size)
                if not gen_a and not gen_b:
                    break  # neither side depends on the generator: one comparison, not one per generator
    synthetic = [c for c in simple["composition"].unique() if c not in ("real", "subset_real")]
    for comp in synthetic:
        for size in sizes:
            for i, gen_a in enumerate(generators):
                for gen_b in generators[i + 1:]:
                    row("generator", comp, gen_a, comp, gen_b, size)
    for comp in synthetic:
        for size in sizes:
            for gen in generators:
                for filt in filters:
                    row("filter", comp, gen, comp, gen, size, filters=(filt, NO_FILTER))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return with_holm(table)


def with_holm(table: pd.DataFrame) -> pd.DataFrame:
    """``p_holm``: Holm over the rows of the primary family only (NaN on the exploratory ones)."""
    primary = (table["family"] == PRIMARY).to_numpy()
    adjusted = np.full(len(table), math.nan)
    adjusted[primary] = holm(table.loc[primary, "p_value"].to_numpy(dtype=np.float64))
    return table.assign(p_holm=adjusted)


def _replicates(fa: pd.DataFrame, fb: pd.DataFrame, seed) -> str:
    """The generator replicates seed ``seed``'s cells of A and B drew from ("" where neither did)."""
    names = [str(f.at[seed, COLUMN]) if COLUMN in f.columns and isinstance(f.at[seed, COLUMN], str) else ""
             for f in (fa, fb)]
    return " | ".join(names) if any(names) else ""


def _by_unit(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The rows (seeds) of ``x`` averaged within each unit (generator replicate)."""
    labels, inverse = np.unique(ids.astype(str), return_inverse=True)
    return np.stack([x[inverse == i].mean(axis=0) for i in range(len(labels))])


def _tables(right: dict[CellKey, np.ndarray], reason: str, a: tuple[str, str, str], b: tuple[str, str, str],
            size: int, seeds: list[int]) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """A's and B's seeds x images correctness (None and why not where a cell lacks predictions)."""
    if not right:
        return None, reason
    rows_a = [right.get((*a, size, int(s))) for s in seeds]
    rows_b = [right.get((*b, size, int(s))) for s in seeds]
    lacking = sum(r is None for r in rows_a + rows_b)
    if lacking:
        return None, f"{lacking} of {2 * len(seeds)} cells lack per-image predictions"
    if len({len(r) for r in rows_a + rows_b}) != 1:
        return None, "cells scored on different numbers of test images"
    return (np.stack(rows_a), np.stack(rows_b)), ""


__all__ = ["compare", "two_way_bootstrap", "correctness", "with_holm", "PRIMARY", "EXPLORATORY", "N_BOOT"]
