"""How well an autoencoder keeps its images, measured while it trains (``synthworth train vae``).

A latent diffusion model can draw no more than its autoencoder decodes: if reconstructions of
real faces are blurs, its samples will be too, however well the UNet learns. Whoever starts the
training hands the engine a :class:`ReconstructionHook` (:func:`reconstruction_hooks`, wired in
by :mod:`synthworth.train`). After the last epoch (and every ``eval.every`` epochs) it passes the
held-out images of the training Dataset through the autoencoder's current weights and logs one
``kind: "recon"`` row to ``metrics.jsonl``:

- ``psnr``: the mean over images of ``10 log10(255^2 / MSE)`` on uint8 pixels (dB; higher is
  closer; an exact copy is capped at 100 dB);
- ``recon_fid``: the FID of the reconstructions against their originals, on the features of
  ``synthworth metrics`` (same extractor, same options); ``recon_fid_half`` and
  ``fid_real_floor`` put it in scale: the reconstructions of one random half of the images
  against the other half's originals, and that half's originals against the other half's (the
  real-vs-real floor with as many images per side);
- ``latent_std`` and ``latent_std_per_channel``: the spread of the latents (posterior means),
  whose inverse is the scale factor a latent diffusion model on them should use
  (``latent_scale_suggested``).

A grid of held-out originals above their reconstructions is saved as
``samples/heldout-recon-epoch-NNN.png``.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np

from synthworth.data.dataset import Dataset
from synthworth.engine.config import TrainConfig
from synthworth.engine.run import RunFolder
from synthworth.engine.task import StepContext, Task, TrainingHook
from synthworth.errors import ConfigError, SynthworthError

PSNR_CAP = 100.0  # dB of an exact copy (its MSE is 0)
GRID_PREFIX = "heldout-recon-epoch-"


def psnr(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio of each uint8 image pair (n, H, W, C), in dB, capped at 100."""
    a = np.asarray(original, dtype=np.float64).reshape(len(original), -1)
    b = np.asarray(reconstruction, dtype=np.float64).reshape(len(reconstruction), -1)
    mse = ((a - b) ** 2).mean(axis=1)
    # Written out (one line of numpy): torchmetrics is not a dependency; 255 is the uint8 peak.
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(255.0 ** 2 / mse), PSNR_CAP)


def latent_spread(latents: np.ndarray) -> dict[str, Any]:
    """Standard deviation of latents (n, C, h, w) over every value and per channel, their mean,
    and the scale factor (1 / std) that brings them to unit variance."""
    z = np.asarray(latents, dtype=np.float64)
    std = float(z.std())
    return {"latent_std": std, "latent_mean": float(z.mean()),
            "latent_std_per_channel": [float(v) for v in z.transpose(1, 0, 2, 3).reshape(z.shape[1], -1).std(axis=1)],
            "latent_scale_suggested": 1.0 / std if std > 0 else None}


class ReconstructionTracker:
    """The held-out images, the feature extractor and the real features, built once; then one
    evaluation row per call of :meth:`evaluate`."""

    def __init__(self, config, dataset: Dataset, train_split: str):
        from synthworth.metrics.compute import MetricsConfig, _pick
        from synthworth.metrics.tracking import held_out_split

        self.config, self.dataset, self.warning = config, dataset, None
        try:
            self.split = held_out_split(dataset, config.real_split, train_split)
        except ConfigError:
            if config.real_split is not None:
                raise
            self.split = train_split  # a Dataset without a test split: still worth measuring, said aloud
            self.warning = (f"the Dataset has no held-out split: reconstructions of the {train_split!r} "
                            "(training) images are measured")
        self.reference = _pick(dataset, self.split, config.max_images, 0)
        self.features = None if config.features == "none" else config.features
        if self.features is not None:
            self.metrics = MetricsConfig(features=config.features, inception_weights=config.inception_weights,
                                         dinov2_weights=config.dinov2_weights, real_split=self.split,
                                         max_images=config.max_images)
        self.extractor, self.skipped = None, None

    def prepare(self) -> None:
        """Build the extractor and the real features (on the main process). ``features: auto``
        on a Dataset a domain extractor cannot learn from (one class) leaves the FID out, with
        the reason in every row; features asked for by name are refused then."""
        from synthworth.metrics.features import check_domain_classes, extract_features, find_inception_weights

        if self.warning:
            print(f"synthworth: warning: eval: {self.warning}", file=sys.stderr, flush=True)
        if self.features is None:
            self.skipped = "eval.features=none"
            return
        domain = self.features == "domain" or (self.features == "auto" and
                                               find_inception_weights(self.config.inception_weights) is None)
        if domain:
            real_train = self.dataset.split("train") if "train" in self.dataset.split_names else self.dataset
            try:
                check_domain_classes(real_train)
            except ConfigError as exc:
                if self.features != "auto":
                    raise
                self.skipped = ("no Inception weights were found and domain features need 2 or more classes; give "
                                "eval.features=RUN/model (a saved classifier) or eval.inception_weights=FILE")
                return
            if self.dataset.path is not None:
                from synthworth.metrics.tracking import _in_own_process, _warm_domain_cache

                _in_own_process(_warm_domain_cache, self.metrics.model_dump(), str(self.dataset.path))
        from synthworth.metrics.compute import make_extractor

        self.extractor = make_extractor(self.metrics, self.dataset)
        self.real_features = extract_features(self.extractor, self.reference, self.metrics.batch_size)
        if len(self.real_features) < 4:
            self.extractor, self.skipped = None, f"only {len(self.real_features)} images: too few for a FID"

    def evaluate(self, task, accelerator) -> tuple[dict[str, Any], np.ndarray]:
        """One row (without step, epoch and times) and the grid of originals above reconstructions."""
        from synthworth.metrics.scores import fid

        from synthworth.metrics.tracking import _random_state_kept

        originals = self.reference.take(np.arange(len(self.reference)))
        with _random_state_kept():
            recon, latents = task.reconstruct(accelerator, originals, self.config.batch_size)
        values = psnr(originals, recon)
        row: dict[str, Any] = {"real_split": self.split, "images": len(originals), "psnr": float(values.mean()),
                               "psnr_min": float(values.min()),
                               "mse": float(np.mean((originals.astype(np.float64) - recon) ** 2)),
                               **latent_spread(latents)}
        if self.warning:
            row["warning"] = self.warning
        if self.extractor is not None:
            from synthworth.metrics.features import extract_features

            fake = Dataset.from_arrays(recon, np.zeros(len(recon), np.int64), ["reconstruction"])
            ff = extract_features(self.extractor, fake, self.metrics.batch_size)
            fr = self.real_features
            order = np.random.default_rng(0).permutation(len(fr))
            a, b = order[:len(fr) // 2], order[len(fr) // 2:2 * (len(fr) // 2)]
            row.update(features=self.extractor.kind, features_label=self.extractor.label,
                       recon_fid=fid(fr, ff), recon_fid_half=fid(fr[a], ff[b]), fid_real_floor=fid(fr[a], fr[b]),
                       n_half=len(a))
        else:
            row["recon_fid_skipped"] = self.skipped
        shown = min(self.config.grid_count, len(originals))
        grid = np.concatenate([originals[:shown], recon[:shown]])
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}, grid


