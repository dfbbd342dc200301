"""``synthworth plan``: how many synthetic images of each class to generate, from a study's
per-class exchange rates.

The question: with the real images one has (``real_images``, spread evenly over the K classes as
the study's cells spread them) and a budget (a number of synthetic images, seconds of generation,
or an accuracy to reach), how many images of each class should the generator make; and, where
labelling a real image has a price, for which classes is labelling more real ones the better buy?

The model (kept simple on purpose; every piece is read off the study's own numbers):

- **A class's recall** with n real and s synthetic images of it is its real learning curve
  (:mod:`synthworth.study.by_class`: recall against real training images, a weighted power law)
  read at n + w s real images, where w is what one synthetic image of the class is worth in real
  images of the class: ``w = (n_eff - n_real) / m`` from one group of the generator's cells in
  the study (m synthetic images added to n_real real ones; artificial cells: ``n_eff / m``), the
  group whose real part is nearest ``real_images`` (:func:`planner_inputs.pick_group`). An n_eff
  above the curve's largest measured size is taken at that size (as the rate tables never read
  beyond it): the worth is then a lower bound, and the plan says so. The curves
  count the real images of the whole balanced training set, so a class with n real images is
  read at K n. Classes are taken as independent, and w as constant: each further image of a class
  is worth what the measured group's images were worth on average; the curve's flattening is the
  only diminishing return. Beyond the group's size and the curve's largest measured size this is
  an extrapolation, and the plan marks the classes where it is.
- **The allocation** gives the budget, a chunk at a time (1 / :data:`CHUNKS` of it), to the class
  whose recall that chunk raises most; the accuracy is the mean of the recalls (each class 1 / K).
  A power law with a, b > 0 is concave in n, so under the model the greedy allocation is the best
  one to within a chunk. With ``real_cost`` R (one labelled real image costs as much as R
  synthetic ones) a chunk buys, for its class, whichever is worth more per unit of cost: w real
  images' worth per synthetic image, or 1 / R per unit spent on labelling. A budget no class can
  gain from any more is spread evenly, and the plan says so.
- **Classes that cannot be read** (their curve is flat, a step or near chance, or the generator's
  cells have no recall for them: the reason is given) get a uniform share, the budget / K (for a
  target, the readable classes' mean), and are named; the expected accuracy is then the mean over
  the readable classes only, and the plan says over which. A class the generator cannot make gets
  nothing.
- **Uncertainty.** The curves and the worths come with the study's two-way bootstrap over seeds
  and test images, replicate r of a class's curve paired with replicate r of its group's recall,
  exactly as ``exchange_rates_by_class.csv`` pairs them. The allocation (chosen on the point
  estimates) is evaluated on every replicate: the expected accuracy's 95 % interval is their 2.5
  and 97.5 percentiles, and so are those of its gain over no synthetic images and over uniform
  generation of the same budget (paired, replicate by replicate).

Measured (README, *From answer to plan*): on the digits a plan that left four classes without
synthetic images lost to uniform generation, those classes outvoted in the training set. A
class's recall also depends on its share of the training set, which the model ignores.

What the intervals do not cover: the model itself (independent classes, constant worth, the power
law beyond the measured sizes), the generator's retraining, and how well the study's test images
stand for the task. ``synthworth plan-check`` measures a plan against uniform generation in a
study (:mod:`synthworth.study.plan_check`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthworth import __version__
from synthworth.generate.planfile import FORMAT, KIND, MAX_IMAGES
from synthworth.study.exchange import CONFIDENCE, RESAMPLES
from synthworth.study.planner_inputs import (ClassModel, PlanError, class_models, class_sources, pick_group,
                                             read_study, seconds_per_image)

CHUNKS = 2000
METHOD = ("greedy allocation by marginal gain in class-averaged accuracy; class recall = the class's real "
          "learning curve (weighted power law) at real + worth x synthetic images of the class; worth = the "
          "generator's measured real-image equivalents per synthetic image of the class; 95 % intervals over "
          "the study's bootstrap replicates (seeds and test images); see synthworth/study/planner.py")


def recall(params: np.ndarray, n: np.ndarray) -> np.ndarray:
    """1 - (a n^-b + c), clipped to [0, 1]; ``params`` (..., 3), ``n`` broadcast against it."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        err = params[..., 0] * np.power(n, -params[..., 1]) + params[..., 2]
    return np.clip(1.0 - err, 0.0, 1.0)


