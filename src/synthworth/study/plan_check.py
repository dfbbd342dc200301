"""``synthworth plan-check``: a plan against uniform generation, measured in a study.

The study holds two synthetic Datasets of one generator with the same number of images: one
generated uniformly (``--per-class``) and one from a plan (``generate --plan``), the planned one
with ``draw: as_generated`` in the spec so its cells keep the plan's class proportions (the
default draw would rebalance them; the uniform one is balanced either way). Their ``mixed`` cells
at one size and seed hold the very same real images (the real part of an as-generated mixture is
the balanced draw of its size alone) and the same number of synthetic ones, so the two are paired
over seeds and test images:

- **Accuracy**: planned minus uniform, with the paired two-way bootstrap over seeds and test
  images of :mod:`synthworth.study.paired` (the same number as the ``generator`` row of
  ``comparisons.csv``), or the paired t-test on seed means where predictions are missing.
- **Real-image equivalents**: each group's n_eff on the study's real learning curve
  (:mod:`synthworth.study.exchange`), and the difference, planned minus uniform, with its interval
  from the same bootstrap replicates paired: replicate r of the curve, with the one image resample
  of replicate r shared by both groups. Where an n_eff lies beyond the measured real sizes the
  curve is extrapolated, and the check says so.
- With the plan file, what the plan predicted for the same difference, from its own study.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from synthworth.study.exchange import CONFIDENCE, OK, RESAMPLES, exchange_rates, group_rng, invert, keyed_rng
from synthworth.study.exchange import with_counts
from synthworth.study.paired import BOOTSTRAP, T_TEST, correctness, two_way_bootstrap
from synthworth.study.planner_inputs import PlanError, read_study
from synthworth.study.predictions import REAL
from synthworth.study.resample import BOTH, Sampler, n_eff_many
from synthworth.study.resample import correctness as image_matrix
from synthworth.study.stats import paired


def _mixed(results, generator: str):
    df = results[(results["composition"] == "mixed") & (results["generator"].fillna("").astype(str) == generator)]
    if "filter" in df.columns:
        df = df[df["filter"].fillna("none").astype(str).isin(["none", ""])]
    return df[np.isfinite(df["accuracy"].to_numpy(float))]


def check_plan(results: str | Path, planned: str, uniform: str, *, size: int | None = None,
               plan_file: str | Path | None = None, resamples: int = RESAMPLES) -> dict[str, Any]:
    """Planned against uniform generation in the study at ``results`` (module docstring)."""
    study = read_study(results)
    if planned == uniform:
        raise PlanError("--planned and --uniform name the same generator; give the two Datasets' names in the spec")
    if study.spec and study.synthetic(planned).get("draw") != "as_generated":
        raise PlanError(f"generator {planned!r} is drawn balanced in this study, which undoes the plan's class counts; "
                        f"set 'draw: as_generated' on synthetic.{planned} in the spec and run the study again")
    a, b = _mixed(study.results, planned), _mixed(study.results, uniform)
    if a.empty or b.empty:
        raise PlanError(f"the study needs 'mixed' cells of both {planned!r} and {uniform!r} (compositions: [real, mixed]"
                        " and both under 'synthetic')")
    sizes = sorted(set(a["size"].astype(int)) & set(b["size"].astype(int)))
    if size is None and sizes:
        size = sizes[-1]
    if size not in sizes:
        raise PlanError(f"no size where both have mixed cells{'' if size is None else f' is {size}'}; the sizes both "
                        f"have: {sizes}")
    a, b = a[a["size"] == size], b[b["size"] == size]
    seeds = sorted(set(a["seed"].astype(int)) & set(b["seed"].astype(int)))
    a = a[a["seed"].isin(seeds)].drop_duplicates("seed").sort_values("seed")
    b = b[b["seed"].isin(seeds)].drop_duplicates("seed").sort_values("seed")
    ca, cb = with_counts(a), with_counts(b)
    n_real, n_synth = int(ca["n_real"].iloc[0]), int(ca["n_synthetic"].iloc[0])
    out: dict[str, Any] = {"planned": planned, "uniform": uniform, "size": int(size), "n_real": n_real,
                           "n_synthetic": n_synth, "seeds": len(seeds), "test_images": None, "results": str(results)}
    out["accuracy"] = _accuracy(study.predictions, a, b, planned, uniform, int(size), seeds, out)
    out["real_equivalents"] = _worth(study, a, b, planned, uniform, resamples)
    if plan_file is not None:
        try:
            plan = json.loads(Path(plan_file).read_text(encoding="utf-8"))
            out["predicted"] = dict(plan["expected"]["gain_over_uniform"])
        except (OSError, ValueError, KeyError, TypeError):
            raise PlanError(f"--plan {plan_file} is not a plan written by 'synthworth plan'") from None
    return out


def _accuracy(predictions, a, b, planned, uniform, size, seeds, out) -> dict[str, Any]:
    right = correctness(predictions)
    rows_a = [right.get(("mixed", planned, "none", size, s)) for s in seeds]
    rows_b = [right.get(("mixed", uniform, "none", size, s)) for s in seeds]
    base = {"mean_planned": float(a["accuracy"].mean()), "mean_uniform": float(b["accuracy"].mean())}
    if right and all(r is not None for r in rows_a + rows_b) and len({len(r) for r in rows_a + rows_b}) == 1:
        boot = two_way_bootstrap(np.stack(rows_a), np.stack(rows_b))
        out["test_images"] = int(len(rows_a[0]))
        return {**base, "diff": boot["diff"], "ci_low": boot["ci_low"], "ci_high": boot["ci_high"],
                "p_value": boot["p_value"], "method": BOOTSTRAP}
    t = paired(a["accuracy"].to_numpy(), b["accuracy"].to_numpy())
    return {**base, "diff": t["diff"], "ci_low": t["ci_low"], "ci_high": t["ci_high"], "p_value": t["p_value"],
            "method": f"{T_TEST} (cells without per-image predictions)"}


def _worth(study, a, b, planned: str, uniform: str, resamples: int) -> dict[str, Any]:
    results = study.results
    _, curves = exchange_rates(results[results["composition"] == "real"].assign(test_set=REAL),
                               resamples=resamples, predictions=study.predictions)
    curve = curves[0] if curves else None
    empty = {"n_eff_planned": math.nan, "n_eff_uniform": math.nan, "diff": math.nan, "ci_low": math.nan,
             "ci_high": math.nan}
    if curve is None or curve.status != OK:
        return {**empty, "note": f"no real-image equivalents: {curve.status if curve else 'no real cells'}"}
    both = a.index.append(b.index)
    rows = results.loc[both]
    x = image_matrix(rows, study.predictions, REAL) if curve.covers == BOTH else None
    sampler = Sampler(rows, x, resamples, keyed_rng("test images", REAL))
    points, reps = [], []
    for g, name in ((a, planned), (b, uniform)):
        first = g.iloc[0]
        filt = str(first["filter"]) if "filter" in g.columns and isinstance(first["filter"], str) else ""
        af = first.get("augment_factor") if "augment_factor" in g.columns else None
        draws = sampler.draws(g.index, g["accuracy"].to_numpy(float),
                              group_rng(REAL, filt, name, "mixed", int(first["size"]), float(first["ratio"]), af))
        points.append(invert(curve.params, float(g["accuracy"].mean())))
        reps.append(n_eff_many(curve.boots[BOTH], draws[BOTH]))
    diff = reps[0] - reps[1]
    diff = diff[np.isfinite(diff)]
    q = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(diff, [q, 100 - q]) if len(diff) >= 10 else (math.nan, math.nan)
    lo_n, hi_n = curve.sizes[0], curve.sizes[-1]
    beyond = [n for n, p in zip((planned, uniform), points) if not lo_n <= p <= hi_n]
    note = (f"{' and '.join(beyond)} beyond the measured real sizes ({lo_n}–{hi_n}): extrapolated by the power law"
            if beyond else "")
    return {"n_eff_planned": points[0], "n_eff_uniform": points[1], "diff": points[0] - points[1],
            "ci_low": float(low), "ci_high": float(high), "interval_covers": curve.covers, "note": note}


__all__ = ["check_plan"]
