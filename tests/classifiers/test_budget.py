"""Training budgets of a classifier: the stratified validation split of early stopping, and an
early-stopped run killed mid-way that resumes to the very same weights, steps and best epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthworth.classifiers import task as classifier_task
from synthworth.classifiers.early_stop import EarlyStopping, validation_mask
from synthworth.classifiers.task import ClassifierConfig, train_classifier
from synthworth.config import resolve_config
from synthworth.data.compose import subset
from synthworth.errors import SynthworthError

pytestmark = pytest.mark.usefixtures("single_thread")


def test_validation_split_is_stratified_and_keeps_every_class_in_training():
    labels = np.repeat(np.arange(4), [1, 2, 10, 25])
    mask = validation_mask(labels, 0.2, seed=3)
    held = np.bincount(labels[mask], minlength=4)
    assert list(held) == [0, 1, 2, 5]  # a lone image is trained on; every other class gives its share (>= 1)
    assert (np.bincount(labels[~mask], minlength=4) >= 1).all()
    assert (validation_mask(labels, 0.2, seed=3) == mask).all()  # the run's seed decides the draw
    with pytest.raises(SynthworthError, match="no class with two images"):
        validation_mask(np.arange(5), 0.2, seed=0)


def test_early_stopped_run_killed_midway_resumes_to_the_same_result(digits16, tmp_path, monkeypatch):
    config = resolve_config(ClassifierConfig, preset=("classifier", "tiny"), overrides=["train.batch_size=16"])
    data = subset(digits16.split("train"), count=60, seed=0)
    rule = EarlyStopping(patience=3)
    model, task = train_classifier(data, tmp_path / "whole", config, steps=400, early_stop=rule)
    whole = task.budget_used()
    assert whole["optimizer_steps"] < 400 and whole["n_validation"] == 10
    assert whole["epochs_run"] == whole["best_epoch"] + 3

    step = classifier_task.ClassifierTask.step

    def killed(self, batch, ctx):
        if ctx.global_step == 23:  # inside epoch 6, after checkpoints at each epoch's end
            raise KeyboardInterrupt
        return step(self, batch, ctx)

    monkeypatch.setattr(classifier_task.ClassifierTask, "step", killed)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(data, tmp_path / "killed", config, steps=400, early_stop=rule)
    monkeypatch.setattr(classifier_task.ClassifierTask, "step", step)
    again, task = train_classifier(data, tmp_path / "killed", config, steps=400, early_stop=rule, resume=True)
    assert task.budget_used() == whole
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
