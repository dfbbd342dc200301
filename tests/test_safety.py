"""synthworth.safety: what may be replaced, inputs and outputs apart, locks, names from disk."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from synthworth.data.dataset import atomic_folder
from synthworth.safety import (
    LockedError,
    OwnershipError,
    check_apart,
    check_replaceable,
    mark_owned,
    output_lock,
    owned_kind,
    safe_name,
    safe_names,
)


# ------------------------------------------------------------------------------------ ownership
def test_only_its_own_output_of_the_same_kind_is_replaceable(tmp_path):
    check_replaceable(tmp_path / "absent", "dataset")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", "dataset")

    with atomic_folder(tmp_path / "ds", kind="dataset") as tmp:
        (tmp / "images.npy").write_bytes(b"x")
    assert owned_kind(tmp_path / "ds") == "dataset"
    check_replaceable(tmp_path / "ds", "dataset")
    with pytest.raises(OwnershipError, match="holds a synthworth dataset, not a run"):
        check_replaceable(tmp_path / "ds", "run")

    (tmp_path / "ds" / "thesis.tex").write_text("mine")  # a user's file inside: foreign now
    assert owned_kind(tmp_path / "ds") is None
    with pytest.raises(OwnershipError, match=r"did not write \(thesis.tex\).*ds-2"):
        check_replaceable(tmp_path / "ds", "dataset")


def test_a_foreign_folder_a_file_and_a_link_are_never_replaceable(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "photos")
    for name, words in [("photos", "no .synthworth marker"), ("file", "is a file"), ("link", "symbolic link")]:
        with pytest.raises(OwnershipError, match=words):
            check_replaceable(tmp_path / name, "dataset")
    # A forged marker that does not list the user's files does not make them replaceable.
    (tmp_path / "photos" / ".synthworth").write_text('{"kind": "dataset", "entries": []}')
    with pytest.raises(OwnershipError, match="did not write"):
        check_replaceable(tmp_path / "photos", "dataset")


def test_a_legacy_dataset_without_marker_is_still_recognised(tmp_path):
    ds = tmp_path / "old"
    ds.mkdir()
    (ds / "manifest.json").write_text('{"format_version": 1, "synthworth_version": "0.1.0"}')
    (ds / "images.npy").write_bytes(b"x")
    assert owned_kind(ds) == "dataset"
    (ds / "manifest.json").write_text('{"not": "ours"}')
    assert owned_kind(ds) is None


def test_atomic_replace_refuses_a_folder_that_became_foreign_while_it_worked(tmp_path):
    final = tmp_path / "out"
    with atomic_folder(final, kind="export") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(OwnershipError):
        with atomic_folder(final, kind="export", replace=True) as tmp:
            (tmp / "a").write_text("2")
            (final / "notes.txt").write_text("written meanwhile")
    assert (final / "a").read_text() == "1" and (final / "notes.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the temporary folder is gone


def test_mark_owned_extends_the_entries_of_the_same_kind(tmp_path):
    mark_owned(tmp_path, "generation", ["a"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert owned_kind(tmp_path) is None
    mark_owned(tmp_path, "generation", ["b"])
    assert owned_kind(tmp_path) == "generation"


# ------------------------------------------------------------------------------------ apart
def test_outputs_never_overlap_inputs(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    with pytest.raises(OwnershipError, match="is the input"):
        check_apart(src, [src])
    with pytest.raises(OwnershipError, match="contains the input"):
        check_apart(tmp_path, [src])
    with pytest.raises(OwnershipError, match="lies inside the input"):
        check_apart(src / "prepared", [src])
    (tmp_path / "alias").symlink_to(src)
    with pytest.raises(OwnershipError, match="is the input"):
        check_apart(tmp_path / "alias", [src])
    check_apart(tmp_path / "prepared", [src, None])  # a sibling is fine


# ------------------------------------------------------------------------------------ locks
def test_a_second_holder_is_refused_with_the_first_named(tmp_path):
    with output_lock(tmp_path / "run"):
        with pytest.raises(LockedError, match=rf"in use by another synthworth process \(pid {os.getpid()}"):
            with output_lock(tmp_path / "run"):
                pass
    with output_lock(tmp_path / "run"):  # released at the end of the block
        pass


def test_waiting_for_a_lock(tmp_path):
    order = []

    def hold():
        with output_lock(tmp_path, wait=True):
            order.append("first")
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.1)
    with output_lock(tmp_path, wait=True):
        order.append("second")
    thread.join()
    assert order == ["first", "first done", "second"]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, lock_holder):
    holder = lock_holder(tmp_path)
    with pytest.raises(LockedError, match=f"pid {holder.pid}"):
        with output_lock(tmp_path):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with output_lock(tmp_path):  # the kernel dropped the dead holder's lock
        pass


# ------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("name", ["../../etc", "/abs/path", "a/b", "a\\b", "nul\x00byte", "line\nbreak",
                                  "..", ".", "", ".hidden", "CON", "x" * 300, "$x^2$"])
def test_a_safe_name_stays_inside_its_folder(tmp_path, name):
    safe = safe_name(name)
    assert safe and len(safe) <= 80 and not safe.startswith(".")
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe and "\n" not in safe
    path = (tmp_path / safe).resolve()
    assert path.parent == tmp_path.resolve()
    path.mkdir()  # a real file system accepts it


def test_readable_names_are_kept_and_different_names_stay_different():
    assert safe_names(["cat", "dog", "Golden Retriever", "été"]) == ["cat", "dog", "Golden Retriever", "été"]
    assert safe_name("a/b") != safe_name("a\\b")  # both altered, told apart by their hash
    names = safe_names(["Cat", "cat", "CAT"])
    assert len({n.casefold() for n in names}) == 3


def test_the_suggested_name_and_a_lock_left_behind(tmp_path, monkeypatch):
    from synthworth.safety import suggest_new

    monkeypatch.chdir(tmp_path)
    assert suggest_new(Path(".")) == tmp_path.parent / f"{tmp_path.name}-2"
    with output_lock(tmp_path / "run"):
        pass
    check_replaceable(tmp_path / "run", "run")  # holds only the lock of a start that stopped early



def test_concurrent_writers_of_one_marker_lose_no_entry(tmp_path):
    names = [f"block-{i}" for i in range(40)]
    threads = [threading.Thread(target=mark_owned, args=(tmp_path, "generation", [name])) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in names:
        (tmp_path / name).mkdir()
    assert owned_kind(tmp_path) == "generation"  # every entry listed: nothing looks foreign
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
