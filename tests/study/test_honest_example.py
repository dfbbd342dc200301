"""examples/digits-honest.yaml, quickly: the README's steps through the real CLI at a tiny scale
(4 scarce images per class, tiny DCGANs for one epoch), then the example spec itself with its
paths pointed at them. The scarce generator saw exactly the classifiers' real pool."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from synthworth.cli import main
from synthworth.data.dataset import Dataset
from synthworth.study import run_study

pytestmark = pytest.mark.usefixtures("single_thread")
SPEC = Path(__file__).parents[2] / "examples" / "digits-honest.yaml"


def sb(*args) -> None:
    assert main([str(a) for a in args]) == 0, args


def test_the_honest_example_runs_at_a_tiny_scale(digits16, tmp_path):
    data, png = tmp_path / "data", tmp_path / "png"
    # 1. the scarce subset (the README's commands, 4 per class instead of 10)
    sb("data", "export", digits16.path, "--split", "train", "--out", png / "train-all", "-q")
    sb("data", "prepare", "--path", png / "train-all", "--size", 16, "--channels", 1, "--max-per-class", 4,
       "--test-fraction", 0, "--workers", 0, "--out", data / "few", "-q")
    sb("data", "export", data / "few", "--out", png / "scarce-train", "-q")
    sb("data", "export", digits16.path, "--split", "test", "--out", png / "real-test", "-q")
    (png / "scarce").mkdir()
    for split in (png / "scarce-train" / "train", png / "real-test" / "test"):   # the README's mv
        shutil.move(split, png / "scarce" / split.name)
    sb("data", "prepare", "--path", png / "scarce", "--size", 16, "--channels", 1, "--workers", 0,
       "--out", data / "scarce", "-q")
    scarce = Dataset.open(data / "scarce")
    assert scarce.counts()["train"] == {str(d): 4 for d in range(10)} and len(scarce.split("test")) == 360
    # 2.-3. two tiny generators, one on the scarce train split, one on all training digits
    for name, real in (("scarce", data / "scarce"), ("full", digits16.path)):
        sb("train", "dcgan", "--data", real, "--out", tmp_path / "runs" / name, "--preset", "tiny",
           "model.conditional=true", "train.epochs=1")
        sb("generate", "--from", tmp_path / "runs" / name, "--per-class", 10, "--name", name,
           "--out", tmp_path / "synthetic" / name, "-q")
    prov = Dataset.open(tmp_path / "synthetic" / "scarce").manifest["provenance"]
    assert prov["trained_on"]["fingerprint"] == scarce.fingerprint and prov["trained_on"]["images"] == 40
    assert Dataset.open(tmp_path / "synthetic" / "full").manifest["provenance"]["trained_on"]["images"] == 1437
    # 4. the example spec, its paths and sizes made tiny
    overrides = [f"real={data / 'scarce'}", f"synthetic.scarce.path={tmp_path / 'synthetic' / 'scarce'}",
                 f"synthetic.full.path={tmp_path / 'synthetic' / 'full'}", f"out={tmp_path / 'results'}",
                 "sizes=[20]", "seeds=[0,1]", "augment_factors=[1.0]", "classifier_preset=tiny",
                 "classifier={train: {epochs: 1, batch_size: 16}}"]
    run_study(SPEC, overrides=overrides, progress=False)
    out = tmp_path / "results"
    described = json.loads((out / "inputs.json").read_text())
    # the scarce generator saw exactly the real pool the classifiers draw from; the full one more
    assert described["synthetic"]["scarce"]["provenance"]["trained_on"]["fingerprint"] == described["real"]["fingerprint"]
    assert described["real"]["pool"]["images"] == 40
    assert "1437 real images" in described["synthetic"]["full"]["provenance_text"]
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(table["filter"]) == {"none", "confidence"}
    # the scarce generator's filter classifier trained on those same 40 images, the full one's on 1,437
    for name, images in (("scarce", 40), ("full", 1437)):
        filtered = Dataset.open(described["synthetic"][name]["filtered"]["confidence"]["path"])
        assert filtered.manifest["provenance"]["filter"]["train_images"] == images
    comparisons = pd.read_csv(out / "comparisons.csv", keep_default_na=False)
    assert {"composition", "generator", "filter"} <= set(comparisons["kind"])
