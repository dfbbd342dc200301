"""What the training loop trains and calls: a :class:`Task` (one per kind of model), the
:class:`StepContext` its step and hooks see, and the :class:`TrainingHook` s that the layer
starting a training hands to the loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synthworth.data.dataset import Dataset
from synthworth.engine import resume as resuming
from synthworth.engine.config import TrainConfig
from synthworth.engine.run import RunFolder
from synthworth.errors import SynthworthError


@dataclass
class StepContext:
    """What a task's step and hooks may use."""

    accelerator: Any
    run: RunFolder
    config: TrainConfig
    epoch: int = 0          # 0-based epoch being trained
    global_step: int = 0    # batches done before this one
    dataset: Dataset | None = None


class Task:
    """What differs between models. Subclasses set ``modules``, ``optimizers`` and
    ``schedulers`` (dicts, filled in :meth:`build`) and implement :meth:`step`."""

    kind = "task"
    # Settings besides the engine's that may change when a run is resumed (dotted keys): the
    # learning rate (applied to the loaded optimizer state), gradient clipping (read at each
    # step) and what previews and exports show. A key a task's config lacks never differs.
    resumable_changes: tuple[str, ...] = (resuming.LR_KEY, "optim.grad_clip", "sampling", "preview_count",
                                          "grid_size", "grid_seed", "eval_batch_size",
                                          "eval")

    def __init__(self) -> None:
        # Set by the task (e.g. in on_epoch_end, early stopping) to end training after this
        # epoch; restored with the task's extra state, so a resumed run that had stopped stays stopped.
        self.stop_training = False
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}

    def check_data(self, dataset: Dataset) -> None:
        """Raise a SynthworthError when this task cannot train on ``dataset``."""

    def build(self, dataset: Dataset, device: torch.device) -> None:
        raise NotImplementedError

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> dict[str, float]:
        """One training step; return the losses/metrics to log (plain floats)."""
        raise NotImplementedError

    def on_epoch_end(self, ctx: StepContext, epoch_means: dict[str, float]) -> None:
        """After each epoch (1-based ``ctx.epoch + 1`` done): grids, plots, evaluation."""

    @staticmethod
    def plots_due(ctx: StepContext) -> bool:
        """Redraw the loss plots after this epoch? At the grid epochs, every 10th and the last
        (redrawing after each of hundreds of short epochs would cost more than training)."""
        epoch = ctx.epoch + 1
        return epoch in ctx.config.grid_epochs or epoch % 10 == 0 or epoch >= ctx.config.epochs

    def extra_state(self) -> Any:
        """State beyond modules/optimizers/schedulers (e.g. EMA weights): tensors and plain values."""
        return {}

    def load_extra_state(self, state: Any) -> None:
        pass

    def diverged_advice(self, lower: str, checkpoint: Path | None, restart: str | None = None) -> str:
        """What to do after a NaN loss; ``lower`` is e.g. ``optim.lr=0.0002`` (a tenth of the
        rate); ``restart``: the command that starts the run again, given when resuming
        ``checkpoint`` with a lowered rate diverged again. The default speaks of ``synthworth train``."""
        if restart is not None:  # resuming it again, lower still, would loop: its weights are damaged
            return (f"resuming {checkpoint.name} with a lower learning rate diverged again before the next "
                    "checkpoint, so the high rate had probably damaged its weights already; start again from the "
                    f"beginning with the lower rate, in a new folder: {restart}")
        if checkpoint is not None:
            return (f"last good checkpoint: {checkpoint}; continue from it with a lower learning rate: "
                    f"the same command with --resume {lower}")
        return ("no checkpoint was saved yet; start again with a lower learning rate: the same command "
                f"(without --resume) with {lower}")

    def export(self, folder: Path, accelerator: Any) -> None:
        """Write the finished model in a form that loads without the engine."""

    def evaluation_generator(self, accelerator: Any, action):
        """``action(generator)`` on a generator over the weights the task would export now."""
        raise SynthworthError(f"{self.kind} models cannot be evaluated during training")

    def config_dict(self) -> dict[str, Any]:
        raise NotImplementedError


class TrainingHook:
    """What the layer that starts a training hands to :func:`synthworth.engine.loop.fit` to be
    called during it (e.g. quality tracking, ``synthworth.metrics.tracking``); the engine knows
    nothing of what a hook does. The defaults do nothing."""

    def before_training(self, dataset: Dataset, config: TrainConfig, main: bool) -> None:
        """In every process, before the run folder is locked or written (``main``: this is the
        main process); may refuse the run with a SynthworthError."""

    def after_epoch(self, task: Task, ctx: StepContext, train_seconds: float, stopped: bool) -> None:
        """On the main process after each finished epoch (``ctx.epoch`` 0-based) and the task's
        ``on_epoch_end``; ``train_seconds``: the run's training seconds so far; ``stopped``:
        ``train.max_steps`` or the task (``stop_training``) ends the run at this epoch's end."""
