"""Adversarial inputs to ``synthworth generate`` and ``synthworth data merge``.

Each test is one mistake a user (or a colleague's files) can make: an --out that is an input or
a foreign folder, hostile names in a model folder, damaged weights, impossible seeds and splits,
two processes on one folder, a disk that fails. Each asserts what the user needs: exit 2 with one
line, the folders they care about unchanged (``snapshot``), nothing written outside --out.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from synthworth.data.dataset import Dataset, atomic_folder, write_packed
from synthworth.safety import owned_kind


def _load(path: Path, name: str):
    """A conftest module by its path: ``import conftest`` may find another folder's conftest.py."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


snapshot = _load(Path(__file__).with_name("conftest.py"), "adversarial_helpers").snapshot
# The builders of tests/generate/conftest.py: a tiny Stable Diffusion folder, one torch thread.
FIXTURES = _load(Path(__file__).parents[1] / "generate" / "conftest.py", "generate_fixtures")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with FIXTURES.one_thread():
        yield


def save_gan(folder: Path, classes=("a", "b"), size=16) -> Path:
    """An untrained class-conditional DCGAN of a few hundred parameters: milliseconds per image."""
    import torch

    from synthworth.generators.dcgan import DCGAN, DCGANModelConfig

    torch.manual_seed(0)
    DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4, conditional=bool(classes), embed_dim=4), size, 1,
          list(classes)).save(folder)
    return folder


@pytest.fixture(scope="module")
def gan(tmp_path_factory) -> Path:
    return save_gan(tmp_path_factory.mktemp("gan") / "gan")


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    return FIXTURES.build_tiny_pipeline(tmp_path_factory.mktemp("pipelines") / "tiny-sd")


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


def gen(cli, model: Path, out: Path, *extra) -> int:
    code, _, err = cli("generate", "--from", model, "--out", out, "-q", *extra)
    assert code == 0, err
    return code


# ------------------------------------------------------------------ section 1: what --overwrite may delete
def test_overwrite_onto_the_model_folder_itself_is_refused(refused, gan, tmp_path):
    model = shutil.copytree(gan, tmp_path / "model")
    before = snapshot(tmp_path)
    refused("generate", "--from", model, "--count", "2", "--out", model, "--overwrite",
            match=("is the input", "choose a new folder"))
    assert snapshot(tmp_path) == before


def test_overwrite_onto_a_folder_holding_the_run_is_refused(refused, gan, tmp_path):
    run = tmp_path / "runs" / "gan"
    (run / "model").parent.mkdir(parents=True)
    shutil.copytree(gan, run / "model")
    (run / "log.txt").write_text("training log")
    before = snapshot(tmp_path)
    refused("generate", "--from", run, "--count", "2", "--out", tmp_path / "runs", "--overwrite",
            match="contains the input")
    assert snapshot(tmp_path) == before


def test_out_inside_the_model_folder_is_refused(refused, gan, tmp_path):
    model = shutil.copytree(gan, tmp_path / "model")
    before = snapshot(tmp_path)
    refused("generate", "--from", model, "--count", "2", "--out", model / "synthetic", match="lies inside the input")
    assert snapshot(tmp_path) == before


def test_overwrite_of_a_folder_synthworth_did_not_write_is_refused_and_the_advice_works(cli, refused, gan,
                                                                                       tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"\xff\xd8 my photo")
    before = snapshot(tmp_path)
    line = refused("generate", "--from", gan, "--count", "2", "--out", photos, "--overwrite",
                   match=("not written by synthworth", "choose a new folder"))
    assert snapshot(tmp_path) == before
    suggested = Path(line.rsplit("e.g. ", 1)[1])
    gen(cli, gan, suggested, "--count", "2")
    assert len(Dataset.open(suggested)) == 2
    assert (photos / "holiday.jpg").read_bytes() == b"\xff\xd8 my photo"


