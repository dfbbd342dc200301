"""Image quality measured while a generator trains (the ``eval`` group of a generator config).

Whoever starts a training hands the engine a :class:`QualityHook` (:func:`training_hooks`).
After every ``eval.every``-th epoch (and the last), it asks the task for a generator over
its current weights (a diffusion model's EMA weights, as exported), draws ``eval.samples``
images from fixed seeds (``eval.draws`` times, from consecutive seeds, each draw logged), and
scores them against the held-out real images of the training Dataset with exactly the
functions of ``synthworth metrics`` (same features, same options, same real-vs-real floor), so
a logged number can be checked by hand: generate the same seeds from the model and run
``synthworth metrics`` on them. The row lands in ``metrics.jsonl`` (kind ``eval``) and
TensorBoard (``eval/*``) with the training seconds so far, which never include evaluation,
grids, plots or checkpoint saving.

The extractor and the real features are built once, before training starts. Domain features
(a classifier trained on the real training split) are trained in a separate process when they
are not cached yet: training them here would reset the random state and accelerate's global
state of the generator's own run.
"""

from __future__ import annotations

import math
import random
import sys
import time
from contextlib import contextmanager
from typing import Any

import numpy as np

from synthworth.data.dataset import Dataset
from synthworth.engine.config import EvalConfig, TrainConfig
from synthworth.engine.run import RunFolder
from synthworth.engine.task import StepContext, Task, TrainingHook
from synthworth.errors import ConfigError
from synthworth.metrics.findings import brightness

HELD_OUT = ("test", "valid", "validation")
MIN_REFERENCE = 12     # the floor's two halves need dc_k + 1 = 6 images each
BRIGHTNESS_CAP = 10_000  # real training images whose brightness sets the exposure range (a seeded draw)


def brightness_range(dataset: Dataset, coverage: float = 0.98, cap: int = BRIGHTNESS_CAP) -> tuple[float, float]:
    """The central ``coverage`` range of the brightness of ``dataset``'s images (percentiles 1 and
    99 for 98 %), over at most ``cap`` of them (a seeded draw)."""
    n = len(dataset)
    idx = np.arange(n) if n <= cap else np.sort(np.random.default_rng(0).choice(n, cap, replace=False))
    values = np.concatenate([brightness(dataset.take(idx[i:i + 1024])) for i in range(0, len(idx), 1024)])
    tail = 100 * (1 - coverage) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def held_out_split(dataset: Dataset, asked: str | None, train_split: str) -> str:
    """The split evaluation compares with; a clear error when the Dataset has none to offer."""
    splits = dataset.split_names
    if asked is not None:
        if asked not in splits:
            raise ConfigError(f"eval.real_split {asked!r}: the Dataset {dataset.path} has the splits "
                              f"{', '.join(splits)}; choose one of them")
        return asked
    for name in HELD_OUT:
        if name in splits and name != train_split:
            return name
    raise ConfigError(f"eval needs held-out real images, but the Dataset {dataset.path} has only the "
                      f"split(s) {', '.join(splits)}: prepare it again with a test split (synthworth data "
                      f"prepare ... --test-fraction 0.2), or set eval.real_split={train_split} to compare "
                      "with the training images themselves")


