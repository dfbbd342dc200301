"""`synthworth generate --pipeline`: a tiny Stable Diffusion folder in, a synthetic Dataset out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthworth.cli import main
from synthworth.data.dataset import Dataset
from synthworth.errors import DataError
from synthworth.generate import GenerateConfig, generate
from synthworth.generate.sources import _Pipeline
from synthworth.safety import owned_kind
from synthworth.themes import load_theme

FRUITS = ["apple", "banana", "grape", "mango", "strawberry"]
# Files whose bytes must not depend on when or how often the run was started.
TIMELESS = re.compile(r"(\.png|metadata\.jsonl|items\.jsonl|\.npy|generate\.json)$")


def run_cli(tiny_pipeline, out: Path, *extra: str) -> int:
    return main(["generate", "--pipeline", str(tiny_pipeline), "--theme", "fruits", "--count", "10",
                 "--batch-size", "4", "--steps", "2", "--size", "8", "--cpu", "--out", str(out), "-q", *extra])


def config(tiny_pipeline, **options) -> GenerateConfig:
    base = {"pipeline": str(tiny_pipeline), "theme": "fruits", "count": 10, "batch_size": 4,
            "steps": 2, "size": 8, "cpu": True}
    return GenerateConfig(**{**base, **options})


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file of the folders (relative path -> bytes) whose content is a pure function of the plan."""
    return {f"{i}/{p.relative_to(folder)}": p.read_bytes()
            for i, folder in enumerate(folders)
            for p in sorted(folder.rglob("*")) if p.is_file() and TIMELESS.search(p.name)}


@pytest.fixture(scope="module")
def finished(tiny_pipeline, tmp_path_factory) -> Path:
    """One uninterrupted run: the reference the other tests compare with."""
    out = tmp_path_factory.mktemp("reference") / "fruits"
    assert run_cli(tiny_pipeline, out) == 0
    return out


def test_layout_metadata_and_prompts(finished, tiny_pipeline, capsys):
    out = finished
    assert sorted(p.name for p in out.iterdir()) == sorted(
        FRUITS + ["metadata.jsonl", "images.npy", "labels.npy", "splits.npy", "items.jsonl",
                  "manifest.json", "generate.json", "generation.jsonl", ".synthworth", ".synthworth.lock",
                  "README.md", "train"])  # the card and the split folder of data.hf
    assert owned_kind(out) == "generation" and owned_kind(Path(f"{out}-native")) == "generation-native"
    theme = load_theme("fruits")
    table = rows(out)
    assert len(table) == 10
    for i, row in enumerate(table):
        subject = FRUITS[i % 5]  # subjects take turns, in the theme's order
        assert row == {
            "file_name": f"{subject}/seed-{i:06d}.png", "label": FRUITS.index(subject), "class_name": subject,
            "generator": "tiny-sd", "seed": i, "prompt": theme.prompt(subject, i), "negative_prompt": "",
            "scheduler": "dpm++", "steps": 2, "guidance": 7.5, "sample_seed": i, "blank_retries": 0,
            "blank": False, "split": "train"}
        assert re.fullmatch(r"A (close-up|medium distance) picture of a \w+, looking from "
                            r"(straight on|above|the left|the right)", row["prompt"])
        with Image.open(out / row["file_name"]) as img:
            assert img.size == (8, 8) and img.mode == "RGB"
        with Image.open(Path(f"{out}-native") / row["file_name"]) as img:
            assert img.size == (16, 16)  # the pipeline's native size, kept beside
    assert rows(Path(f"{out}-native")) == table

    ds = Dataset.open(out)
    assert ds.class_names == FRUITS and ds.shape == (8, 8, 3) and len(ds) == 10
    assert ds.labels.tolist() == [FRUITS.index(FRUITS[i % 5]) for i in range(10)]
    assert ds.items() == table
    for i, row in enumerate(table):
        np.testing.assert_array_equal(ds.take([i])[0], np.asarray(Image.open(out / row["file_name"])))
    manifest = ds.manifest
    assert manifest["kind"] == "synthetic" and manifest["source"]["kind"] == "text2image"
    assert manifest["generation"]["images_generated"] == 10 and manifest["generation"]["seconds"] > 0
    assert manifest["generation"]["blank_retries"] == 0
    timings = [json.loads(l) for l in (out / "generation.jsonl").read_text().splitlines()]
    assert [t["block"] for t in timings] == [0, 1, 2] and sum(t["images"] for t in timings) == 10
    assert {(t["device"], t["dtype"]) for t in timings} == {("cpu", "float32")}


def test_same_seed_same_files_other_seed_other_images(finished, tiny_pipeline, tmp_path):
    again = tmp_path / "again"
    assert run_cli(tiny_pipeline, again) == 0
    assert snapshot(again) == snapshot(finished)
    other = tmp_path / "other"
    assert run_cli(tiny_pipeline, other, "--seed", "100", "--count", "2") == 0
    assert [r["seed"] for r in rows(other)] == [100, 101]
    assert not np.array_equal(Dataset.open(other).take([0]), Dataset.open(finished).take([0]))


