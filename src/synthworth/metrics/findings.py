"""The faces project's four conclusions, measured for a set of trained generator runs.

The source project judged by eye: (1) the diffusion faces look more real than the GAN's,
(2) the GAN stagnates while diffusion has not converged, (3) many diffusion faces are over- or
under-exposed, (4) diffusion cost far more to train. Each becomes a number with its uncertainty:

1. **closest to the real images**: FID/KID/precision/recall over ``draws`` independent sample
   draws (seeds ``seed + d * samples``), mean and Student-t 95 % interval, next to the same
   metrics of real training images against the held-out ones (the floor);
2. **still improving or plateaued**: a least-squares line through the last half of the quality
   curve logged during training (``kind: eval`` rows of ``metrics.jsonl``), its slope's 95 %
   interval turned into a relative change over that span and read against a tolerance;
3. **exposure failures**: the share of samples whose brightness (mean pixel value) lies
   outside the range that holds 98 % of the real training images, with its Clopper-Pearson
   interval, against the held-out real images' own share;
4. **training cost**: seconds of training from ``metrics.jsonl`` (plus a latent model's VAE run)
   and the ratio to the cheapest model.

:func:`compare_generators` (``synthworth compare``) does all four and writes ``findings.json``
(the shared contract's format, read by the report) and ``findings.csv`` (one row per model).
The sentences, the terminal table and the CSV rows live in :mod:`synthworth.metrics.findings_text`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from synthworth.errors import SynthworthError
from synthworth.metrics.cost import read_rows, run_folder, training_cost  # noqa: F401 (training_cost: API)

KEPT = ("fid", "kid", "precision", "recall", "density", "coverage")
LOWER_IS_BETTER = {"fid", "kid"}


# ------------------------------------------------------------------------------ exposure
def brightness(images: np.ndarray) -> np.ndarray:
    """Mean uint8 pixel value of each image over height, width and channels (0..255), float64."""
    images = np.asarray(images)
    if images.ndim < 2:
        raise SynthworthError(f"brightness needs a batch of images, got shape {images.shape}")
    return images.reshape(len(images), -1).mean(axis=1, dtype=np.float64)


def _as_brightness(images_or_values: np.ndarray) -> np.ndarray:
    values = np.asarray(images_or_values)
    return values.astype(np.float64) if values.ndim == 1 else brightness(values)


def real_range(train_images: np.ndarray, coverage: float = 0.98) -> tuple[float, float]:
    """The central ``coverage`` range of the real training images' brightness: numpy's linear
    percentiles at (1 - coverage) / 2 and 1 - (1 - coverage) / 2 (1st and 99th for 0.98).
    ``train_images`` may also be their brightness already (a 1-D array)."""
    values = _as_brightness(train_images)
    if len(values) == 0:
        raise SynthworthError("the real range needs at least one training image")
    tail = (1 - coverage) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def exposure(samples: np.ndarray, low: float, high: float) -> dict[str, Any]:
    """Share of ``samples`` (images, or their brightness) darker than ``low`` or brighter than
    ``high``, its exact (Clopper-Pearson) 95 % interval, and the dark and bright shares."""
    from scipy.stats import binomtest

    values = _as_brightness(samples)
    n = len(values)
    dark, bright = int((values < low).sum()), int((values > high).sum())
    if n == 0:
        return {"share": None, "low": None, "high": None, "dark": None, "bright": None, "n": 0,
                "dark_count": 0, "bright_count": 0}
    ci = binomtest(dark + bright, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"share": (dark + bright) / n, "low": float(ci.low), "high": float(ci.high),
            "dark": dark / n, "bright": bright / n, "n": n, "dark_count": dark, "bright_count": bright}


# ------------------------------------------------------------------------------ plateau
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


# ------------------------------------------------------------------------------ quality
# Where a metric can lie: a t interval over a few draws can reach past it, and is cut there.
BOUNDS = {"fid": (0.0, None), "precision": (0.0, 1.0), "recall": (0.0, 1.0), "density": (0.0, None),
          "coverage": (0.0, 1.0)}


def interval(values: list[float | None], bounds: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """Mean and Student-t 95 % interval of ``values`` (the finite ones), values kept; the
    interval is cut at ``bounds``, the range the metric can take."""
    from scipy.stats import t

    kept = [float(v) if v is not None and math.isfinite(v) else None for v in values]
    finite = np.array([v for v in kept if v is not None])
    out: dict[str, Any] = {"mean": float(finite.mean()) if len(finite) else None, "low": None, "high": None,
                           "values": kept}
    if len(finite) >= 2:
        half = t.ppf(0.975, len(finite) - 1) * finite.std(ddof=1) / math.sqrt(len(finite))
        low, high = float(finite.mean() - half), float(finite.mean() + half)
        out["low"] = low if bounds[0] is None else max(low, bounds[0])
        out["high"] = high if bounds[1] is None else min(high, bounds[1])
    return out


def _check_draws(draws: int, samples: int) -> None:
    if draws < 2:
        raise SynthworthError(f"--draws {draws}: at least 2 draws are needed for an interval over draws")
    if samples < 4:
        raise SynthworthError(f"--samples {samples}: at least 4 samples per draw are needed")


def _summarise(per_draw: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    return {name: interval([d.get(name) for d in per_draw], BOUNDS.get(name, (None, None))) for name in KEPT}


def quality_draws(generator, extractor, reference_features: np.ndarray, *, draws: int, samples: int, seed: int,
                  options: dict[str, Any], batch_size: int = 256, labels: np.ndarray | None = None,
                  progress: bool = False) -> tuple[dict[str, dict[str, Any]], list[np.ndarray]]:
    """Score ``draws`` independent draws of ``samples`` images (draw d from seed ``seed + d *
    samples``, so no image is drawn twice) against the reference features; per metric the mean,
    the Student-t 95 % interval and the values, and each draw's image brightness.
    ``labels``: for a conditional generator, the label of each of the ``samples`` images."""
    from synthworth.data.dataset import Dataset
    from synthworth.metrics.features import extract_features
    from synthworth.metrics.scores import score_features

    _check_draws(draws, samples)
    per_draw, shades = [], []
    for d in range(draws):
        images = generator.sample(samples, labels=labels, seed=seed + d * samples)
        fake = Dataset.from_arrays(images, np.zeros(len(images)), ["generated"])
        features = extract_features(extractor, fake, batch_size, progress)
        per_draw.append(score_features(reference_features, features, **options))
        shades.append(brightness(images))
    return _summarise(per_draw), shades


def floor_draws(extractor, train, reference_features: np.ndarray, *, draws: int, samples: int, seed: int,
                options: dict[str, Any], batch_size: int = 256, progress: bool = False) -> dict[str, Any]:
    """The real-vs-real floor over draws: ``draws`` random subsets of ``samples`` real training
    images (a Dataset; without replacement; all of them when there are no more than ``samples``)
    scored against the reference features, as :func:`quality_draws` scores a generator."""
    from synthworth.metrics.features import extract_features
    from synthworth.metrics.scores import score_features

    _check_draws(draws, samples)
    n = len(train)
    rng = np.random.default_rng(seed)
    picks = [np.arange(n) if samples >= n else np.sort(rng.choice(n, samples, replace=False)) for _ in range(draws)]
    needed = np.unique(np.concatenate(picks))  # features of each drawn image, computed once
    features = extract_features(extractor, train.select(needed), batch_size, progress)
    position = {int(i): k for k, i in enumerate(needed)}
    per_draw = [score_features(reference_features, features[[position[int(i)] for i in pick]], **options)
                for pick in picks]
    out: dict[str, Any] = _summarise(per_draw)
    out["images"] = min(samples, n)
    out["note"] = (f"all {n} real training images in every draw ({samples} samples were asked), so the draws "
                   "do not vary and the floor's interval has no width" if samples >= n else None)
    return out


# ------------------------------------------------------------------------------ compare
def _check_real(dataset, real: Path, reference_split: str, train_split: str) -> None:
    """Both splits exist and differ; the advice names a split it has or how to make one."""
    from synthworth.errors import DataError

    have = dataset.split_names
    for flag, split, other in (("--real-split", reference_split, train_split),
                               ("--train-split", train_split, reference_split)):
        if split in have and split != other:
            continue
        usable = [s for s in have if s != other]
        advice = (f"pass {flag} {usable[0]}" if usable else
                  "prepare it again with a held-out split, e.g. 'synthworth data prepare ... --test-fraction 0.2'")
        problem = (f"has no {split!r} split (it has: {', '.join(have)})" if split not in have else
                   f"would use its {split!r} split both for training images and as the held-out reference")
        raise DataError(f"the real Dataset {real} {problem}: {advice}")


def _open_generators(runs: dict[str, Path], dataset) -> dict[str, Any]:
    from synthworth.generators import load_generator

    opened = {}
    for name, path in runs.items():
        try:
            gen = load_generator(path)
        except SynthworthError as exc:
            raise SynthworthError(f"--run {name}={path}: {exc}") from None
        if (gen.resolution, gen.channels) != (dataset.resolution, dataset.channels):
            raise SynthworthError(f"--run {name}={path} makes {gen.resolution}x{gen.resolution}x{gen.channels} "
                                  f"images but the real Dataset holds {dataset.resolution}x{dataset.resolution}x"
                                  f"{dataset.channels}: compare generators trained on this Dataset")
        opened[name] = gen
    return opened


# The comparison's page inside its output folder (written by 'synthworth compare' after the findings).
PAGE = Path("report") / "index.html"


def compare_generators(runs: dict[str, Path], real: Path, out: Path, *, reference_split: str = "test",
                       train_split: str = "train", draws: int = 5, samples: int | None = None, seed: int = 0,
                       metrics=None, cache_dir: str | Path | None = None, progress: bool = False,
                       allow_other_real: bool = False) -> dict[str, Any]:
    """Measure the four findings for the generator ``runs`` ({name: run or model folder}) against
    the real Dataset ``real``; write ``out/findings.json`` and ``out/findings.csv`` (``out`` is a
    synthworth output of kind ``compare``) and return the findings.

    Every input is checked before any work. A conditional generator samples its labels evenly
    over its classes (image i gets class i mod the number of classes), noted in its findings. A
    generator trained on another Dataset than ``real`` is refused unless ``allow_other_real``
    (:mod:`synthworth.metrics.trained_on`); the findings' ``warnings`` say so."""
    import sys

    import torch

    from synthworth import safety
    from synthworth.data.dataset import Dataset
    from synthworth.metrics import findings_text
    from synthworth.metrics.compute import MetricsConfig, make_extractor
    from synthworth.metrics.features import extract_features
    from synthworth.metrics.trained_on import check_trained_on

    config = metrics or MetricsConfig()
    out, real = Path(out), Path(real)
    runs = {name: Path(path) for name, path in runs.items()}
    if not runs:
        raise SynthworthError("give at least one generator run: --run NAME=PATH")
    safety.check_apart(out, [real, *runs.values()])
    safety.check_replaceable(out, "compare")
    dataset = Dataset.open(real)
    _check_real(dataset, real, reference_split, train_split)
    train, reference = dataset.split(train_split), dataset.split(reference_split)
    samples = samples if samples is not None else min(len(train), 1000)
    _check_draws(draws, samples)
    needed = max(config.pr_k, config.dc_k) + 1  # the nearest-neighbour metrics' least set size
    if samples < needed:
        raise SynthworthError(f"--samples {samples}: precision/recall (k={config.pr_k}) and density/coverage "
                              f"(k={config.dc_k}) need at least {needed} samples per draw")
    if len(reference) < needed:
        raise SynthworthError(f"the {reference_split!r} split of {real} holds {len(reference)} images; the metrics "
                              f"need at least {needed}: prepare it again with a larger --test-fraction")
    generators = _open_generators(runs, dataset)
    data_warnings = check_trained_on(runs, generators, dataset, real, reference_split, allow_other_real)

    def say(message: str) -> None:
        if progress:
            print(f"compare: {message}", file=sys.stderr, flush=True)

    device = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    options = {k: getattr(config, k) for k in ("kid_subset_size", "kid_subsets", "pr_k", "dc_k", "seed")}
    say("feature extractor")
    extractor = make_extractor(config, dataset, cache_dir)
    with safety.output_lock(out, what="the comparison"):
        reference_features = extract_features(extractor, reference, config.batch_size, progress)
        shade = {split: np.concatenate([brightness(b) for b, _ in view.batches(config.batch_size, shuffle=False)])
                 for split, view in ((train_split, train), (reference_split, reference))}
        low, high = real_range(shade[train_split])
        heldout = exposure(shade[reference_split], low, high)
        models: dict[str, Any] = {}
        for name, gen in generators.items():
            say(f"{name}: {draws} draws of {samples} samples")
            if device != "cpu" and hasattr(gen, "to"):
                gen.to(device)
            labels = np.arange(samples) % len(gen.class_names) if gen.conditional else None
            quality, shades = quality_draws(gen, extractor, reference_features, draws=draws, samples=samples,
                                            seed=seed, options=options, batch_size=config.batch_size, labels=labels)
            cost = training_cost(runs[name])
            models[name] = {
                "kind": gen.kind, "run": str(runs[name]), "epochs": cost.pop("epochs"), "steps": cost.pop("steps"),
                "labels": (f"evenly over its {len(gen.class_names)} classes ({', '.join(gen.class_names)})"
                           if gen.conditional else None),
                "quality": quality, "plateau": _plateau_of(runs[name], "fid"),
                "exposure": exposure(np.concatenate(shades), low, high), "cost": cost}
            if gen.kind == "ldm":  # why its samples may be blobs (metrics.ldm_diagnosis)
                from synthworth.metrics.ldm_diagnosis import diagnose

                models[name]["autoencoder"] = diagnose(runs[name], quality["fid"]["mean"], extractor.label)
        say("real-vs-real floor")
        floor = floor_draws(extractor, train, reference_features, draws=draws, samples=samples, seed=seed,
                            options=options, batch_size=config.batch_size)
        totals = {n: m["cost"]["total_seconds"] for n, m in models.items() if m["cost"]["total_seconds"]}
        for m in models.values():
            total = m["cost"]["total_seconds"]
            m["cost"]["ratio"] = total / min(totals.values()) if total and totals else None
        fids = {n: m["quality"]["fid"]["mean"] for n, m in models.items() if m["quality"]["fid"]["mean"] is not None}
        findings = {
            "version": 1,
            "real": {"path": str(real), "fingerprint": dataset.fingerprint, "train_split": train_split,
                     "train_images": len(train), "reference_split": reference_split,
                     "reference_images": len(reference)},
            "features": extractor.kind, "features_label": extractor.label,
            **({"features_source": extractor.source} if extractor.source else {}),
            "draws": draws, "samples": samples, "seed": seed, "floor": floor,
            "exposure_range": {"low": low, "high": high, "coverage": 0.98,
                               "from": f"the {len(train)} real {train_split!r} images",
                               "heldout_share": heldout["share"], "heldout_n": heldout["n"]},
            "models": models, "closest": min(fids, key=fids.get) if fids else None, "warnings": data_warnings}
        findings_text.add_sentences(findings)
        write_findings(findings, out)
    return json.loads(json.dumps(clean(findings)))