class QualityTracker:
    """Scores a generator's samples against the held-out real images of its training Dataset."""

    def __init__(self, config: EvalConfig, dataset: Dataset, train_split: str):
        from synthworth.metrics.compute import MetricsConfig, _pick

        self.config = config
        self.split = held_out_split(dataset, config.real_split, train_split)
        self.metrics = MetricsConfig(features=config.features, inception_weights=config.inception_weights,
                                     dinov2_weights=config.dinov2_weights, real_split=self.split)
        self.dataset = dataset
        self.reference = _pick(dataset, self.split, self.metrics.max_images, self.metrics.seed)
        if len(self.reference) < MIN_REFERENCE:
            raise ConfigError(f"eval: the {self.split!r} split has {len(self.reference)} images; the real-vs-real "
                              f"floor needs at least {MIN_REFERENCE} (prepare the Dataset with a larger test split)")
        self.train_split = train_split
        self.extractor = None
        if self.split == train_split:  # allowed (a Dataset without a test split), but never silently
            print(f"synthworth: warning: eval.real_split={self.split}: quality is measured against the training "
                  "images themselves, not held-out ones (a model that memorises them scores best)",
                  file=sys.stderr, flush=True)

    def due(self, epoch: int, last_epoch: int) -> bool:
        every = self.config.every
        return bool(every) and (epoch % every == 0 or epoch == last_epoch)

    def prepare(self) -> None:
        """Build the extractor, the real features, the floor and the brightness range (once)."""
        from synthworth.metrics.compute import make_extractor, metric_options, real_floor
        from synthworth.metrics.features import extract_features

        if self._resolves_to_domain():
            from synthworth.metrics.features import check_domain_classes

            real_train = self.dataset.split("train") if "train" in self.dataset.split_names else self.dataset
            check_domain_classes(real_train)
        if self._resolves_to_domain() and self.dataset.path is not None:
            _in_own_process(_warm_domain_cache, self.metrics.model_dump(), str(self.dataset.path))
        self.extractor = make_extractor(self.metrics, self.dataset)
        self.options = metric_options(self.metrics)
        self.real_features = extract_features(self.extractor, self.reference, self.metrics.batch_size)
        floor = real_floor(self.real_features, self.real_features, self.options)
        self.floor = {k: v for k, v in floor.items() if k != "fid_half_n"}
        self.range = brightness_range(self.dataset.split(self.train_split))

    def _resolves_to_domain(self) -> bool:
        from synthworth.metrics.features import find_inception_weights

        features = self.config.features
        return features == "domain" or (features == "auto" and find_inception_weights(self.config.inception_weights) is None)

    def evaluate(self, generator) -> dict[str, Any]:
        """One evaluation row (without step, epoch and times): the metrics of ``eval.samples``
        images of ``generator`` drawn from the fixed seeds. With ``eval.draws`` D > 1, draw d
        takes the seeds from ``seed + d * samples`` (as ``synthworth compare`` draws), each metric
        is the mean over the draws and ``<metric>_draws`` lists every draw's value."""
        from synthworth.metrics.features import extract_features
        from synthworth.metrics.scores import score_features

        c = self.config
        labels = None
        if getattr(generator, "conditional", False):  # every class in turn, as 'synthworth generate --count' does
            labels = np.arange(c.samples) % len(generator.class_names)
        per_draw, values = [], []
        with _random_state_kept():
            for d in range(c.draws):
                images = generator.sample(c.samples, labels, seed=c.seed + d * c.samples, batch_size=c.batch_size)
                fake = Dataset.from_arrays(images, np.zeros(len(images), np.int64), ["generated"])
                per_draw.append(score_features(self.real_features, extract_features(self.extractor, fake,
                                                                                   self.metrics.batch_size),
                                               **self.options))
                values.append(brightness(images))
        value = np.concatenate(values)
        outside = float(np.mean((value < self.range[0]) | (value > self.range[1])))
        scores = per_draw[0]
        if c.draws > 1:
            scores = {k: float(np.mean([s[k] for s in per_draw])) for k in per_draw[0]}
            scores.update({f"{k}_draws": [s[k] for s in per_draw] for k in per_draw[0] if k != "kid_std"})
        row = {"samples": c.samples, "seed": c.seed, "draws": c.draws, "features": self.extractor.kind,
               "features_label": self.extractor.label, "real_split": self.split,
               "real_images": len(self.reference), **scores, **self.floor, "brightness_outside": outside}
        return {k: _finite_or_none(v) for k, v in row.items()}


