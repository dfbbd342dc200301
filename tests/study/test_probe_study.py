"""A study of linear probes (``classifier_preset: probe`` with a tiny local backbone) end to end
through the command line: on the digits (real, artificial, mixed, subset_real) and on the faces
(face against non-face): every image's features extracted once, every cell scored and keeping
its predictions, the report naming the protocol, and replaced weights training the cells again."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthworth.cli import main
from synthworth.data.prepare import PrepareConfig, prepare
from synthworth.report.page import build_report
from synthworth.study import plan_study
from synthworth.study.spec import load_spec


def _load(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


tiny = _load("tiny_backbones", Path(__file__).parents[1] / "classifiers" / "tiny_backbones.py")
pytestmark = pytest.mark.usefixtures("single_thread")
COMPOSITIONS = ["real", "artificial", "mixed", "subset_real"]


def _chunk_rows(folder: Path) -> int:
    total = 0
    for chunk in folder.rglob("*.npz"):
        with np.load(chunk, allow_pickle=False) as data:
            total += len(data["keys"])
    return total


def test_a_probe_study_on_the_digits_runs_from_the_cli(write_spec, tmp_path, capsys):
    weights = tiny.resnet_file(tmp_path / "backbone" / "resnet18.safetensors")
    spec = write_spec(compositions=COMPOSITIONS, sizes=[40, 80], seeds=[0], classifier_preset="probe",
                      classifier={"model": {"name": "resnet18", "weights": "backbone/resnet18.safetensors",
                                            "resolution": 16}})
    assert main(["study", "run", str(spec), "-q"]) == 0
    assert "11 cell(s) trained" in capsys.readouterr().out  # subset_real at 80 is real at 40: 12 cells
    out = tmp_path / "spec-results"
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 12 and set(table["classifier.model.mode"]) == {"linear_probe"}
    assert set(table["budget"]) == {"linear_probe"} and set(table["classifier.model.weights"]) == {str(weights)}
    assert table["accuracy"].between(0.3, 1).all()  # random backbone features still separate digits
    # Every cell kept its predictions, which give its accuracy exactly.
    for row in table.itertuples():
        predictions = pd.read_parquet(out / "cells" / row.key / "predictions-real_test.parquet")
        assert float((predictions["predicted"] == predictions["label"]).mean()) == row.accuracy
        assert json.loads(row.confusion_matrix) and len(json.loads(row.confusion_matrix)) == 10
    # Each image's features were extracted once: the real pool and test set and each generator's
    # pool and held-out images, nothing more for the 11 trainings.
    plan = plan_study(load_spec(spec)[0])
    unique = {plan.inputs.pool.fingerprint: len(plan.inputs.pool), plan.inputs.test.fingerprint: len(plan.inputs.test)}
    for synthetic in plan.inputs.synthetic.values():
        unique[synthetic.pool.fingerprint], unique[synthetic.test.fingerprint] = len(synthetic.pool), len(synthetic.test)
    assert _chunk_rows(out / "features") <= sum(unique.values())
    assert len(list((out / "features").rglob("*.npz"))) == len(unique)
    inputs = json.loads((out / "inputs.json").read_text())
    assert inputs["classifier_backbone"]["kind"] == "file" and inputs["classifier_backbone"]["preprocess"]["size"] == 16
    page = build_report(out, tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "Protocol: a linear probe: the pretrained backbone frozen" in page
    assert f"weights {weights}" in page and inputs["classifier_backbone"]["sha256"][:12] in page
    # Run again: nothing to do. Replace the weights in place: every cell has a new key (trained again).
    assert main(["study", "run", str(spec), "-q"]) == 0
    assert "0 cell(s) trained, 11 already complete" in capsys.readouterr().out
    tiny.resnet_file(weights, seed=1)
    again = plan_study(load_spec(spec)[0])
    assert not set(again.keys) & set(plan.keys) and again.backbone["sha256"] != plan.backbone["sha256"]


def test_a_probe_study_on_the_faces_with_a_transformers_backbone(tmp_path, capsys):
    faces = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", test_fraction=0.3, seed=0, workers=0),
                    tmp_path / "lfw", progress=False)
    assert faces.class_names == ["face", "non_face"]
    backbone = tiny.clip_folder(tmp_path / "clip")
    spec = tmp_path / "faces.yaml"
    spec.write_text(json.dumps({"real": str(faces.path), "compositions": ["real"], "sizes": [20, 60], "seeds": [0, 1],
                                "classifier_preset": "probe",
                                "classifier": {"model": {"name": "clip", "weights": str(backbone)}}}))
    assert main(["study", "run", str(spec), "-q"]) == 0
    table = pd.read_csv(tmp_path / "faces-results" / "results.csv")
    assert len(table) == 4 and (table["n_test"] == len(faces.split("test"))).all()
    assert set(table["classifier.model.name"]) == {"clip"} and table["accuracy"].between(0, 1).all()
    inputs = json.loads((tmp_path / "faces-results" / "inputs.json").read_text())
    assert inputs["classifier_backbone"]["preprocess"]["size"] == 32  # the CLIP config's side, not the data's 16
    assert "32x32" in " ".join(inputs["notes"])  # the images are resized on the fly, and the study says so
