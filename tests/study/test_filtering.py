"""``filters: [none, confidence]``: the confidence filter keeps the images a classifier trained on
the generator's own real data is surest of; it is cached, recorded, and refused where that real
data is unknown."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

import synthworth.classifiers.task as classifier_task
from synthworth.classifiers.evaluate import probabilities
from synthworth.classifiers.task import load_classifier
from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset, atomic_folder, write_packed
from synthworth.data.provenance import pretrained
from synthworth.errors import ConfigError
from synthworth.study import plan_study, run_study
from synthworth.study.filtering import choose
from synthworth.study.spec import load_spec

pytestmark = pytest.mark.usefixtures("single_thread")
CLASSIFIER = {"train": {"epochs": 2, "batch_size": 16}}


def packed(path, view: Dataset, manifest: dict) -> Dataset:
    with atomic_folder(path, kind="dataset", replace=True) as tmp:
        write_packed(tmp, view.take(np.arange(len(view))), view.labels, view.splits, view.class_names,
                     [{} for _ in range(len(view))], manifest)
    return Dataset.open(path)


@pytest.fixture(scope="module")
def seen(digits16, tmp_path_factory):
    """The generator's real data: 8 digits per class of the train split, its own Dataset."""
    part = subset(digits16.split("train"), per_class=8, seed=5)
    return packed(tmp_path_factory.mktemp("seen") / "scarce", part, {"kind": "prepared"})


def trained_on(ds: Dataset) -> dict:
    return {"kind": "trained", "note": "a test generator",
            "trained_on": {"fingerprint": ds.fingerprint, "name": ds.path.name, "path": str(ds.path),
                           "split": "train", "images": len(ds)}}


@pytest.fixture(scope="module")
def synthetic(digits16, seen, tmp_path_factory):
    """A "generator" of 150 noisy real digits whose provenance names ``seen``."""
    part = subset(digits16.split("train"), count=150, seed=9)
    pixels = part.take(np.arange(len(part))).astype(int)
    pixels += np.random.default_rng(0).integers(-90, 91, pixels.shape)
    noisy = Dataset.from_arrays(np.clip(pixels, 0, 255).astype(np.uint8), part.labels, part.class_names)
    return packed(tmp_path_factory.mktemp("gen") / "gen", noisy,
                  {"kind": "synthetic", "provenance": trained_on(seen)})


def spec_file(tmp_path, digits16, synthetic_path, **keys):
    spec = {"name": "filtering", "real": str(digits16.path), "synthetic": {"gen": str(synthetic_path)},
            "compositions": ["artificial"], "sizes": [20], "seeds": [0], "classifier_preset": "tiny",
            "classifier": CLASSIFIER, "filters": ["none", "confidence"], "filter_keep": 0.5, **keys}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def filtered_folder(out):
    (folder,) = [p for p in (out / "filtered").iterdir() if not p.name.startswith(".")]
    return folder


def test_the_kept_images_are_the_ones_its_classifier_is_surest_of(tmp_path, digits16, synthetic, seen):
    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path))
    plan = plan_study(spec)
    syn = plan.inputs.synthetic["gen"]
    kept = syn.filtered["confidence"]
    folder = filtered_folder(plan.out)
    assert kept.path == folder and len(kept) == 60  # half of each class of the 120-image pool
    # The classifier the filter trained, asked again: its probabilities of the intended class.
    model, _ = load_classifier(folder / "classifier" / "model")
    probs = probabilities(model, syn.pool)
    confidence = probs[np.arange(len(syn.pool)), syn.pool.labels]
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    chosen = [i["pool_index"] for i in items]
    np.testing.assert_allclose([i["confidence"] for i in items], confidence[chosen], rtol=1e-5)
    for label in range(10):
        members = np.flatnonzero(syn.pool.labels == label)
        mine = [i for i in chosen if syn.pool.labels[i] == label]
        assert len(mine) == round(len(members) / 2)
        # every kept image is at least as confident as every dropped one of its class
        dropped = [i for i in members if i not in mine]
        assert confidence[mine].min() >= confidence[dropped].max()
    assert np.array_equal(kept.take(np.arange(len(kept))), syn.pool.take(chosen))
    assert np.array_equal(kept.labels, syn.pool.labels[chosen])
    # Filtered cells draw from the filtered Dataset; the unfiltered ones from the pool.
    cells = {p.cell.filter: p for p in plan.cells}
    assert set(cells) == {"none", "confidence"} and cells["confidence"].key != cells["none"].key
    assert set(np.unique(cells["confidence"].train_set.row)) <= set(range(len(kept)))


