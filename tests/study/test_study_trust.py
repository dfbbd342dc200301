"""Statistics that cannot lie, and a results folder that never harms the user's files:
repeated grid values refused, partial studies labelled (grid.json, planned/finished columns),
input checks before training, failed / locked / corrupt cells, and the results-folder guard."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthworth import safety
from synthworth.errors import ConfigError, DataError
from synthworth.study import StudyFailed, StudyWarning, plan_study, run_study, study_status
from synthworth.study.cache import CellStore, claim_results_folder
from synthworth.study.spec import load_spec

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = {"compositions": ["real"], "seeds": [0], "sizes": [20],
        "classifier": {"train": {"epochs": 1, "batch_size": 16}}}


def grid(out) -> dict:
    return json.loads((out / "grid.json").read_text())


# ------------------------------------------------------------------------------ repeated values
@pytest.mark.parametrize("key, value, shown", [
    ("seeds", [0, 1, 1], "1 is listed twice"),
    ("sizes", [40, 20, 40], "40 is listed twice"),
    ("compositions", ["real", "mixed", "real"], "'real' is listed twice"),
    ("ratios", [0.2, 0.5, 0.5], "0.5 is listed twice"),
    ("augment_factors", [1, 1.0], "1.0 is listed twice"),
    ("comparisons", [["real", "mixed"], ["real", "mixed"]], "('real', 'mixed') is listed twice"),
])
def test_a_repeated_grid_value_is_refused_naming_the_key_and_value(write_spec, key, value, shown):
    with pytest.raises(ConfigError) as info:
        load_spec(write_spec(**{key: value}))
    assert f"key {key!r}" in str(info.value) and shown in str(info.value)


def test_repeated_per_class_generator_names_by_case_and_yaml_keys_are_refused(write_spec, fake_generators):
    with pytest.raises(ConfigError, match=r"key 'per_class'.*5 is listed twice"):
        load_spec(write_spec(sizes=None, per_class=[5, 5]))
    with pytest.raises(ConfigError, match="generator names 'gan' and 'GAN' differ only by case"):
        load_spec(write_spec(synthetic={"gan": str(fake_generators["gan"]), "GAN": str(fake_generators["ddpm"])}))
    spec = write_spec()
    spec.write_text(spec.read_text() + "seeds: [5]\n")  # a second 'seeds:' that YAML would let win silently
    with pytest.raises(ConfigError, match=r"key 'seeds' is given twice \(line \d+\)"):
        load_spec(spec)


@pytest.mark.parametrize("seed", [-1, 2**31, 10**20])
def test_a_negative_or_huge_seed_is_a_config_error(write_spec, seed):
    with pytest.raises(ConfigError, match=f"key 'seeds'.*between 0 and 2147483647, got {seed}"):
        load_spec(write_spec(seeds=[0, seed]))


# ------------------------------------------------------------------------------ partial studies
def test_a_failing_cell_is_recorded_the_others_run_and_the_tables_say_partial(write_spec, monkeypatch):
    spec = write_spec(**{**FAST, "seeds": [0, 1, 2]})
    import synthworth.study.cell as cell

    plan = plan_study(load_spec(spec)[0])
    doomed = plan.cells[1]  # seed 1
    real_run_cell = cell.run_cell

    def run_cell(plan, planned, store):
        if planned.key == doomed.key:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_run_cell(plan, planned, store)

    monkeypatch.setattr(cell, "run_cell", run_cell)
    with pytest.raises(StudyFailed) as info:
        run_study(spec, progress=False)
    message = str(info.value)
    assert "1 job(s) of the study failed (real size 20 seed 1)" in message and "log.txt" in message
    assert "2 of 3 cells" in message
    out = info.value.report.out
    assert sorted(info.value.report.trained) == sorted(p.key for p in plan.cells if p.cell.seed != 1)
    state = grid(out)
    assert (state["planned_cells"], state["finished_cells"], state["complete"]) == (3, 2, False)
    assert state["missing"] == [{"composition": "real", "generator": None, "filter": None, "size": 20, "ratio": None,
                                 "seed": 1, "state": "failed"}]
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["seed"]) == [0, 2]
    assert set(table["planned_cells"]) == {3} and set(table["finished_cells"]) == {2}
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["n_seeds"]) == [2] and set(summary["finished_cells"]) == {2}
    assert "CUDA out of memory" in (out / "log.txt").read_text()
    assert "CUDA out of memory" in json.loads((out / "cells" / doomed.key / "failed.json").read_text())["error"]
    status = study_status(spec)
    assert status.failed == [doomed.key] and status.grid["missing"] == state["missing"]
    assert "2 of 3 finished (PARTIAL)" in status.format()
    # Fixed and run again: only the failed cell trains, and the study is complete.
    monkeypatch.setattr(cell, "run_cell", real_run_cell)
    again = run_study(spec, progress=False)
    assert again.trained == [doomed.key] and grid(out)["complete"] and grid(out)["missing"] == []
    assert not (out / "cells" / doomed.key / "failed.json").exists()


def test_one_shard_of_two_is_labelled_partial_and_status_agrees(write_spec):
    spec = write_spec(**{**FAST, "seeds": [0, 1], "compositions": ["real", "artificial"]})
    with pytest.warns(StudyWarning, match="every shard completes this study only when run with --out") as said:
        run = run_study(spec, shard="0/2", progress=False)
    assert str(run.out) in str(said[0].message)   # the one folder every shard must write into
    state = grid(run.out)
    assert state["planned_cells"] == 6 and state["planned_trainings"] == 6
    assert state["finished_trainings"] == len(run.trained) == 3 and not state["complete"]
    assert {m["state"] for m in state["missing"]} == {"not started"}
    assert {m["generator"] for m in state["missing"] if m["composition"] == "artificial"} <= {"gan", "ddpm"}
    assert all(m["ratio"] == 1.0 for m in state["missing"] if m["composition"] == "artificial")
    status = study_status(spec)
    assert {k: v for k, v in status.grid.items()} == {k: v for k, v in state.items() if k != "written_at"}
    assert len(status.pending) == 3


def test_metrics_not_computed_are_listed_in_grid_json(write_spec, monkeypatch):
    import synthworth.study.runner as runner

    def broken(*args, **kwargs):
        raise OSError("no space left on device (simulated)")

    monkeypatch.setattr(runner, "_run_metrics", broken)
    spec = write_spec(**FAST, metrics={"enabled": True, "domain_preset": "tiny", "domain_epochs": 1})
    with pytest.raises(StudyFailed, match=r"metrics of gan"):
        run_study(spec, progress=False)
    state = grid(spec.parent / "spec-results")
    assert state["finished_cells"] == state["planned_cells"] == 1
    assert sorted(state["metrics_missing"]) == ["ddpm", "gan"] and state["complete"] is False


def test_a_truncated_cell_result_is_retrained_with_a_warning(write_spec):
    spec = write_spec(**FAST)
    first = run_study(spec, progress=False)
    key = first.trained[0]
    result = first.out / "cells" / key / "result.json"
    result.write_text(result.read_text()[:40])
    with pytest.warns(StudyWarning, match="result.json is missing or unreadable .* trained again"):
        status = study_status(spec)
    assert status.started == [key] and status.grid["finished_cells"] == 0
    with pytest.warns(StudyWarning, match="unreadable"):
        again = run_study(spec, progress=False)
    assert again.trained == [key] and json.loads(result.read_text())["key"] == key
    assert grid(first.out)["complete"]


def test_a_cell_trained_elsewhere_is_skipped_not_trained_twice(write_spec):
    spec = write_spec(**{**FAST, "seeds": [0, 1]})
    plan = plan_study(load_spec(spec)[0])
    busy = plan.cells[0].key
    claim_results_folder(plan.out)  # the other process got there first
    store = CellStore(plan.out)
    # flock locks belong to an open file: this holder conflicts with the run's own attempt
    # exactly as another process would.
    with store.lock(busy):
        with pytest.warns(StudyWarning, match="1 cell\\(s\\) were being trained by another process"):
            run = run_study(spec, progress=False)
        assert run.elsewhere == [busy] and run.trained == [plan.cells[1].key]
        assert "running elsewhere" in (plan.out / "log.txt").read_text()
        assert grid(plan.out)["finished_cells"] == 1
    assert run_study(spec, progress=False).trained == [busy]


# ------------------------------------------------------------------------------ checks before training
def _copy_with(dataset_writer, path, base, extra_images, extra_labels, splits):
    images = np.concatenate([base.take(np.arange(len(base))), extra_images])
    labels = np.concatenate([base.labels, extra_labels])
    return dataset_writer(path, images, labels, base.class_names, splits)


def test_a_real_test_split_overlapping_the_pool_is_refused(write_spec, tmp_path, digits16, dataset_writer):
    test = digits16.split("test")
    plan_study(load_spec(write_spec(**FAST))[0])  # the digits' own splits share no image
    # Three test images copied into the training split, as a careless re-export would.
    copied = test.take(np.arange(3))
    leaked = _copy_with(dataset_writer, tmp_path / "leaky2", digits16, copied, test.labels[:3],
                        np.concatenate([digits16.splits, ["train"] * 3]))
    with pytest.raises(DataError, match=r"3 image\(s\) of the test split 'test' are identical to images of the "
                                        r"training split 'train'"):
        plan_study(load_spec(write_spec(real=str(leaked.path), **FAST))[0])
    with pytest.raises(DataError, match="both 'train'"):
        plan_study(load_spec(write_spec(real_test_split="train", **FAST))[0])


def test_a_synthetic_pool_holding_real_test_images_is_refused(write_spec, tmp_path, digits16, fake_generators,
                                                              dataset_writer):
    from synthworth.data.dataset import Dataset

    gan, test = Dataset.open(fake_generators["gan"]), digits16.split("test")
    bad = _copy_with(dataset_writer, tmp_path / "copied", gan, test.take(np.arange(2)), test.labels[:2], None)
    spec = write_spec(**{**FAST, "compositions": ["artificial"]}, synthetic={"copied": str(bad.path)})
    with pytest.raises(DataError, match=r"'copied' .* holds \d image\(s\) identical to real test images"):
        plan_study(load_spec(spec)[0])


def test_a_synthetic_dataset_too_small_to_hold_out_test_images_is_refused(write_spec, tmp_path, fake_generators,
                                                                          dataset_writer):
    from synthworth.data.dataset import Dataset

    gan = Dataset.open(fake_generators["gan"])
    one_each = np.array([np.flatnonzero(gan.labels == c)[0] for c in range(10)])
    tiny = dataset_writer(tmp_path / "tiny", gan.take(one_each), gan.labels[one_each], gan.class_names)
    spec = write_spec(**{**FAST, "compositions": ["artificial"], "sizes": [5]}, synthetic={"tiny": str(tiny.path)})
    with pytest.raises(DataError, match="'tiny' .* too small to hold out test images: a 0.2 share of its images "
                                        "has no image; raise synthetic_holdout"):
        plan_study(load_spec(spec)[0])
    # An explicit test split lacking classes is refused too, with advice that works.
    splits = np.where(gan.labels < 8, "test", "train")
    lopsided = dataset_writer(tmp_path / "lopsided", gan.take(np.arange(len(gan))), gan.labels, gan.class_names,
                              splits)
    spec = write_spec(**{**FAST, "compositions": ["artificial"]}, synthetic={"l": str(lopsided.path)})
    with pytest.raises(DataError, match=r"its 'test' split has no image of the classes \['8', '9'\]"):
        plan_study(load_spec(spec)[0])
    followed = write_spec(**{**FAST, "compositions": ["artificial"]},
                          synthetic={"l": {"path": str(lopsided.path), "test_split": "none"}})
    assert len(plan_study(load_spec(followed)[0]).inputs.synthetic["l"].test) == 40


def test_metrics_split_mistakes_are_found_before_training(write_spec):
    spec = write_spec(**FAST, metrics={"enabled": True, "real_split": "valid"})
    with pytest.raises(DataError, match="metrics.real_split 'valid'"):
        plan_study(load_spec(spec)[0])
    spec = write_spec(**FAST, metrics={"enabled": True, "fake_split": "test"})
    with pytest.raises(DataError, match="metrics.fake_split 'test': synthetic Dataset"):
        plan_study(load_spec(spec)[0])


# ------------------------------------------------------------------------------ the results folder
def test_the_results_folder_is_marked_and_a_user_file_in_it_is_never_overwritten(write_spec, tmp_path):
    spec = write_spec(**FAST)
    out = run_study(spec, progress=False).out
    assert safety.owned_kind(out) == "study"
    (out / "notes.txt").write_text("mine")  # an unrelated note is left alone ...
    assert run_study(spec, progress=False).skipped
    assert (out / "notes.txt").read_text() == "mine"
    (out / "study.yaml").write_text(spec.read_text())  # ... a spec saved over study.yaml is not overwritten
    with pytest.raises(safety.OwnershipError, match="holds study.yaml that this study did not write"):
        run_study(spec, progress=False)
    assert (out / "study.yaml").read_text() == spec.read_text()


def test_a_results_folder_of_synthworth_0_1_is_adopted(write_spec, tmp_path):
    spec = write_spec(**FAST)
    out = run_study(spec, progress=False).out
    (out / safety.MARKER).unlink()
    assert run_study(spec, progress=False).skipped and safety.owned_kind(out) == "study"


def test_generator_names_become_safe_file_names(write_spec, fake_generators):
    from synthworth.study.tables import metrics_file

    spec = write_spec(**{**FAST, "compositions": ["artificial"]},
                      synthetic={"a\\..\\b": str(fake_generators["gan"]), "con": str(fake_generators["ddpm"])})
    plan = plan_study(load_spec(spec)[0])
    paths = {name: metrics_file(plan, name) for name in plan.spec.synthetic}
    for path in paths.values():
        assert path.parent == plan.out / "metrics"
    assert paths["a\\..\\b"].name.startswith("a_.._b-")  # no separator left; a hash keeps it distinct
    assert paths["con"].name != "con.json"  # a reserved name on Windows