def _finite_or_none(value: Any) -> Any:
    """NaN and infinities as None (JSON has none), also inside a list of draws."""
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_evaluation(tracker: QualityTracker, task, accelerator) -> dict[str, Any]:
    """Evaluate the task's current generator; a failure becomes a row with its reason (training
    goes on: a diverging sample must not cost the run)."""
    t0 = time.perf_counter()
    try:
        row = task.evaluation_generator(accelerator, tracker.evaluate)
    except (ValueError, RuntimeError, ArithmeticError) as exc:
        row = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
    row["eval_s"] = round(time.perf_counter() - t0, 3)
    return row


class QualityHook(TrainingHook):
    """Quality tracking handed to the engine's training loop (see the module docstring): the
    tracker is built in every process before the run folder is locked, prepared on the main one,
    and evaluates after every ``eval.every``-th epoch and the last."""

    def __init__(self, config: EvalConfig):
        self.config = config
        self.tracker: QualityTracker | None = None

    def before_training(self, dataset: Dataset, config: TrainConfig, main: bool) -> None:
        self.tracker = QualityTracker(self.config, dataset, config.split)
        if main:
            self.tracker.prepare()

    def after_epoch(self, task: Task, ctx: StepContext, train_seconds: float, stopped: bool) -> None:
        # train.max_steps ending the run at this epoch's end makes it the last epoch too
        if stopped or self.tracker.due(ctx.epoch + 1, ctx.config.epochs):
            _evaluate(self.tracker, task, ctx.accelerator, ctx.run, ctx.epoch + 1, ctx.global_step, train_seconds)


def training_hooks(config: Any) -> list[TrainingHook]:
    """The hooks a training with the model config ``config`` gets: quality tracking when its
    ``eval`` group asks for evaluation during training (generators' ``eval.every``), else none."""
    evaluation = getattr(config, "eval", None)
    if not isinstance(evaluation, EvalConfig) or not evaluation.every:  # an autoencoder's: metrics.reconstruction
        return []
    return [QualityHook(evaluation)]


def _evaluate(tracker, task: Task, accelerator, run: RunFolder, epoch: int, global_step: int,
              train_seconds: float) -> None:
    """One quality evaluation, logged to metrics.jsonl (kind "eval") and TensorBoard."""
    row = {"step": global_step, "epoch": epoch, "kind": "eval", "train_s": round(train_seconds, 3),
           **run_evaluation(tracker, task, accelerator)}
    run.append_metrics([row])
    if "error" in row:
        run.log(f"evaluation after epoch {epoch} failed: {row['error']}")
        return
    shown = ", ".join(f"{k} {row[k]:.4g}" if isinstance(row.get(k), (int, float)) else f"{k} not finite"
                      for k in ("fid", "kid", "precision", "recall"))
    run.log(f"evaluation after epoch {epoch}: {shown} ({row['samples']} samples, {row['features']} features)")
    shown = {f"eval/{k}": v for k, v in row.items()
             if k in ("fid", "kid", "precision", "recall", "density", "coverage", "brightness_outside")
             and isinstance(v, (int, float))}
    accelerator.log(shown, step=global_step)


@contextmanager
def _random_state_kept():
    """Evaluation draws from its own seeded generators, but a library may touch the global ones:
    keep torch's, numpy's and Python's random state exactly as training left them."""
    import torch

    np_state, py_state = np.random.get_state(), random.getstate()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def _warm_domain_cache(metrics: dict, dataset_path: str) -> None:
    """Train (or find) the domain extractor in this separate process, so it is cached."""
    from synthworth.metrics.compute import MetricsConfig, make_extractor

    make_extractor(MetricsConfig(**metrics), Dataset.open(dataset_path))


def _in_own_process(fn, *args) -> None:
    from synthworth.procs import WorkerProcess

    worker = WorkerProcess()
    finished = False
    try:
        worker.submit(fn, *args).result()
        finished = True
    finally:
        worker.stop(kill=not finished)