def test_the_filters_classifier_saw_only_the_generators_real_data(tmp_path, digits16, synthetic, seen):
    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path))
    plan = plan_study(spec)
    folder = filtered_folder(plan.out)
    manifest = Dataset.open(folder).manifest
    prov = manifest["provenance"]
    generator_train = seen.split("train")
    assert prov["kind"] == "filtered" and prov["parent"] == trained_on(seen)
    assert prov["trained_on"] == trained_on(seen)["trained_on"]
    f = prov["filter"]
    assert (f["method"], f["keep"], f["real_fingerprint"]) == ("confidence", 0.5, seen.fingerprint)
    assert f["train_set_fingerprint"] == generator_train.fingerprint and f["train_images"] == 80
    # What the engine recorded while training it: the generator's 80 images, not the study's 1,437.
    run = json.loads((folder / "classifier" / "run.json").read_text())["data"]
    assert run["fingerprint"] == generator_train.fingerprint != plan.inputs.pool.fingerprint
    assert run["images"] == 80 and len(plan.inputs.pool) == 1437
    # inputs.json shows each generator's provenance and its filtered pool.
    from synthworth.study.runner import _write_description

    _write_description(plan)
    described = json.loads((plan.out / "inputs.json").read_text())["synthetic"]["gen"]
    assert described["provenance"] == trained_on(seen)
    assert described["filtered"]["confidence"]["fingerprint"] == manifest["fingerprint"]


def test_a_rerun_reuses_the_filtered_dataset_and_a_new_keep_makes_another(tmp_path, digits16, synthetic, monkeypatch):
    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path))
    first = plan_study(spec).inputs.synthetic["gen"].filtered["confidence"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached filtered Dataset was not reused")

    monkeypatch.setattr(classifier_task, "train_classifier", no_training)
    again = plan_study(spec).inputs.synthetic["gen"].filtered["confidence"]
    assert again.fingerprint == first.fingerprint and again.path == first.path
    monkeypatch.undo()
    other = plan_study(spec.model_copy(update={"filter_keep": 0.25})).inputs.synthetic["gen"].filtered["confidence"]
    assert other.path != first.path and len(other) == 30
    assert len([p for p in (first.path.parent).iterdir() if not p.name.startswith(".")]) == 2


def test_unfiltered_cells_keep_their_keys_when_filters_are_added(tmp_path, digits16, synthetic):
    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path, compositions=["real", "artificial", "mixed"]))
    plain = plan_study(spec.model_copy(update={"filters": ["none"]}))
    both = plan_study(spec)
    keys = {p.cell.label(): p.key for p in plain.cells}
    assert keys == {p.cell.label(): p.key for p in both.cells if p.cell.filter == "none"}
    assert len(both.cells) == len(plain.cells) + 2  # artificial and mixed, filtered
    assert not set(keys.values()) & {p.key for p in both.cells if p.cell.filter != "none"}


def test_a_pretrained_generator_is_refused_and_the_advice_works(tmp_path, digits16, synthetic):
    folder = tmp_path / "sd"
    packed(folder, Dataset.open(synthetic.path), {"kind": "synthetic", "provenance": pretrained("sd21")})
    path = spec_file(tmp_path, digits16, folder)
    with pytest.raises(ConfigError, match=r"pretrained pipeline \(trained on external data \(sd21\)\).*filters: \[none\]"):
        plan_study(load_spec(path)[0])
    assert not (tmp_path / "spec-results").exists()  # refused before anything was written
    plan = plan_study(load_spec(path, ["filters=[none]"])[0])
    assert {p.cell.filter for p in plan.cells} == {"none"}