def test_resuming_into_a_foreign_folder_without_overwrite_is_refused(refused, gan, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("buy milk")
    before = snapshot(tmp_path)
    refused("generate", "--from", gan, "--count", "2", "--out", notes, match="not written by synthworth")
    assert snapshot(tmp_path) == before


def test_a_generation_folder_with_a_file_of_the_user_inside_is_not_replaced(cli, refused, gan, tmp_path):
    out = tmp_path / "synthetic"
    gen(cli, gan, out, "--count", "2")
    (out / "my-notes.txt").write_text("results look odd")
    before = snapshot(tmp_path)
    refused("generate", "--from", gan, "--count", "4", "--out", out, "--overwrite",
            match=("my-notes.txt", "move them away"))
    assert snapshot(tmp_path) == before


def test_a_foreign_native_sibling_is_never_deleted_and_no_native_works(cli, refused, gan, tmp_path):
    out = tmp_path / "x"
    gen(cli, gan, out, "--count", "2", "--size", "32")          # 16px generator: copies go to x-native
    shutil.rmtree(tmp_path / "x-native")
    (tmp_path / "x-native").mkdir()
    (tmp_path / "x-native" / "thesis.tex").write_text("chapter 1")  # the user's own folder of that name
    before = snapshot(tmp_path / "x-native")
    refused("generate", "--from", gan, "--count", "3", "--size", "32", "--out", out, "--overwrite",
            match=("x-native", "--no-native"))
    assert snapshot(tmp_path / "x-native") == before
    gen(cli, gan, out, "--count", "3", "--size", "32", "--overwrite", "--no-native")  # the advice
    assert len(Dataset.open(out)) == 3 and snapshot(tmp_path / "x-native") == before


def test_overwrite_replaces_its_own_generation_and_nothing_beside_it(cli, gan, tmp_path):
    out = tmp_path / "x"
    gen(cli, gan, out, "--count", "2", "--size", "32")
    assert owned_kind(out) == "generation" and owned_kind(tmp_path / "x-native") == "generation-native"
    (tmp_path / "x-old").mkdir()
    (tmp_path / "x-old" / "keep.txt").write_text("sibling")
    sibling = snapshot(tmp_path / "x-old")
    gen(cli, gan, out, "--count", "5", "--size", "32", "--overwrite")
    assert len(Dataset.open(out)) == 5 and len(rows(tmp_path / "x-native")) == 5
    assert snapshot(tmp_path / "x-old") == sibling


def test_a_generation_folder_of_an_older_synthworth_is_refused_and_the_advice_works(cli, refused, gan, tmp_path):
    out = tmp_path / "old"
    gen(cli, gan, out, "--count", "2")
    (out / ".synthworth").unlink()  # what 0.1.0 wrote: no marker
    (out / ".synthworth.lock").unlink()
    before = snapshot(tmp_path)
    line = refused("generate", "--from", gan, "--count", "2", "--out", out, "--overwrite",
                   match=("older synthworth", "choose a new folder"))
    assert snapshot(tmp_path) == before
    gen(cli, gan, Path(line.rsplit("e.g. ", 1)[1]), "--count", "2")


def test_out_onto_the_subjects_from_dataset_is_refused(refused, tiny_pipeline, tmp_path):
    data = tmp_path / "real"
    with atomic_folder(data, kind="dataset") as tmp:
        write_packed(tmp, np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 1]), np.array(["train"] * 2),
                     ["cat", "dog"], [{}, {}], {"kind": "test"})
    before = snapshot(tmp_path)
    refused("generate", "--pipeline", tiny_pipeline, "--theme", "animals", "--subjects-from", data,
            "--count", "2", "--out", data, "--overwrite", match="is the input")
    assert snapshot(tmp_path) == before


def test_out_onto_the_pipeline_folder_is_refused(refused, tiny_pipeline):
    before = snapshot(tiny_pipeline)
    refused("generate", "--pipeline", tiny_pipeline, "--theme", "fruits", "--count", "2", "--out", tiny_pipeline,
            "--overwrite", match="is the input")
    assert snapshot(tiny_pipeline) == before


def test_overwrite_into_an_empty_folder_just_generates(cli, gan, tmp_path):
    (tmp_path / "empty").mkdir()
    gen(cli, gan, tmp_path / "empty", "--count", "2", "--overwrite")
    assert len(Dataset.open(tmp_path / "empty")) == 2


def test_a_damaged_plan_is_one_line_and_overwrite_then_starts_again(cli, refused, gan, tmp_path):
    out = tmp_path / "x"
    gen(cli, gan, out, "--count", "2")
    (out / "generate.json").write_text("{ cut short")
    refused("generate", "--from", gan, "--count", "2", "--out", out, match=("generate.json is damaged", "--overwrite"))
    gen(cli, gan, out, "--count", "2", "--overwrite")
    assert len(Dataset.open(out)) == 2