class ReconstructionHook(TrainingHook):
    """Reconstruction quality handed to the engine's loop (see the module docstring)."""

    def __init__(self, config):
        self.config = config
        self.tracker: ReconstructionTracker | None = None

    def before_training(self, dataset: Dataset, config: TrainConfig, main: bool) -> None:
        self.tracker = ReconstructionTracker(self.config, dataset, config.split)
        if main:
            self.tracker.prepare()

    def after_epoch(self, task: Task, ctx: StepContext, train_seconds: float, stopped: bool) -> None:
        epoch, every = ctx.epoch + 1, self.config.every
        if stopped or epoch >= ctx.config.epochs or (every and epoch % every == 0):
            log_reconstruction(self.tracker, task, ctx, epoch, train_seconds)


def log_reconstruction(tracker: ReconstructionTracker, task: Task, ctx: StepContext, epoch: int,
                       train_seconds: float) -> dict[str, Any]:
    """One evaluation: the row in metrics.jsonl (kind "recon"), TensorBoard, the log, the terminal
    and the grid. A failure becomes a row with its reason (the trained autoencoder is kept)."""
    from synthworth.engine.plots import save_grid

    run: RunFolder = ctx.run
    t0 = time.perf_counter()
    row: dict[str, Any] = {"step": ctx.global_step, "epoch": epoch, "kind": "recon", "train_s": round(train_seconds, 3)}
    try:
        found, grid = tracker.evaluate(task, ctx.accelerator)
        row.update(found)
        side = grid.shape[1]
        save_grid(grid, run.samples / f"{GRID_PREFIX}{epoch:03d}.png", nrow=len(grid) // 2, scale=max(1, 64 // side))
    except (ValueError, RuntimeError, ArithmeticError, SynthworthError) as exc:
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    row["eval_s"] = round(time.perf_counter() - t0, 3)
    run.append_metrics([row])
    message = f"reconstruction after epoch {epoch}: {describe(row)}"
    run.log(message)
    print(f"synthworth: {message}", file=sys.stderr, flush=True)
    ctx.accelerator.log({f"recon/{k}": row[k] for k in ("psnr", "recon_fid", "latent_std")
                         if isinstance(row.get(k), (int, float))}, step=ctx.global_step)
    return row


def describe(row: dict[str, Any]) -> str:
    """One line of a ``recon`` row: PSNR, reconstruction FID beside its floor, the latents' spread."""
    if "error" in row:
        return f"failed ({row['error']})"
    parts = [f"PSNR {row['psnr']:.2f} dB on {row['images']} {row['real_split']!r} images"]
    if isinstance(row.get("recon_fid"), (int, float)):
        parts.append(f"reconstruction FID {row['recon_fid']:.4g} ({row.get('n_half')} per side: "
                     f"{row['recon_fid_half']:.4g} vs real floor {row['fid_real_floor']:.4g}; {row['features']} features)")
    else:
        parts.append(f"no reconstruction FID ({row.get('recon_fid_skipped')})")
    per = ", ".join(f"{v:.3g}" for v in row.get("latent_std_per_channel") or [])
    parts.append(f"latent std {row['latent_std']:.4g} (per channel {per}; scale factor 1/std "
                 f"{row['latent_scale_suggested']:.4g})" if row.get("latent_scale_suggested") else
                 f"latent std {row.get('latent_std')}")
    return "; ".join(parts)


def reconstruction_hooks(config: Any) -> list[TrainingHook]:
    """The hooks an autoencoder training with ``config`` (a VAEConfig) gets: reconstruction
    quality unless its ``eval.enabled`` is off; any other config: none."""
    from synthworth.generators.diffusion.autoencoder import AutoencoderEvalConfig

    evaluation = getattr(config, "eval", None)
    if not isinstance(evaluation, AutoencoderEvalConfig) or not evaluation.enabled:
        return []
    if evaluation.features != "none":
        from synthworth.metrics.features import check_features

        check_features(evaluation.features, "eval.features")
    return [ReconstructionHook(evaluation)]