def test_the_study_tables_show_the_filter_and_its_paired_test(tmp_path, digits16, synthetic):
    spec = spec_file(tmp_path, digits16, synthetic.path, seeds=[0, 1])
    run_study(spec, progress=False)
    out = tmp_path / "spec-results"
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["filter"]) == ["confidence", "confidence", "none", "none"]
    filtered = table[table["filter"] == "confidence"]
    assert filtered["synthetic_pool_fingerprint"].nunique() == 1
    assert filtered["synthetic_pool_fingerprint"].iloc[0] == Dataset.open(filtered_folder(out)).fingerprint
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["filter"]) == ["confidence", "none"]
    comparisons = pd.read_csv(out / "comparisons.csv", keep_default_na=False)
    row = comparisons[comparisons["kind"] == "filter"].iloc[0]
    assert (row["filter_a"], row["filter_b"], row["n"]) == ("confidence", "none", 2)
    a = table[table["filter"] == "confidence"].sort_values("seed")["accuracy"].to_numpy()
    b = table[table["filter"] == "none"].sort_values("seed")["accuracy"].to_numpy()
    assert row["diff"] == pytest.approx((a - b).mean())
    assert "p_holm" in comparisons.columns
    # The report: a filtering block with the paired test, and the Holm note with the count of tests.
    from synthworth.report import build_report

    page = build_report(out, tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<h2>Filtering synthetic data</h2>" in page and "artificial (gen) filtered: confidence" in page
    # filter comparisons are exploratory: raw p, no Holm; the note counts the primary family only
    assert set(comparisons.loc[comparisons["kind"] == "filter", "family"]) == {"exploratory"}
    assert comparisons.loc[comparisons["kind"] == "filter", "p_holm"].eq("").all()
    n_primary = int((comparisons["family"] == "primary").sum())
    assert f"Primary: the {n_primary} comparisons the spec names" in page


def test_choose_keeps_the_top_share_of_each_class():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    confidence = np.array([0.1, 0.9, 0.5, 0.7, 0.2, 0.2, 0.8])
    assert choose(labels, confidence, 0.5).tolist() == [1, 3, 4, 6]  # class 1: 1.5 -> 2, tie -> earlier
    assert choose(labels, confidence, 0.01).tolist() == [1, 6]        # at least one per class


def test_a_pool_too_small_after_filtering_is_refused_before_the_filter_trains(tmp_path, digits16, synthetic):
    from synthworth.errors import DataError

    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path, sizes=[100]))
    # 120 pool images: enough unfiltered, but half of each class is 60
    with pytest.raises(DataError, match=r"after filtering: artificial \[gen\] filter confidence size 100 seed 0 "
                                        r"needs 100 synthetic \(gen\) training images but the confidence filter "
                                        r"keeps only 60 \(filter_keep 0.5\); lower the sizes, raise filter_keep"):
        plan_study(spec)
    assert not (tmp_path / "spec-results").exists()
    plan = plan_study(spec.model_copy(update={"filter_keep": 0.9}))
    pool = plan.inputs.synthetic["gen"].pool
    per_class = np.bincount(pool.labels, minlength=10)
    assert len(plan.inputs.synthetic["gen"].filtered["confidence"]) == sum(int(np.floor(0.9 * n + 0.5)) for n in per_class)


def test_filters_without_none_are_refused_since_every_comparison_needs_unfiltered_cells():
    """With filters: [confidence] alone there are no unfiltered cells, and every composition,
    generator and filter comparison is made against unfiltered cells: comparisons.csv would be
    silently empty. The spec says so instead, and its advice gives a valid spec."""
    import pydantic

    from synthworth.study.spec import StudySpec

    with pytest.raises(pydantic.ValidationError, match=r"filters: \[none, confidence\]"):
        StudySpec(real="r", synthetic={"g": "g"}, compositions=["real", "artificial"], filters=["confidence"])
    spec = StudySpec(real="r", synthetic={"g": "g"}, compositions=["real", "artificial"], filters=["none", "confidence"])
    assert spec.filters == ["none", "confidence"]


