"""``synthbench compare``: every bad input is one clear line (exit 2) and writes nothing; advice works."""

from __future__ import annotations

import json

import pytest
import torch
from adversarial_helpers import snapshot

from synthbench.classifiers.models import build_classifier
from synthbench.classifiers.task import ClassifierModelConfig, save_classifier
from synthbench.data.prepare import PrepareConfig, prepare
from synthbench.generators.dcgan import DCGAN, DCGANModelConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """LFW faces at 16 px with and without a test split, two saved (untrained) 16 px DCGANs (b
    class-conditional), a 32 px one, and an untrained classifier folder as the features (no
    training: fast)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("compare-world")
    faces = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", classes=["face"], test_fraction=0.3,
                                  workers=0), root / "faces", progress=False)
    only_train = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", classes=["face"], test_fraction=0.0,
                                       workers=0), root / "faces-train", progress=False)
    small = DCGANModelConfig(latent_dim=8, base_channels=4)
    for name, side in (("gan-a", 16), ("gan-32", 32)):
        DCGAN(small, side, 1, []).save(root / name)
    DCGAN(small.model_copy(update={"conditional": True}), 16, 1, ["face", "non_face"]).save(root / "gan-b")
    model = ClassifierModelConfig(name="small_cnn", resolution=None, width=4)
    save_classifier(build_classifier("small_cnn", 2, 1, 16, width=4), root / "clf", model, ["face", "non_face"])
    return root, faces.path, only_train.path


def base_args(root, real, out, *runs):
    runs = runs or (f"a={root / 'gan-a'}", f"b={root / 'gan-b'}")
    return ("compare", *(x for r in runs for x in ("--run", r)), "--real", real, "--features", root / "clf",
            "--draws", "2", "--samples", "8", "--out", out, "-q", "kid_subsets=5")


@pytest.mark.parametrize("run, match", [("gan", "is not NAME=PATH"), ("=somewhere", "is not NAME=PATH"),
                                        ("gan=", "is not NAME=PATH")])
def test_a_malformed_run_is_refused(world, refused, tmp_path, run, match):
    root, real, _ = world
    before = snapshot(tmp_path)
    refused(*base_args(root, real, tmp_path / "out", run), match=match)
    assert snapshot(tmp_path) == before


def test_a_name_given_twice_is_refused(world, refused, tmp_path):
    root, real, _ = world
    refused(*base_args(root, real, tmp_path / "out", f"a={root / 'gan-a'}", f"a={root / 'gan-b'}"),
            match=("'a' is given twice",))
    assert not (tmp_path / "out").exists()


def test_a_run_without_a_finished_model_or_not_a_generator_is_refused_by_name(world, refused, tmp_path):
    root, real, _ = world
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "config.yaml").write_text("kind: dcgan\n")
    before = snapshot(tmp_path)
    refused(*base_args(root, real, tmp_path / "out", f"a={root / 'gan-a'}", f"late={unfinished}"),
            match=(f"--run late={unfinished}", "no finished model", "--resume"))
    refused(*base_args(root, real, tmp_path / "out", f"data={real}"), match=("--run data=", "no saved generator"))
    refused(*base_args(root, real, tmp_path / "out", f"gone={tmp_path / 'gone'}"), match="does not exist")
    assert snapshot(tmp_path) == before


def test_a_real_dataset_without_a_held_out_split_says_how_to_make_one(world, refused, tmp_path):
    root, _, only_train = world
    line = refused(*base_args(root, only_train, tmp_path / "out"),
                   match=("has no 'test' split (it has: train)", "--test-fraction 0.2"))
    assert "pass --real-split" not in line  # it has no other split to name
    assert not (tmp_path / "out").exists()


def test_a_missing_split_names_the_one_to_pass_and_that_advice_works(world, refused, cli, tmp_path):
    root, real, _ = world
    out = tmp_path / "out"
    refused(*base_args(root, real, out), "--real-split", "valid", match=("no 'valid' split", "pass --real-split test"))
    refused(*base_args(root, real, out), "--train-split", "test", match="both for training images and as the held-out")
    refused(*base_args(root, real, out), "--train-split", "everything", match=("no 'everything' split",
                                                                              "pass --train-split train"))
    assert not out.exists()
    code, printed, err = cli(*base_args(root, real, out), "--real-split", "test")  # the advice followed
    assert code == 0, err
    assert printed.strip().splitlines()[-1] == str(out / "report" / "index.html")
    models = json.loads((out / "findings.json").read_text())["models"]
    assert set(models) == {"a", "b"} and models["a"]["labels"] is None
    # The conditional generator samples its classes in turn, and the findings say so.
    assert models["b"]["labels"] == "evenly over its 2 classes (face, non_face)"
    assert "labels drawn evenly over its 2 classes" in models["b"]["sentences"]["quality"]


@pytest.mark.parametrize("flags, match", [(("--draws", "1"), "at least 2 draws"),
                                          (("--samples", "3"), "at least 4 samples"),
                                          (("--samples", "5"), "need at least 6 samples")])
def test_too_few_draws_or_samples_are_refused(world, refused, tmp_path, flags, match):
    root, real, _ = world
    refused(*base_args(root, real, tmp_path / "out"), *flags, match=match)
    assert not (tmp_path / "out").exists()


def test_a_foreign_or_other_kind_of_out_folder_is_never_touched(world, refused, tmp_path):
    root, real, _ = world
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    before = snapshot(tmp_path)
    refused(*base_args(root, real, mine), match=("not written by synthbench", "choose a new folder"))
    refused(*base_args(root, real, root / "gan-32"), match="holds a synthbench generator")
    assert snapshot(tmp_path) == before


def test_an_out_inside_or_equal_to_an_input_is_refused(world, refused, tmp_path):
    root, real, _ = world
    before = snapshot(root)
    refused(*base_args(root, real, real / "findings"), match="lies inside the input")
    refused(*base_args(root, real, root / "gan-a" / "findings"), match="lies inside the input")
    refused(*base_args(root, real, root / "gan-b"), match="is the input")
    assert snapshot(root) == before


def test_a_run_given_as_real_or_a_generator_of_another_size_is_refused(world, refused, tmp_path):
    root, real, _ = world
    refused(*base_args(root, root / "gan-a", tmp_path / "out"), match=("--real", "a saved generator, not a Dataset"))
    refused(*base_args(root, real, tmp_path / "out", f"a={root / 'gan-a'}", f"big={root / 'gan-32'}"),
            match=("--run big=", "makes 32x32x1 images", "16x16x1"))
    assert not (tmp_path / "out").exists()


def test_a_comparison_is_replaced_by_the_next_but_not_once_the_user_adds_a_file(world, cli, refused, tmp_path):
    root, real, _ = world
    out = tmp_path / "out"
    for seed in ("0", "1"):
        code, _, err = cli(*base_args(root, real, out), "--seed", seed)
        assert code == 0, err
    assert json.loads((out / "findings.json").read_text())["seed"] == 1
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == [
        ".synthbench", "findings.csv", "findings.json", "report"]
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    refused(*base_args(root, real, out), match=("notes.txt", "will not be replaced"))
    assert snapshot(out) == before
