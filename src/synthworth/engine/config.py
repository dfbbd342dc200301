"""Options shared by every training run (GAN, diffusion, classifier), and the quality evaluation
during training that generator configs carry (``eval``; run by ``synthworth.metrics.tracking``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from synthworth.config import StrictModel
from synthworth.errors import ConfigError

# Keys that may differ between a checkpoint and the run that resumes it (they do not change
# what has been computed so far): extending training, checkpoint cadence, logging.
RESUMABLE_CHANGES = {"epochs", "max_steps", "checkpoint_every", "keep_checkpoints", "log_every",
                     "grid_epochs", "progress"}

# Seeds feed numpy's and torch's generators, which take 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


class TrainConfig(StrictModel):
    """How the shared engine runs a training loop."""

    epochs: int = Field(1, ge=1, description="Passes over the training split.")
    batch_size: int = Field(64, ge=1, description="Images per batch on each process.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many batches in all (smoke runs).")
    grad_accum: int = Field(1, ge=1, description="Batches whose gradients are summed before an optimizer step.")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field("no", description="Mixed precision (accelerate autocast): no (fp32), bf16 (CPU or GPU; weights, optimizer state and saved models stay fp32) or fp16 (GPU only).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of weights, noise and data order (0 to 2**32 - 1).")
    threads: int = Field(1, ge=1, le=1024, description="Torch CPU threads while training: part of the recipe (reductions split differently), so fixed, recorded and the same in every executor; raise it for large CPU runs.")
    split: str = Field("train", description="Split of the Dataset to train on.")
    drop_last: bool = Field(True, description="Drop each epoch's last incomplete batch (GANs); false trains on every image (classifiers).")
    checkpoint_every: int = Field(500, ge=1, description="Save the full training state every N batches (and at each epoch end).")
    keep_checkpoints: int = Field(2, ge=1, description="How many of the newest checkpoints to keep.")
    log_every: int = Field(1, ge=1, description="Write per-iteration metrics every N batches.")
    grid_epochs: list[int] = Field([1, 10, 20, 30, 40, 50], description="Epochs whose sample grid is kept (the last one always is).")
    progress: bool = Field(True, description="Show a progress bar.")


class EvalConfig(StrictModel):
    """Quality measured during training (FID, KID, precision/recall against held-out real images)."""

    every: int = Field(0, ge=0, description="Evaluate after every N epochs and after the last (0: never).")
    samples: int = Field(256, ge=8, description="Images drawn from fixed seeds at each evaluation.")
    draws: int = Field(1, ge=1, le=100, description="Independent draws of eval.samples images at each evaluation (draw d from seed + d * samples); logged each, their spread is the sampling error the plateau finding uses.")
    seed: int = Field(100_000, ge=0, le=MAX_SEED, description="Seed of the first evaluation image (image i: seed + i).")
    real_split: str | None = Field(None, description="Held-out split of the training Dataset to compare with (default: test, else valid).")
    features: str = Field("auto", description="auto (Inception if its weights are found, else domain), inception, dinov2, domain, or a saved classifier folder.")
    inception_weights: str | None = Field(None, description="Local Inception-v3 FID weights file (as for 'synthworth metrics').")
    dinov2_weights: str | None = Field(None, description="DINOv2 model: a hub id or a local folder (as for 'synthworth metrics').")
    batch_size: int = Field(64, ge=1, description="Images per sampling batch.")


def check_seeds(config: dict[str, Any], path: str = "") -> None:
    """Every ``seed`` / ``*_seed`` key of a resolved config (a task's ``grid_seed`` too) must fit
    the generators it feeds; checked before training, not when the first grid is drawn."""
    for key, value in config.items():
        dotted = f"{path}.{key}" if path else str(key)
        if isinstance(value, dict):
            check_seeds(value, dotted)
        elif (key == "seed" or str(key).endswith("_seed")) and isinstance(value, int) \
                and not 0 <= value <= MAX_SEED:
            raise ConfigError(f"invalid configuration: key {dotted!r}: a seed must be from 0 to 2**32 - 1 "
                              f"(got {value})")
