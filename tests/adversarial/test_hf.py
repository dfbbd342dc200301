"""Adversarial inputs to the Hugging Face side of ``synthworth data export`` and ``generate``.

Class names and manifests may be someone else's: YAML-special characters, quotes, line breaks,
``---``, ``../x``, unicode, and class names that are split words `datasets` looks for in folder
names (``train``, ``val``, ``dev-2``). Each test runs the real CLI and asserts what a user needs:
both load styles give the real splits and the real class names with each image's own label,
the card still parses to what synthworth wrote, nothing lands outside --out, and a refusal is
one line with advice that works.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from synthworth.data.dataset import Dataset, write_packed
from synthworth.safety import MARKER, mark_owned, owned_kind

HOSTILE = ["train", "b: 'x'", 'say "hi"', "line\nbreak", "---", "../x", "ünïcödé 猫", "#comment", "- item",
           "null", "yes", "1.0", "[x]", "` code `", "<b>html</b>", "val-2", "my_validation"]
STYLES = ("repository", "imagefolder")


def packed(folder: Path, names: list[str], splits: list[str], manifest: dict | None = None,
           labels: list[int] | None = None) -> Path:
    """A Dataset of one distinct solid image per row; row i has label i % len(names) by default."""
    n = len(splits)
    folder.mkdir(parents=True)
    images = np.stack([np.full((4, 4, 3), (i, 255 - i, 7), np.uint8) for i in range(n)])  # n < 256
    labels = np.arange(n) % len(names) if labels is None else np.array(labels)
    write_packed(folder, images, labels, np.array(splits), names, [{} for _ in range(n)],
                 manifest or {"kind": "prepared"})
    mark_owned(folder, "dataset")
    return folder


def by_pixels(ds: Dataset) -> dict[str, dict[bytes, int]]:
    names = {"valid": "validation"}
    out: dict[str, dict[bytes, int]] = {}
    for image, label, split in zip(ds.take(np.arange(len(ds))), ds.labels, ds.splits):
        pixels = image[:, :, 0] if image.shape[2] == 1 else image
        out.setdefault(names.get(str(split), str(split)), {})[pixels.tobytes()] = int(label)
    return out


@pytest.fixture
def load(hf):
    """The suite's ``hf`` loader (both load styles, offline, caches under tmp_path)."""
    return hf


def assert_loads_right(folder: Path, ds: Dataset, load) -> None:
    """Both load styles: exactly the Dataset's splits, its class names, each image's label."""
    want = by_pixels(ds)
    for style in STYLES:
        loaded = load(folder, style)
        assert sorted(loaded) == sorted(want), style
        for split, table in want.items():
            assert loaded[split].features["label"].names == ds.class_names, style
            got = {np.asarray(r["image"]).tobytes(): r["label"] for r in loaded[split]}
            assert got == table, (style, split)


def test_hostile_class_names_keep_their_exact_names_and_labels(tmp_path, cli, load, snapshot):
    from torchvision.datasets import ImageFolder

    splits = ["train"] * len(HOSTILE) * 2 + ["test"] * len(HOSTILE)
    ds = packed(tmp_path / "work" / "ds", HOSTILE, splits)
    out = tmp_path / "work" / "export"
    before = snapshot(tmp_path, skip=("work/export",))
    code, _, err = cli("data", "export", ds, "--out", out, "--quiet")
    assert code == 0, err
    assert snapshot(tmp_path, skip=("work/export",)) == before  # nothing written outside --out
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    dataset = Dataset.open(ds)
    assert_loads_right(out, dataset, load)
    for split, table in by_pixels(dataset).items():  # ImageFolder index == label in each split folder
        reader = ImageFolder(str(out / split))
        assert len(reader.classes) == len(HOSTILE)
        assert {np.asarray(reader.loader(p)).tobytes(): t for p, t in reader.samples} == table


def test_class_names_that_are_split_words_make_no_splits(tmp_path, cli, load):
    # `datasets` takes any folder named like a split (train, val, dev-2, my_validation) for one:
    # a generation of such classes, and its export, still have exactly train and test.
    from synthworth.generators.dcgan import DCGAN, DCGANModelConfig

    classes = ["train", "test", "val", "dev-2", "my_validation", "eval"]
    DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4, conditional=True, embed_dim=4), 8, 1,
          classes).save(tmp_path / "gan")
    gen = tmp_path / "gen"
    code, _, err = cli("generate", "--from", tmp_path / "gan", "--per-class", "2", "--test-fraction", "0.5",
                       "--out", gen, "-q")
    assert code == 0, err
    ds = Dataset.open(gen)
    assert sorted(by_pixels(ds)) == ["test", "train"] and sum(map(len, by_pixels(ds).values())) == 12
    assert_loads_right(gen, ds, load)
    code, _, err = cli("data", "export", gen, "--out", tmp_path / "export", "-q")
    assert code == 0, err
    assert_loads_right(tmp_path / "export", ds, load)


def test_hostile_manifest_values_cannot_rewrite_the_card(tmp_path, cli, load):
    evil = "x\n---\nlicense: mit\nconfigs: []\n```\n<script>alert(1)</script> `` ` "
    ds = packed(tmp_path / "ds", ["a", "b"], ["train"] * 4, {"kind": "prepared", "source": {"kind": "folder",
                                                                                            "path": evil}})
    out = tmp_path / "export"
    code, _, err = cli("data", "export", ds, "--out", out, "-q")
    assert code == 0, err
    text = (out / "README.md").read_text(encoding="utf-8")
    header_text, body = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S).groups()
    header = yaml.safe_load(header_text)
    assert set(header) == {"task_categories", "tags", "configs", "dataset_info"}  # no injected license
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "train/**"}]
    source_lines = [line for line in body.splitlines() if line.startswith("- source:")]
    assert len(source_lines) == 1 and "<script>" in source_lines[0]  # one line, inside a code span
    assert "\n```" not in body  # no fence opened by the value
    assert_loads_right(out, Dataset.open(ds), load)


