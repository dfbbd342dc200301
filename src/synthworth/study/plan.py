"""A study's plan: its inputs opened and checked, and every cell of the grid with its key.

:func:`plan_study` does it all before any cell trains (a bad input fails fast); every executor
(:mod:`synthworth.study.executors`) and the entry functions (:mod:`synthworth.study.runner`) work
from the :class:`StudyPlan` it returns. ``log.txt`` of the results folder gets one line per cell
started, finished, failed or skipped (:func:`_log`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from synthworth import __version__
from synthworth.config import dump_config
from synthworth.data.dataset import Dataset
from synthworth.engine.precision import warn_if_emulated
from synthworth.errors import SynthworthError
from synthworth.study.budget import TrainingBudget, study_budget
from synthworth.study.checks import check_before_training
from synthworth.study.grid import Cell, build_grid, cell_classifier, cell_key, check_sizes, training_set
from synthworth.study.inputs import StudyInputs, StudyWarning, open_inputs
from synthworth.study.replicates import dealing, usage_notes
from synthworth.study.spec import StudySpec, classifier_config

METRICS_JOB = "metrics:"


@dataclass
class PlannedCell:
    cell: Cell
    key: str
    payload: dict[str, Any]
    train_set: Dataset


@dataclass
class StudyPlan:
    """Everything a run needs, checked: the inputs, the classifier config and every cell's key."""

    spec: StudySpec
    out: Path
    inputs: StudyInputs
    classifier: Any  # ClassifierConfig
    cells: list[PlannedCell]
    resized_from: int | None = None  # the real images' side when the classifier sees another
    budget: TrainingBudget = TrainingBudget()  # every cell's training budget (spec key budget)
    backbone: dict[str, Any] | None = None  # pretrained weights: their record (SHA-256, preprocessing)

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(p.key for p in self.cells))

    def jobs(self) -> list[str]:
        """Unique job ids: cell keys, and one metrics job per generator when metrics are asked."""
        metrics = [METRICS_JOB + g for g in self.spec.synthetic] if self.spec.metrics.enabled else []
        return self.keys + metrics

    def by_key(self) -> dict[str, PlannedCell]:
        out: dict[str, PlannedCell] = {}
        for p in self.cells:
            out.setdefault(p.key, p)
        return out


def cell_threads(plan: StudyPlan | StudySpec) -> int:
    """Torch CPU threads of every cell: the spec's, else 1 (the same in every executor; part of
    each cell's key, see synthworth.study.grid.cell_key)."""
    spec = getattr(plan, "spec", plan)
    return spec.threads or 1


# ------------------------------------------------------------------------------ planning
def plan_study(spec: StudySpec, out: str | os.PathLike | None = None, *, build_filters: bool = True) -> StudyPlan:
    """Open the inputs and build every cell with its key; any bad input raises here. The spec's
    filters are applied here (their Datasets made in the results folder unless cached; with
    ``build_filters=False`` a missing one is an error instead)."""
    from synthworth.classifiers.backbones import build_model
    from synthworth.study.filtering import apply_filters, check_filtered_sizes

    out = Path(out or spec.out or "")
    if not str(out) or str(out) == ".":
        raise SynthworthError("no results folder: give --out or 'out' in the spec")
    inputs = open_inputs(spec)
    check_before_training(spec, inputs)
    classifier = classifier_config(spec)
    # Once for the whole study (its trainings keep quiet about it).
    warn_if_emulated(spec.precision == "bf16", "cuda" if torch.cuda.is_available() else "cpu", "precision: bf16")
    h, _, c = inputs.real.shape
    # Build the network once now, so an unknown model name, an impossible size or missing or
    # unfitting pretrained weights fail before any cell trains.
    model = build_model(classifier.model, inputs.num_classes, c, h)
    side, backbone = model.resolution, model.backbone
    del model
    if side != h:
        message = (f"the classifier ({spec.classifier_preset} preset) sees {side}x{side} images, the real ones are "
                   f"{h}x{h}: every image is resized on the fly (recorded as classifier_resized_from)")
        inputs.notes.append(message)
        warnings.warn(message, StudyWarning, stacklevel=2)
    names = {g: s.replicate_names for g, s in inputs.synthetic.items()}
    for message in usage_notes(spec.seeds, spec.replicates, names,
                               {g: s.pool_replicate is not None for g, s in inputs.synthetic.items()}):
        inputs.notes.append(message)
        warnings.warn(message, StudyWarning, stacklevel=2)
    grid = build_grid(spec, inputs.num_classes, dealing(spec.seeds, spec.replicates, names))
    check_sizes([c for c in grid if c.filter == "none"], inputs, spec.ratio)
    check_filtered_sizes(grid, inputs, spec)
    apply_filters(spec, inputs, classifier, out, build=build_filters)
    check_sizes(grid, inputs, spec.ratio)
    budget = study_budget(spec, classifier, inputs.num_classes)
    # A linear probe is fitted to convergence whatever the budget: the budget is no part of its key.
    budget_key = None if classifier.model.mode == "linear_probe" else budget.key()
    weights = {"sha256": backbone["sha256"], "preprocess": backbone["preprocess"]} if backbone else None
    cells = []
    for cell in grid:
        train = training_set(cell, inputs, spec.ratio)
        config = cell_classifier(classifier, cell.seed)
        key, payload = cell_key(dump_config(config), train.fingerprint, inputs.test.fingerprint, __version__,
                                cell_threads(spec), budget=budget_key, weights=weights,
                                precision=spec.precision)
        cells.append(PlannedCell(cell=cell, key=key, payload=payload, train_set=train))
    return StudyPlan(spec=spec, out=out, inputs=inputs, classifier=classifier, cells=cells,
                     resized_from=h if side != h else None, budget=budget, backbone=backbone)


def _log(plan: StudyPlan, message: str) -> None:
    with open(plan.out / "log.txt", "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {message}\n")

