"""`synthworth generate --from`: trained generators, sampling options, shards, processes, merge."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synthworth.cli import main
from synthworth.data.dataset import Dataset
from synthworth.errors import DataError, SynthworthError
from synthworth.generate import GenerateConfig, Shard, generate, merge
from synthworth.generators.base import load_generator
from synthworth.generators.dcgan import DCGAN, DCGANModelConfig

DIGITS = [str(d) for d in range(10)]


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


def pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_class_balanced_images_from_a_run_folder(dcgan_run, tmp_path, capsys):
    out = tmp_path / "digits"
    assert main(["generate", "--from", str(dcgan_run), "--per-class", "3", "--batch-size", "7",
                 "--out", str(out), "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    ds = Dataset.open(out)
    assert ds.class_names == DIGITS and ds.shape == (16, 16, 1) and len(ds) == 30
    assert ds.counts() == {"train": {d: 3 for d in DIGITS}}
    table = rows(out)
    assert table[0] == {"file_name": "0/seed-000000.png", "label": 0, "class_name": "0",
                        "generator": "run", "seed": 0, "split": "train"}
    assert [r["label"] for r in table] == [i % 10 for i in range(30)]
    with Image.open(out / table[13]["file_name"]) as img:
        assert img.mode == "L" and img.size == (16, 16)
    # The pixels are the generator's own samples for those seeds and labels.
    gen = load_generator(dcgan_run)
    direct = gen.sample(7, labels=[i % 10 for i in range(7, 14)], seed=7)
    np.testing.assert_allclose(ds.take(np.arange(7, 14)).astype(int), direct.astype(int), atol=1)
    assert not Path(f"{out}-native").exists()  # already at the generator's size


def test_chosen_classes_counts_and_a_larger_size(dcgan_run, tmp_path):
    out = tmp_path / "some"
    report = generate(GenerateConfig(from_run=str(dcgan_run), classes=["7", "3"], count=5, size=32,
                                     name="gan"), out, progress=False)
    ds = report.dataset
    assert ds.class_names == ["3", "7"] and ds.shape == (32, 32, 1)
    assert [r["class_name"] for r in rows(out)] == ["7", "3", "7", "3", "7"]
    assert ds.labels.tolist() == [1, 0, 1, 0, 1]
    assert {r["generator"] for r in rows(out)} == {"gan"}
    native = Path(f"{out}-native")
    with Image.open(native / "7" / "seed-000000.png") as img:
        assert img.size == (16, 16)  # the generator's own size, kept beside
    assert [r["file_name"] for r in rows(native)] == [r["file_name"] for r in rows(out)]


class SamplingDCGAN(DCGAN):
    """A DCGAN whose sample() takes sampling options, as the diffusion generators' does."""

    kind = "test-sampling-dcgan"
    calls: list[dict] = []

    def sample(self, n, labels=None, seed=0, sampler=None, steps=None, batch_size=256):
        SamplingDCGAN.calls.append({"n": n, "seed": seed, "sampler": sampler, "steps": steps})
        return super().sample(n, labels, seed, batch_size=batch_size)


def test_sampling_options_are_forwarded_only_where_accepted(tmp_path, dcgan_run):
    torch.manual_seed(0)
    folder = tmp_path / "sampling"
    SamplingDCGAN(DCGANModelConfig(latent_dim=8, base_channels=4, conditional=True, embed_dim=4), 16, 1,
                  ["a", "b"]).save(folder)
    out = tmp_path / "out"
    generate(GenerateConfig(from_run=str(folder), count=5, batch_size=2, sampler="ddim", steps=3), out,
             progress=False)
    assert SamplingDCGAN.calls == [{"n": 2, "seed": 0, "sampler": "ddim", "steps": 3},
                                   {"n": 2, "seed": 2, "sampler": "ddim", "steps": 3},
                                   {"n": 1, "seed": 4, "sampler": "ddim", "steps": 3}]
    assert {(r["sampler"], r["steps"]) for r in rows(out)} == {("ddim", 3)}
    with pytest.raises(SynthworthError, match="this dcgan generator's sampling takes no --steps option"):
        generate(GenerateConfig(from_run=str(dcgan_run), count=2, steps=10), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


@pytest.fixture
def unconditional(tmp_path) -> Path:
    torch.manual_seed(0)
    folder = tmp_path / "uncond"
    DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4), 16, 3, []).save(folder)
    return folder