# ------------------------------------------------------------------ section 2: names from someone else's files
def test_hostile_class_names_in_a_model_folder_stay_inside_out(cli, tmp_path):
    hostile = ["../../escaped", "/abs/olute", "new\nline", "Cat", "cat", "$x^2$", "nul\x00byte", ".."]
    model = save_gan(tmp_path / "model", classes=hostile)
    out = tmp_path / "area" / "out"
    out.parent.mkdir()
    outside = snapshot(tmp_path, skip=("area",))
    gen(cli, model, out, "--per-class", "1")
    assert snapshot(tmp_path, skip=("area",)) == outside  # nothing escaped out
    assert sorted(p.name for p in (tmp_path / "area").iterdir()) == ["out"]
    table = rows(out)
    assert sorted(r["class_name"] for r in table) == sorted(hostile)  # the real names are kept
    folders = {r["file_name"].split("/")[0] for r in table}
    assert len({f.casefold() for f in folders}) == len(hostile)  # distinct, also ignoring case
    for r in table:
        assert (out / r["file_name"]).resolve().parent.parent == out.resolve()
    assert Dataset.open(out).class_names == sorted(hostile)


def test_a_hostile_generator_name_is_only_metadata(cli, gan, tmp_path):
    out = tmp_path / "area" / "out"
    out.parent.mkdir()
    name = "../../x\n$y$/org/model"
    outside = snapshot(tmp_path, skip=("area",))
    gen(cli, gan, out, "--count", "2", "--name", name)
    assert snapshot(tmp_path, skip=("area",)) == outside
    assert {r["generator"] for r in rows(out)} == {name}
    assert sorted(p.name for p in (tmp_path / "area").iterdir()) == ["out"]


def test_a_malformed_model_config_is_one_line(refused, gan, tmp_path):
    model = shutil.copytree(gan, tmp_path / "model")
    (model / "synthworth.json").write_text("{not json")
    refused("generate", "--from", model, "--count", "2", "--out", tmp_path / "out", match="synthworth.json")
    assert not (tmp_path / "out").exists()


def test_a_model_config_of_the_wrong_types_is_one_line(refused, gan, tmp_path):
    model = shutil.copytree(gan, tmp_path / "model")
    meta = json.loads((model / "synthworth.json").read_text())
    meta["model"] = {"latent_dim": "many"}
    (model / "synthworth.json").write_text(json.dumps(meta))
    refused("generate", "--from", model, "--count", "2", "--out", tmp_path / "out", match="cannot be loaded")
    assert not (tmp_path / "out").exists()


def test_a_theme_file_that_is_not_text_is_one_line(refused, tmp_path):
    theme = tmp_path / "theme.yaml"
    theme.write_bytes(b"\xff\xfe\x00\x01 binary")
    refused("generate", "--pipeline", "sd21", "--theme", theme, "--count", "2", "--out", tmp_path / "out",
            match="theme file")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ section 6: faults
def test_pickled_weights_where_safetensors_were_expected(refused, gan, tmp_path):
    model = shutil.copytree(gan, tmp_path / "model")
    (model / "generator.safetensors").rename(model / "generator.bin")
    refused("generate", "--from", model, "--count", "2", "--out", tmp_path / "out",
            match=("generator.bin", "pickled"))
    assert not (tmp_path / "out").exists()


def test_truncated_safetensors_are_named(refused, gan, tmp_path):
    model = shutil.copytree(gan, tmp_path / "model")
    weights = model / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    refused("generate", "--from", model, "--count", "2", "--out", tmp_path / "out",
            match=("generator.safetensors", "damaged"))
    assert not (tmp_path / "out").exists()


def test_a_pipeline_with_pickled_weights_only_is_refused(refused, tiny_pipeline, tmp_path):
    pipe = shutil.copytree(tiny_pipeline, tmp_path / "pipe")
    weights = pipe / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    refused("generate", "--pipeline", pipe, "--theme", "fruits", "--count", "2", "--out", tmp_path / "out",
            match=("diffusion_pytorch_model.bin", "--allow-pickle"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed, match", [("-1", "greater than or equal to 0"), (str(2**70), "too large"),
                                         (str(2**32 - 1), "too large")])
def test_negative_or_huge_seeds_are_one_line(refused, gan, tmp_path, seed, match):
    refused("generate", "--from", gan, "--count", "2", "--seed", seed, "--out", tmp_path / "out", match=match)
    assert not (tmp_path / "out").exists()


