"""The study runner end to end on the digits: tables, cache reuse and invalidation, shards,
resume after a kill, and bad input caught before any cell runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from synthworth.classifiers.task import ClassifierTask
from synthworth.cli import main
from synthworth.errors import ConfigError, DataError, SynthworthError
from synthworth.study import StudyWarning, plan_study, run_study, study_status
from synthworth.study.spec import load_spec

pytestmark = pytest.mark.usefixtures("single_thread")


def results(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])


# ------------------------------------------------------------------------------ end to end
def test_digits_spec_runs_end_to_end_from_the_cli(write_spec, tmp_path, capsys):
    spec = write_spec(metrics={"enabled": True, "domain_preset": "tiny", "domain_epochs": 2, "kid_subsets": 5,
                              "max_images": 300})
    assert main(["study", "run", str(spec), "-q"]) == 0
    out = tmp_path / "spec-results"
    assert "12 cell(s) trained, 0 already complete, metrics for ddpm, gan" in capsys.readouterr().out
    table = results(out)
    # real and subset_real once per seed, artificial and mixed once per generator and seed.
    counts = table.groupby("composition").size().to_dict()
    assert counts == {"real": 2, "subset_real": 2, "artificial": 4, "mixed": 4}
    assert set(table[table["composition"].isin(["real", "subset_real"])]["generator"].fillna("")) == {""}
    mixed = table[table["composition"] == "mixed"]
    assert set(zip(mixed["n_real"], mixed["n_synthetic"], mixed["n_train"])) == {(20, 20, 40)}
    assert set(table[table["composition"] == "subset_real"]["n_train"]) == {20}
    assert table["accuracy"].between(0, 1).all() and (table["n_test"] == 360).all()
    assert table["synthetic_accuracy"].notna().sum() == 8  # only cells trained on a generator
    for column in ("key", "train_seconds", "classifier.model.name", "classifier.train.epochs", "real_fingerprint",
                   "synthetic_fingerprint", "per_class_accuracy", "confusion_matrix", "synthworth_version"):
        assert column in table.columns, column
    assert set(table["classifier.train.seed"]) == {0, 1} and set(table["classifier.model.name"]) == {"small_cnn"}
    assert len(json.loads(table["per_class_accuracy"][0])) == 10
    parquet = pd.read_parquet(out / "results.parquet")
    assert list(parquet.columns) == list(table.columns) and len(parquet) == len(table)
    # Real-only cells are also scored on each generator's held-out images (without retraining).
    evals = pd.read_csv(out / "evaluations.csv", keep_default_na=False)
    real_on_synth = evals[(evals["composition"] == "real") & (evals["test_set"] == "synthetic_test")]
    assert sorted(real_on_synth["test_generator"]) == ["ddpm", "ddpm", "gan", "gan"]
    assert set(real_on_synth["n"]) == {40}  # 20 % of 200 held out
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 6 and set(summary["n_seeds"]) == {2}
    assert {"accuracy_mean", "accuracy_sd", "accuracy_ci_low", "accuracy_ci_high"} <= set(summary.columns)
    comparisons = pd.read_csv(out / "comparisons.csv", keep_default_na=False)
    pairs = comparisons[(comparisons["composition_a"] == "mixed") & (comparisons["composition_b"] == "subset_real")]
    assert sorted(pairs["generator_a"]) == ["ddpm", "gan"] and set(pairs["n"]) == {2}
    assert len(comparisons[comparisons["kind"] == "generator"]) == 2  # artificial and mixed: gan vs ddpm
    metrics = pd.read_csv(out / "metrics.csv")
    assert sorted(metrics["generator"]) == ["ddpm", "gan"] and set(metrics["features"]) == {"domain"}
    gan = metrics.set_index("generator").loc["gan"]
    artificial = table[(table["composition"] == "artificial") & (table["generator"] == "gan")]
    assert gan["cas"] == pytest.approx(artificial["accuracy"].mean()) and gan["cas_n_seeds"] == 2
    assert gan["fid"] < metrics.set_index("generator").loc["ddpm", "fid"]  # less noise, closer to real
    assert {"fid_real_floor", "kid", "precision", "recall", "density", "coverage"} <= set(metrics.columns)
    for name in ("study.yaml", "inputs.json", "log.txt", "metrics/gan.json", "metrics/ddpm.json"):
        assert (out / name).is_file(), name
    cell = out / "cells" / table["key"][0]
    assert {p.name for p in cell.iterdir()} >= {"cell.json", "result.json", "COMPLETE", "run"}
    assert (cell / "run" / "model" / "model.safetensors").is_file()
    assert not (cell / "run" / "checkpoints").exists()


def test_finished_cells_are_reused_and_a_changed_input_reruns_exactly_its_cells(write_spec, tmp_path,
                                                                                  fake_generators, dataset_writer):
    spec = write_spec(compositions=["real", "artificial", "subset_real"])
    first = run_study(spec, progress=False)
    assert len(first.trained) == 8 and not first.skipped
    before = results(first.out)
    again = run_study(spec, progress=False)
    assert again.trained == [] and len(again.skipped) == 8
    pd.testing.assert_frame_equal(results(again.out), before)
    status = study_status(spec)
    assert len(status.complete) == 8 and not status.pending and not status.started

    old_test = plan_study(load_spec(spec)[0]).inputs.synthetic["ddpm"].test.fingerprint
    model_times = {key: (first.out / "cells" / key / "run" / "model" / "model.safetensors").stat().st_mtime_ns
                   for key in before[before["composition"] == "real"]["key"]}
    # A changed synthetic Dataset re-trains only the cells trained on it ...
    changed = tmp_path / "ddpm-v2"
    shutil.copytree(fake_generators["ddpm"], changed)
    from synthworth.data.dataset import Dataset

    old = Dataset.open(changed)
    dataset_writer(changed, 255 - old.take(np.arange(len(old))), old.labels, old.class_names)
    spec_v2 = write_spec(compositions=["real", "artificial", "subset_real"],
                         synthetic={"gan": str(fake_generators["gan"]), "ddpm": str(changed)},
                         out=str(first.out))
    third = run_study(spec_v2, progress=False)
    by_key = {p.key: p.cell for p in plan_study(load_spec(spec_v2)[0]).cells}
    assert sorted((by_key[k].composition, by_key[k].generator) for k in third.trained) == [("artificial", "ddpm")] * 2
    after = results(first.out)
    unchanged = after[after["generator"].fillna("") != "ddpm"]
    assert set(unchanged["key"]) == set(before[before["generator"].fillna("") != "ddpm"]["key"])
    # ... while real-only cells are re-scored on its new held-out images from their saved models.
    new_test = plan_study(load_spec(spec_v2)[0]).inputs.synthetic["ddpm"].test.fingerprint
    for key in before[before["composition"] == "real"]["key"]:
        stored = json.loads((first.out / "cells" / key / "eval-ddpm.json").read_text())
        assert stored["fingerprint"] == new_test != old_test
        model = first.out / "cells" / key / "run" / "model" / "model.safetensors"
        assert model.stat().st_mtime_ns == model_times[key]  # re-scored, not retrained
    assert len(_real_cells_on(first.out, "ddpm")) == 2
    # A changed classifier setting changes every key.
    new_keys = {p.key for p in plan_study(load_spec(spec, ["classifier.optim.lr=0.02"])[0]).cells}
    assert not new_keys & set(after["key"])


def _real_cells_on(out, generator: str) -> np.ndarray:
    evals = pd.read_csv(out / "evaluations.csv", keep_default_na=False)
    chosen = evals[(evals["composition"] == "real") & (evals["test_generator"] == generator)]
    return chosen.sort_values("seed")["accuracy"].to_numpy()


def test_shards_partition_the_cells_and_fill_one_folder(write_spec, tmp_path):
    spec = write_spec(compositions=["real", "artificial", "mixed", "subset_real"], seeds=[0])
    plan = plan_study(load_spec(spec)[0])
    runs = [run_study(spec, shard=f"{i}/3", progress=False) for i in range(3)]
    trained = [set(r.trained) for r in runs]
    assert all(trained) and not (trained[0] & trained[1] or trained[0] & trained[2] or trained[1] & trained[2])
    assert set().union(*trained) == set(plan.keys)
    assert len(results(runs[-1].out)) == len(plan.cells) == 6
    # The same split on every call: shard 1/3 again has nothing left to do.
    assert run_study(spec, shard="1/3", progress=False).trained == []
    for bad in ("3/3", "1-3", "a/b"):
        with pytest.raises(SynthworthError, match="--shard"):
            run_study(spec, shard=bad, progress=False)


def test_a_killed_study_resumes_and_ends_as_if_never_interrupted(write_spec, tmp_path, monkeypatch):
    keys = {"compositions": ["real"], "seeds": [0, 1, 2], "classifier": {"train": {"epochs": 3, "batch_size": 16}}}
    straight = run_study(write_spec("straight", **keys), progress=False)
    spec = write_spec("killed", **keys)
    real_step = ClassifierTask.step
    calls = {"n": 0}

    def dying_step(self, batch, ctx):
        calls["n"] += 1
        if calls["n"] == 9 + 5:  # 3 batches x 3 epochs per cell: mid-epoch 2 of the second cell
            raise KeyboardInterrupt
        return real_step(self, batch, ctx)

    monkeypatch.setattr(ClassifierTask, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, progress=False)
    out = tmp_path / "killed-results"
    status = study_status(spec)
    assert (len(status.complete), len(status.started), len(status.pending)) == (1, 1, 1)
    assert len(results(out)) == 1  # tables were written for what finished
    monkeypatch.setattr(ClassifierTask, "step", real_step)
    resumed = run_study(spec, progress=False)
    assert len(resumed.trained) == 2 and len(resumed.skipped) == 1
    assert " resume " in (out / "log.txt").read_text()
    a, b = results(straight.out), results(out)
    assert list(a["key"]) == list(b["key"])
    assert list(a["accuracy"]) == list(b["accuracy"])
    assert list(a["per_class_accuracy"]) == list(b["per_class_accuracy"])


# ------------------------------------------------------------------------------ bad input
def _no_cells_ran(tmp_path) -> bool:
    return not any(tmp_path.glob("*-results/cells"))


def test_unknown_composition_names_the_key_and_the_known_ones(write_spec, tmp_path, capsys):
    spec = write_spec(compositions=["real", "mixd"])
    assert main(["study", "run", str(spec), "-q"]) == 2
    err = capsys.readouterr().err
    assert "key 'compositions.1'" in err and str(spec) in err and "'subset_real'" in err and "'augmented'" in err
    assert _no_cells_ran(tmp_path)


def test_classes_that_do_not_match_are_listed_and_a_class_map_fixes_them(write_spec, tmp_path, fake_generators,
                                                                          dataset_writer):
    from synthworth.data.dataset import Dataset

    gan = Dataset.open(fake_generators["gan"])
    names = ["nine", "eight", "seven", "six", "five", "four", "three", "two", "one", "zero"]  # index 2: "seven"
    renamed = dataset_writer(tmp_path / "words", gan.take(np.arange(len(gan))), 9 - gan.labels, names)
    spec = write_spec(synthetic={"words": str(renamed.path)}, compositions=["artificial"])
    with pytest.raises(DataError) as info:
        run_study(spec, progress=False)
    message = str(info.value)
    assert "classes the real Dataset lacks: ['eight', 'five'" in message
    assert "no images of the real classes ['0', '1'" in message and "synthetic.words.class_map" in message
    assert _no_cells_ran(tmp_path)
    mapping = {word: str(9 - i) for i, word in enumerate(names)}
    spec = write_spec(synthetic={"words": {"path": str(renamed.path), "class_map": mapping}},
                      compositions=["artificial"], seeds=[0])
    plan = plan_study(load_spec(spec)[0])
    pool = plan.inputs.synthetic["words"].pool
    assert pool.class_names == gan.class_names
    # Labels follow the names: "seven" images are labelled as the real class "7" again.
    assert len(pool) == 160 and np.array_equal(pool.labels, gan.labels[pool.row])
    with pytest.raises(DataError, match=r"class_map names classes .* does not have: \['ten'\]"):
        plan_study(load_spec(write_spec(synthetic={"words": {"path": str(renamed.path), "class_map": {"ten": "1"}}},
                                        compositions=["artificial"]))[0])


def test_too_few_images_says_how_many_exist(write_spec, tmp_path):
    with pytest.raises(DataError) as info:
        run_study(write_spec(sizes=[2000], compositions=["real"]), progress=False)
    assert "needs 2000 real training images but only 1437 exist" in str(info.value)
    with pytest.raises(DataError, match=r"artificial \[gan\] size 300 seed 0 needs 300 synthetic \(gan\) training "
                                        r"images but only 160 exist"):
        run_study(write_spec(sizes=[300], compositions=["artificial"]), progress=False)
    with pytest.raises(DataError, match="needs 140 real images per class but 8 has 139"):
        run_study(write_spec(sizes=None, per_class=[140], compositions=["real"]), progress=False)
    assert _no_cells_ran(tmp_path)


def test_a_resolution_mismatch_is_resized_with_a_warning_and_recorded(write_spec, tmp_path, fake_generators,
                                                                       dataset_writer):
    from synthworth.data.dataset import Dataset

    gan = Dataset.open(fake_generators["gan"])
    big = np.repeat(np.repeat(gan.take(np.arange(len(gan))), 2, axis=1), 2, axis=2)  # 32x32
    rgb = dataset_writer(tmp_path / "big", np.repeat(big, 3, axis=3), gan.labels, gan.class_names)
    spec = write_spec(synthetic={"big": str(rgb.path)}, compositions=["artificial"], seeds=[0])
    with pytest.warns(StudyWarning, match="'big' has 32x32x3 images, the real ones are 16x16x1: resized"):
        report = run_study(spec, progress=False)
    table = results(report.out)
    assert list(table["synthetic_resized_from"]) == ["32x32x3"]
    assert "resized" in json.loads((report.out / "inputs.json").read_text())["notes"][0]
    # Resizing the 2x-upscaled images back gives the original pixels (up to rounding).
    plan = plan_study(load_spec(spec)[0])
    pool = plan.inputs.synthetic["big"].pool
    assert pool.shape == (16, 16, 1)


def test_other_bad_specs(write_spec, tmp_path, digits16):
    with pytest.raises(DataError, match="real Dataset: Dataset folder .*nowhere does not exist; a relative path in "
                                        "a spec is read from the spec file's folder"):
        run_study(write_spec(real=str(tmp_path / "nowhere")), progress=False)
    with pytest.raises(DataError, match="has no 'holdout' split"):
        run_study(write_spec(real_test_split="holdout"), progress=False)
    with pytest.raises(ConfigError, match="need at least one synthetic Dataset"):
        run_study(write_spec(synthetic={}), progress=False)
    with pytest.raises(ConfigError, match="give sizes or per_class, not both"):
        run_study(write_spec(per_class=[4]), progress=False)
    with pytest.raises(ConfigError, match="unknown classifier model 'resnet35'"):
        run_study(write_spec(classifier={"model": {"name": "resnet35"}}), progress=False)
    with pytest.raises(ConfigError, match="key 'classifier.model.widht'.*did you mean 'classifier.model.width'"):
        run_study(write_spec(classifier={"model": {"widht": 3}}), progress=False)
    assert _no_cells_ran(tmp_path)


def test_the_thread_setting_applies_while_cells_run(write_spec, monkeypatch):
    import torch

    seen = []
    real_step = ClassifierTask.step

    def counting_step(self, batch, ctx):
        seen.append(torch.get_num_threads())
        return real_step(self, batch, ctx)

    monkeypatch.setattr(ClassifierTask, "step", counting_step)
    torch.set_num_threads(2)
    run_study(write_spec(compositions=["real"], seeds=[0], threads=1), progress=False)
    assert seen and set(seen) == {1} and torch.get_num_threads() == 2


def test_a_mistyped_key_of_a_generator_on_the_command_line_gets_the_key_meant(write_spec, fake_generators, capsys):
    """``synthetic.NAME.KEY``: the generators are a map of names, and the did-you-mean looks
    inside an entry (it used to say only "unknown key"); following the advice works."""
    from synthworth.cli import main

    spec = write_spec()
    assert main(["study", "status", str(spec), f"synthetic.gan.pth={fake_generators['gan']}"]) == 2
    assert "key 'synthetic.gan.pth' in the command line: unknown key; did you mean 'synthetic.gan.path'?" \
        in capsys.readouterr().err
    assert main(["study", "status", str(spec), f"synthetic.gan.path={fake_generators['gan']}"]) == 0
    capsys.readouterr()
    assert main(["study", "status", str(spec), "seeds=[0, 1, 2]", "seeds=[0]"]) == 0
    out, err = capsys.readouterr()
    assert err.count("warning: key 'seeds' is given twice") == 1 and "the later one is used" in err
    assert main(["study", "status", str(spec), "seeds=[0]"]) == 0
    assert capsys.readouterr().out == out                       # the later value, seeds=[0], was used