def test_a_killed_run_resumes_to_exactly_the_same_files(finished, tiny_pipeline, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    render = _Pipeline.render
    calls = []

    def dies_on_the_second_block(self, subjects, seeds):
        calls.append(seeds)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a scheduler's SIGINT raises mid-run
        return render(self, subjects, seeds)

    monkeypatch.setattr(_Pipeline, "render", dies_on_the_second_block)
    with pytest.raises(KeyboardInterrupt):
        generate(config(tiny_pipeline), out, progress=False)
    monkeypatch.setattr(_Pipeline, "render", render)
    assert not (out / "manifest.json").exists() and not (out / "metadata.jsonl").exists()
    assert len(list(out.glob("*/*.png"))) == 4  # the first block of 4
    # What else a kill leaves: a half-written temporary file; and one image lost as well.
    (out / "grape" / ".seed-000007.png.999.tmp").write_bytes(b"half a png")
    (out / "banana" / "seed-000001.png").unlink()

    report = generate(config(tiny_pipeline), out, progress=False)
    assert (report.generated, report.skipped) == (7, 3)  # block 0 made again whole, keeping 3 files
    assert snapshot(out, Path(f"{out}-native")) == snapshot(finished, Path(f"{finished}-native"))
    assert not list(out.rglob("*.tmp"))
    assert report.dataset.fingerprint == Dataset.open(finished).fingerprint
    # The manifest counts both runs: each block once, each run's own share and seconds.
    totals = report.dataset.manifest["generation"]
    assert (totals["images_generated"], totals["runs"]) == (10, 2)
    assert [s["images"] for s in totals["sessions"]] == [4, 6]
    assert totals["seconds"] == pytest.approx(sum(s["seconds"] for s in totals["sessions"]), abs=1e-3)

    # Run again: the finished Dataset is reused, nothing is generated or loaded.
    monkeypatch.setattr(_Pipeline, "load", lambda self, device: pytest.fail("loaded a finished run"))
    again = generate(config(tiny_pipeline), out, progress=False)
    assert again.generated == 0 and again.dataset.fingerprint == report.dataset.fingerprint


def test_resuming_with_other_options_is_refused(finished, tiny_pipeline, capsys):
    assert run_cli(tiny_pipeline, finished, "--seed", "1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "was started with other options (seed (0 -> 1))" in err and "another --out" in err
    with pytest.raises(DataError, match=r"other options \(batch_size \(4 -> 2\)\)"):
        generate(config(tiny_pipeline, batch_size=2), finished, progress=False)


def test_hf_datasets_and_torchvision_read_the_output(finished, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets
    from torchvision.datasets import ImageFolder

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    datasets.disable_progress_bars()
    table = {r["file_name"]: r for r in rows(finished)}
    packed = Dataset.open(finished)
    pixels = {packed.take([i])[0].tobytes(): r for i, r in enumerate(rows(finished))}

    loaded = datasets.load_dataset("imagefolder", data_dir=str(finished), cache_dir=str(tmp_path / "c"))
    assert list(loaded) == ["train"]  # the packed files, generate.json and generation.jsonl are not rows
    train = loaded["train"]
    assert len(train) == 10 and train.features["label"].names == FRUITS
    assert set(train.features) >= {"image", "label", "prompt", "seed", "generator", "negative_prompt",
                                   "scheduler", "steps", "guidance"}
    for row in train:
        expected = pixels[np.asarray(row["image"]).tobytes()]
        assert (row["label"], row["prompt"], row["seed"]) == (expected["label"], expected["prompt"], expected["seed"])

    folder = ImageFolder(str(finished / "train"))  # a split folder: class folders and metadata.parquet
    assert folder.classes == FRUITS and len(folder) == 10
    for path, target in folder.samples:
        assert table[str(Path(path).relative_to(finished / "train"))]["label"] == target


def test_options_reach_the_pipeline_and_the_metadata(tiny_pipeline, tmp_path):
    out = tmp_path / "options"
    assert run_cli(tiny_pipeline, out, "--count", "2", "--sampler", "ddim", "--guidance", "3",
                   "--negative-prompt", "blurry", "--classes", "mango,apple", "--no-native",
                   "--name", "tiny") == 0
    first, second = rows(out)
    assert (first["class_name"], second["class_name"]) == ("mango", "apple")
    assert Dataset.open(out).class_names == ["apple", "mango"]
    assert (first["label"], second["label"]) == (1, 0)
    assert {k: first[k] for k in ("negative_prompt", "scheduler", "steps", "guidance", "generator")} == {
        "negative_prompt": "blurry", "scheduler": "ddim", "steps": 2, "guidance": 3.0, "generator": "tiny"}
    assert not Path(f"{out}-native").exists()


def test_a_blanked_image_is_retried_and_counted(tiny_pipeline, tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    original = StableDiffusionPipeline.__call__
    calls = []

    def blank_once(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            out.images[1] = Image.new("RGB", out.images[1].size)  # what the safety filter returns
        return out

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", blank_once)
    out = tmp_path / "blank"
    report = generate(config(tiny_pipeline, count=4), out, progress=False)
    table = rows(out)
    assert [r["blank_retries"] for r in table] == [0, 1, 0, 0]
    assert table[1]["seed"] == 1 and table[1]["sample_seed"] == 1 + 2**32
    assert report.dataset.manifest["generation"]["blank_retries"] == 1
    assert report.dataset.manifest["generation"]["blank_kept"] == 0


def test_test_fraction_holds_out_a_share_of_every_class(tiny_pipeline, tmp_path):
    out = tmp_path / "split"
    assert run_cli(tiny_pipeline, out, "--test-fraction", "0.5") == 0
    ds = Dataset.open(out)
    assert ds.counts() == {"train": {c: 1 for c in FRUITS}, "test": {c: 1 for c in FRUITS}}
    assert [r["split"] for r in rows(out)] == ds.splits.tolist()
