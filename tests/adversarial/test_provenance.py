"""Provenance and filters against bad input, through the real CLI: a provenance that points at a
missing or another Dataset, a malformed one, an impossible keep share, filters with nothing to
filter. Each is one line and exit 2 before anything is written, the inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset, atomic_folder, write_packed

from adversarial_helpers import snapshot  # noqa: E402  (see conftest.py)

pytestmark = pytest.mark.usefixtures("single_thread")


def packed(path, view: Dataset, manifest: dict) -> Dataset:
    with atomic_folder(path, kind="dataset") as tmp:
        write_packed(tmp, view.take(np.arange(len(view))), view.labels, view.splits, view.class_names,
                     [{} for _ in range(len(view))], manifest)
    return Dataset.open(path)


@pytest.fixture
def world(digits16, tmp_path):
    """The generator's real data (``seen``), a synthetic Dataset naming it, and a spec writer."""
    seen = packed(tmp_path / "seen", subset(digits16.split("train"), per_class=5, seed=1), {"kind": "prepared"})

    def synthetic(name: str, prov) -> Dataset:
        return packed(tmp_path / name, subset(digits16.split("train"), count=100, seed=2),
                      {"kind": "synthetic", **({"provenance": prov} if prov is not ... else {})})

    def spec(synthetic_path, **keys):
        data = {"real": str(digits16.path), "synthetic": {"gen": str(synthetic_path)}, "compositions": ["artificial"],
                "sizes": [10], "seeds": [0], "classifier_preset": "tiny", "filters": ["none", "confidence"],
                "classifier": {"train": {"epochs": 1, "batch_size": 16}}, **keys}
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    on = {"fingerprint": seen.fingerprint, "name": "seen", "path": str(seen.path), "split": "train", "images": 50}
    return seen, synthetic, spec, on


def test_provenance_pointing_at_a_missing_dataset_is_refused(world, refused, tmp_path):
    seen, synthetic, spec, on = world
    gen = synthetic("gen", {"kind": "trained", "trained_on": {**on, "path": str(tmp_path / "gone")}, "note": ""})
    before = snapshot(gen.path)
    refused("study", "run", spec(gen.path), "-q",
            match=("generator 'gen'", f"{tmp_path / 'gone'}, which cannot be opened", "filters: [none]"))
    assert not (tmp_path / "spec-results").exists() and snapshot(gen.path) == before


def test_provenance_pointing_at_another_dataset_is_refused_naming_both_fingerprints(world, refused, tmp_path):
    seen, synthetic, spec, on = world
    gen = synthetic("gen", {"kind": "trained", "trained_on": {**on, "fingerprint": "0" * 32}, "note": ""})
    line = refused("study", "run", spec(gen.path), "-q", match=("0" * 32, seen.fingerprint, "other images"))
    assert "filters: [none]" in line and not (tmp_path / "spec-results").exists()


def test_a_dataset_without_provenance_cannot_be_filtered_but_runs_unfiltered(world, refused, cli, tmp_path):
    seen, synthetic, spec, on = world
    gen = synthetic("old", ...)
    refused("study", "run", spec(gen.path), "-q", match=("records no provenance", "filters: [none]"))
    # the advice works: the same study unfiltered
    code, _, err = cli("study", "run", spec(gen.path), "-q", "filters=[none]")
    assert code == 0, err


@pytest.mark.parametrize("bad", [{"kind": "trained", "trained_on": "everything"}, ["trained"],
                                 {"kind": "stolen", "trained_on": None}])
def test_a_malformed_provenance_is_refused_by_the_study_and_by_data_info(world, refused, bad, tmp_path):
    seen, synthetic, spec, on = world
    gen = synthetic("gen", bad)
    before = snapshot(gen.path)
    refused("study", "run", spec(gen.path, filters=["none"]), "-q",
            match=("synthetic Dataset 'gen'", "provenance is malformed", "generate the Dataset again"))
    refused("data", "info", gen.path, match="provenance is malformed")
    assert snapshot(gen.path) == before and not (tmp_path / "spec-results").exists()


@pytest.mark.parametrize("keep", [0, -0.5, 1.5])
def test_a_keep_share_outside_0_to_1_is_refused(world, refused, keep, tmp_path):
    seen, synthetic, spec, on = world
    gen = synthetic("gen", {"kind": "trained", "trained_on": on, "note": ""})
    refused("study", "run", spec(gen.path, filter_keep=keep), "-q", match="filter_keep")
    assert not (tmp_path / "spec-results").exists()


def test_filters_on_a_study_without_synthetic_images_are_refused(digits16, refused, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"real": str(digits16.path), "compositions": ["real", "subset_real"],
                                    "sizes": [10], "filters": ["none", "confidence"]}))
    refused("study", "run", path, "-q", match=("filters ['confidence'] apply to synthetic images", "filters: [none]"))
    assert not (tmp_path / "spec-results").exists()