def test_the_largest_seed_accepted_works_and_its_advice_is_right(cli, refused, gan, tmp_path):
    line = refused("generate", "--from", gan, "--count", "3", "--seed", str(2**40), "--out", tmp_path / "o",
                   match="at most")
    gen(cli, gan, tmp_path / "o", "--count", "3", "--seed", line.rsplit("at most ", 1)[1])
    assert [r["seed"] for r in rows(tmp_path / "o")] == [2**32 - 3, 2**32 - 2, 2**32 - 1]


def test_a_huge_count_is_refused_at_once(refused, gan, tmp_path):
    refused("generate", "--from", gan, "--count", str(4_000_000_000), "--out", tmp_path / "out",
            match="at most 10000000")
    assert not (tmp_path / "out").exists()


def test_an_impossible_test_split_is_refused_before_any_image(cli, refused, gan, tmp_path, monkeypatch):
    import synthworth.generate.sources as module

    render = module._Trained.render
    monkeypatch.setattr(module._Trained, "render", lambda *a: pytest.fail("sampled before validating"))
    line = refused("generate", "--from", gan, "--per-class", "3", "--test-fraction", "0.1",
                   "--out", tmp_path / "out", match=("test-fraction", "per-class"))
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(module._Trained, "render", render)
    need = line.split("--per-class ")[1].split(")")[0]
    gen(cli, gan, tmp_path / "out", "--per-class", need, "--test-fraction", "0.1")  # the advice
    counts = Dataset.open(tmp_path / "out").counts()
    assert all(n >= 1 for split in ("train", "test") for n in counts[split].values())


