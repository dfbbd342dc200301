"""``synthworth study run`` / ``study status`` against bad specs, misplaced results folders,
leaking splits, failing, corrupt and contended cells: each through the real CLI, each with the
outcome a user needs (one line and exit 2 before anything is written, the user's files intact,
partial results labelled as partial)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset, atomic_folder, write_packed

from adversarial_helpers import snapshot  # noqa: E402  (see conftest.py)

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = {"compositions": ["real"], "sizes": [20], "seeds": [0], "classifier_preset": "tiny",
        "classifier": {"train": {"epochs": 1, "batch_size": 16}}}


def write_dataset(path, images, labels, class_names, splits=None) -> Dataset:
    splits = np.full(len(images), "train") if splits is None else np.asarray(splits)
    with atomic_folder(path, kind="dataset") as tmp:
        write_packed(tmp, images, labels, splits, class_names, [{} for _ in images], {"kind": "synthetic"})
    return Dataset.open(path)


@pytest.fixture(scope="module")
def gan(digits16, tmp_path_factory) -> Dataset:
    """A "generator's" Dataset: 100 real training digits with pixel noise (none is a test image)."""
    part = subset(digits16.split("train"), count=100, seed=3)
    pixels = part.take(np.arange(len(part))).astype(int)
    pixels += np.random.default_rng(3).integers(-9, 10, pixels.shape)
    return write_dataset(tmp_path_factory.mktemp("gan") / "gan", np.clip(pixels, 0, 255).astype(np.uint8),
                         part.labels, part.class_names)


@pytest.fixture
def spec(tmp_path, digits16, gan):
    """``spec(name="spec.yaml", folder=tmp_path, **keys)`` -> path of a fast spec file."""

    def write(name: str = "spec.yaml", folder=None, **keys):
        folder = folder or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        data = {"name": "adv", "real": str(digits16.path), "synthetic": {"gan": str(gan.path)}, **FAST, **keys}
        path = folder / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def grid(out) -> dict:
    return json.loads((out / "grid.json").read_text())


# ------------------------------------------------------------------------------ bad specs: one line, nothing written
@pytest.mark.parametrize("keys, match", [
    ({"seeds": [0, 1, 0]}, ("key 'seeds'", "0 is listed twice")),
    ({"sizes": [20, 20]}, ("key 'sizes'", "20 is listed twice")),
    ({"seeds": [-3]}, ("key 'seeds'", "between 0 and 2147483647, got -3")),
    ({"seeds": [2**40]}, ("key 'seeds'", f"got {2**40}")),
])
def test_repeated_or_out_of_range_grid_values_are_refused_before_anything_is_written(spec, tmp_path, refused,
                                                                                     keys, match):
    path = spec(**keys)
    before = snapshot(tmp_path)
    refused("study", "run", path, "-q", match=match)
    assert snapshot(tmp_path) == before  # no results folder, nothing else


def test_generators_named_alike_but_for_case_are_refused(spec, tmp_path, refused, gan):
    path = spec(synthetic={"gan": str(gan.path), "GAN": str(gan.path)}, compositions=["artificial"])
    refused("study", "run", path, "-q", match="generator names 'gan' and 'GAN' differ only by case")
    assert not (tmp_path / "spec-results").exists()


def test_a_key_given_twice_in_the_yaml_is_refused_not_silently_overridden(spec, tmp_path, refused):
    path = spec()
    path.write_text(path.read_text() + "seeds: [7]\n")
    refused("study", "run", path, "-q", match=(str(path), "key 'seeds' is given twice"))
    assert not (tmp_path / "spec-results").exists()


# ------------------------------------------------------------------------------ the results folder
def test_out_pointing_to_the_spec_folder_never_rewrites_the_spec(spec, tmp_path, refused, cli):
    project = tmp_path / "project"
    path = spec("study.yaml", folder=project)
    (project / "notes.md").write_text("my notes")
    before = snapshot(tmp_path)
    line = refused("study", "run", path, "--out", project, "-q", match=("would overwrite the spec", "--out"))
    assert snapshot(tmp_path) == before
    # The advice works: the suggested folder is accepted.
    suggested = line.split("e.g. --out ")[1].strip()
    code, _, err = cli("study", "run", path, "--out", suggested, "-q")
    assert code == 0, err
    assert (project / "study.yaml").read_text() == path.read_text() and "real:" in path.read_text()


def test_out_dot_in_the_spec_beside_the_spec_is_refused(spec, tmp_path, refused):
    # Also a spec with another name: the folder holds files synthworth did not write.
    other = spec("mine.yaml", folder=tmp_path / "q", out=".")
    refused("study", "run", other, "-q", match="holds files synthworth did not write (mine.yaml)")
    path = spec("study.yaml", folder=tmp_path / "p", out=".")
    text = path.read_text()
    refused("study", "run", path, "-q", match=f"would overwrite the spec {path}")
    assert path.read_text() == text and sorted(p.name for p in path.parent.iterdir()) == ["study.yaml"]


def test_out_that_is_the_real_dataset_is_refused(spec, digits16, refused):
    before = snapshot(digits16.path)
    refused("study", "run", spec(), "--out", digits16.path, "-q", match=("is the input", str(digits16.path)))
    assert snapshot(digits16.path) == before


def test_out_that_contains_a_synthetic_dataset_is_refused(spec, gan, refused):
    parent = gan.path.parent
    before = snapshot(parent)
    refused("study", "run", spec(compositions=["artificial"]), "--out", parent, "-q", match="contains the input")
    assert snapshot(parent) == before


def test_a_colleagues_results_are_never_overwritten(spec, tmp_path, refused):
    theirs = tmp_path / "shared-results"
    theirs.mkdir()
    (theirs / "results.csv").write_text("composition,accuracy\nreal,0.99\n")
    before = snapshot(theirs)
    refused("study", "run", spec(), "--out", theirs, "-q", match=("results.csv", "choose a new one"))
    assert snapshot(theirs) == before


def test_a_results_folder_that_is_a_file_is_refused(spec, tmp_path, refused):
    path = tmp_path / "results"
    path.write_text("not a folder")
    refused("study", "run", spec(), "--out", path, "-q", match="is a file, not a folder")
    assert path.read_text() == "not a folder"
    own = spec()
    text = own.read_text()
    refused("study", "run", own, "--out", own, "-q", match="would overwrite the spec")  # --out the spec itself
    assert own.read_text() == text


# ------------------------------------------------------------------------------ leaking or unusable data, before training
def test_a_real_test_split_that_overlaps_the_training_pool_is_refused(spec, tmp_path, digits16, refused):
    test = digits16.split("test")
    images = np.concatenate([digits16.take(np.arange(len(digits16))), test.take(np.arange(5))])
    labels = np.concatenate([digits16.labels, test.labels[:5]])
    splits = np.concatenate([digits16.splits, ["train"] * 5])  # five test images also in train
    leaky = write_dataset(tmp_path / "leaky", images, labels, digits16.class_names, splits)
    path = spec(real=str(leaky.path))
    refused("study", "run", path, "-q", match="5 image(s) of the test split 'test' are identical to images of the "
                                              "training split 'train'")
    assert not (tmp_path / "spec-results").exists()  # refused before anything was trained or written


def test_a_synthetic_set_too_small_to_hold_out_test_images_is_refused(spec, tmp_path, gan, refused):
    one_each = np.array([np.flatnonzero(gan.labels == c)[0] for c in range(10)])
    tiny = write_dataset(tmp_path / "tiny", gan.take(one_each), gan.labels[one_each], gan.class_names)
    path = spec(synthetic={"tiny": str(tiny.path)}, compositions=["artificial"], sizes=[5])
    refused("study", "run", path, "-q", match=("'tiny'", "too small to hold out test images"))
    assert not (tmp_path / "spec-results").exists()


def test_sizes_larger_than_the_pool_are_refused_before_training(spec, tmp_path, refused):
    refused("study", "run", spec(sizes=[20, 5000]), "-q", match="needs 5000 real training images but only 1437 exist")
    assert not (tmp_path / "spec-results").exists()


# ------------------------------------------------------------------------------ faults while cells run
def test_a_failing_cell_ends_with_one_line_and_partial_tables(spec, tmp_path, cli, monkeypatch):
    import synthworth.study.cell as cell

    real_run_cell = cell.run_cell

    def run_cell(plan, planned, store):
        if planned.cell.seed == 1:
            raise FloatingPointError("loss is NaN (simulated)")
        return real_run_cell(plan, planned, store)

    monkeypatch.setattr(cell, "run_cell", run_cell)
    path = spec(seeds=[0, 1])
    code, _, err = cli("study", "run", path, "-q")
    out = tmp_path / "spec-results"
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert "real size 20 seed 1" in err[0] and str(out / "log.txt") in err[0] and "1 of 2 cells" in err[0]
    state = grid(out)
    assert state["complete"] is False and state["finished_cells"] == 1
    assert [(m["seed"], m["state"]) for m in state["missing"]] == [(1, "failed")]
    code, text, _ = cli("study", "status", path)
    assert code == 0 and "1 of 2 finished (PARTIAL)" in text and "1 failed" in text
    monkeypatch.setattr(cell, "run_cell", real_run_cell)
    code, _, err = cli("study", "run", path, "-q")  # the advice: run the same command again
    assert code == 0, err
    assert grid(out)["complete"] is True


def test_a_truncated_cell_result_is_trained_again_with_a_warning(spec, tmp_path, cli):
    path = spec()
    assert cli("study", "run", path, "-q")[0] == 0
    out = tmp_path / "spec-results"
    (result,) = out.glob("cells/*/result.json")
    result.write_text('{"key": "')
    code, text, err = cli("study", "run", path, "-q")
    assert code == 0 and "1 cell(s) trained" in text, err
    assert any("warning" in line and "unreadable" in line for line in err) and "Traceback" not in "\n".join(err)
    assert json.loads(result.read_text())["real_test"]["n"] == 360 and grid(out)["complete"]


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_a_cell_another_process_is_training_is_skipped_and_reported(spec, tmp_path, cli):
    from synthworth.study import plan_study
    from synthworth.study.cache import claim_results_folder
    from synthworth.study.spec import load_spec

    path = spec(seeds=[0, 1])
    plan = plan_study(load_spec(path)[0])
    claim_results_folder(plan.out)
    busy = plan.out / "cells" / plan.cells[0].key
    busy.mkdir(parents=True)
    (busy / "cell.json").write_text("{}")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(busy / ".synthworth.lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, text, err = cli("study", "run", path, "-q")
        assert code == 0 and "1 cell(s) trained" in text, err
        assert any("being trained by another process" in line and "1 of 2 cells" in line for line in err), err
        assert [m["state"] for m in grid(plan.out)["missing"]] == ["interrupted"]
        code, text, _ = cli("study", "status", path)
        assert "1 interrupted (1 running now in another process)" in text
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    code, text, _ = cli("study", "run", path, "-q")
    assert code == 0 and "1 cell(s) trained, 1 already complete" in text and grid(plan.out)["complete"]


def test_status_of_one_shard_agrees_with_grid_json(spec, tmp_path, cli):
    path = spec(seeds=[0, 1, 2])
    code, _, err = cli("study", "run", path, "--shard", "0/3", "-q")
    assert code == 0 and any("the study is partial: 2 cell(s) not done yet" in line for line in err), err
    state = grid(tmp_path / "spec-results")
    assert (state["planned_cells"], state["finished_cells"], state["complete"]) == (3, 1, False)
    code, text, _ = cli("study", "status", path)
    assert code == 0 and "1 of 3 finished (PARTIAL)" in text and "2 not started" in text
