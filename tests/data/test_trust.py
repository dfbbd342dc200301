"""Focused checks behind issue 10 for the data stage: export folder names, layouts that are
fine (and must not be refused), seeds, and files that must never be opened."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydantic import ValidationError

from synthworth.data.dataset import Dataset, write_packed
from synthworth.data.export import class_folders
from synthworth.data.prepare import MAX_SEED, PrepareConfig
from synthworth.data.sources import celeba_source, folder_source
from synthworth.errors import DataError


def test_sorted_plain_names_are_export_folders_as_they_are():
    assert class_folders(["bird", "cat", "dog"]) == ["bird", "cat", "dog"]


@pytest.mark.parametrize("names", [
    ["not_male", "male"],                    # unsorted in the manifest
    ["b/x", "b"],                            # sanitising reorders them
    ["Cat", "cat", "CAT"],                   # one folder on a case-insensitive disk
    ["", ".", "..", "../up", "/root", "a\0b", "x\ny"],
])
def test_export_folders_are_safe_distinct_and_sort_in_label_order(names):
    folders = class_folders(names)
    assert sorted(folders) == folders  # ImageFolder's index of folders[i] is i
    assert len({f.casefold() for f in folders}) == len(names)
    for f in folders:
        assert f and "/" not in f and "\0" not in f and "\n" not in f and not f.startswith(".")


def test_a_single_class_folder_of_images_is_still_accepted(tmp_path, class_tree):
    class_tree(tmp_path / "src", {"cat": 3})
    (tmp_path / "src" / "cat" / "indoor").mkdir()  # one sub-folder is no wrapper
    listing = folder_source(tmp_path / "src")
    assert listing.class_names == ["cat"] and len(listing.refs) == 3


def test_a_class_folder_with_images_and_sub_folders_is_no_wrapper(tmp_path, class_tree, make_image):
    class_tree(tmp_path / "src" / "cat", {"indoor": 2, "outdoor": 2})
    make_image(tmp_path / "src" / "cat" / "top.png")
    listing = folder_source(tmp_path / "src")
    assert listing.class_names == ["cat"] and len(listing.refs) == 5


def test_two_folders_for_one_split_are_refused(tmp_path, class_tree):
    for split in ("train", "val", "validation"):
        class_tree(tmp_path / "src" / split, {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match="two folders for the 'valid' split"):
        folder_source(tmp_path / "src")


def test_celeba_class_names_are_sorted_for_every_attribute(celeba_download):
    root, _, smiling = celeba_download
    listing = celeba_source(root, label_attr="Smiling")
    assert listing.class_names == sorted(listing.class_names)
    for ref, label in zip(listing.refs, listing.labels):
        assert (listing.class_names[label] == "smiling") == (smiling[os.path.basename(ref)] > 0)


def test_seed_bounds():
    assert PrepareConfig(source="digits", seed=MAX_SEED).seed == MAX_SEED
    for bad in (-1, MAX_SEED + 1, 2**128):
        with pytest.raises(ValidationError, match="seed must be a whole number from 0 to 4294967295"):
            PrepareConfig(source="digits", seed=bad)


def _tiny(path):
    images = np.zeros((2, 4, 4, 3), np.uint8)
    write_packed(path, images, np.array([0, 1]), np.array(["train", "test"]), ["a", "b"],
                 [{}, {}], {"kind": "prepared"})


def test_a_fifo_in_place_of_the_arrays_is_refused_not_opened(tmp_path):
    _tiny(tmp_path)
    os.remove(tmp_path / "labels.npy")
    os.mkfifo(tmp_path / "labels.npy")
    with pytest.raises(DataError, match="labels.npy is missing or not a regular file"):
        Dataset.open(tmp_path)


def test_items_that_do_not_match_the_images_are_refused(tmp_path):
    _tiny(tmp_path)
    (tmp_path / "items.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="1 records for 2 images"):
        Dataset.open(tmp_path).items()


def test_wrong_array_types_are_refused(tmp_path):
    _tiny(tmp_path)
    np.save(tmp_path / "labels.npy", np.array([0.0, 1.0]))
    with pytest.raises(DataError, match="wrong type"):
        Dataset.open(tmp_path)
