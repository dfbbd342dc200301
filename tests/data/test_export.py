"""`synthworth data export` read back by Hugging Face `datasets` and by torchvision."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from synthworth.cli import main
from synthworth.data.dataset import Dataset
from synthworth.data.export import export_imagefolder
from synthworth.errors import DataError


@pytest.fixture
def prepared(tmp_path, class_tree, run_prepare) -> Dataset:
    """Three classes of distinct noise images (every image unique), with train and test."""
    class_tree(tmp_path / "src", {"bird": 4, "cat": 5, "dog": 6}, noise=True)
    return run_prepare(tmp_path / "ds", source="folder", path=tmp_path / "src", size=8,
                       test_fraction=0.2)


def _by_pixels(ds: Dataset) -> dict[bytes, tuple[int, str]]:
    """{pixel bytes: (label, split)} of a Dataset whose images are all distinct."""
    images = ds.take(np.arange(len(ds)))
    table = {img.tobytes(): (int(l), str(s)) for img, l, s in zip(images, ds.labels, ds.splits)}
    assert len(table) == len(ds), "test images must be distinct"
    return table


def _export(ds: Dataset, out, *extra: str, capsys=None) -> None:
    code = main(["data", "export", str(ds.path), "--out", str(out), "-q", *extra])
    assert code == 0
    if capsys is not None:
        assert capsys.readouterr().out.strip() == str(out)


def test_export_layout_and_metadata(prepared, tmp_path, capsys):
    out = tmp_path / "export"
    _export(prepared, out, capsys=capsys)

    assert sorted(p.name for p in out.iterdir()) == [".synthworth", "README.md", "metadata.jsonl", "test", "train"]
    for split in ("train", "test"):
        assert sorted(p.name for p in (out / split).iterdir()) == ["bird", "cat", "dog", "metadata.parquet"]
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == len(prepared)
    items = prepared.items()
    for i, row in enumerate(rows):
        label = int(prepared.labels[i])
        assert row["label"] == label
        assert row["class_name"] == prepared.class_names[label]
        assert row["split"] == prepared.splits[i]
        assert row["file_name"].startswith(f"{prepared.splits[i]}/{prepared.class_names[label]}/")
        assert row["file_name"].endswith(".png")
        assert row["source_file"] == items[i]["source_file"]
        with Image.open(out / row["file_name"]) as img:
            np.testing.assert_array_equal(np.asarray(img), prepared.take([i])[0])
    assert Counter(r["split"] for r in rows) == Counter(prepared.splits.tolist())


def test_export_read_by_hf_datasets(prepared, tmp_path, hf_datasets):
    out = tmp_path / "export"
    _export(prepared, out)
    loaded = hf_datasets.load_dataset("imagefolder", data_dir=str(out),
                                      cache_dir=str(tmp_path / "hf-cache"))
    # The real splits (not one "train" split holding the test images too) and a ClassLabel of
    # the class names (not a plain integer): see tests/data/test_hf.py for every way of loading.
    assert list(loaded) == ["train", "test"]
    expected = _by_pixels(prepared)
    sources = {img.tobytes(): item["source_file"]
               for img, item in zip(prepared.take(np.arange(len(prepared))), prepared.items())}
    seen = []
    for split, part in loaded.items():
        assert set(part.features) == {"image", "label", "source_file"}  # the item's facts too
        assert part.features["label"].names == prepared.class_names
        for row in part:
            pixels = np.asarray(row["image"])
            assert pixels.shape == (8, 8, 3)
            key = pixels.tobytes()
            assert expected[key] == (row["label"], split)
            assert row["source_file"] == sources[key]
            seen.append(key)
    assert sorted(seen) == sorted(expected)


def test_export_read_by_torchvision_image_folder(prepared, tmp_path):
    from torchvision.datasets import ImageFolder

    out = tmp_path / "export"
    _export(prepared, out)
    expected = _by_pixels(prepared)
    seen = set()
    for split in ("train", "test"):
        folder = ImageFolder(str(out / split))
        assert folder.classes == prepared.class_names
        assert folder.class_to_idx == {name: i for i, name in enumerate(prepared.class_names)}
        assert len(folder) == (prepared.splits == split).sum()
        for i in range(len(folder)):
            image, target = folder[i]
            key = np.asarray(image).tobytes()
            assert expected[key] == (target, split)
            seen.add(key)
    assert seen == set(expected)


def test_export_of_one_split_and_grayscale(tmp_path, class_tree, run_prepare, hf_datasets):
    class_tree(tmp_path / "src", {"a": 5, "b": 5}, noise=True)
    ds = run_prepare(tmp_path / "ds", source="folder", path=tmp_path / "src", size=8, channels=1,
                     test_fraction=0.4)
    out = tmp_path / "test-only"
    _export(ds, out, "--split", "test")
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["split"] for r in rows} == {"test"}

    loaded = hf_datasets.load_dataset("imagefolder", data_dir=str(out),
                                      cache_dir=str(tmp_path / "hf-cache"))["test"]
    test = ds.split("test")
    expected = {img[:, :, 0].tobytes(): int(l) for img, l in zip(test.take(np.arange(len(test))), test.labels)}
    got = {}
    for row in loaded:
        assert row["image"].mode == "L"
        got[np.asarray(row["image"]).tobytes()] = row["label"]
    assert got == expected


def test_export_of_an_unlabelled_dataset(tmp_path, make_image, run_prepare):
    from torchvision.datasets import ImageFolder

    for k in range(4):
        make_image(tmp_path / "src" / f"{k}.png", seed=k)
    ds = run_prepare(tmp_path / "ds", source="folder", path=tmp_path / "src", size=8, test_fraction=0.0)
    out = export_imagefolder(ds, tmp_path / "export", progress=False)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [None] * 4
    assert all(r["file_name"].startswith("train/unlabelled/") for r in rows)
    assert len(ImageFolder(str(out / "train"))) == 4


def test_export_replaces_only_its_own_export(prepared, tmp_path, capsys):
    out = tmp_path / "export"
    _export(prepared, out)
    assert main(["data", "export", str(prepared.path), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    _export(prepared, out, "--overwrite")  # its own export: replaced
    # A file of the user's inside the export makes it foreign: never replaced, --overwrite or not.
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert main(["data", "export", str(prepared.path), "--out", str(out), "-q", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("--overwrite" not in err[0]) and "new" in err[0], err
    assert (out / "notes.txt").read_text() == "mine"
    assert len((out / "metadata.jsonl").read_text().splitlines()) == len(prepared)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_export_unknown_split_is_an_error(prepared, tmp_path):
    with pytest.raises(DataError, match="no 'valid' split.*train, test"):
        export_imagefolder(prepared, tmp_path / "x", split="valid", progress=False)
    assert not (tmp_path / "x").exists()


def test_export_keeps_every_class_folder_so_indices_match(tmp_path):
    # A view without any "b" image still gets an empty b/ folder: torchvision then needs
    # allow_empty=True, but its class indices stay equal to the metadata's labels.
    from torchvision.datasets import ImageFolder

    images = np.arange(3 * 4 * 4 * 3, dtype=np.uint8).reshape(3, 4, 4, 3)
    ds = Dataset.from_arrays(images, [0, 2, 2], ["a", "b", "c"])
    out = export_imagefolder(ds, tmp_path / "export", progress=False)
    assert sorted(p.name for p in (out / "train").iterdir() if p.is_dir()) == ["a", "b", "c"]
    folder = ImageFolder(str(out / "train"), allow_empty=True)
    assert folder.class_to_idx == {"a": 0, "b": 1, "c": 2}
    assert sorted(t for _, t in folder.samples) == [0, 2, 2]


def test_export_onto_a_file_is_an_error_and_keeps_the_file(prepared, tmp_path):
    file = tmp_path / "a_file"
    file.write_text("mine")
    for out in (file, file / "sub"):
        with pytest.raises(DataError, match=f"{file} is a file, not a folder"):
            export_imagefolder(prepared, out, overwrite=True, progress=False)
    assert file.read_text() == "mine"