def test_an_out_below_a_file_is_one_line(refused, gan, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    refused("generate", "--from", gan, "--count", "2", "--out", tmp_path / "file" / "out", match="cannot write")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_one_line(refused, gan, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        refused("generate", "--from", gan, "--count", "2", "--out", locked / "out", match="cannot write")
    finally:
        locked.chmod(0o755)


def test_a_full_disk_mid_run_is_one_line_and_leaves_nothing_that_looks_finished(cli, refused, gan, tmp_path,
                                                                                monkeypatch):
    import synthworth.generate.blocks as module

    write, calls = module._write_png, []

    def fills_up(path, pixels, record):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, pixels, record)

    monkeypatch.setattr(module, "_write_png", fills_up)
    out = tmp_path / "out"
    refused("generate", "--from", gan, "--count", "6", "--batch-size", "2", "--out", out,
            match="No space left on device")
    assert not (out / "manifest.json").exists() and not (out / "metadata.jsonl").exists()
    monkeypatch.setattr(module, "_write_png", write)
    gen(cli, gan, out, "--count", "6", "--batch-size", "2")  # the same command finishes it
    totals = Dataset.open(out).manifest["generation"]
    assert totals["images_generated"] == 6 and sum(s["images"] for s in totals["sessions"]) == 6


def test_a_second_generate_into_the_same_folder_is_refused_with_the_holder_named(cli, gan, tmp_path,
                                                                                 monkeypatch):
    import synthworth.generate.sources as module

    render, second = module._Trained.render, []

    def meanwhile_in_another_terminal(self, subjects, seeds):
        if not second:
            second.append(cli("generate", "--from", gan, "--count", "6", "--batch-size", "2",
                              "--out", tmp_path / "out", "-q"))
        return render(self, subjects, seeds)

    monkeypatch.setattr(module._Trained, "render", meanwhile_in_another_terminal)
    code, _, err = cli("generate", "--from", gan, "--count", "6", "--batch-size", "2", "--out", tmp_path / "out",
                       "-q")
    assert code == 0, err
    (code2, _, err2), = second
    assert code2 == 2 and len(err2) == 1 and "in use by another synthworth process (pid" in err2[0]
    ds = Dataset.open(tmp_path / "out")
    assert len(ds) == 6 and ds.manifest["generation"]["images_generated"] == 6


def test_two_shards_may_share_a_folder_but_not_a_shard(cli, gan, tmp_path, monkeypatch):
    import synthworth.generate.sources as module

    render, inner = module._Trained.render, []
    args = ("generate", "--from", gan, "--count", "8", "--batch-size", "2", "--out", tmp_path / "out", "-q")

    def meanwhile(self, subjects, seeds):
        if not inner:
            inner.append(cli(*args, "--shard", "0/2"))   # the same shard: refused
            inner.append(cli(*args, "--shard", "1/2"))   # the other shard: welcome
        return render(self, subjects, seeds)

    monkeypatch.setattr(module._Trained, "render", meanwhile)
    assert cli(*args, "--shard", "0/2")[0] == 0
    assert inner[0][0] == 2 and "in use by another synthworth process" in inner[0][2][0]
    assert inner[1][0] == 0
    assert cli("data", "merge", "--out", tmp_path / "out", "-q")[0] == 0
    totals = Dataset.open(tmp_path / "out").manifest["generation"]
    assert totals["images_generated"] == 8 and sorted(s["images"] for s in totals["sessions"]) == [4, 4]


def test_timing_adds_up_over_a_killed_and_resumed_run(cli, gan, tmp_path, monkeypatch):
    import synthworth.generate.sources as module

    render, calls = module._Trained.render, []

    def killed_in_the_third_block(self, subjects, seeds):
        calls.append(seeds)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render(self, subjects, seeds)

    monkeypatch.setattr(module._Trained, "render", killed_in_the_third_block)
    args = ("generate", "--from", gan, "--count", "10", "--batch-size", "2", "--out", tmp_path / "out", "-q")
    assert cli(*args)[0] == 130
    monkeypatch.setattr(module._Trained, "render", render)
    assert cli(*args)[0] == 0
    totals = Dataset.open(tmp_path / "out").manifest["generation"]
    assert totals["images_generated"] == 10 and totals["runs"] == 2
    assert [s["images"] for s in totals["sessions"]] == [4, 6]
    assert totals["seconds"] == pytest.approx(sum(s["seconds"] for s in totals["sessions"]), abs=1e-3)


# ------------------------------------------------------------------ data merge
def test_merge_into_a_foreign_folder_is_refused(cli, refused, gan, tmp_path):
    shard = tmp_path / "part0"
    gen(cli, gan, shard, "--count", "4", "--shard", "0/1")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("a,b\n")
    before = snapshot(tmp_path)
    refused("data", "merge", "--out", mine, shard, match="not written by synthworth")
    assert snapshot(tmp_path) == before


def test_merge_of_a_folder_that_is_no_shard_is_refused(refused, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"png")
    before = snapshot(tmp_path)
    refused("data", "merge", "--out", tmp_path / "merged", photos, match="not a generation folder")
    assert snapshot(tmp_path) == before


def test_merge_into_a_folder_inside_a_shard_is_refused(cli, refused, gan, tmp_path):
    shard = tmp_path / "part0"
    gen(cli, gan, shard, "--count", "4", "--batch-size", "2", "--shard", "0/2")
    before = snapshot(tmp_path)
    refused("data", "merge", "--out", shard / "merged", shard, match="lies inside the input")
    assert snapshot(tmp_path) == before


def test_merge_reads_the_shards_only_and_counts_them_once_when_repeated(cli, refused, gan, tmp_path):
    parts = [tmp_path / f"part{i}" for i in range(2)]
    for i, part in enumerate(parts):
        gen(cli, gan, part, "--count", "6", "--batch-size", "2", "--shard", f"{i}/2")
    shards = snapshot(tmp_path)
    merged = tmp_path / "merged"
    refused("data", "merge", "--out", merged, parts[0], match="still missing")   # one shard short
    assert cli("data", "merge", "--out", merged, parts[0], parts[1], parts[0], "-q")[0] == 0
    assert cli("data", "merge", "--out", merged, *parts, "-q")[0] == 0            # again: nothing doubles
    assert snapshot(tmp_path, skip=("merged",)) == shards                         # the shards are untouched
    totals = Dataset.open(merged).manifest["generation"]
    assert totals["images_generated"] == 6 and sorted(s["images"] for s in totals["sessions"]) == [2, 4]
    assert owned_kind(merged) == "generation"


def test_merge_into_an_older_generation_folder_gives_advice_that_works(cli, refused, gan, tmp_path):
    shared = tmp_path / "shared"
    for i in range(2):
        gen(cli, gan, shared, "--count", "4", "--batch-size", "2", "--shard", f"{i}/2")
    for name in (".synthworth", ".synthworth-shard-0-of-2.lock", ".synthworth-shard-1-of-2.lock"):
        (shared / name).unlink()   # as synthworth 0.1.0 left it
    before = snapshot(tmp_path)
    line = refused("data", "merge", "--out", shared, match="older synthworth")
    assert snapshot(tmp_path) == before
    advice = line.split("instead: ", 1)[1].removesuffix(" ...").split()
    assert advice[:3] == ["synthworth", "data", "merge"]
    assert cli(*advice[1:], "-q")[0] == 0
    assert len(Dataset.open(Path(advice[4]))) == 4
    assert snapshot(tmp_path, skip=(Path(advice[4]).name,)) == before  # the old folder is only read
