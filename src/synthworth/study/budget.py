"""The training budget of a study's cells (the spec's ``budget``): what a learning curve measures.

- ``steps`` (the default): every cell trains the same number of optimizer steps
  (``budget_steps``, or by default what the largest size trains under ``epochs``); only the data
  differ between sizes, so a learning curve, and every exchange rate read from it, measures data.
- ``epochs`` (the default of earlier versions): every cell trains the classifier's
  ``train.epochs``; a set of 400 images gets 8 times the optimizer steps of a set of 50 (only
  ``min_steps`` floors the small ones), so a curve over sizes measures data and compute together.
- ``converge``: each cell holds out a stratified share of its own training set and stops when the
  validation loss stops improving (:mod:`synthworth.classifiers.early_stop`), capped at the steps
  budget; each set is trained to its own best, as a practitioner would.

A cell's key includes the budget only when it is not ``epochs``, so results stored before budgets
existed keep their keys for a spec that sets ``budget: epochs``; a spec that leaves ``budget``
out now trains under ``steps``, in other cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthworth.classifiers.early_stop import EarlyStopping
from synthworth.classifiers.task import steps_per_epochs
from synthworth.study.spec import StudySpec


@dataclass(frozen=True)
class TrainingBudget:
    """The budget every cell of a study trains under."""

    mode: str = "epochs"
    steps: int | None = None                 # steps: every cell's optimizer steps; converge: the cap
    early_stop: EarlyStopping | None = None  # converge only

    def key(self) -> dict[str, Any] | None:
        """What a cell's key hashes of the budget; None for ``epochs`` (the keys stay as they were)."""
        if self.mode == "epochs":
            return None
        out: dict[str, Any] = {"mode": self.mode, "steps": self.steps}
        if self.early_stop is not None:
            out.update(patience=self.early_stop.patience, validation=self.early_stop.validation)
        return out

    def train_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`synthworth.classifiers.task.train_classifier`."""
        return {"steps": self.steps, "early_stop": self.early_stop}


def largest_size(spec: StudySpec, num_classes: int) -> int:
    """The largest nominal training-set size of the grid (sizes, or per_class x classes)."""
    if spec.per_class is not None:
        return max(spec.per_class) * num_classes
    return max(spec.sizes)


def study_budget(spec: StudySpec, classifier, num_classes: int) -> TrainingBudget:
    """The spec's budget resolved: the steps derived from the largest size when not given."""
    if spec.budget == "epochs":
        return TrainingBudget()
    steps = spec.budget_steps or steps_per_epochs(classifier, largest_size(spec, num_classes))
    early = (EarlyStopping(patience=spec.budget_patience, validation=spec.budget_validation)
             if spec.budget == "converge" else None)
    return TrainingBudget(mode=spec.budget, steps=steps, early_stop=early)
