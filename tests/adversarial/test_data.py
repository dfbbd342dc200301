"""Adversarial inputs to ``synthworth data prepare / export / info``: layouts one level off,
split folders taken for classes, symbolic links, FIFOs and devices, hostile class names in a
colleague's manifest, corrupt manifests, impossible seeds and a killed prepare."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from synthworth.data.dataset import Dataset


from adversarial_helpers import snapshot  # noqa: E402  (see conftest.py)

FAST = ("--size", "8", "--workers", "0", "--quiet")


@contextmanager
def deadline(seconds: int = 30):
    """Fail (instead of hanging the suite) if the block blocks, e.g. on opening a FIFO."""

    def expire(*_):
        raise TimeoutError(f"still running after {seconds}s: something blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _labels_by_source_folder(ds: Dataset) -> Counter:
    """(class name, top folder of the source file) pairs: a label is right when they agree."""
    return Counter((ds.class_names[l], item["source_file"].split("/")[-2])
                   for l, item in zip(ds.labels, ds.items()))


# ------------------------------------------------------------------------------ layouts
def test_layout_one_level_off_is_refused_and_the_advice_works(tmp_path, class_tree, cli, refused):
    src = tmp_path / "src"
    for split in ("train", "test"):
        class_tree(src / "data" / split, {"cat": 3, "dog": 3})
    before = snapshot(src)
    line = refused("data", "prepare", "--path", src, "--out", tmp_path / "out", *FAST,
                   match=("one level off", f"--path {src / 'data'}"))
    assert "<split>/<class>" in line  # shows the layout expected
    assert snapshot(src) == before and not (tmp_path / "out").exists()

    code, _, err = cli("data", "prepare", "--path", src / "data", "--out", tmp_path / "out", *FAST)
    assert code == 0, err
    ds = Dataset.open(tmp_path / "out")
    assert ds.class_names == ["cat", "dog"] and ds.split_names == ["train", "test"]


def test_single_wrapper_folder_is_refused_not_one_class(tmp_path, class_tree, cli, refused):
    src = tmp_path / "src"
    class_tree(src / "photos", {"cat": 3, "dog": 3})
    refused("data", "prepare", "--path", src, "--out", tmp_path / "out", *FAST,
            match=("single folder photos/", "cat/, dog/", f"--path {src / 'photos'}"))
    assert not (tmp_path / "out").exists()
    code, _, err = cli("data", "prepare", "--path", src / "photos", "--out", tmp_path / "out", *FAST)
    assert code == 0, err
    assert Dataset.open(tmp_path / "out").class_names == ["cat", "dog"]


def test_unknown_split_folder_next_to_train_and_test_is_refused(tmp_path, class_tree, refused):
    src = tmp_path / "src"
    for split in ("train", "test", "val2"):
        class_tree(src / split, {"cat": 2, "dog": 2})
    refused("data", "prepare", "--path", src, "--out", tmp_path / "out", *FAST,
            match=("mixes split folders", "val2/"))
    assert not (tmp_path / "out").exists()


def test_validation_folder_is_a_split_not_a_class(tmp_path, class_tree, cli):
    src = tmp_path / "src"
    for split in ("train", "validation", "test"):
        class_tree(src / split, {"cat": 2, "dog": 2})
    code, _, err = cli("data", "prepare", "--path", src, "--out", tmp_path / "out", *FAST)
    assert code == 0, err
    ds = Dataset.open(tmp_path / "out")
    assert ds.class_names == ["cat", "dog"]
    assert ds.counts() == {s: {"cat": 2, "dog": 2} for s in ("train", "valid", "test")}


def test_split_folder_inside_a_split_is_not_a_class(tmp_path, class_tree, refused):
    src = tmp_path / "src"
    class_tree(src / "train" / "train", {"cat": 2, "dog": 2})  # the Kaggle double folder
    class_tree(src / "test", {"cat": 2, "dog": 2})
    refused("data", "prepare", "--path", src, "--out", tmp_path / "out", *FAST,
            match=("train/", "look like split folders"))


def test_fruits_with_an_extra_split_folder_is_refused(tmp_path, class_tree, refused):
    base = tmp_path / "fruits" / "Fruits Classification"
    for split in ("train", "valid", "test", "val2"):
        class_tree(base / split, {"Apple": 2, "Banana": 2})
    refused("data", "prepare", "--source", "fruits", "--path", tmp_path / "fruits",
            "--out", tmp_path / "out", *FAST, match=("val2/", "train/, valid/ and test/"))


# ------------------------------------------------------------------------------ symbolic links
def test_class_folder_linking_to_the_root_is_refused_without_recursing(tmp_path, class_tree, refused):
    src = tmp_path / "src"
    class_tree(src, {"cat": 2, "dog": 2})
    (src / "everything").symlink_to(src, target_is_directory=True)
    with deadline():
        refused("data", "prepare", "--path", src, "--out", tmp_path / "out", *FAST,
                match=("everything", "holds the whole source"))


def test_class_folder_linking_to_a_sibling_is_refused(tmp_path, class_tree, refused):
    src = tmp_path / "src"
    class_tree(src, {"cat": 2, "dog": 2})
    (src / "kitten").symlink_to(src / "cat", target_is_directory=True)
    refused("data", "prepare", "--path", src, "--out", tmp_path / "out", *FAST,
            match=("kitten", "labelled twice"))


def test_split_class_linking_to_the_other_split_is_refused(tmp_path, class_tree, refused):
    src = tmp_path / "src"
    class_tree(src / "train", {"cat": 2, "dog": 2})
    class_tree(src / "test", {"dog": 2})
    (src / "test" / "cat").symlink_to(src / "train" / "cat", target_is_directory=True)
    refused("data", "prepare", "--path", src, "--out", tmp_path / "out", *FAST, match="labelled twice")


def test_animals10_class_linking_to_another_class_is_refused(tmp_path, class_tree, refused):
    raw = tmp_path / "animals" / "raw-img"
    class_tree(raw, {"cane": 2, "gatto": 2})
    (raw / "cavallo").symlink_to(raw / "cane", target_is_directory=True)
    refused("data", "prepare", "--source", "animals10", "--path", tmp_path / "animals",
            "--out", tmp_path / "out", *FAST, match="labelled twice")


def test_class_folder_linking_outside_the_tree_is_labelled_right(tmp_path, class_tree, cli):
    src = tmp_path / "src"
    class_tree(src, {"cat": 2, "dog": 3})
    class_tree(tmp_path / "elsewhere", {"birds": 4})
    (src / "bird").symlink_to(tmp_path / "elsewhere" / "birds", target_is_directory=True)
    code, _, err = cli("data", "prepare", "--path", src, "--out", tmp_path / "out", "--test-fraction", "0", *FAST)
    assert code == 0, err
    ds = Dataset.open(tmp_path / "out")
    assert ds.class_names == ["bird", "cat", "dog"]
    assert _labels_by_source_folder(ds) == {("bird", "bird"): 4, ("cat", "cat"): 2, ("dog", "dog"): 3}


def test_link_loops_are_reported_never_followed(tmp_path, class_tree, cli):
    src = tmp_path / "src"
    class_tree(src, {"cat": 2, "dog": 2})
    (src / "cat" / "up").symlink_to(src, target_is_directory=True)  # loops back up
    (src / "self").symlink_to(src / "self")  # a link to itself (ELOOP)
    with deadline():
        code, _, err = cli("data", "prepare", "--path", src, "--out", tmp_path / "out",
                           "--test-fraction", "0", *FAST)
    assert code == 0, err
    ds = Dataset.open(tmp_path / "out")
    assert _labels_by_source_folder(ds) == {("cat", "cat"): 2, ("dog", "dog"): 2}
    reasons = {s["file"]: s["reason"] for s in ds.manifest["skipped"]}
    assert "not followed" in reasons["cat/up"]
    assert "looping" in reasons["self"]


# ------------------------------------------------------------------------------ special files
def test_fifo_socket_and_device_are_skipped_and_reported_never_opened(tmp_path, class_tree, cli):
    src = tmp_path / "src"
    class_tree(src, {"cat": 2, "dog": 2})
    os.mkfifo(src / "cat" / "pipe.png")  # opening it would block forever
    os.mkfifo(src / "loose.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "dog" / "sock.png"))
    (src / "dog" / "null.png").symlink_to("/dev/null")  # a character device
    try:
        with deadline():
            code, _, err = cli("data", "prepare", "--path", src, "--out", tmp_path / "out",
                               "--test-fraction", "0", *FAST)
    finally:
        sock.close()
    assert code == 0, err
    ds = Dataset.open(tmp_path / "out")
    assert _labels_by_source_folder(ds) == {("cat", "cat"): 2, ("dog", "dog"): 2}
    reasons = {s["file"]: s["reason"] for s in ds.manifest["skipped"]}
    assert "FIFO" in reasons["cat/pipe.png"] and "FIFO" in reasons["loose.jpg"]
    assert "socket" in reasons["dog/sock.png"]
    assert "device" in reasons["dog/null.png"]


def test_celeba_fifo_in_the_image_folder_is_skipped(tmp_path, make_image, cli):
    root = tmp_path / "celeba"
    images = root / "img_align_celeba" / "img_align_celeba"
    for i in range(4):
        make_image(images / f"{i:06d}.jpg")
    os.mkfifo(images / "000009.jpg")
    (root / "list_eval_partition.csv").write_text(
        "image_id,partition\n" + "".join(f"{i:06d}.jpg,{i % 3}\n" for i in (0, 1, 2, 3, 9)))
    with deadline():
        code, _, err = cli("data", "prepare", "--source", "celeba", "--path", root,
                           "--out", tmp_path / "out", *FAST)
    assert code == 0, err
    ds = Dataset.open(tmp_path / "out")
    assert len(ds) == 4
    assert any(s["file"] == "000009.jpg" and "FIFO" in s["reason"] for s in ds.manifest["skipped"])


# ------------------------------------------------------------------------------ CelebA labels
def _celeba(root: Path, make_image, attr: str) -> dict[str, int]:
    """Six images, bright when ``attr`` is 1, dark when -1; returns the attribute per file."""
    images = root / "img_align_celeba" / "img_align_celeba"
    values = {f"{i:06d}.jpg": (1 if i % 2 else -1) for i in range(6)}
    for name, v in values.items():
        make_image(images / name, colour=(240, 240, 240) if v > 0 else (15, 15, 15))
    with open(root / "list_eval_partition.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image_id", "partition"], *([n, 0] for n in values)])
    with open(root / "list_attr_celeba.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image_id", attr], *([n, v] for n, v in values.items())])
    return values


@pytest.mark.parametrize("attr", ["Male", "Smiling"])  # "male" sorts before "not_male"
def test_celeba_attribute_labels_agree_with_imagefolder_on_the_export(tmp_path, make_image, cli, attr):
    from torchvision.datasets import ImageFolder

    values = _celeba(tmp_path / "celeba", make_image, attr)
    code, _, err = cli("data", "prepare", "--source", "celeba", "--path", tmp_path / "celeba",
                       "--label-attr", attr, "--out", tmp_path / "ds", *FAST)
    assert code == 0, err
    code, _, err = cli("data", "export", tmp_path / "ds", "--out", tmp_path / "png", "--quiet")
    assert code == 0, err
    ds = Dataset.open(tmp_path / "ds")
    positive = attr.lower()
    for item, label in zip(ds.items(), ds.labels):
        assert (ds.class_names[label] == positive) == (values[item["source_file"]] > 0)
    rows = [json.loads(line) for line in open(tmp_path / "png" / "metadata.jsonl")]
    by_file = {}
    for split in {row["file_name"].split("/")[0] for row in rows}:  # each split folder on its own
        folder = ImageFolder(str(tmp_path / "png" / split), allow_empty=True)
        assert folder.classes == ds.class_names
        by_file.update({Path(p).relative_to(tmp_path / "png").as_posix(): t for p, t in folder.samples})
    for row in rows:
        assert by_file[row["file_name"]] == row["label"]
        assert ds.class_names[row["label"]] == row["class_name"]
        assert (row["class_name"] == positive) == (values[row["source_file"]] > 0)
        brightness = np.asarray(folder.loader(str(tmp_path / "png" / row["file_name"]))).mean()
        assert (brightness > 128) == (row["class_name"] == positive)


def test_celeba_attribute_column_with_garbage_is_refused(tmp_path, make_image, refused):
    _celeba(tmp_path / "celeba", make_image, "Male")
    text = (tmp_path / "celeba" / "list_attr_celeba.csv").read_text().replace(",-1", ",maybe", 1)
    (tmp_path / "celeba" / "list_attr_celeba.csv").write_text(text)
    refused("data", "prepare", "--source", "celeba", "--path", tmp_path / "celeba", "--label-attr",
            "Male", "--out", tmp_path / "ds", *FAST, match="column Male must hold 1 or -1")


def test_celeba_partition_csv_without_its_columns_is_refused(tmp_path, make_image, refused):
    _celeba(tmp_path / "celeba", make_image, "Male")
    (tmp_path / "celeba" / "list_eval_partition.csv").write_text("file,part\n000000.jpg,0\n")
    refused("data", "prepare", "--source", "celeba", "--path", tmp_path / "celeba",
            "--out", tmp_path / "ds", *FAST, match="has no column image_id, partition")


# ------------------------------------------------------------------------------ seeds
@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_negative_or_huge_seed_is_refused(tmp_path, refused, seed):
    refused("data", "prepare", "--source", "digits", "--out", tmp_path / "out", "--seed", seed,
            "--quiet", match=("seed must be a whole number from 0 to 4294967295", seed))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ manifests
@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """A tiny prepared Dataset (two classes) that each corrupt-manifest test copies."""
    from PIL import Image

    root = tmp_path_factory.mktemp("manifest")
    for c, colour in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
        (root / "src" / c).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (9, 9), colour).save(root / "src" / c / f"{k}.png")
    from synthworth.cli import main

    assert main(["data", "prepare", "--path", str(root / "src"), "--out", str(root / "ds"), *FAST]) == 0
    return root / "ds"


def _edit(manifest: dict, how: str):
    if how == "invalid json":
        return "{not json"
    if how == "a list":
        return json.dumps([1, 2])
    if how == "no class_names":
        manifest.pop("class_names")
    elif how == "class_names a string":
        manifest["class_names"] = "cat,dog"
    elif how == "class_names with a number":
        manifest["class_names"] = ["cat", 7]
    elif how == "num_images lies":
        manifest["num_images"] = manifest["num_images"] + 5
    elif how == "num_images a string":
        manifest["num_images"] = "6"
    elif how == "no fingerprint":
        manifest.pop("fingerprint")
    elif how == "too few class names for the labels":
        manifest["class_names"] = ["cat"]
    elif how == "skipped of strings":
        manifest["skipped"] = ["a.png"]
    elif how == "source a string":
        manifest["source"] = "folder"
    return json.dumps(manifest)


@pytest.mark.parametrize("how", [
    "invalid json", "a list", "no class_names", "class_names a string", "class_names with a number",
    "num_images lies", "num_images a string", "no fingerprint", "too few class names for the labels",
    "skipped of strings", "source a string"])
@pytest.mark.parametrize("command", ["info", "export"])
def test_corrupt_manifest_is_one_line_never_a_traceback(small_dataset, tmp_path, refused, how, command):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    manifest = json.loads((ds / "manifest.json").read_text())
    (ds / "manifest.json").write_text(_edit(manifest, how))
    before = snapshot(tmp_path)
    args = ("data", "info", ds) if command == "info" else ("data", "export", ds, "--out", tmp_path / "png")
    refused(*args, match=str(ds))
    assert snapshot(tmp_path) == before


def test_prepare_onto_a_dataset_with_a_corrupt_manifest_is_one_line_and_overwrite_works(
        small_dataset, tmp_path, cli, refused):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    (ds / "manifest.json").write_text("[1, 2]")
    src = small_dataset.parent / "src"
    refused("data", "prepare", "--path", src, "--out", ds, *FAST, match="--overwrite")
    code, _, err = cli("data", "prepare", "--path", src, "--out", ds, "--overwrite", *FAST)
    assert code == 0, err
    assert Dataset.open(ds).class_names == ["cat", "dog"]


def test_corrupt_items_file_is_refused_by_export(small_dataset, tmp_path, refused):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(small_dataset, ds)
    (ds / "items.jsonl").write_text('{"source_file": "cat/0.png"}\n{broken\n')
    refused("data", "export", ds, "--out", tmp_path / "png", match="items.jsonl is damaged")
    assert not (tmp_path / "png").exists()


# ------------------------------------------------------------------------------ hostile names
HOSTILE = ["../x", "/ABSOLUTE", "a/b", "nul\0byte", "new\nline", "Cat", "cat", "", ".", "..", "con"]


def test_hostile_class_names_stay_inside_the_export_and_labels_match_imagefolder(tmp_path, cli):
    from torchvision.datasets import ImageFolder

    from synthworth.data.dataset import write_packed
    from synthworth.safety import mark_owned

    # An absolute name aimed at a place the snapshot below watches (never at the real root).
    names = [str(tmp_path / "abs") if h == "/ABSOLUTE" else h for h in HOSTILE]
    n = len(names)
    ds = tmp_path / "work" / "theirs"
    ds.mkdir(parents=True)
    images = np.stack([np.full((6, 6, 3), 20 * i, np.uint8) for i in range(n)])
    write_packed(ds, images, np.arange(n), np.array(["train"] * n), names,
                 [{} for _ in range(n)], {"kind": "prepared"})
    mark_owned(ds, "dataset")
    out = tmp_path / "work" / "png"
    before = snapshot(tmp_path, skip=("work/png",))
    code, _, err = cli("data", "export", ds, "--out", out, "--quiet")
    assert code == 0, err
    assert snapshot(tmp_path, skip=("work/png",)) == before  # nothing written outside --out
    assert not (tmp_path / "work" / "x").exists() and not (tmp_path / "abs").exists()
    folders = sorted(p.name for p in (out / "train").iterdir() if p.is_dir())
    assert len(folders) == n
    assert len({f.casefold() for f in folders}) == n  # distinct on a case-insensitive disk too
    for p in out.rglob("*"):
        assert p.resolve().is_relative_to(out.resolve())
    rows = [json.loads(line) for line in open(out / "metadata.jsonl")]
    folder = ImageFolder(str(out / "train"))
    by_file = {Path(p).relative_to(out).as_posix(): t for p, t in folder.samples}
    assert sorted(r["class_name"] for r in rows) == sorted(names)  # the real names are kept
    for row in rows:
        assert by_file[row["file_name"]] == row["label"] == names.index(row["class_name"])


# ------------------------------------------------------------------------------ killed prepare
def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PDEATHSIG is Linux's")
def test_kill_9_of_prepare_leaves_no_decoding_workers(tmp_path, class_tree):
    class_tree(tmp_path / "src", {"cat": 40, "dog": 40})
    # Slow each decode down so the workers are surely busy when the parent is killed.
    script = textwrap.dedent(f"""
        import importlib, sys, time
        prepare = importlib.import_module("synthworth.data.prepare")
        real = prepare.load_image
        def slow(path, spec):
            time.sleep(0.2)
            return real(path, spec)
        prepare.load_image = slow
        from synthworth.cli import main
        sys.exit(main(["data", "prepare", "--path", {str(tmp_path / 'src')!r}, "--out",
                       {str(tmp_path / 'out')!r}, "--size", "8", "--workers", "2", "--quiet"]))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        workers: list[int] = []
        stop = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < stop and parent.poll() is None:
            time.sleep(0.1)
            workers = _children(parent.pid)
        assert len(workers) >= 2, "the decoding workers never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        stop = time.monotonic() + 15
        while any(_running(w) for w in workers) and time.monotonic() < stop:
            time.sleep(0.1)
        orphans = [w for w in workers if _running(w)]
    finally:
        parent.kill()
    for w in orphans:
        os.kill(w, signal.SIGKILL)
    assert orphans == [], "decoding workers outlived their killed parent"
    assert not (tmp_path / "out").exists()
