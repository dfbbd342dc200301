"""Each source with the layout it really ships in, the split and cap options, and Dataset.open."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from synthworth.data.dataset import Dataset, fingerprint_arrays
from synthworth.errors import DataError


def _split_counts(ds: Dataset) -> dict[str, int]:
    return {s: int(n) for s, n in zip(*np.unique(ds.splits, return_counts=True))}


def _files_by_split(ds: Dataset) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item, split in zip(ds.items(), ds.splits):
        out.setdefault(str(split), set()).add(item["source_file"])
    return out


# ------------------------------------------------------------------------------------ folder
def test_folder_class_subfolders(tmp_path, class_tree, run_prepare, assert_colours):
    colours = class_tree(tmp_path / "src", {"dog": 4, "cat": 6, "bird": 5})
    ds = run_prepare(source="folder", path=tmp_path / "src", size=8, test_fraction=0.2)

    assert ds.class_names == ["bird", "cat", "dog"]
    assert len(ds) == 15
    assert ds.shape == (8, 8, 3)
    assert ds.arrays[0].dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert Counter(ds.class_names[l] for l in ds.labels) == {"bird": 5, "cat": 6, "dog": 4}
    assert set(ds.splits.tolist()) == {"train", "test"}
    assert_colours(ds, colours)
    manifest = ds.manifest
    assert manifest["source"]["kind"] == "folder"
    assert manifest["num_images"] == 15
    assert manifest["skipped"] == []
    assert sum(sum(c.values()) for c in manifest["counts"].values()) == 15


def test_folder_nested_subfolders_belong_to_their_top_class(tmp_path, make_image, run_prepare,
                                                            assert_colours):
    root = tmp_path / "src"
    red, blue = (220, 30, 30), (30, 40, 220)
    make_image(root / "cat" / "a.png", colour=red)
    make_image(root / "cat" / "indoor" / "b.png", colour=red)
    make_image(root / "cat" / "indoor" / "sofa" / "c.png", colour=red)
    make_image(root / "dog" / "d.png", colour=blue)
    make_image(root / "dog" / "park" / "e.png", colour=blue)
    ds = run_prepare(source="folder", path=root, size=8, test_fraction=0.0)

    assert ds.class_names == ["cat", "dog"]  # "indoor", "sofa", "park" are not classes
    assert Counter(ds.class_names[l] for l in ds.labels) == {"cat": 3, "dog": 2}
    assert sorted(i["source_file"] for i in ds.items()) == sorted([
        "cat/a.png", "cat/indoor/b.png", "cat/indoor/sofa/c.png", "dog/d.png", "dog/park/e.png"])
    assert set(ds.splits.tolist()) == {"train"}
    assert_colours(ds, {"cat": red, "dog": blue})


@pytest.mark.parametrize("valid_name", ["valid", "val"])
def test_folder_split_folders_are_kept(tmp_path, class_tree, run_prepare, assert_colours, valid_name):
    root = tmp_path / "src"
    colours = {"cat": (220, 30, 30), "dog": (30, 40, 220)}
    class_tree(root / "train", {"cat": 4, "dog": 3}, colours=colours)
    class_tree(root / valid_name, {"cat": 2, "dog": 1}, colours=colours)
    class_tree(root / "test", {"cat": 1, "dog": 2}, colours=colours)
    ds = run_prepare(source="folder", path=root, size=8, test_fraction=0.2)

    assert ds.class_names == ["cat", "dog"]
    assert ds.split_names == ["train", "valid", "test"]
    # The source's own splits are kept: no extra test share is drawn out of train.
    assert ds.counts() == {"train": {"cat": 4, "dog": 3}, "valid": {"cat": 2, "dog": 1},
                           "test": {"cat": 1, "dog": 2}}
    assert all(i["source_file"].startswith(s if s != "valid" else valid_name)
               for i, s in zip(ds.items(), ds.splits))
    assert_colours(ds, colours)


def test_folder_of_loose_images_is_unlabelled(tmp_path, make_image, run_prepare):
    root = tmp_path / "src"
    for k in range(10):
        make_image(root / f"photo_{k}.png", seed=k)
    ds = run_prepare(source="folder", path=root, size=8, test_fraction=0.2)

    assert ds.class_names == []
    assert not ds.labelled
    assert len(ds) == 10
    assert (ds.labels == -1).all()
    assert _split_counts(ds) == {"train": 8, "test": 2}
    assert ds.counts()["train"] == {"(unlabelled)": 8}


# ------------------------------------------------------------------------------------ animals10
@pytest.mark.parametrize("given", ["root", "raw-img"])
def test_animals10_translates_and_sorts_classes(animals10_download, run_prepare, assert_colours, given):
    root, colours = animals10_download
    path = root if given == "root" else root / "raw-img"
    ds = run_prepare(source="animals10", path=path, size=8, test_fraction=0.0)

    assert ds.class_names == ["cat", "dog", "spider"]
    assert Counter(ds.class_names[l] for l in ds.labels) == {"dog": 3, "cat": 2, "spider": 4}
    english = {"cane": "dog", "gatto": "cat", "ragno": "spider"}
    assert_colours(ds, {english[k]: v for k, v in colours.items()}, tol=15)
    # The source file keeps the Italian folder, relative to raw-img.
    assert all(i["source_file"].split("/")[0] in english for i in ds.items())
    assert ds.manifest["skipped"] == []


def test_animals10_other_folders_are_listed_not_classes(animals10_download, make_image, run_prepare):
    root, _ = animals10_download
    make_image(root / "raw-img" / "unicorno" / "x.jpeg")
    ds = run_prepare(source="animals10", path=root, size=8, test_fraction=0.0)
    assert "unicorn" not in ds.class_names and "unicorno" not in ds.class_names
    assert ds.num_classes == 3
    assert [s["reason"] for s in ds.manifest["skipped"]] == ["not an Animals-10 class folder"]


def test_animals10_classes_filter_uses_english_names(animals10_download, run_prepare, assert_colours):
    root, colours = animals10_download
    ds = run_prepare(source="animals10", path=root, size=8, classes=["spider", "dog"], test_fraction=0.0)
    assert ds.class_names == ["dog", "spider"]
    assert Counter(ds.class_names[l] for l in ds.labels) == {"dog": 3, "spider": 4}
    assert_colours(ds, {"dog": colours["cane"], "spider": colours["ragno"]}, tol=15)


# ------------------------------------------------------------------------------------ fruits
@pytest.mark.parametrize("inner", [False, True])
def test_fruits_keeps_its_splits_and_lowercases_classes(fruits_download, run_prepare, assert_colours, inner):
    root, colours, counts = fruits_download
    path = root / "Fruits Classification" if inner else root
    ds = run_prepare(source="fruits", path=path, size=8, test_fraction=0.2)

    assert ds.class_names == ["apple", "banana", "grape"]
    assert ds.split_names == ["train", "valid", "test"]
    assert ds.counts() == {s: {c: n for c in ds.class_names} for s, n in counts.items()}
    assert_colours(ds, colours, tol=15)


def test_fruits_max_per_class_applies_per_split(fruits_download, run_prepare):
    root, _, _ = fruits_download
    ds = run_prepare(source="fruits", path=root, size=8, max_per_class=2)
    assert ds.counts() == {"train": {"apple": 2, "banana": 2, "grape": 2},
                           "valid": {"apple": 2, "banana": 2, "grape": 2},
                           "test": {"apple": 2, "banana": 2, "grape": 2}}


# ------------------------------------------------------------------------------------ celeba
def test_celeba_official_partitions_unlabelled(celeba_download, run_prepare):
    root, partition, _ = celeba_download
    ds = run_prepare(source="celeba", path=root, size=8)

    assert ds.class_names == []
    assert (ds.labels == -1).all()
    assert _split_counts(ds) == {"train": 6, "valid": 3, "test": 3}
    names = {"0": "train", "1": "valid", "2": "test"}
    for item, split in zip(ds.items(), ds.splits):
        assert names[partition[item["source_file"]]] == split
    assert ds.shape == (8, 8, 3)


def test_celeba_label_attr_gives_two_classes(celeba_download, run_prepare, assert_colours):
    root, _, smiling = celeba_download
    ds = run_prepare(source="celeba", path=root, size=8, label_attr="Smiling")

    assert ds.class_names == ["not_smiling", "smiling"]
    for item, label in zip(ds.items(), ds.labels):
        assert label == (1 if smiling[item["source_file"]] > 0 else 0)
    assert Counter(ds.labels.tolist()) == {1: 4, 0: 8}
    assert_colours(ds, {"smiling": (230, 230, 230), "not_smiling": (20, 20, 20)})
    assert _split_counts(ds) == {"train": 6, "valid": 3, "test": 3}


def test_celeba_unknown_attribute_lists_known_ones(celeba_download, run_prepare):
    root, _, _ = celeba_download
    with pytest.raises(DataError, match="unknown CelebA attribute 'Smiles'.*Smiling"):
        run_prepare(source="celeba", path=root, size=8, label_attr="Smiles")


def test_celeba_image_missing_from_partition_csv_is_skipped(celeba_download, make_image, run_prepare):
    root, _, _ = celeba_download
    make_image(root / "img_align_celeba" / "img_align_celeba" / "999999.jpg")
    ds = run_prepare(source="celeba", path=root, size=8)
    assert len(ds) == 12
    assert ds.manifest["skipped"] == [
        {"file": "999999.jpg", "reason": "not listed in list_eval_partition.csv"}]


# ------------------------------------------------------------------------------------ bundled
def test_digits_bundled(run_prepare):
    from sklearn.datasets import load_digits

    ds = run_prepare(source="digits", size=8, fit="stretch", test_fraction=0.2)
    assert len(ds) == 1797
    assert ds.shape == (8, 8, 1)
    assert ds.class_names == [str(i) for i in range(10)]
    assert _split_counts(ds) == {"test": math.ceil(0.2 * 1797), "train": 1797 - math.ceil(0.2 * 1797)}
    # At its own size nothing is resampled: values are the 0..16 digits scaled to 0..255.
    digits = load_digits()
    expected = np.round(digits.images / 16.0 * 255).astype(np.uint8)[:, :, :, None]
    np.testing.assert_array_equal(ds.take(np.arange(len(ds))), expected)
    np.testing.assert_array_equal(ds.labels, digits.target)


def test_lfw_bundled(run_prepare):
    ds = run_prepare(source="lfw", size=16, test_fraction=0.2)
    assert len(ds) == 200
    assert ds.shape == (16, 16, 1)
    assert ds.class_names == ["face", "non_face"]
    assert ds.counts() == {"train": {"face": 80, "non_face": 80}, "test": {"face": 20, "non_face": 20}}
    pixels = ds.take(np.arange(len(ds)))
    assert pixels.std() > 10  # real faces, not a constant fill


def test_bundled_rgb_on_request(run_prepare):
    ds = run_prepare(source="lfw", size=8, channels=3, classes=["face"])
    assert ds.shape == (8, 8, 3)
    px = ds.take(np.arange(len(ds)))
    # Grey converted to RGB: the three channels are equal.
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
    assert ds.class_names == ["face"] and len(ds) == 100


# ------------------------------------------------------------------------------------ splits
@pytest.fixture
def three_classes(tmp_path, class_tree):
    root = tmp_path / "src"
    colours = class_tree(root, {"cat": 10, "dog": 10, "fox": 10})
    return root, colours


def test_split_is_seeded_and_stratified(three_classes, run_prepare, tmp_path):
    root, _ = three_classes
    a = run_prepare(tmp_path / "a", source="folder", path=root, size=8, seed=3, test_fraction=0.2)
    b = run_prepare(tmp_path / "b", source="folder", path=root, size=8, seed=3, test_fraction=0.2)
    c = run_prepare(tmp_path / "c", source="folder", path=root, size=8, seed=4, test_fraction=0.2)

    assert _files_by_split(a) == _files_by_split(b)
    assert a.fingerprint == b.fingerprint
    assert _files_by_split(a)["test"] != _files_by_split(c)["test"]
    assert a.fingerprint != c.fingerprint
    for ds in (a, c):
        assert ds.counts()["test"] == {"cat": 2, "dog": 2, "fox": 2}
        assert ds.counts()["train"] == {"cat": 8, "dog": 8, "fox": 8}


def test_test_fraction_zero_keeps_everything_in_train(three_classes, run_prepare):
    root, _ = three_classes
    ds = run_prepare(source="folder", path=root, size=8, test_fraction=0.0)
    assert _split_counts(ds) == {"train": 30}


def test_max_per_class_is_seeded(three_classes, run_prepare, tmp_path):
    root, _ = three_classes
    a = run_prepare(tmp_path / "a", source="folder", path=root, size=8, max_per_class=4, seed=1,
                    test_fraction=0.25)
    b = run_prepare(tmp_path / "b", source="folder", path=root, size=8, max_per_class=4, seed=1,
                    test_fraction=0.25)
    c = run_prepare(tmp_path / "c", source="folder", path=root, size=8, max_per_class=4, seed=2,
                    test_fraction=0.25)
    for ds in (a, c):
        assert Counter(ds.class_names[l] for l in ds.labels) == {"cat": 4, "dog": 4, "fox": 4}
        assert ds.counts()["test"] == {"cat": 1, "dog": 1, "fox": 1}
    assert _files_by_split(a) == _files_by_split(b)
    files = lambda ds: {i["source_file"] for i in ds.items()}  # noqa: E731
    assert files(a) != files(c)


def test_classes_filter_remaps_labels(three_classes, run_prepare, assert_colours):
    root, colours = three_classes
    ds = run_prepare(source="folder", path=root, size=8, classes=["fox", "cat"], test_fraction=0.0)
    assert ds.class_names == ["cat", "fox"]
    assert sorted(set(ds.labels.tolist())) == [0, 1]
    assert len(ds) == 20
    assert_colours(ds, colours)


def test_unknown_class_is_an_error_listing_known_ones(three_classes, run_prepare):
    root, _ = three_classes
    with pytest.raises(DataError, match="unknown class.*wolf.*cat, dog, fox"):
        run_prepare(source="folder", path=root, size=8, classes=["wolf"])


def test_parallel_decoding_matches_in_process(tmp_path, class_tree, make_image, run_prepare):
    root = tmp_path / "src"
    class_tree(root, {"cat": 9, "dog": 7}, ext=".jpg", noise=True)
    (root / "cat" / "broken.jpg").write_text("not a jpeg")  # a skip in the middle of the stream
    serial = run_prepare(tmp_path / "serial", source="folder", path=root, size=8, workers=0)
    parallel = run_prepare(tmp_path / "parallel", source="folder", path=root, size=8, workers=2)

    assert len(parallel) == len(serial) == 16
    np.testing.assert_array_equal(parallel.take(np.arange(16)), serial.take(np.arange(16)))
    np.testing.assert_array_equal(parallel.labels, serial.labels)
    assert parallel.fingerprint == serial.fingerprint
    assert [s["file"] for s in parallel.manifest["skipped"]] == ["cat/broken.jpg"]
    assert parallel.manifest["options"]["workers"] == 2


# ------------------------------------------------------------------------------------ Dataset.open
def test_open_memory_maps_and_fingerprint_is_stable(three_classes, run_prepare, tmp_path):
    root, _ = three_classes
    prepared = run_prepare(source="folder", path=root, size=8)
    ds = Dataset.open(prepared.path)

    assert isinstance(ds.arrays[0], np.memmap)
    assert ds.arrays[0].shape == (30, 8, 8, 3) and ds.arrays[0].dtype == np.uint8
    again = Dataset.open(prepared.path)
    assert ds.fingerprint == again.fingerprint == prepared.fingerprint
    # The stored fingerprint is the content's: recomputing it from the arrays gives the same.
    assert fingerprint_arrays(np.asarray(ds.arrays[0]), ds.labels, ds.splits, ds.class_names) == ds.fingerprint
    manifest = json.loads((prepared.path / "manifest.json").read_text())
    assert manifest == ds.manifest
    assert manifest["shape"] == [8, 8, 3]


def test_open_without_manifest_is_an_error(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    np.save(folder / "images.npy", np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="not a complete Dataset.*manifest.json"):
        Dataset.open(folder)
    with pytest.raises(DataError, match="does not exist"):
        Dataset.open(tmp_path / "nowhere")


def test_batches_are_seeded_and_cover_everything(three_classes, run_prepare):
    root, _ = three_classes
    ds = run_prepare(source="folder", path=root, size=8)
    first = [labels.tolist() for _, labels in ds.batches(7, seed=5)]
    again = [labels.tolist() for _, labels in ds.batches(7, seed=5)]
    assert first == again
    assert [len(b) for b in first] == [7, 7, 7, 7, 2]
    images, labels = next(ds.batches(30, shuffle=False))
    np.testing.assert_array_equal(labels, ds.labels)
    assert images.shape == (30, 8, 8, 3) and images.dtype == np.uint8
