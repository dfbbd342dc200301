"""Quality measured during training (``eval.every``): the logged numbers are those of a separate
``synthworth metrics`` call on the same samples, evaluation time is not training time, and
evaluating does not change what is trained."""

from __future__ import annotations

import json
import time

import pytest

from synthworth.cli import main
from synthworth.data.prepare import PrepareConfig, prepare
from synthworth.engine.run import RunFolder

METRICS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "fid_real_floor",
           "kid_real_floor", "precision_real_floor", "recall_real_floor")


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    """scikit-image's faces and non-faces at 16 px with a 30 % held-out test split (two classes,
    so domain features can be trained on them); one feature cache for the module's tests, so the
    domain extractor is trained once."""
    root = tmp_path_factory.mktemp("lfw")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHWORTH_CACHE", str(root / "cache"))
        yield prepare(PrepareConfig(source="lfw", size=16, test_fraction=0.3, workers=0), root / "lfw",
                      progress=False)


def _train(lfw, out, *extra):
    args = ["train", "dcgan", "--data", str(lfw.path), "--out", str(out), "--preset", "tiny", "train.epochs=2",
            "eval.every=1", "eval.samples=24", "eval.features=domain", *extra]
    assert main(args) == 0
    return RunFolder(out).read_metrics()


def test_logged_quality_matches_a_separate_metrics_call_on_the_same_samples(lfw, tmp_path, capsys):
    rows = _train(lfw, tmp_path / "run")
    evals = [r for r in rows if r.get("kind") == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2]
    assert all(r["real_split"] == "test" and r["real_images"] == 60 and r["samples"] == 24 for r in evals)
    assert evals[0]["features"] == "domain" and "NOT comparable" in evals[0]["features_label"]
    # the same seeds drawn from the finished model, scored by the metrics command
    gen = tmp_path / "gen"
    assert main(["generate", "--from", str(tmp_path / "run"), "--count", "24", "--seed", str(evals[-1]["seed"]),
                 "--out", str(gen), "-q"]) == 0
    out = tmp_path / "m.json"
    assert main(["metrics", "--real", str(lfw.path), "--real-split", "test", "--fake", str(gen),
                 "--features", "domain", "--out", str(out), "-q"]) == 0
    separate = json.loads(out.read_text())
    for key in METRICS:
        assert evals[-1][key] == pytest.approx(separate[key], rel=1e-9, abs=1e-12), key
    # the two epochs' models differ, so the numbers do too (the row is not a constant)
    assert evals[0]["fid"] != evals[1]["fid"]
    # one TensorBoard event file holds the eval scalars beside the losses
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "synthworth")).Reload()
    assert {"eval/fid", "eval/precision", "loss_d"} <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("eval/fid")] == pytest.approx([r["fid"] for r in evals], rel=1e-5)


def test_evaluation_time_is_not_training_time(lfw, tmp_path, monkeypatch):
    from synthworth.metrics.tracking import QualityTracker

    pause = 1.5
    evaluate = QualityTracker.evaluate

    def slow(self, generator):
        time.sleep(pause)
        return evaluate(self, generator)

    monkeypatch.setattr(QualityTracker, "evaluate", slow)
    rows = _train(lfw, tmp_path / "run", "train.epochs=3")
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    assert all(r["eval_s"] >= pause for r in evals)
    # the third epoch's row comes after two evaluations: the wall time holds them, train_s does not
    assert epochs[-1]["elapsed_s"] - epochs[-1]["train_s"] >= 2 * pause
    # each eval row carries the training seconds of its epoch
    assert [r["train_s"] for r in evals] == [r["train_s"] for r in epochs]
    assert epochs[0]["train_s"] < epochs[1]["train_s"] < epochs[2]["train_s"]


def test_training_seconds_add_up_over_a_resume(lfw, tmp_path):
    first = _train(lfw, tmp_path / "run", "train.epochs=1")
    before = [r for r in first if r.get("kind") == "epoch"][-1]["train_s"]
    assert main(["train", "dcgan", "--data", str(lfw.path), "--out", str(tmp_path / "run"), "--resume",
                 "train.epochs=2"]) == 0
    rows = RunFolder(tmp_path / "run").read_metrics()
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[1]["train_s"] > before > 0
    # the CPU clock adds up over the resume too (from the checkpoint's train_cpu_seconds)
    cpu_before = [r for r in first if r.get("kind") == "epoch"][-1]["train_cpu_s"]
    assert epochs[1]["train_cpu_s"] > cpu_before > 0 and epochs[1]["device"] == "cpu"
    assert [r["epoch"] for r in rows if r.get("kind") == "eval"] == [1, 2]


def test_evaluating_does_not_change_what_is_trained(lfw, tmp_path):
    _train(lfw, tmp_path / "with")
    assert main(["train", "dcgan", "--data", str(lfw.path), "--out", str(tmp_path / "without"), "--preset", "tiny",
                 "train.epochs=2"]) == 0
    assert not [r for r in RunFolder(tmp_path / "without").read_metrics() if r.get("kind") == "eval"]
    a = (tmp_path / "with" / "model" / "generator.safetensors").read_bytes()
    b = (tmp_path / "without" / "model" / "generator.safetensors").read_bytes()
    assert a == b


def test_diffusion_is_evaluated_on_the_weights_it_exports(lfw, tmp_path):
    """A DDPM's evaluation samples come from its EMA weights: the exported model's."""
    from synthworth.generators import load_generator
    from synthworth.metrics.tracking import brightness, brightness_range

    out = tmp_path / "ddpm"
    assert main(["train", "ddpm", "--data", str(lfw.path), "--out", str(out), "--preset", "tiny", "train.epochs=1",
                 "eval.every=1", "eval.samples=16", "eval.features=domain", "sampling.steps=3"]) == 0
    row = [r for r in RunFolder(out).read_metrics() if r.get("kind") == "eval"][-1]
    images = load_generator(out).sample(16, seed=row["seed"])
    low, high = brightness_range(lfw.split("train"))
    value = brightness(images)
    assert row["brightness_outside"] == pytest.approx(((value < low) | (value > high)).mean())


def test_several_draws_per_evaluation_are_logged_each_and_averaged(lfw, tmp_path):
    """eval.draws=2: each metric is the mean of two draws, both logged; the first draw takes the
    same seeds as a single-draw evaluation, so it matches that run's value (evaluating does not
    change what is trained)."""
    many = [r for r in _train(lfw, tmp_path / "two", "eval.draws=2") if r.get("kind") == "eval"]
    one = [r for r in _train(lfw, tmp_path / "one") if r.get("kind") == "eval"]
    for row, single in zip(many, one):
        assert row["draws"] == 2 and single["draws"] == 1 and "fid_draws" not in single
        assert len(row["fid_draws"]) == 2 and row["fid"] == pytest.approx(sum(row["fid_draws"]) / 2)
        assert row["precision"] == pytest.approx(sum(row["precision_draws"]) / 2)
        assert row["fid_draws"][0] == pytest.approx(single["fid"], rel=1e-9)
        assert row["fid_draws"][0] != row["fid_draws"][1]
    from synthworth.metrics.plateau import eval_curve

    curve, _, _ = eval_curve(tmp_path / "two")
    assert curve == {r["epoch"]: r["fid_draws"] for r in many}