@dataclass
class Allocation:
    synthetic: np.ndarray           # per readable class
    real: np.ndarray                # real images to label per readable class (0 without a price)
    spread: int = 0                 # budget no class could gain from, spread evenly


class Model:
    """The readable classes as arrays: their curves, worths and the real images per class."""

    def __init__(self, models: list[ClassModel], real_images: int, classes: int, real_cost: float | None):
        self.models = [m for m in models if m.readable]
        self.k, self.real_images, self.real_cost = classes, real_images, real_cost
        self.params = np.array([m.params for m in self.models]).reshape(-1, 3)
        self.worth = np.array([m.worth for m in self.models], float)
        label = 1.0 / real_cost if real_cost else 0.0
        self.buy_real = self.worth < label if real_cost else np.zeros(len(self.models), bool)
        self.rate = np.where(self.buy_real, label, self.worth)   # real images' worth per unit of budget

    def x(self, extra: np.ndarray) -> np.ndarray:
        """Where each class's curve is read: the balanced set's real images (K x per class)."""
        return np.maximum(self.real_images + self.k * extra, 1.0)

    def accuracy(self, spent: np.ndarray) -> float:
        if not len(self.models):
            return math.nan
        gained = np.where(spent > 0, self.rate * spent, 0.0)
        return float(recall(self.params, self.x(gained)).mean())

    def allocate(self, budget: int) -> Allocation:
        spent = np.zeros(len(self.models))
        gained = np.zeros(len(self.models))
        chunk = max(1, math.ceil(budget / CHUNKS))
        left = budget
        while left > 0 and len(self.models):
            step = min(chunk, left)
            now = recall(self.params, self.x(gained))
            gain = recall(self.params, self.x(gained + self.rate * step)) - now
            gain = np.where(np.isnan(gain), -np.inf, gain)
            j = int(np.argmax(gain))
            if not gain[j] > 0:
                break
            spent[j] += step
            gained[j] += self.rate[j] * step
            left -= step
        spread = left if len(self.models) else 0
        if spread:   # no class gains from more: the rest goes evenly (synthetic images)
            share, extra = divmod(spread, len(self.models))
            even = np.full(len(self.models), share) + (np.arange(len(self.models)) < extra)
            synthetic = np.where(self.buy_real, 0, spent) + even
        else:
            synthetic = np.where(self.buy_real, 0, spent)
        real = np.where(self.buy_real, np.floor(spent / (self.real_cost or 1) + 0.5), 0)
        return Allocation(synthetic.astype(np.int64), real.astype(np.int64), int(spread))

    def replicates(self, synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
        """(R,) class-averaged accuracy of an allocation on each bootstrap replicate (NaN where a
        class's replicate failed)."""
        boots = np.stack([m.boots for m in self.models])                  # (k, R, 3)
        worth = np.stack([m.worth_reps for m in self.models])             # (k, R)
        s = synthetic[:, None].astype(float)
        extra = real[:, None] + np.where(s > 0, worth * s, 0.0)
        acc = recall(boots, self.x(extra))
        bad = np.isnan(boots).any(axis=2) | np.isnan(worth)
        return np.where(bad.any(axis=0), np.nan, acc.mean(axis=0))


def _interval(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) < 10:
        return math.nan, math.nan
    q = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [q, 100 - q])
    return float(low), float(high)


def _summary(point: float, reps: np.ndarray) -> dict[str, float]:
    low, high = _interval(reps)
    return {"accuracy": point, "ci_low": low, "ci_high": high}


