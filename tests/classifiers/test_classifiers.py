"""Classifiers: model building, training through the shared engine, evaluation, saved models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from synthworth.classifiers import (
    ClassifierConfig,
    build_classifier,
    evaluate,
    load_classifier,
    predict,
    train_classifier,
)
from synthworth.config import resolve_config
from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset
from synthworth.errors import ConfigError, SynthworthError

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny(*overrides: str) -> ClassifierConfig:
    return resolve_config(ClassifierConfig, preset=("classifier", "tiny"), overrides=list(overrides))


# ------------------------------------------------------------------------------ building
@pytest.mark.parametrize("name,channels,side", [("small_cnn", 1, 8), ("small_cnn", 3, 32), ("resnet18", 1, 32),
                                                ("mobilenet_v3_small", 3, 32)])
def test_built_models_take_uint8_batches_and_give_logits_and_features(name, channels, side):
    model = build_classifier(name, 7, channels, side).eval()
    x = torch.randint(0, 256, (3, channels, side, side), dtype=torch.uint8)
    assert model(x).shape == (3, 7)
    features = model.features(x)
    assert features.shape[0] == 3 and features.dim() == 2
    # The last layer maps the features to the logits: features are its input.
    head = model.net.get_submodule(model.head_name)
    torch.testing.assert_close(head(features), model(x))


def test_torchvision_head_is_a_fresh_linear_layer_to_the_classes():
    model = build_classifier("resnet34", 5, 3, 64)
    assert isinstance(model.net.fc, nn.Linear) and model.net.fc.out_features == 5
    assert model.head_name == "fc"


def test_other_sizes_and_channels_are_converted_on_the_fly():
    model = build_classifier("small_cnn", 3, 1, 16, normalize="none").eval()
    grey = torch.full((2, 1, 32, 32), 255, dtype=torch.uint8)
    x = model.prepare_input(grey)
    assert x.shape == (2, 1, 16, 16)
    torch.testing.assert_close(x, torch.ones_like(x))
    rgb = torch.zeros((1, 3, 16, 16), dtype=torch.uint8)
    rgb[:, 0] = 255  # pure red: luma 0.299
    torch.testing.assert_close(model.prepare_input(rgb), torch.full((1, 1, 16, 16), 0.299))
    imagenet = build_classifier("resnet18", 3, 1, 16).eval()
    y = imagenet.prepare_input(torch.zeros((1, 1, 16, 16), dtype=torch.uint8))
    assert y.shape == (1, 3, 16, 16)
    black = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(y[0, :, 0, 0], black)


def test_unknown_model_and_impossible_size_are_config_errors():
    with pytest.raises(ConfigError, match="unknown classifier model 'resnet35'.*small_cnn.*resnet"):
        build_classifier("resnet35", 3, 3, 32)
    with pytest.raises(ConfigError, match="inception_v3 needs inputs of at least 75x75"):
        build_classifier("inception_v3", 3, 3, 32)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_classifier("small_cnn", 1, 3, 32)


def test_partial_train_section_keeps_the_classifier_defaults(tmp_path):
    config = resolve_config(ClassifierConfig, overrides=["train.epochs=3"])
    assert (config.train.epochs, config.train.batch_size, config.train.drop_last) == (3, 32, False)
    thesis = resolve_config(ClassifierConfig, preset=("classifier", "thesis"))
    assert thesis == ClassifierConfig()  # the defaults are the source study's protocol
    assert (thesis.model.name, thesis.model.resolution, thesis.optim.lr, thesis.optim.step_size,
            thesis.optim.gamma, thesis.train.epochs, thesis.train.batch_size) == ("resnet34", 256, 1e-3, 7, 0.1, 30, 32)


# ------------------------------------------------------------------------------ evaluation
class FixedPredictions(nn.Module):
    """Predicts class 1 for images brighter than 100, else class 0."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        bright = (x.float().mean(dim=(1, 2, 3)) > 100).long()
        return nn.functional.one_hot(bright, 2).float()


