"""The faces project's four conclusions, measured for a set of trained generator runs.

The source project judged by eye: (1) the diffusion faces look more real than the GAN's,
(2) the GAN stagnates while diffusion has not converged, (3) many diffusion faces are over- or
under-exposed, (4) diffusion cost far more to train. Each becomes a number with its uncertainty:

1. **closest to the real images**: FID/KID/precision/recall over ``draws`` independent sample
   draws (seeds ``seed + d * samples``) of each run of a model, next to the same metrics of real
   training images against the held-out ones (the floor, its interval over draws of real images).
   A model given as a folder of replicates (``train --replicates``) has K runs: each metric is the
   mean over its runs with a 95 % interval over the runs (draws nested inside them), and "closest"
   is a claim backed by a test between models over their runs (:mod:`synthworth.metrics.over_runs`).
   With one run the interval covers the sampling of images only, and the ranking is not tested;
2. **still improving or plateaued**: the change of the quality curve logged during training
   (``kind: eval`` rows of ``metrics.jsonl``, each evaluation the mean of its ``eval.draws``) over
   its last half, with a 95 % interval that allows for neighbouring evaluations being correlated
   (the runs as the unit when there are several), read against a tolerance
   (:mod:`synthworth.metrics.plateau`);
3. **exposure failures**: the share of samples whose brightness (mean pixel value) lies
   outside the range that holds 98 % of the real training images, with its Clopper-Pearson
   interval, compared with the held-out real images' share (Fisher's exact test, a bootstrap
   interval that re-estimates the range) and the range's coverage checked on the held-out
   images (:mod:`synthworth.metrics.exposure`);
4. **training cost**: seconds of training from ``metrics.jsonl`` (plus a latent model's VAE run)
   and the ratio to the cheapest model, by CPU time when every model trained on the CPU and
   recorded it, else by wall-clock time (:mod:`synthworth.metrics.cost`).

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
from synthworth.metrics.cost import cost_of_runs, cost_ratios, training_cost  # noqa: F401 (training_cost: API)
from synthworth.metrics.exposure import range_coverage, versus_heldout
from synthworth.metrics.over_runs import closest, over_runs, t_interval
from synthworth.metrics.plateau import (  # noqa: F401 (API: the plateau finding lives there)
    EVAL_SETTINGS, LOWER_IS_BETTER, _plateau_of, eval_points, plateau, plateau_of_runs)

KEPT = ("fid", "kid", "precision", "recall", "density", "coverage")


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


# ------------------------------------------------------------------------------ quality
# Where a metric can lie: a t interval over a few draws can reach past it, and is cut there.
BOUNDS = {"fid": (0.0, None), "precision": (0.0, 1.0), "recall": (0.0, 1.0), "density": (0.0, None),
          "coverage": (0.0, 1.0)}


def interval(values: list[float | None], bounds: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """Mean and Student-t 95 % interval of ``values`` (the finite ones), values kept; the
    interval is cut at ``bounds``, the range the metric can take."""
    return t_interval(values, bounds)


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


def _open_generators(runs: dict[str, Path], dataset) -> dict[str, list[tuple[Any, Any]]]:
    """Each model's (replicate, generator) pairs: every run of a replicates folder, else the one."""
    from synthworth.engine.replicates import is_replicates, members
    from synthworth.generators import load_generator

    opened = {}
    for name, path in runs.items():
        opened[name] = []
        for replicate in members(path):
            where = f"--run {name}={path}" + (f" ({replicate.name})" if is_replicates(path) else "")
            try:
                gen = load_generator(replicate.path)
            except SynthworthError as exc:
                raise SynthworthError(f"{where}: {exc}") from None
            if (gen.resolution, gen.channels) != (dataset.resolution, dataset.channels):
                raise SynthworthError(f"{where} makes {gen.resolution}x{gen.resolution}x{gen.channels} images but "
                                      f"the real Dataset holds {dataset.resolution}x{dataset.resolution}x"
                                      f"{dataset.channels}: compare generators trained on this Dataset")
            opened[name].append((replicate, gen))
    return opened


def _flat(runs: dict[str, Path], opened: dict[str, list]) -> tuple[dict[str, Path], dict[str, Any]]:
    """One entry per run (``NAME (seed-N)`` for a replicate), for the checks made run by run."""
    paths, gens = {}, {}
    for name, pairs in opened.items():
        for replicate, gen in pairs:
            label = name if len(pairs) == 1 and replicate.path == runs[name] else f"{name} ({replicate.name})"
            paths[label], gens[label] = replicate.path, gen
    return paths, gens