def test_an_unconditional_generator_makes_unlabelled_images(unconditional, tmp_path):
    out = tmp_path / "out"
    ds = generate(GenerateConfig(from_run=str(unconditional), count=3), out, progress=False).dataset
    assert ds.class_names == [] and ds.labels.tolist() == [-1, -1, -1]
    assert [r["file_name"] for r in rows(out)] == [f"unlabelled/seed-00000{i}.png" for i in range(3)]
    assert {r["label"] for r in rows(out)} == {None}


def _error(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    return err[0]


@pytest.mark.parametrize("extra, message", [
    (["--classes", "a"], "unconditional dcgan generator: it cannot make chosen classes"),
    (["--per-class", "2"], "unconditional dcgan generator"),
])
def test_labels_asked_from_an_unconditional_generator(unconditional, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    args = ["generate", "--from", str(unconditional), "--out", str(out), *extra]
    if "--per-class" not in extra:
        args += ["--count", "2"]
    assert message in _error(args, capsys)
    assert not out.exists()


def test_bad_input_is_one_line_before_anything_is_generated(tmp_path, capsys, dcgan_run, tiny_pipeline,
                                                              offline_hub):
    out = tmp_path / "out"
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "config.yaml").write_text("kind: dcgan\n")
    no_template = tmp_path / "theme.yaml"
    no_template.write_text("name: t\nsubjects: [cat]\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: t\ntemplate: 'a {subject}'\nsubjects: []\n")
    pipe = ["--pipeline", str(tiny_pipeline)]
    cases = [
        (["--from", str(unfinished), "--count", "2"], "has no finished model yet"),
        (["--from", str(dcgan_run), "--count", "2", "--classes", "x"], "unknown class(es) x"),
        (["--from", str(dcgan_run), "--count", "2", "--theme", "animals"], "theme: only for --pipeline"),
        (["--from", str(dcgan_run), "--count", "2", "--native-size", "64"], "native_size: only for --pipeline"),
        (["--from", str(dcgan_run), "--pipeline", "sd21", "--count", "2"], "either --from"),
        (["--from", str(dcgan_run)], "give one of --count, --per-class or --plan"),
        (["--pipeline", "sd15", "--theme", "animals", "--count", "2"], "unknown pipeline 'sd15'"),
        (["--pipeline", str(tmp_path), "--theme", "animals", "--count", "2"], "no model_index.json"),
        (["--pipeline", "someone/not-cached", "--theme", "animals", "--count", "2"],
         "not in the local Hugging Face cache"),
        (pipe + ["--count", "2"], "--pipeline needs --theme"),
        (pipe + ["--theme", str(no_template), "--count", "2"], "key 'template'"),
        (pipe + ["--theme", str(empty), "--count", "2"], "subject list is empty"),
        (pipe + ["--theme", "animals", "--count", "2", "--classes", "unicorn"], "unknown class(es) unicorn"),
        (pipe + ["--theme", "animals", "--count", "2", "--sampler", "magic"], "unknown sampler 'magic'"),
        (pipe + ["--theme", "animals", "--count", "2", "--shard", "2/2"], "need 0 <= i < n"),
    ]
    for args, message in cases:
        assert message in _error(["generate", *args, "--out", str(out)], capsys), args
        assert not out.exists(), args


def test_shards_in_one_folder_then_merge_equal_one_run(dcgan_run, tmp_path, capsys):
    options = dict(from_run=str(dcgan_run), count=11, batch_size=3)
    whole = tmp_path / "whole"
    generate(GenerateConfig(**options), whole, progress=False)
    shared = tmp_path / "shared"
    first = generate(GenerateConfig(**options), shared, shard=Shard(1, 2), progress=False)
    assert first.dataset is None and not (shared / "metadata.jsonl").exists()
    assert first.generated == 5  # blocks 1 and 3 of [0-2] [3-5] [6-8] [9-10]
    with pytest.raises(DataError, match="6 of 11 images are still missing"):
        merge(shared, progress=False)
    generate(GenerateConfig(**options), shared, shard=Shard(0, 2), progress=False)
    assert main(["data", "merge", "--out", str(shared), "-q"]) == 0
    assert pngs(shared) == pngs(whole)
    assert (shared / "metadata.jsonl").read_bytes() == (whole / "metadata.jsonl").read_bytes()
    assert Dataset.open(shared).fingerprint == Dataset.open(whole).fingerprint
    # One timing row per block; the manifest's totals add up over the two shards' runs.
    assert len((shared / "generation.jsonl").read_text().splitlines()) == 4
    totals = Dataset.open(shared).manifest["generation"]
    assert totals["images_generated"] == 11 and totals["blocks_logged"] == totals["blocks"] == 4
    assert sorted((s["shard"], s["images"]) for s in totals["sessions"]) == [("0/2", 6), ("1/2", 5)]
    assert totals["seconds"] == pytest.approx(sum(s["seconds"] for s in totals["sessions"]), abs=1e-3)


def test_shards_on_separate_machines_are_merged(dcgan_run, tmp_path):
    options = dict(from_run=str(dcgan_run), count=8, batch_size=2)
    whole = generate(GenerateConfig(**options), tmp_path / "whole", progress=False).dataset
    parts = [tmp_path / f"part{i}" for i in range(3)]
    for i, part in enumerate(parts):
        generate(GenerateConfig(**options), part, shard=Shard(i, 3), progress=False)
    merged = merge(tmp_path / "merged", parts, progress=False)
    assert merged.fingerprint == whole.fingerprint
    assert pngs(tmp_path / "merged") == pngs(tmp_path / "whole")
    other = tmp_path / "other"
    generate(GenerateConfig(**{**options, "seed": 5}), other, shard=Shard(0, 3), progress=False)
    with pytest.raises(DataError, match=r"other options .*seed \(0 -> 5\)"):
        merge(tmp_path / "merged", [other], progress=False)


def test_shard_parts_cover_every_block_once():
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(SynthworthError):
            Shard.parse(bad)
    for shard in (Shard(0, 1), Shard(1, 3)):
        taken = [b for p in range(4) for b in shard.within(p, 4).blocks(50)]
        assert sorted(taken) == list(shard.blocks(50))


class FakeProcess:
    """What accelerate's PartialState tells one of several processes; here they are threads that
    meet at a barrier where real processes would synchronise."""

    def __init__(self, index: int, count: int, barrier: threading.Barrier):
        self.process_index, self.num_processes, self.barrier = index, count, barrier
        self.is_main_process = self.is_local_main_process = index == 0
        self.device = torch.device("cpu")

    def wait_for_everyone(self) -> None:
        self.barrier.wait(timeout=60)


def test_each_process_takes_its_share_and_the_main_one_writes_the_metadata(dcgan_run, tmp_path,
                                                                           monkeypatch):
    import synthworth.generate.run as gen_module

    options = GenerateConfig(from_run=str(dcgan_run), count=9, batch_size=2)
    whole = generate(options, tmp_path / "whole", progress=False).dataset
    out = tmp_path / "launched"
    barrier = threading.Barrier(2)
    states = {f"process-{i}": FakeProcess(i, 2, barrier) for i in range(2)}
    monkeypatch.setattr(gen_module, "_process_state", lambda: states[threading.current_thread().name])
    reports = {}

    def run(name: str) -> None:
        reports[name] = generate(options, out, progress=False)

    threads = [threading.Thread(target=run, args=(name,), name=name) for name in states]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    first, second = reports["process-0"], reports["process-1"]
    assert (first.generated, second.generated) == (5, 4)  # blocks 0, 2, 4 and 1, 3
    assert first.dataset.fingerprint == second.dataset.fingerprint == whole.fingerprint
    timings = [json.loads(line) for line in (out / "generation.jsonl").read_text().splitlines()]
    assert Counter(t["process"] for t in timings) == {0: 3, 1: 2}  # one row per block
    totals = first.dataset.manifest["generation"]
    assert totals["images_generated"] == 9 and sorted(s["images"] for s in totals["sessions"]) == [4, 5]


def save_ddpm(folder: Path) -> Path:
    """An untrained class-conditional pixel DDPM (classes a, b) of 50 noise levels, saved."""
    from synthworth.generators.diffusion import (DiffusionGenerator, NoiseConfig, SamplingConfig, UNetConfig,
                                                 make_noise_scheduler, make_unet)

    torch.manual_seed(0)
    unet = make_unet(UNetConfig(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4), 16, 1, 2)
    scheduler = make_noise_scheduler(NoiseConfig(num_train_timesteps=50), clip_sample=True)
    DiffusionGenerator(unet, dict(scheduler.config), ["a", "b"], SamplingConfig(), 1, 16).save(folder)
    return folder


def test_a_diffusion_generator_gets_its_sampler_steps_and_guidance(tmp_path):
    folder = save_ddpm(tmp_path / "ddpm")
    out = tmp_path / "out"
    assert main(["generate", "--from", str(folder), "--count", "3", "--sampler", "ddim", "--steps", "2",
                 "--guidance", "1.5", "--out", str(out), "-q"]) == 0
    assert [(r["class_name"], r["sampler"], r["steps"], r["guidance"]) for r in rows(out)] == [
        ("a", "ddim", 2, 1.5), ("b", "ddim", 2, 1.5), ("a", "ddim", 2, 1.5)]
    default = tmp_path / "default"
    generate(GenerateConfig(from_run=str(folder), count=1), default, progress=False)
    assert {k: rows(default)[0][k] for k in ("sampler", "steps")} == {"sampler": "dpmsolver++", "steps": 20}


@pytest.mark.parametrize("bad, message, fixed", [
    (["--sampler", "euler", "--steps", "2"], "unknown sampler 'euler'; choose one of ddpm, ddim, dpmsolver++",
     ["--sampler", "ddim", "--steps", "2"]),
    (["--sampler", "ddim", "--steps", "500"], "500 sampling steps exceed the model's 50 noise levels; use at most "
     "50 steps", ["--sampler", "ddim", "--steps", "2"]),
])
def test_a_bad_sampler_or_steps_is_refused_before_the_plan_and_the_advice_works(tmp_path, capsys, bad, message,
                                                                                 fixed):
    """Checked before anything is written: the corrected command into the same --out is not then
    refused as "started with other options"."""
    folder = save_ddpm(tmp_path / "ddpm")
    out = tmp_path / "out"
    args = ["generate", "--from", str(folder), "--count", "2", "--out", str(out), "-q"]
    assert _error([*args, *bad], capsys) == f"synthworth: error: {message}"
    assert not out.exists()
    assert main([*args, *fixed]) == 0, capsys.readouterr().err
    assert len(rows(out)) == 2


def test_an_out_folder_of_something_else_is_refused_and_overwrite_starts_again(dcgan_run, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert "was not written by synthworth (no .synthworth marker)" in _error(
        ["generate", "--from", str(dcgan_run), "--count", "2", "--out", str(busy)], capsys)
    assert (busy / "notes.txt").read_text() == "mine"
    out = tmp_path / "out"
    generate(GenerateConfig(from_run=str(dcgan_run), count=2), out, progress=False)
    assert "other options (count (2 -> 3))" in _error(
        ["generate", "--from", str(dcgan_run), "--count", "3", "--out", str(out)], capsys)
    assert main(["generate", "--from", str(dcgan_run), "--count", "3", "--out", str(out), "--overwrite", "-q"]) == 0
    assert len(Dataset.open(out)) == 3
