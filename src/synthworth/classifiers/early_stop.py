"""Early stopping of a classifier on a validation split drawn from its own training set.

The rule is Prechelt's (L. Prechelt, "Early Stopping — But When?", in Neural Networks: Tricks of
the Trade, 1998): after every epoch the cross-entropy on the validation images is measured; the
run stops after ``patience`` epochs without a lower loss, and the weights of the best epoch are
the ones kept (exported). The validation images are a stratified share of the training set, so a
training set of N images trains on fewer than N: they are part of its data, not extra data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthworth.errors import SynthworthError


@dataclass(frozen=True)
class EarlyStopping:
    """Stop after ``patience`` epochs without a better validation loss; ``validation``: the share
    of each class of the training set held out for it."""

    patience: int = 10
    validation: float = 0.2


def validation_mask(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Which images form the validation split: per class, round(share x its count) of them drawn
    at random (``seed``), at least one and never all of the class, so every class with two or more
    images is both validated and trained on; a class with one image is trained on only.

    Written out rather than sklearn's ``train_test_split(stratify=...)``: that refuses a class of
    one image and a split smaller than the number of classes, both usual at the small training
    sizes a learning curve starts from."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        k = min(len(members) - 1, max(1, int(np.floor(share * len(members) + 0.5))))
        mask[rng.choice(members, size=k, replace=False)] = True
    if not mask.any():
        raise SynthworthError(f"budget converge: the training set of {len(labels)} images has no class with two "
                              "images, so none can be held out for validation; use budget: steps or epochs")
    return mask


class Watch:
    """The early-stopping state of one run: best loss, its epoch and steps, epochs since, and a
    copy of the best weights (all saved in checkpoints, see :meth:`state`)."""

    def __init__(self, rule: EarlyStopping) -> None:
        self.rule = rule
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.best_steps = 0
        self.bad_epochs = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def update(self, loss: float, epoch: int, steps: int, model: torch.nn.Module) -> bool:
        """Record epoch ``epoch`` (1-based) with validation ``loss``; True when training should stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.best_steps, self.bad_epochs = loss, epoch, steps, 0
            self.best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.rule.patience

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best epoch's weights into ``model`` (nothing to do before the first epoch)."""
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights)

    def state(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "best_steps": self.best_steps,
                "bad_epochs": self.bad_epochs, "best_weights": self.best_weights or {}}

    def load(self, state: dict[str, Any]) -> None:
        self.best_loss, self.best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        self.best_steps, self.bad_epochs = int(state["best_steps"]), int(state["bad_epochs"])
        self.best_weights = dict(state["best_weights"]) or None


def validation_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the true classes (probabilities clipped away from 0)."""
    p = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())