def test_a_split_without_a_hugging_face_name_is_refused_and_the_advice_works(tmp_path, cli, refused, load):
    ds = packed(tmp_path / "ds", ["a", "b"], ["train"] * 4 + ["holdout"] * 2)
    out = tmp_path / "export"
    refused("data", "export", ds, "--out", out, match=("'holdout'", "--split"))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    code, _, err = cli("data", "export", ds, "--out", out, "--split", "train", "-q")  # as the message says
    assert code == 0, err
    assert_loads_right(out, Dataset.open(ds).split("train"), load)


def test_a_class_without_images_in_a_split_keeps_indices_and_names(tmp_path, cli, load):
    from torchvision.datasets import ImageFolder

    # "b" has no test image: its folder stays (else ImageFolder would number c as 1) and the
    # ClassLabel keeps all three names.
    ds = packed(tmp_path / "ds", ["a", "b", "c"], ["train"] * 4 + ["test"] * 2, labels=[0, 1, 2, 0, 2, 0])
    out = tmp_path / "export"
    code, _, err = cli("data", "export", ds, "--out", out, "-q")
    assert code == 0, err
    assert_loads_right(out, Dataset.open(ds), load)
    reader = ImageFolder(str(out / "test"), allow_empty=True)
    assert reader.classes == ["a", "b", "c"] and sorted(t for _, t in reader.samples) == [0, 2]


def _generated(tmp_path, cli):
    """A tiny conditional DCGAN's generation (2 per class, half held out) and its command."""
    from synthworth.generators.dcgan import DCGAN, DCGANModelConfig

    DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4, conditional=True, embed_dim=4), 8, 1,
          ["a", "b"]).save(tmp_path / "gan")
    out = tmp_path / "gen"
    args = ("generate", "--from", tmp_path / "gan", "--per-class", "2", "--test-fraction", "0.5", "--out", out, "-q")
    code, _, err = cli(*args)
    assert code == 0, err
    return out, args


def test_a_generation_started_before_the_card_existed_is_finished_and_stays_replaceable(tmp_path, cli, load):
    # A folder an older synthworth began: its marker does not list README.md, train or test.
    out, args = _generated(tmp_path, cli)
    for name in ("manifest.json", "README.md"):
        (out / name).unlink()
    marker = json.loads((out / MARKER).read_text())
    marker["entries"] = [e for e in marker["entries"] if e not in ("README.md", "train", "test")]
    (out / MARKER).write_text(json.dumps(marker))
    for split in ("train", "test"):
        shutil.rmtree(out / split)
    code, _, err = cli(*args)  # finishes it: the split folders and card are registered, then written
    assert code == 0, err
    assert owned_kind(out) == "generation"
    assert_loads_right(out, Dataset.open(out), load)
    code, _, err = cli(*args, "--overwrite")  # still recognised as synthworth's own
    assert code == 0, err


def test_a_generation_finished_before_the_card_existed_gets_it_when_resumed(tmp_path, cli, load):
    # A folder an older synthworth finished (manifest.json there, no card or split folders), as the
    # demo's synthetic/* of a run made before the HF layout: resuming it used to reuse it as it
    # was, and `load_dataset` then gave one "train" split holding the test images.
    out, args = _generated(tmp_path, cli)
    (out / "README.md").unlink()
    for split in ("train", "test"):
        shutil.rmtree(out / split)
    code, _, err = cli(*args)
    assert code == 0, err
    assert (out / "README.md").is_file() and (out / "test").is_dir()
    assert_loads_right(out, Dataset.open(out), load)

def test_a_link_planted_as_a_split_folder_is_not_written_through(tmp_path, cli, load, snapshot):
    from synthworth.generators.dcgan import DCGAN, DCGANModelConfig

    DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4, conditional=True, embed_dim=4), 8, 1,
          ["a", "b"]).save(tmp_path / "gan")
    out = tmp_path / "gen"
    args = ("generate", "--from", tmp_path / "gan", "--per-class", "2", "--out", out, "-q")
    code, _, err = cli(*args)
    assert code == 0, err
    (out / "manifest.json").unlink()  # unfinished again, as after a kill
    shutil.rmtree(out / "train")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("mine")
    (out / "train").symlink_to(tmp_path / "elsewhere")
    before = snapshot(tmp_path / "elsewhere")
    code, _, err = cli(*args)
    assert code == 0, err
    assert snapshot(tmp_path / "elsewhere") == before  # nothing written through the link
    assert (out / "train").is_dir() and not (out / "train").is_symlink()
    assert_loads_right(out, Dataset.open(out), load)


def test_an_old_generation_with_a_class_folder_named_train_is_refused_not_emptied(tmp_path):
    """A folder an older synthworth made keeps class 'train' in OUT/train/: making the HF split
    folder there would remove the generated images. Refused in one line, every image kept."""
    from synthworth.data.hf import write_generated
    from synthworth.errors import DataError

    out = tmp_path / "gen"
    (out / "train").mkdir(parents=True)
    image = out / "train" / "seed-000000.png"
    image.write_bytes(b"png")
    rows = [{"file_name": "train/seed-000000.png", "label": 0, "split": "train"}]
    with pytest.raises(DataError, match="--overwrite"):
        write_generated(out, rows, {"class_names": ["train"]})
    assert image.read_bytes() == b"png"
