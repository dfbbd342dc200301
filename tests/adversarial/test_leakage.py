"""Test-set leakage (issue 19, item 3): a generator, or the filter that made its Dataset, trained on
the study's real test images is refused before anything is written; with ``allow_test_leakage``
the study runs and every number that depends on it is marked (tables, report, study exchange)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset, atomic_folder, write_packed

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = {"compositions": ["real", "artificial"], "sizes": [20], "seeds": [0], "classifier_preset": "tiny",
        "classifier": {"train": {"epochs": 1, "batch_size": 16}}}


def packed(path, images, labels, class_names, manifest, splits=None) -> Dataset:
    splits = np.full(len(images), "train") if splits is None else np.asarray(splits)
    with atomic_folder(path, kind="dataset", replace=True) as tmp:
        write_packed(tmp, images, labels, splits, class_names, [{} for _ in images], manifest)
    return Dataset.open(path)


def trained(ds: Dataset, split: str) -> dict:
    return {"kind": "trained", "note": "a test generator",
            "trained_on": {"fingerprint": ds.fingerprint, "name": ds.path.name, "path": str(ds.path),
                           "split": split, "images": int((ds.splits == split).sum())}}


def generated(path, digits16, provenance) -> Dataset:
    """100 noisy training digits (no pixel is a test image's) whose manifest records ``provenance``."""
    part = subset(digits16.split("train"), count=100, seed=4)
    pixels = part.take(np.arange(len(part))).astype(int) + np.random.default_rng(4).integers(-9, 10, (100, 16, 16, 1))
    return packed(path, np.clip(pixels, 0, 255).astype(np.uint8), part.labels, part.class_names,
                  {"kind": "synthetic", "provenance": provenance})


def write_spec(tmp_path, digits16, synthetic: Dataset, **keys):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "leak", "real": str(digits16.path),
                                    "synthetic": {"leaky": str(synthetic.path)}, **FAST, **keys}))
    return path


def test_a_generator_trained_on_the_studys_own_test_split_is_refused(tmp_path, digits16, refused):
    syn = generated(tmp_path / "gen", digits16, trained(digits16, "test"))
    path = write_spec(tmp_path, digits16, syn)
    line = refused("study", "run", path, "-q",
                   match=("test-set leakage: generator 'leaky' saw 360 of the study's 360 real test images",
                          f"its generator was trained on {digits16.path}, split 'test'",
                          "allow_test_leakage: true"))
    assert "inflated" in line
    assert not (tmp_path / "spec-results").exists()  # refused before anything was written
    refused("study", "status", path, match="test-set leakage")


def test_a_generator_trained_on_another_dataset_holding_test_images_is_found_image_by_image(tmp_path, digits16,
                                                                                          refused):
    """Its own Dataset (another fingerprint) holds 40 of the study's test images among training ones."""
    train, test = digits16.split("train"), digits16.split("test")
    images = np.concatenate([train.take(np.arange(200)), test.take(np.arange(40))])
    labels = np.concatenate([train.labels[:200], test.labels[:40]])
    other = packed(tmp_path / "scraped", images, labels, digits16.class_names, {"kind": "prepared"})
    syn = generated(tmp_path / "gen", digits16, trained(other, "train"))
    refused("study", "run", write_spec(tmp_path, digits16, syn), "-q",
            match=("generator 'leaky' saw 40 of the study's 360 real test images", f"{other.path}, split 'train'"))


def test_a_filtered_dataset_whose_filter_classifier_saw_the_test_split_is_refused(tmp_path, digits16, refused):
    """The generator trained on the train split, but the filter that made this Dataset trained its
    classifier on the test split."""
    parent = trained(digits16, "train")
    prov = {"kind": "filtered", "trained_on": parent["trained_on"], "parent": parent, "note": "filtered",
            "filter": {"method": "confidence", "keep": 0.5, "real_fingerprint": digits16.fingerprint,
                       "real_path": str(digits16.path), "real_split": "test"}}
    syn = generated(tmp_path / "gen", digits16, prov)
    refused("study", "run", write_spec(tmp_path, digits16, syn), "-q",
            match=("generator 'leaky' saw 360 of the study's 360", "the confidence filter's classifier was trained on"))


def test_allowed_leakage_runs_and_marks_every_affected_number(tmp_path, digits16, cli):
    syn = generated(tmp_path / "gen", digits16, trained(digits16, "test"))
    path = write_spec(tmp_path, digits16, syn, sizes=[20, 30, 40])
    out = tmp_path / "spec-results"
    # The refusal's advice, followed as a KEY=VALUE override.
    code, _, err = cli("study", "run", path, "-q", "allow_test_leakage=true")
    assert code == 0, err
    assert any("test-set leakage allowed" in line and "'leaky' saw 360" in line for line in err)
    results = pd.read_csv(out / "results.csv")
    by = dict(zip(results["composition"], results["test_leakage"]))
    assert by == {"real": 0, "artificial": 360}
    for table in ("summary", "comparisons", "exchange_rates"):
        marked = pd.read_csv(out / f"{table}.csv")
        assert "test_leakage" in marked.columns and marked["test_leakage"].max() == 360, table
    assert json.loads((out / "inputs.json").read_text())["test_leakage"]["leaky"]["images"] == 360
    code, text, err = cli("study", "exchange", out)
    assert code == 0, err
    assert text.count("TEST-SET LEAKAGE: generator 'leaky' saw 360 of the study's 360") == 1
    assert "[TEST LEAKAGE: its generator saw 360 real test images]" in text
    code, printed, err = cli("report", out, "--out", tmp_path / "page" / "index.html")
    assert code == 0, err
    page = (tmp_path / "page" / "index.html").read_text()
    assert "<p class='warning'>TEST-SET LEAKAGE: generator &#x27;leaky&#x27; saw 360" in page