def measure_model(path: Path, pairs: list[tuple[Any, Any]], draw, low: float, high: float,
                  real_shades: tuple[np.ndarray, np.ndarray, int]) -> dict[str, Any]:
    """One model's findings from its runs: each run's draws (``draw(generator)``: quality over
    draws and each draw's brightness), exposure, plateau and cost; then each quality metric over
    the runs (:func:`synthworth.metrics.over_runs.over_runs`), the exposure and the plateau of all
    runs together and the mean cost of a run. ``replicates`` keeps every run's own numbers.
    ``real_shades``: the brightness of the real training and held-out images and the seed, for
    the exposure's comparison with held-out images (:mod:`synthworth.metrics.exposure`)."""
    reps = []
    for replicate, gen in pairs:
        quality, shades = draw(gen)
        reps.append({"name": replicate.name, "seed": replicate.seed, "run": str(replicate.path), "quality": quality,
                     "exposure": exposure(np.concatenate(shades), low, high), "plateau": _plateau_of(replicate.path),
                     "cost": cost_of_runs([replicate.path]), "shades": shades})
    gen = pairs[0][1]
    all_shades = [s for r in reps for s in r.pop("shades")]
    pooled = exposure(np.concatenate(all_shades), low, high)
    pooled["versus_heldout"] = versus_heldout(all_shades, real_shades[0], real_shades[1], seed=real_shades[2])
    if len(reps) > 1:  # the share's interval over the runs (each run drew as many samples)
        over = t_interval([r["exposure"]["share"] for r in reps], (0.0, 1.0))
        pooled.update(low=over["low"], high=over["high"])
    pooled["covers"] = "runs" if len(reps) > 1 else "sampling"
    cost = cost_of_runs([r["run"] for r in reps])
    return {"kind": gen.kind, "run": str(path), "runs": len(reps), "seeds": [r["seed"] for r in reps],
            "epochs": cost.pop("epochs"), "steps": cost.pop("steps"), "pairing": _pairing(reps),
            "labels": (f"evenly over its {len(gen.class_names)} classes ({', '.join(gen.class_names)})"
                       if gen.conditional else None),
            "quality": {m: over_runs([r["quality"][m]["values"] for r in reps], BOUNDS.get(m, (None, None)))
                        for m in KEPT},
            "plateau": _plateau_over(reps), "exposure": pooled, "cost": cost,
            "replicates": reps}


def _plateau_over(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """The plateau of one run, or of several runs of one recipe with the runs as the unit
    (:func:`synthworth.metrics.plateau.plateau_of_runs`), each run's own status beside it."""
    if len(reps) == 1:
        return dict(reps[0]["plateau"])
    result = plateau_of_runs([r["run"] for r in reps], "fid")
    result["replicates"] = {r["name"]: r["plateau"]["status"] for r in reps}
    return result


def _pairing(reps: list[dict[str, Any]]) -> str | None:
    """What the seed of these runs fed that another model's runs may share: the Dataset and the
    batch size (so a seed gave the same order of training images), when every run recorded both
    and they agree; None otherwise (a model's runs then never pair with another's)."""
    import yaml

    from synthworth.metrics.cost import run_folder
    from synthworth.metrics.trained_on import recorded_data

    found = set()
    for r in reps:
        run, data = run_folder(r["run"]), recorded_data(Path(r["run"]))
        try:
            config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError):
            return None
        batch = ((config or {}).get("train") or {}).get("batch_size") if isinstance(config, dict) else None
        if data is None or not isinstance(batch, int):
            return None
        found.add(f"{data['fingerprint']}:{data.get('split')}:{batch}")
    return found.pop() if len(found) == 1 else None


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
    data_warnings = check_trained_on(*_flat(runs, generators), dataset, real, reference_split, allow_other_real)

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
        def draw(gen):
            if device != "cpu" and hasattr(gen, "to"):
                gen.to(device)
            labels = np.arange(samples) % len(gen.class_names) if gen.conditional else None
            return quality_draws(gen, extractor, reference_features, draws=draws, samples=samples, seed=seed,
                                 options=options, batch_size=config.batch_size, labels=labels)

        models: dict[str, Any] = {}
        for name, pairs in generators.items():
            say(f"{name}: {len(pairs)} run(s), {draws} draws of {samples} samples each")
            models[name] = measure_model(runs[name], pairs, draw, low, high,
                                         (shade[train_split], shade[reference_split], seed))
            if pairs[0][1].kind == "ldm":  # why its samples may be blobs (metrics.ldm_diagnosis); its first run
                from synthworth.metrics.ldm_diagnosis import diagnose

                models[name]["autoencoder"] = diagnose(pairs[0][0].path, models[name]["quality"]["fid"]["mean"],
                                                       extractor.label)
        say("real-vs-real floor")
        floor = floor_draws(extractor, train, reference_features, draws=draws, samples=samples, seed=seed,
                            options=options, batch_size=config.batch_size)
        floor["covers"] = "sampling"  # real images: no training run to repeat, only the draws vary
        cost_ratios({n: m["cost"] for n, m in models.items()})  # by CPU time where every model has it
        test = closest({n: {**m["quality"]["fid"], "seeds": m["seeds"], "pairing": m["pairing"]}
                        for n, m in models.items()})
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
                               "heldout_share": heldout["share"], "heldout_n": heldout["n"],
                               "check": range_coverage(shade[train_split], shade[reference_split], seed=seed)},
            "models": models, "closest": test["best"] if test else None, "closest_test": test,
            "warnings": data_warnings}
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
