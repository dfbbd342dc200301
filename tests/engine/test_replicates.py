"""Replicates: ``train --replicates K`` trains K runs of one recipe differing only in seed, with a
fixed thread count; a rerun of one seed gives its weights bit for bit; the folder is taken where a
run is (compare, generate --from, and a study through the Dataset generated from it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from synthworth.cli import main
from synthworth.data.dataset import Dataset
from synthworth.errors import SynthworthError

TINY = ["--preset", "tiny", "train.max_steps=4", "train.checkpoint_every=2"]


def weights(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run / "model").glob("*.safetensors"))}


@pytest.fixture(scope="module")
def world(digits16, tmp_path_factory):
    """Two replicates of a tiny DCGAN on the digits (trained from a process whose torch has 2
    threads: the run's own train.threads must win), a second recipe's two replicates, and a tiny
    classifier of the digits whose features score them."""
    from synthworth.classifiers.task import ClassifierConfig, train_classifier
    from synthworth.config import resolve_config

    root = tmp_path_factory.mktemp("replicates")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["train", "dcgan", "--data", str(digits16.path), "--out", str(root / "gan"), "--replicates", "2",
                     *TINY]) == 0
        assert torch.get_num_threads() == 2  # set back after training
    finally:
        torch.set_num_threads(1)
    assert main(["train", "dcgan", "--data", str(digits16.path), "--out", str(root / "gan-slow"), "--seeds", "0,1",
                 *TINY, "optim.lr=1e-4"]) == 0
    config = resolve_config(ClassifierConfig, preset=("classifier", "tiny"), overrides=["train.max_steps=3"])
    train_classifier(digits16, root / "features", config)
    yield root, digits16
    torch.set_num_threads(before)


def test_replicates_are_runs_of_one_recipe_differing_only_in_seed(world):
    root, digits = world
    folder = root / "gan"
    marker = json.loads((folder / ".synthworth").read_text())
    manifest = json.loads((folder / "replicates.json").read_text())
    assert marker["kind"] == "replicates" and set(marker["entries"]) == {"replicates.json", "seed-0", "seed-1"}
    assert [(r["name"], r["seed"]) for r in manifest["runs"]] == [("seed-0", 0), ("seed-1", 1)]
    assert manifest["threads"] == 1 and manifest["data"] == digits.fingerprint and "seed" not in manifest["recipe"]["train"]
    configs = [yaml.safe_load((folder / f"seed-{s}" / "config.yaml").read_text()) for s in (0, 1)]
    assert [c["train"]["seed"] for c in configs] == [0, 1]
    assert configs[0]["train"]["threads"] == configs[1]["train"]["threads"] == 1
    for c in configs:
        c["train"].pop("seed")
    assert configs[0] == configs[1]  # the same recipe
    history = [json.loads((folder / f"seed-{s}" / "run.json").read_text())["history"][0] for s in (0, 1)]
    assert [h["threads"] for h in history] == [1, 1]  # recorded as the engine set it, not the process's 2
    assert weights(folder / "seed-0") != weights(folder / "seed-1")


def test_a_rerun_of_one_seed_reproduces_its_weights_exactly(world, tmp_path):
    root, digits = world
    torch.set_num_threads(3)  # whatever the caller's thread count: the run's train.threads is used
    try:
        assert main(["train", "dcgan", "--data", str(digits.path), "--out", str(tmp_path / "again"), *TINY,
                     "train.seed=1"]) == 0
    finally:
        torch.set_num_threads(1)
    assert weights(tmp_path / "again") == weights(root / "gan" / "seed-1")


def test_more_seeds_join_a_folder_of_the_same_recipe_and_another_recipe_is_refused(world, tmp_path, capsys):
    root, digits = world
    out = tmp_path / "grow"
    args = ["train", "dcgan", "--data", str(digits.path), "--out", str(out), *TINY]
    assert main([*args, "--seeds", "3"]) == 0
    assert main([*args, "--seeds", "5"]) == 0
    manifest = json.loads((out / "replicates.json").read_text())
    assert [r["seed"] for r in manifest["runs"]] == [3, 5]
    with pytest.raises(SynthworthError, match=r"another recipe \(optim.lr was 0.002, now 0.001\)"):
        from synthworth.train import train_replicates

        train_replicates("dcgan", digits.path, out, seeds=[7], preset="tiny",
                         overrides=["train.max_steps=4", "train.checkpoint_every=2", "optim.lr=1e-3"])
    assert not (out / "seed-7").exists()
    # The same seed again: its run has a checkpoint, and the advice (--resume) works.
    with pytest.raises(SynthworthError, match="add --resume"):
        train_replicates("dcgan", digits.path, out, seeds=[3], preset="tiny",
                         overrides=["train.max_steps=4", "train.checkpoint_every=2"])
    before = weights(out / "seed-3")
    train_replicates("dcgan", digits.path, out, seeds=[3, 9], resume=True, overrides=["train.max_steps=4"])
    assert weights(out / "seed-3") == before and (out / "seed-9" / "model").is_dir()
    capsys.readouterr()
    assert main(["train", "dcgan", "--data", str(digits.path), "--out", str(out), "--replicates", "2",
                 "--seeds", "1,2"]) == 2
    assert "(--replicates K) or their seeds (--seeds 0,1,2), not both" in capsys.readouterr().err


def test_generate_from_replicates_draws_an_equal_share_from_each_and_names_it(world, tmp_path):
    from synthworth.generators import load_generator

    root, _ = world
    out = tmp_path / "gen"
    assert main(["generate", "--from", str(root / "gan"), "--count", "9", "--batch-size", "4", "--out", str(out),
                 "-q"]) == 0
    ds = Dataset.open(out)
    items = ds.items()
    # 9 images over 2 replicates: images 0-4 from seed-0, 5-8 from seed-1 (contiguous, equal to within one).
    assert [r["replicate"] for r in items] == ["seed-0"] * 5 + ["seed-1"] * 4
    assert [r["replicate_seed"] for r in items] == [0] * 5 + [1] * 4
    direct = np.concatenate([load_generator(root / "gan" / "seed-0").sample(5, seed=0),
                             load_generator(root / "gan" / "seed-1").sample(4, seed=5)])
    assert np.abs(ds.take(np.arange(9)).astype(int) - direct.astype(int)).max() <= 1
    prov = ds.manifest["provenance"]
    assert [r["name"] for r in prov["replicates"]] == ["seed-0", "seed-1"] and "2 replicates" in prov["note"]
    with pytest.raises(SynthworthError, match="folder of 2 replicates, not one generator"):
        load_generator(root / "gan")


def test_a_study_takes_the_dataset_generated_from_replicates_and_knows_each_images_replicate(world, tmp_path):
    from synthworth.data.compose import subset
    from synthworth.generators.dcgan import DCGAN, DCGANModelConfig
    from synthworth.study.inputs import open_inputs, replicate_counts
    from synthworth.study.spec import StudySpec

    root, digits = world
    # Class-conditional replicates: saved tiny conditional DCGANs in the layout of a replicates folder.
    folder = tmp_path / "cond"
    from synthworth.engine.replicates import ReplicatesFolder

    ReplicatesFolder(folder).write("dcgan", {"train": {}}, digits.fingerprint, [0, 1])
    for seed in (0, 1):
        torch.manual_seed(seed)
        DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4, conditional=True, embed_dim=4), 16, 1,
              digits.class_names).save(folder / f"seed-{seed}" / "model")
    out = tmp_path / "syn"
    assert main(["generate", "--from", str(folder), "--per-class", "4", "--out", str(out), "-q"]) == 0
    items = Dataset.open(out).items()
    for name in ("seed-0", "seed-1"):  # each replicate made half of every class
        assert sorted(r["class_name"] for r in items if r["replicate"] == name) == sorted(digits.class_names * 2)
    spec = StudySpec(real=str(digits.path), synthetic={"gan": {"path": str(out)}})
    inputs = open_inputs(spec)
    syn = inputs.synthetic["gan"]
    assert sorted(set(syn.pool_replicate)) == ["seed-0", "seed-1"] and len(syn.pool_replicate) == len(syn.pool)
    view = subset(syn.pool, count=10, seed=0)
    counts = replicate_counts(view, syn)
    wanted = [items[int(r)]["replicate"] for r in view.row]
    assert counts == {n: wanted.count(n) for n in sorted(set(wanted))} and sum(counts.values()) == 10
    # The folder of replicates itself is not a Dataset: the error gives the command that makes one.
    bad = StudySpec(real=str(digits.path), synthetic={"gan": {"path": str(folder)}})
    with pytest.raises(SynthworthError, match=r"is a folder of trained replicates, not a Dataset.*generate --from"):
        open_inputs(bad)


def compare(root: Path, digits, out: Path, *runs: str) -> int:
    return main(["compare", *(a for r in runs for a in ("--run", r)), "--real", str(digits.path), "--draws", "2",
                 "--samples", "20", "--features", str(root / "features" / "model"), "--out", str(out), "-q"])


def test_compare_takes_replicates_with_intervals_over_runs_and_a_test(world, tmp_path, capsys):
    root, digits = world
    out = tmp_path / "cmp"
    assert compare(root, digits, out, f"fast={root / 'gan'}", f"slow={root / 'gan-slow'}") == 0
    printed = capsys.readouterr().out
    findings = json.loads((out / "findings.json").read_text())
    for name in ("fast", "slow"):
        m = findings["models"][name]
        fid = m["quality"]["fid"]
        assert (m["runs"], m["seeds"], fid["covers"], len(fid["values"])) == (2, [0, 1], "runs", 2)
        per_run = [r["quality"]["fid"]["values"] for r in m["replicates"]]
        assert fid["values"] == pytest.approx([np.mean(v) for v in per_run])
        assert fid["low"] <= fid["mean"] <= fid["high"] and m["pairing"]
        assert m["cost"]["runs"] == 2 and m["exposure"]["n"] == 2 * 2 * 20
    test = findings["closest_test"]
    other = "slow" if test["best"] == "fast" else "fast"
    # Both recipes trained on the same Dataset and batch size with seeds 0 and 1: paired by seed;
    # two pairs are too few for a sign-flip test to reach 5 %, so the paired t test is used.
    assert test["tests"][other]["paired"] and test["tests"][other]["method"].startswith("paired t test")
    assert test["claim"] in ("backed", "not shown") and "overlap" not in " ".join(findings["summary"])
    assert "over its 2 runs (seeds 0, 1)" in printed
    page = (out / "report" / "index.html").read_text()
    assert "holds 2 replicates" in page and "interval over the runs" in page


def test_compare_with_one_run_says_its_interval_covers_sampling_only(world, tmp_path, capsys):
    root, digits = world
    out = tmp_path / "one"
    assert compare(root, digits, out, f"a={root / 'gan' / 'seed-0'}", f"b={root / 'gan-slow' / 'seed-0'}") == 0
    printed = capsys.readouterr().out
    findings = json.loads((out / "findings.json").read_text())
    assert findings["models"]["a"]["quality"]["fid"]["covers"] == "sampling"
    assert findings["closest_test"]["claim"] == "untested"
    assert "the interval covers the sampling of images only" in printed
    assert "the ranking may not survive a retrain" in printed
    page = (out / "report" / "index.html").read_text()
    assert "covers the sampling of images only" in page and "not tested" in page


def test_a_run_saved_before_train_threads_existed_resumes_and_records_the_setting(world, tmp_path):
    from synthworth.engine import checkpoint as ckpt
    from synthworth.train import train

    _, digits = world
    run = tmp_path / "old"
    train("dcgan", digits.path, run, preset="tiny", overrides=["train.max_steps=2", "train.checkpoint_every=2"])
    # What an older synthworth wrote: no train.threads in the config or in the checkpoint's state.
    config = yaml.safe_load((run / "config.yaml").read_text())
    del config["train"]["threads"]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for step in ckpt.complete_checkpoints(run / "checkpoints"):
        state = json.loads((step / ckpt.STATE_FILE).read_text())
        del state["config"]["train"]["threads"]
        (step / ckpt.STATE_FILE).write_text(json.dumps(state))
    train("dcgan", digits.path, run, resume=True, overrides=["train.max_steps=4"])
    resumed = json.loads((run / "run.json").read_text())["history"][-1]
    assert resumed["changes"]["train.threads"] == {"was": None, "now": 1} and resumed["threads"] == 1
    # Once recorded, the count is part of the run: another one is refused on resume.
    with pytest.raises(SynthworthError, match=r"train.threads was 1, now 2"):
        train("dcgan", digits.path, run, resume=True, overrides=["train.max_steps=6", "train.threads=2"])


def test_a_study_sets_its_cells_threads_with_its_own_key_only(digits16):
    from synthworth.study.spec import StudySpec, classifier_config

    def spec(**given):
        return StudySpec(real=str(digits16.path), compositions=["real"], classifier_preset="tiny", **given)

    assert classifier_config(spec(threads=2)).train.threads == 2
    assert classifier_config(spec()).train.threads == 1
    with pytest.raises(SynthworthError, match="its own 'threads' key"):
        classifier_config(spec(classifier={"train": {"threads": 4}}))


def test_replicates_are_refused_into_a_run_folder_and_a_changed_epoch_count_asks_for_resume(world, tmp_path):
    from synthworth.train import train_replicates

    root, digits = world
    with pytest.raises(SynthworthError, match="holds one training run, not a folder of replicates"):
        train_replicates("dcgan", digits.path, root / "gan" / "seed-0", replicates=2, preset="tiny")
    out = tmp_path / "reps"
    train_replicates("dcgan", digits.path, out, seeds=[0], preset="tiny", overrides=["train.max_steps=2"])
    with pytest.raises(SynthworthError, match=r"train.max_steps was 2, now 4.*add --resume"):
        train_replicates("dcgan", digits.path, out, seeds=[1], preset="tiny", overrides=["train.max_steps=4"])
    train_replicates("dcgan", digits.path, out, seeds=[0, 1], preset="tiny", overrides=["train.max_steps=4"],
                     resume=True)
    steps = [max(r["step"] for r in map(json.loads, (out / f"seed-{s}" / "metrics.jsonl").read_text().splitlines()))
             for s in (0, 1)]
    assert steps == [4, 4] and json.loads((out / "replicates.json").read_text())["recipe"]["train"]["max_steps"] == 4
