"""The `synthworth` command line: help everywhere, one-line errors with exit code 2, data commands."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from synthworth import __version__
from synthworth.cli import cli, main
from synthworth.data.dataset import Dataset


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, prefix + (name,)))
        else:
            paths.append(prefix + (name,))
    return paths


COMMANDS = _command_paths(cli)


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------ help
def test_the_tree_has_the_data_commands():
    assert {("data", "prepare"), ("data", "info"), ("data", "export")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "synthworth")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_on_every_command_and_group(capsys, path, flag):
    code, out, err = _run(capsys, [*path, flag])
    assert code == 0
    assert out.startswith(f"Usage: synthworth {' '.join(path)}".rstrip())
    assert err == ""
    command = cli
    for name in path:
        command = command.commands[name]
    if isinstance(command, click.Group):
        assert "Commands:" in out
    else:
        assert "Options:" in out


def test_version(capsys):
    code, out, _ = _run(capsys, ["--version"])
    assert code == 0 and out.strip() == f"synthworth, version {__version__}"


def test_no_arguments_prints_usage(capsys):
    code, out, _ = _run(capsys, [])
    assert code == 2
    assert out.startswith("Usage: synthworth") and "data" in out


# ------------------------------------------------------------------------------------ bad usage
@pytest.fixture
def not_a_dataset(tmp_path) -> Path:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "images.npy").write_bytes(b"")
    return folder


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


@pytest.fixture
def bad_yaml(tmp_path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("source: digits\nsizze: 8\n")
    return path


BAD_USAGE = [
    (["data", "prepare", "--out", "{out}", "--bogus"], "No such option '--bogus'"),
    (["data", "prepare", "--out", "{out}", "--source", "webcam"], "Invalid value for '--source'"),
    (["data", "prepare", "--out", "{out}", "--source", "digits", "--size", "big"], "'big' is not a valid integer"),
    (["data", "prepare", "--out", "{out}", "--source", "digits", "--fit", "zoom"], "Invalid value for '--fit'"),
    (["data", "prepare", "--source", "digits"], "Missing option '--out'"),
    (["data", "prepare", "--out", "{out}", "--source", "digits", "sizze=8"], "key 'sizze' in the command line: unknown key"),
    (["data", "prepare", "--out", "{out}", "--source", "digits", "size=2"], "key 'size' in the command line"),
    (["data", "prepare", "--out", "{out}", "--source", "digits", "size"], "not of the form key.sub=value"),
    (["data", "prepare", "--out", "{out}", "--config", "{bad_yaml}"], "key 'sizze' in config file {bad_yaml}"),
    (["data", "prepare", "--out", "{out}", "--preset", "nope"], "unknown data preset 'nope'"),
    (["data", "prepare", "--out", "{out}", "--source", "folder"], "needs a path"),
    (["data", "prepare", "--out", "{out}", "--path", "{missing}"], "image folder {missing} does not exist"),
    (["data", "prepare", "--out", "{out}", "--source", "fruits", "--path", "{tmp}"], "expected split folders"),
    (["data", "prepare", "--out", "{a_file}", "--source", "digits"], "{a_file} is a file, not a folder"),
    (["data", "prepare", "--out", "{a_file}/sub", "--source", "digits", "--overwrite"], "{a_file} is a file"),
    (["data", "info", "{missing}"], "Dataset folder {missing} does not exist"),
    (["data", "info", "{not_a_dataset}"], "not a complete Dataset"),
    (["data", "export", "{not_a_dataset}"], "Missing option '--out'"),
    (["data", "export", "{missing}", "--out", "{out}"], "does not exist"),
    (["data", "frobnicate"], "No such command 'frobnicate'"),
    (["--nope"], "No such option '--nope'"),
]


@pytest.mark.parametrize("argv,reason", BAD_USAGE, ids=[" ".join(a[:3]) + " " + r[:24] for a, r in BAD_USAGE])
def test_bad_usage_exits_2_with_one_line(capsys, tmp_path, not_a_dataset, a_file, bad_yaml, argv, reason):
    names = {"out": tmp_path / "out", "missing": tmp_path / "missing", "tmp": tmp_path,
             "not_a_dataset": not_a_dataset, "a_file": a_file, "bad_yaml": bad_yaml}
    code, out, err = _run(capsys, [a.format(**names) for a in argv])
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert reason.format(**names) in lines[0]
    assert lines[0].startswith("synthworth: error: ")  # the one format of every command
    assert not (tmp_path / "out").exists()
    assert a_file.read_text() == "not a folder"


def test_strict_failure_on_the_command_line(capsys, tmp_path, class_tree):
    class_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    (tmp_path / "src" / "cat" / "broken.png").write_bytes(b"\x89PNG nothing else")
    code, out, err = _run(capsys, ["data", "prepare", "--path", tmp_path / "src", "--out",
                                   tmp_path / "out", "--size", "8", "--workers", "0", "--strict", "-q"])
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "--strict: 1 file(s) could not be used" in err
    assert "cat/broken.png" in err
    assert not (tmp_path / "out").exists()


def test_interrupt_exits_130(capsys, tmp_path, monkeypatch):
    prepare_module = importlib.import_module("synthworth.data.prepare")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "prepare", interrupted)
    code, _, err = _run(capsys, ["data", "prepare", "--source", "digits", "--out", tmp_path / "x"])
    assert code == 130 and "interrupted" in err


# ------------------------------------------------------------------------------------ data commands
def test_prepare_prints_the_output_path(capsys, tmp_path):
    out = tmp_path / "digits"
    code, stdout, stderr = _run(capsys, ["data", "prepare", "--source", "digits", "--out", out,
                                         "--size", "8", "--seed", "2", "-q"])
    assert code == 0
    assert stdout == f"{out}\n"
    assert stderr == ""
    ds = Dataset.open(out)
    assert len(ds) == 1797 and ds.shape == (8, 8, 1)
    assert ds.manifest["options"]["seed"] == 2


def test_prepare_flags_overrides_and_summary(capsys, tmp_path, class_tree):
    class_tree(tmp_path / "src", {"cat": 4, "dog": 4, "fox": 4})
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, [
        "data", "prepare", "--path", tmp_path / "src", "--out", out, "--size", "16",
        "--classes", "fox, cat", "--channels", "1", "--workers", "0", "test_fraction=0.25", "fit=pad"])
    assert code == 0
    assert stdout.strip() == str(out)
    summary = [line for line in stderr.splitlines() if line.startswith("prepared ")]
    assert summary == [f"prepared 8 images (16x16x1; 2 classes; train 6, test 2) into {out} in "
                       + summary[0].split(" in ")[-1]]
    ds = Dataset.open(out)
    assert ds.class_names == ["cat", "fox"] and ds.shape == (16, 16, 1)
    assert ds.manifest["options"]["fit"] == "pad" and ds.manifest["options"]["test_fraction"] == 0.25

    # The same command again reuses the Dataset and still prints its path.
    code, stdout, stderr = _run(capsys, [
        "data", "prepare", "--path", tmp_path / "src", "--out", out, "--size", "16",
        "--classes", "fox, cat", "--channels", "1", "--workers", "2", "test_fraction=0.25", "fit=pad"])
    assert code == 0 and stdout.strip() == str(out) and "reusing" in stderr


def test_prepare_from_a_preset_and_a_config_file(capsys, tmp_path):
    config = tmp_path / "lfw.yaml"
    config.write_text("size: 12\nseed: 4\n")
    out = tmp_path / "faces"
    code, stdout, _ = _run(capsys, ["data", "prepare", "--preset", "lfw-faces", "--config", config,
                                    "--out", out, "-q"])
    assert code == 0 and stdout.strip() == str(out)
    ds = Dataset.open(out)
    assert ds.class_names == ["face"] and len(ds) == 100
    assert ds.shape == (12, 12, 1)  # the file's size beats the preset's 32
    assert ds.manifest["options"]["seed"] == 4 and ds.manifest["options"]["fit"] == "stretch"


def test_info_json_is_the_manifest(capsys, tmp_path, class_tree):
    class_tree(tmp_path / "src", {"cat": 5, "dog": 5})
    (tmp_path / "src" / "dog" / "bad.jpg").write_text("nope")
    out = tmp_path / "ds"
    assert _run(capsys, ["data", "prepare", "--path", tmp_path / "src", "--out", out, "--size", "8",
                         "--workers", "0", "-q"])[0] == 0
    code, stdout, stderr = _run(capsys, ["data", "info", out, "--json"])
    assert code == 0 and stderr == ""
    info = json.loads(stdout)
    assert info == json.loads((out / "manifest.json").read_text())
    assert info["num_images"] == 10 and info["class_names"] == ["cat", "dog"]
    assert info["skipped"] == [{"file": "dog/bad.jpg",
                                "reason": "not an image file (or an unsupported format)"}]

    code, text, _ = _run(capsys, ["data", "info", out])
    assert code == 0
    assert "images       10 of 8x8x3 uint8" in text
    assert "classes      2: cat, dog" in text
    assert f"fingerprint  {info['fingerprint']}" in text
    assert "skipped      1 file(s)" in text and "dog/bad.jpg" in text


def test_presets_command_lists_the_shipped_presets(capsys):
    code, out, _ = _run(capsys, ["data", "presets"])
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == ["animals10-thesis", "celeba-64", "digits", "fruits-thesis", "lfw-faces"]
    assert "source=digits" in out


# ------------------------------------------------------------------------------------ the installed script
def _script() -> Path:
    script = Path(sys.executable).parent / "synthworth"
    assert script.is_file() and os.access(script, os.X_OK), f"no console script at {script}"
    return script


def test_console_script_prepares_and_fails_cleanly(tmp_path, class_tree):
    class_tree(tmp_path / "src", {"cat": 4, "dog": 4}, ext=".jpg")
    out = tmp_path / "out"
    done = subprocess.run([str(_script()), "data", "prepare", "--path", str(tmp_path / "src"),
                           "--out", str(out), "--size", "8", "--workers", "2", "--test-fraction", "0.25"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{out}\n"
    assert any(line.startswith("prepared 8 images") for line in done.stderr.splitlines())
    assert Dataset.open(out).counts() == {"train": {"cat": 3, "dog": 3}, "test": {"cat": 1, "dog": 1}}

    bad = subprocess.run([str(_script()), "data", "prepare", "--out", str(tmp_path / "x"),
                          "--source", "webcam"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "Invalid value for '--source'" in bad.stderr


# ------------------------------------------------------------------------------------ one format
def test_a_click_error_and_a_warning_keep_the_one_format(capsys, tmp_path, monkeypatch):
    import warnings

    from synthworth.errors import DataError

    prepare_module = importlib.import_module("synthworth.data.prepare")

    def warns_then_fails(*args, **kwargs):
        warnings.warn("first line\nsecond line", RuntimeWarning)
        raise click.FileError("somewhere", hint="unreadable")

    monkeypatch.setattr(prepare_module, "prepare", warns_then_fails)
    code, out, err = _run(capsys, ["data", "prepare", "--source", "digits", "--out", tmp_path / "o"])
    assert code == 2 and out == ""
    assert err.splitlines() == ["synthworth: warning: RuntimeWarning: first line second line",
                                "synthworth: error: Could not open file 'somewhere': unreadable"]
    monkeypatch.setattr(prepare_module, "prepare", lambda *a, **k: (_ for _ in ()).throw(DataError("bad\n data")))
    code, out, err = _run(capsys, ["data", "prepare", "--source", "digits", "--out", tmp_path / "o"])
    assert (code, err) == (2, "synthworth: error: bad data\n")


def test_a_mistyped_choice_gets_the_closest_one(capsys):
    code, _, err = _run(capsys, ["generate", "--out", "x", "--dtype", "bfloat"])
    assert code == 2 and "is not one of 'auto', 'float16', 'bfloat16', 'float32'; did you mean 'bfloat16'?" in err
    code, _, err = _run(capsys, ["data", "prepare", "--out", "x", "--fit", "zzz"])
    assert code == 2 and "did you mean" not in err  # nothing close: no guess


# ------------------------------------------------------------------------------------ the demo's table
SUMMARY_HEAD = "composition,generator,size,n_seeds,accuracy_mean\n"


def test_the_demos_table_has_no_nan_and_explains_its_dashes(tmp_path):
    from synthworth.demo.common import accuracy_table

    path = tmp_path / "summary.csv"
    path.write_text(SUMMARY_HEAD + "real,,50,3,0.9031\nreal,,100,3,0.947\nsubset_real,,50,3,0.775\n"
                    "artificial,dcgan,50,3,0.836\nartificial,dcgan,100,3,\nmixed,dcgan,100,3,nan\n"
                    "ratio_sweep,dcgan,100,3,0.5\n")
    lines = accuracy_table(path).splitlines()
    assert "mean of 3 seeds" in lines[0]
    assert lines[1].split() == ["size", "real", "subset_real", "artificial", "(dcgan)"]  # no mixed column: no value
    assert lines[2].split() == ["50", "0.903", "0.775", "0.836"]
    assert lines[3].split() == ["100", "0.947", "—", "—"]
    assert lines[4] == "— = not finished at this size (a partial study)"
    assert "nan" not in "\n".join(lines).lower()
    path.write_text(SUMMARY_HEAD + "real,,50,3,0.9\nmixed,ddpm,50,3,0.8\n")
    assert "—" not in accuracy_table(path)  # complete: no dash, no note
