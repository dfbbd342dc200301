"""Faults and foreign files around the commands that have no area of their own: metrics, demo,
and the file-system failures every command shares (a full disk, a read-only folder)."""

from __future__ import annotations

import errno
import importlib
import json

import pytest

prepare_module = importlib.import_module("synthworth.data.prepare")


# ------------------------------------------------------------------------------------ metrics --out
def test_metrics_out_never_replaces_a_foreign_file(tmp_path, digits_small, refused):
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "thesis notes"}')
    refused("metrics", "--real", digits_small.path, "--fake", digits_small.path, "--out", notes, "-q",
            match=("not a synthworth metrics file", "notes-2.json"))
    assert notes.read_text() == '{"my": "thesis notes"}'


def test_metrics_out_is_not_a_folder(tmp_path, digits_small, refused, snapshot):
    folder = tmp_path / "results"
    (folder / "keep").mkdir(parents=True)
    before = snapshot(tmp_path)
    refused("metrics", "--real", digits_small.path, "--fake", digits_small.path, "--out", folder, "-q",
            match="not a synthworth metrics file")
    assert snapshot(tmp_path) == before


def test_metrics_out_replaces_its_own_result(tmp_path):
    from synthworth.metrics.compute import write_json

    out = write_json({"fid": 1.0, "features": "domain"}, tmp_path / "m.json")
    write_json({"fid": 2.0, "features": "domain"}, out)  # an earlier result: replaced
    assert json.loads(out.read_text())["fid"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary file left


# ------------------------------------------------------------------------------------ demo --out
def test_demo_refuses_a_folder_of_the_users(tmp_path, refused, snapshot):
    home = tmp_path / "project"
    (home / "runs" / "dcgan").mkdir(parents=True)
    (home / "runs" / "dcgan" / "weeks-of-training.txt").write_text("precious")
    (home / "paper.tex").write_text("draft")
    before = snapshot(home)
    refused("demo", "--quick", "-q", "--out", home, match=("not written by synthworth", "project-2"))
    assert snapshot(home) == before


# ------------------------------------------------------------------------------------ full disk
def _fail_with(monkeypatch, code: int):
    def broken(folder, *args, **kwargs):
        raise OSError(code, __import__("os").strerror(code), str(folder / "labels.npy"))

    monkeypatch.setattr(prepare_module, "write_packed", broken)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                         (errno.EACCES, "Permission denied")])
def test_a_file_system_failure_is_one_line_and_leaves_nothing_complete(tmp_path, class_tree, refused,
                                                                      monkeypatch, code, words):
    class_tree(tmp_path / "photos", {"cat": 3, "dog": 3})
    out = tmp_path / "prepared"
    args = ("data", "prepare", "--path", tmp_path / "photos", "--out", out, "--size", "8",
            "--workers", "0", "-q")
    with monkeypatch.context() as patch:
        _fail_with(patch, code)
        refused(*args, match=words)
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no half-written folder
    # The advice ("run the same command again") works once the disk has room.
    code_again = __import__("synthworth.cli", fromlist=["main"]).main([str(a) for a in args])
    assert code_again == 0 and (out / "manifest.json").is_file()


# ------------------------------------------------------------------------------------ real mounts
def _mount(args: list[str]) -> bool:
    import subprocess

    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def mounted(tmp_path):
    """``mounted(kind)``: a folder on a tiny full-able disk ("small", a 256 KiB tmpfs) or a
    read-only view of a folder ("read-only"); skipped where this user may not mount."""
    import subprocess

    points = []

    def make(kind: str):
        point = tmp_path / f"mnt-{len(points)}"
        point.mkdir()
        if kind == "small":
            ok = _mount(["-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)])
        else:
            source = tmp_path / f"ro-source-{len(points)}"
            source.mkdir()
            ok = _mount(["--bind", str(source), str(point)]) and (
                _mount(["-o", "remount,ro,bind", str(point)]) or not subprocess.run(["umount", str(point)]))
        if not ok:
            pytest.skip("mounting is not permitted here")
        points.append(point)
        return point

    yield make
    for point in points:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_a_really_full_disk_is_one_line_not_a_crash(mounted, refused):
    disk = mounted("small")  # the digits at 32x32 need ~1.8 MB: they cannot fit
    refused("data", "prepare", "--source", "digits", "--size", "32", "--out", disk / "digits", "-q",
            match="disk is full")
    assert sorted(p.name for p in disk.iterdir()) == []  # no half-written folder left


def test_a_read_only_output_is_one_line(mounted, refused, tmp_path):
    disk = mounted("read-only")
    refused("data", "prepare", "--source", "digits", "--size", "8", "--out", disk / "digits", "-q",
            match="read-only")


def test_a_demo_folder_of_another_flavour_is_refused_not_taken_for_finished_stages(tmp_path, refused, snapshot):
    """A faces demo's finished runs/dcgan must never serve as the digits demo's DCGAN (nor a quick
    run's as the full one's): the folder records its flavour, and another one is refused."""
    import json

    from synthworth.safety import mark_owned

    out = tmp_path / "demo"
    (out / "runs" / "dcgan" / "model").mkdir(parents=True)
    mark_owned(out, "demo", ["runs", "flavour.json"])
    (out / "flavour.json").write_text(json.dumps({"flavour": "faces-quick"}))
    before = snapshot(out)
    refused("demo", "--quick", "--out", str(out), match=("holds the faces-quick demo", "synthworth-demo-quick"))
    refused("demo", "--faces", "--out", str(out), match="not the faces demo")
    assert snapshot(out) == before
    (out / "flavour.json").unlink()  # a demo folder written before flavours were recorded
    refused("demo", "--faces", "--quick", "--out", str(out), match="earlier synthworth")


def test_a_faces_demo_of_one_run_a_model_is_refused_not_mixed_with_replicates(tmp_path, refused, snapshot):
    """A faces demo written before replicates holds one run of each model where the demo now
    trains a replicates folder: refused in one line naming a new folder, its runs untouched."""
    import json

    from synthworth.safety import mark_owned

    out = tmp_path / "demo"
    (out / "runs" / "dcgan" / "model").mkdir(parents=True)
    (out / "runs" / "dcgan" / "config.yaml").write_text("kind: dcgan\n")
    mark_owned(out, "demo", ["runs", "flavour.json"])
    (out / "flavour.json").write_text(json.dumps({"flavour": "faces-quick"}))
    before = snapshot(out)
    refused("demo", "--faces", "--quick", "--out", str(out), match=("this one trains replicates", "demo-2"))
    assert snapshot(out) == before
