"""Quality tracking during training (``eval.*``): every setting that cannot work is refused in
one line before anything is written, with advice that works."""

from __future__ import annotations

import pytest

from synthworth.cli import main
from synthworth.data.prepare import PrepareConfig, prepare


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Faces only (one class), at 16 px: with and without a held-out split."""
    root = tmp_path_factory.mktemp("faces")
    split = prepare(PrepareConfig(source="lfw", size=16, classes=["face"], test_fraction=0.3, workers=0),
                    root / "split", progress=False)
    whole = prepare(PrepareConfig(source="lfw", size=16, classes=["face"], test_fraction=0.0, workers=0),
                    root / "whole", progress=False)
    return split, whole


def _train(data, out, *extra):
    return ["train", "dcgan", "--data", str(data.path), "--out", str(out), "--preset", "tiny", "train.epochs=1",
            "eval.every=1", *extra]


def test_no_held_out_split_is_refused_with_the_command_that_makes_one(faces, tmp_path, refused):
    _, whole = faces
    out = tmp_path / "run"
    refused(*_train(whole, out), match="--test-fraction")
    assert not out.exists()
    # the other way the message offers: compare with the training images themselves
    refused(*_train(whole, out, "eval.real_split=nope"), match="the splits train")


def test_one_class_data_with_domain_features_is_refused_and_the_advice_works(faces, tmp_path, refused,
                                                                           monkeypatch):
    monkeypatch.setenv("SYNTHWORTH_CACHE", str(tmp_path / "cache"))
    split, _ = faces
    out = tmp_path / "run"
    refused(*_train(split, out, "eval.features=domain"), match="synthworth train classifier")
    assert not out.exists()
    # followed: a classifier on labelled images (faces and non-faces), its model/ as the features
    lfw = prepare(PrepareConfig(source="lfw", size=16, test_fraction=0.0, workers=0), tmp_path / "lfw",
                  progress=False)
    assert main(["train", "classifier", "--data", str(lfw.path), "--out", str(tmp_path / "clf"), "--preset",
                 "tiny"]) == 0
    assert main(_train(split, out, "eval.samples=16", f"eval.features={tmp_path / 'clf' / 'model'}")) == 0
    assert '"kind": "eval"' in (out / "metrics.jsonl").read_text()


@pytest.mark.parametrize("setting, match", [
    ("eval.every=-1", "eval.every"),
    ("eval.samples=2", "eval.samples"),
    ("eval.features=/no/such/classifier", "key 'eval.features': '/no/such/classifier' is no feature extractor"),
    ("eval.features=incepton", "did you mean 'inception'?"),
])
def test_bad_eval_settings_are_refused_before_anything_is_written(faces, tmp_path, refused, setting, match):
    split, _ = faces
    out = tmp_path / "run"
    refused(*_train(split, out, setting), match=match)
    assert not out.exists()


def test_a_held_out_split_too_small_for_the_floor_is_refused(tmp_path, refused):
    small = prepare(PrepareConfig(source="lfw", size=16, classes=["face"], test_fraction=0.1, workers=0),
                    tmp_path / "small", progress=False)  # 10 held-out faces
    out = tmp_path / "run"
    refused(*_train(small, out), match="at least 12")
    assert not out.exists()


@pytest.fixture(scope="module")
def lfw_and_features(tmp_path_factory):
    """Faces and non-faces at 16 px with a 30 % test split, and a tiny classifier trained on them
    as the features (seconds, where domain features would train for minutes)."""
    root = tmp_path_factory.mktemp("lfw-clf")
    lfw = prepare(PrepareConfig(source="lfw", size=16, test_fraction=0.3, workers=0), root / "lfw", progress=False)
    assert main(["train", "classifier", "--data", str(lfw.path), "--out", str(root / "clf"), "--preset", "tiny"]) == 0
    return lfw, root / "clf" / "model"


def test_max_steps_ending_the_run_at_an_epoch_end_evaluates_that_last_epoch(lfw_and_features, tmp_path):
    """train.max_steps stops after epoch 2 of 5 (8 steps per epoch): epoch 2 is the run's last,
    so it is evaluated although eval.every=3 would first evaluate epoch 3."""
    from synthworth.engine.run import RunFolder

    lfw, features = lfw_and_features
    out = tmp_path / "run"
    assert main(["train", "dcgan", "--data", str(lfw.path), "--out", str(out), "--preset", "tiny", "train.epochs=5",
                 "train.max_steps=16", "eval.every=3", "eval.samples=16", f"eval.features={features}"]) == 0
    rows = RunFolder(out).read_metrics()
    assert [r["epoch"] for r in rows if r.get("kind") == "epoch"] == [1, 2]
    evals = [r for r in rows if r.get("kind") == "eval"]
    assert [(r["epoch"], r["step"]) for r in evals] == [(2, 16)] and evals[0]["fid"] is not None


def test_eval_against_the_training_split_is_said_so_in_training_and_on_the_page(lfw_and_features, tmp_path, cli):
    """eval.real_split=train is allowed (the advice for a Dataset without a test split), but a
    memorising model scores best there: the training warns, and the comparison page does not
    call those images held out."""
    lfw, features = lfw_and_features
    run = tmp_path / "run"
    code, _, err = cli("train", "dcgan", "--data", lfw.path, "--out", run, "--preset", "tiny", "train.epochs=1",
                       "eval.every=1", "eval.samples=16", "eval.real_split=train", f"eval.features={features}")
    assert code == 0, err
    assert any("warning" in line and "training images themselves" in line for line in err), err
    code, _, err = cli("compare", "--run", f"gan={run}", "--real", lfw.path, "--features", features, "--draws", "2",
                       "--samples", "16", "--out", tmp_path / "cmp", "-q")
    assert code == 0, err
    page = " ".join((tmp_path / "cmp" / "report" / "index.html").read_text().split())
    assert "'train' not a held-out split" in page.replace("&#x27;", "'")
    assert "held-out real images;" not in page