def clean(value: Any) -> Any:
    """``value`` with NaN and infinities as None and numpy scalars as Python numbers (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_findings(findings: dict[str, Any], out: Path) -> None:
    """``out/findings.json`` and ``out/findings.csv``, each written whole under a temporary name
    and renamed; ``out`` is marked as a synthworth ``compare`` output listing both.

    The previous comparison's findings and page (``out/report/index.html``, see :data:`PAGE`) are
    removed first: a run killed before its own page is written leaves its findings alone, never
    beside another comparison's page (or the other file of another comparison)."""
    import os

    from synthworth import safety
    from synthworth.metrics.findings_text import csv_text

    out.mkdir(parents=True, exist_ok=True)
    safety.mark_owned(out, "compare", ["findings.json", "findings.csv", "report"])  # first: a kill leaves it ours
    data = clean(findings)
    texts = {"findings.json": json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False),
             "findings.csv": csv_text(data)}
    safety.remove_page(out / PAGE)
    for name in texts:
        (out / name).unlink(missing_ok=True)  # this compare folder's own (checked before any work)
    for name, text in texts.items():
        tmp = out / f".{name}.{os.getpid()}.part"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)


def format_findings(findings: dict[str, Any]) -> str:
    """A terminal table of the findings, then their sentences."""
    from synthworth.metrics.findings_text import format_table

    lines = [f"{name}: " + "; ".join(m["autoencoder"].get("statements") or [])
             for name, m in (findings.get("models") or {}).items()
             if isinstance(m, dict) and isinstance(m.get("autoencoder"), dict)]
    return format_table(findings) + "".join(f"\n{line}" for line in lines)