def budget_for(model: Model, target: float, base: float) -> int:
    """The smallest budget whose allocation reaches ``target`` (class-averaged, point estimate)."""
    if target <= base:
        raise PlanError(f"the study's curves expect a class-averaged accuracy of {base:.3f} from the real images "
                        f"alone, already at or above --target-accuracy {target:g}: no synthetic images are needed")
    best = model.accuracy(_spent(model, model.allocate(MAX_IMAGES)))
    if not best >= target:
        raise PlanError(f"--target-accuracy {target:g} is beyond what the model expects even from {MAX_IMAGES} images "
                        f"({best:.3f}, the curves' ceilings); aim lower or add real images")
    low, high = 0, MAX_IMAGES
    while high - low > max(1, high // 1000):
        mid = (low + high) // 2
        if model.accuracy(_spent(model, model.allocate(mid))) >= target:
            high = mid
        else:
            low = mid
    return high


def _spent(model: Model, a: Allocation) -> np.ndarray:
    """Budget units each readable class got (real images cost real_cost each)."""
    return np.where(model.buy_real, a.real * (model.real_cost or 1), a.synthetic).astype(float)


def make_plan(results: str | Path, generator: str, *, images: int | None = None, seconds: float | None = None,
              target_accuracy: float | None = None, real_cost: float | None = None, real_images: int | None = None,
              resamples: int = RESAMPLES) -> dict[str, Any]:
    """The plan (a JSON-ready dict, :mod:`synthworth.generate.planfile`'s format) for ``generator``
    of the study in ``results``, given exactly one budget: ``images``, ``seconds`` of generation
    or ``target_accuracy``. ``real_images``: the real training images to plan for (default the
    study's largest real size); ``real_cost``: the price of one labelled real image in synthetic
    images (None: labelling is not an option)."""
    if sum(v is not None for v in (images, seconds, target_accuracy)) != 1:
        raise PlanError("give one budget: --images N, --seconds S or --target-accuracy A")
    if images is not None and not 1 <= images <= MAX_IMAGES:
        raise PlanError(f"--images must lie between 1 and {MAX_IMAGES}, got {images}")
    if target_accuracy is not None and not 0 < target_accuracy < 1:
        raise PlanError(f"--target-accuracy must lie between 0 and 1, got {target_accuracy}")
    if real_cost is not None and not real_cost > 0:
        raise PlanError(f"--real-cost must be positive (a real image's price in synthetic images), got {real_cost}")
    if seconds is not None and not seconds > 0:
        raise PlanError(f"--seconds must be positive, got {seconds}")
    study = read_study(results)
    entry = study.synthetic(generator)
    if entry.get("draw") == "as_generated":
        raise PlanError(f"generator {generator!r} was drawn as generated (draw: as_generated) in this study, so its "
                        "cells hold uneven classes and no per-image worth per class can be read; plan from a study "
                        "that draws it balanced (the default)")
    notes: list[str] = []
    per_image = None
    if seconds is not None:
        per_image, where = seconds_per_image(study, generator)
        if per_image is None:
            raise PlanError(f"--seconds needs the generation time per image, and {where}; give --images N instead")
        images = int(seconds // per_image)
        if images < 1:
            raise PlanError(f"--seconds {seconds:g} buys no image at {per_image:.3g} s per image ({where})")
        notes.append(f"{seconds:g} s of sampling at {per_image:.3g} s per image ({where}) buy {images} images")
    real_sizes = sorted(int(s) for s in study.results.loc[study.results["composition"] == "real", "size"].unique())
    if real_images is None:
        if not real_sizes:
            raise PlanError("the study has no real cells, so no real learning curve to plan with")
        real_images = real_sizes[-1]
    if real_images < 1:
        raise PlanError(f"--real-images must be positive, got {real_images}")
    k = len(study.class_names)
    sources, own = class_sources(study, generator)
    group = pick_group(study.results, generator, real_images)
    models, _ = class_models(study, generator, group, sources, resamples)
    model = Model(models, real_images, k, real_cost)
    if not model.models:
        reasons = sorted({m.why for m in models})
        raise PlanError(f"no class's curve or worth can be read from this study ({'; '.join(reasons)[:300]}), so "
                        "there is nothing to plan with: generate uniformly (--per-class), or run a study with more "
                        "real sizes, seeds or test images")
    unread = [m for m in models if not m.readable and m.source is not None]
    if real_sizes and not real_sizes[0] <= real_images <= real_sizes[-1]:
        notes.append(f"{real_images} real images lie outside the study's real sizes ({real_sizes[0]}–{real_sizes[-1]}):"
                     " the curves are extrapolated there")
    base = model.accuracy(np.zeros(len(model.models)))
    if target_accuracy is not None:
        budget = budget_for(model, target_accuracy, base)
    else:
        budget = int(images)
    share = budget // k if target_accuracy is None else 0
    alloc = model.allocate(budget - share * len(unread))
    if target_accuracy is not None and model.models:
        share = int(round(float(alloc.synthetic.mean())))
    if alloc.spread:
        notes.append(f"{alloc.spread} images gain no class anything more under the model; they are spread evenly")
    spent = _spent(model, alloc)
    total_cost = int(spent.sum()) + share * len(unread)
    reps_plan = model.replicates(alloc.synthetic, alloc.real)
    reps_base = model.replicates(np.zeros(len(model.models), np.int64), np.zeros(len(model.models), np.int64))
    uniform = np.full(len(model.models), total_cost // k, np.int64)
    reps_uniform = model.replicates(uniform, np.zeros(len(model.models), np.int64))
    point = model.accuracy(spent)
    point_uniform = float(recall(model.params, model.x(np.where(uniform > 0, model.worth * uniform, 0.0))).mean())
    synthetic = {m.index: 0 for m in models}
    real = {m.index: 0 for m in models}
    for m, s, r in zip(model.models, alloc.synthetic, alloc.real):
        synthetic[m.index], real[m.index] = int(s), int(r)
    for m in unread:
        synthetic[m.index] = share
    per_class = real_images / k
    rows = []
    for m in models:
        i = model.models.index(m) if m.readable else -1
        row = {"class": m.name, "generator_class": m.source, "real_images": per_class,
               "synthetic": synthetic[m.index], "worth": m.worth}
        if real_cost:
            row["real_to_label"] = real[m.index]
        if m.readable:
            low, high = _interval(m.worth_reps)
            gained = model.rate[i] * spent[i]
            row.update(worth_ci_low=low, worth_ci_high=high, reading=m.reading,
                       recall_now=float(recall(m.params, model.x(np.zeros(1)))[0]),
                       recall_planned=float(recall(m.params, model.x(np.array([gained])))[0]),
                       share="planned", beyond_measured=bool(model.x(np.array([gained]))[0] > m.sizes[1]))
        else:
            row.update(share="none" if m.source is None else "uniform", why=m.why)
        rows.append(row)
    counts = {}
    for m in models:
        if m.source is not None:
            counts[m.source] = synthetic[m.index]
    for name in own or []:
        counts.setdefault(name, 0)   # a class the study dropped (class_map: null): none planned
    if sum(counts.values()) < 1:
        raise PlanError("the plan asks for no synthetic image at all (labelling real images is the better buy for "
                        "every class); nothing to generate")
    readable = [m.name for m in model.models]
    if unread:
        notes.append(f"{len(unread)} class(es) have no readable curve or worth and get a uniform share of {share}: "
                     + "; ".join(f"{m.name}: {m.why}" for m in unread))
    diff = reps_plan - reps_uniform
    return json_ready({
        "kind": KIND, "format": FORMAT, "generator": generator, "class_counts": counts,
        **({"real_to_label": {m.name: real[m.index] for m in models}} if real_cost else {}),
        "total_images": int(sum(counts.values())),
        "classes": rows,
        "expected": {**_summary(point, reps_plan), "over_classes": readable,
                     "replicates": int(np.isfinite(reps_plan).sum()),
                     "without_synthetic": _summary(base, reps_base),
                     "uniform": {**_summary(point_uniform, reps_uniform), "per_class": int(total_cost // k)},
                     "gain_over_uniform": {"diff": point - point_uniform, "ci_low": _interval(diff)[0],
                                           "ci_high": _interval(diff)[1]}},
        "inputs": {"results": str(Path(results).resolve()), "study": study.name,
                   "results_fingerprint": study.fingerprint, "real_images": real_images, "classes": k,
                   "budget": ({"images": images} if seconds is None and target_accuracy is None else
                              {"seconds": seconds, "images": images} if seconds is not None else
                              {"target_accuracy": target_accuracy, "images": budget}),
                   "real_cost": real_cost, "seconds_per_image": per_image, "group": group.describe(),
                   "resamples": resamples, "budget_spent": total_cost},
        "method": METHOD, "notes": notes,
        "synthworth_version": __version__, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")})


def json_ready(value: Any) -> Any:
    """JSON without NaN or Infinity (which strict readers refuse): NaN -> null, inf -> "inf"."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


__all__ = ["make_plan", "json_ready", "recall", "Model", "METHOD", "CHUNKS"]