# Another shard of the study building the filtered pool: it holds the pool's lock until this
# process is blocked waiting for it (a waiter on the lock's inode in /proc/locks), then puts the
# finished pool in place (copied from argv[2], renamed whole) and exits, dropping the lock.
OTHER_SHARD = """
import fcntl, os, shutil, sys, time
lock, done, final = sys.argv[1:4]
fd = os.open(lock, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
inode = f":{os.fstat(fd).st_ino} "
deadline = time.time() + 60
while time.time() < deadline and not any("->" in l and inode in l for l in open("/proc/locks")):
    time.sleep(0.05)
shutil.copytree(done, final + ".part")
open(final + ".part/classifier/from-the-other-shard", "w").close()
os.rename(final + ".part", final)
"""


def test_shards_sharing_a_results_folder_wait_for_one_filtered_pool_and_reuse_it(tmp_path, digits16, synthetic,
                                                                                   capsys):
    """SLURM-array shards write into one results folder: while one builds the filtered pool the
    others wait for it and reuse it, never refused with advice naming an option that does not
    exist."""
    import subprocess
    import sys

    from synthworth.cli import main
    from synthworth.study.cache import claim_results_folder

    path = spec_file(tmp_path, digits16, synthetic.path, seeds=[0, 1])
    built = filtered_folder(plan_study(load_spec(path)[0], tmp_path / "elsewhere").out)  # the same key
    out = tmp_path / "shared"
    claim_results_folder(out)
    (out / "filtered").mkdir()
    other = subprocess.Popen([sys.executable, "-c", OTHER_SHARD, str(out / "filtered" / f".{built.name}.lock"),
                              str(built), str(out / "filtered" / built.name)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        code = main(["study", "run", str(path), "--shard", "1/2", "--out", str(out), "-q"])
        err = capsys.readouterr().err
    finally:
        other.kill() if other.poll() is None else None
        other.wait()
    assert code == 0 and "in use by another" not in err and "Traceback" not in err, err
    assert other.returncode == 0  # it put its pool in place; this shard then reused it, not rebuilt it
    (folder,) = [p for p in (out / "filtered").iterdir() if not p.name.startswith(".")]
    assert folder.name == built.name
    assert (folder / "classifier" / "from-the-other-shard").is_file()
    assert json.loads((out / "inputs.json").read_text())["synthetic"]["gen"]["filtered"]["confidence"]["path"] \
        == str(folder)


def test_an_exported_filtered_pool_is_published_as_synthetic_with_its_filter_and_no_local_path(
        tmp_path, digits16, synthetic, seen):
    """The CLI's export of RESULTS/filtered/<key>: tagged synthetic (never real), its card names the
    filter and what its classifier saw, and no absolute path of this machine is published."""
    from synthworth.cli import main

    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path))
    plan = plan_study(spec)
    folder = filtered_folder(plan.out)
    assert main(["data", "export", str(folder), "--out", str(tmp_path / "hub"), "--quiet"]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert "synthetic" in header["tags"] and "real" not in header["tags"]
    assert "- filter: `" in card and '"kind": "confidence"' in card and '"keep": 0.5' in card
    assert '"kept": 60' in card and '"of": 120' in card
    line = next(x for x in card.splitlines() if x.startswith("- real data the filter's classifier saw"))
    assert f'"name": "{seen.path.name}"' in line and '"images": 80' in line and seen.fingerprint in line
    assert f'"name": "{seen.path.name}"' in next(x for x in card.splitlines()
                                                 if x.startswith("- real data the generator saw"))
    for local in (tmp_path, seen.path, synthetic.path, digits16.path, plan.out):
        assert str(local) not in card
    assert "/" + tmp_path.parts[1] not in card   # no absolute path at all (e.g. /tmp/...)