def test_evaluation_on_a_known_case():
    images = np.zeros((4, 2, 2, 1), np.uint8)
    images[2:] = 200  # predicted 0, 0, 1, 1
    ds = Dataset.from_arrays(images, np.array([0, 1, 1, 1]), ["a", "b"])
    ev = evaluate(FixedPredictions(), ds)
    assert ev.accuracy == 0.75 and ev.n == 4
    assert ev.confusion == [[1, 0], [1, 2]]
    assert ev.per_class_accuracy == {"a": 1.0, "b": pytest.approx(2 / 3)}
    # F1(a) = 2*1*0.5/1.5, F1(b) = 2*1*(2/3)/(5/3)
    assert ev.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    absent = Dataset.from_arrays(images[:2], np.array([0, 0]), ["a", "b"])
    assert evaluate(FixedPredictions(), absent).per_class_accuracy == {"a": 1.0, "b": None}
    with pytest.raises(SynthworthError, match="unlabelled"):
        evaluate(FixedPredictions(), Dataset.from_arrays(images, np.array([0, -1, 1, 1]), ["a", "b"]))


# ------------------------------------------------------------------------------ training
def test_training_through_the_engine_learns_digits_and_saves_a_loadable_model(digits16, tmp_path):
    train = subset(digits16.split("train"), count=300, seed=0)
    test = digits16.split("test")
    config = tiny("model.width=8", "train.epochs=4", "optim.step_size=2", "optim.gamma=0.5")
    model, task = train_classifier(train, tmp_path / "run", config)
    ev = evaluate(model, test)
    assert ev.accuracy > 0.6  # chance is 0.1
    assert sum(map(sum, ev.confusion)) == len(test) == ev.n
    # Per-epoch StepLR: 4 epochs with step 2 -> two halvings.
    assert task.optimizers["adam"].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.25)
    # Every image trained on: drop_last is false, so 300 / 32 -> 10 batches per epoch.
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 40
    reloaded, meta = load_classifier(tmp_path / "run" / "model")
    assert meta["class_names"] == train.class_names and meta["data_resolution"] == 16
    assert np.array_equal(predict(reloaded, test), predict(model.cpu(), test))
    assert task.resized_from is None


def test_a_different_network_size_resizes_on_the_fly_and_is_recorded(digits16, tmp_path):
    train = subset(digits16.split("train"), count=40, seed=1)
    model, task = train_classifier(train, tmp_path / "run", tiny("model.resolution=24", "train.epochs=1"))
    assert task.resized_from == 16 and model.resolution == 24
    meta = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert (meta["resolution"], meta["data_resolution"]) == (24, 16)


def test_a_set_smaller_than_one_batch_still_trains(digits16, tmp_path):
    few = subset(digits16.split("train"), count=10, seed=0)
    train_classifier(few, tmp_path / "run", tiny("train.epochs=2", "train.batch_size=32"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("kind") != "epoch"] == [1, 2]


def test_unlabelled_data_is_refused(tmp_path):
    ds = Dataset.from_arrays(np.zeros((4, 8, 8, 1), np.uint8), np.full(4, -1), [])
    with pytest.raises(SynthworthError, match="labelled"):
        train_classifier(ds, tmp_path / "run", tiny())


def test_min_steps_stretches_epochs_and_the_lr_schedule():
    from synthworth.classifiers.task import ClassifierConfig, stretch_to_min_steps

    config = ClassifierConfig(min_steps=300, train={"epochs": 30, "batch_size": 16}, optim={"step_size": 15})
    small = stretch_to_min_steps(config, 25)  # 2 batches per epoch -> 150 epochs for 300 batches
    assert small.train.epochs == 150 and small.optim.step_size == 75
    big = stretch_to_min_steps(config, 1000)  # 63 batches per epoch: 30 epochs are plenty
    assert big.train.epochs == 30 and big.optim.step_size == 15
    assert stretch_to_min_steps(config.model_copy(update={"min_steps": None}), 25).train.epochs == 30
