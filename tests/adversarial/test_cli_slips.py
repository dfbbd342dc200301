"""The command line against a user's slips: a training run where a Dataset belongs, a results
folder's saved study.yaml given as a spec, mistyped names and keys, a bad input to every
sub-command. Each answer is one ``synthworth: error: ...`` line with exit code 2 (no traceback),
nothing is written, and every piece of advice works when followed."""

from __future__ import annotations

import importlib
import re
import shlex

import pytest
import yaml

from synthworth.cli import cli as click_group

from adversarial_helpers import snapshot  # noqa: E402  (see conftest.py)

pytestmark = pytest.mark.usefixtures("single_thread")
ERROR = "synthworth: error: "


@pytest.fixture(scope="module")
def small_digits(digits16, tmp_path_factory, pack_subset):
    """100 training digits (10 per class) in a folder of their own, for a fast training run."""
    return pack_subset(digits16, 10, tmp_path_factory.mktemp("small") / "digits")


@pytest.fixture(scope="module")
def run(small_digits, tmp_path_factory):
    """A finished tiny class-conditional DCGAN run folder."""
    import torch

    from synthworth.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train("dcgan", small_digits.path, tmp_path_factory.mktemp("runs") / "gan", preset="tiny",
                     overrides=["train.epochs=1", "model.conditional=true", "train.progress=false"]).path
    finally:
        torch.set_num_threads(threads)


def _advised_command(line: str) -> list[str]:
    """The ``synthworth ...`` command quoted in an error line, as arguments."""
    found = re.search(r"'synthworth ([^']+)'", line)
    assert found, line
    return shlex.split(found.group(1))


@pytest.mark.parametrize("flag", ["--fake", "--real"])
def test_metrics_given_a_training_run_gives_the_generate_command_that_works(cli, refused, run, digits16,
                                                                           tmp_path, flag):
    other = "--real" if flag == "--fake" else "--fake"
    before = snapshot(run.parent)
    line = refused("metrics", other, digits16.path, flag, run, "-q",
                   match=(ERROR, f"{flag} {run} is a training run", "synthworth generate --from"))
    assert snapshot(run.parent) == before  # nothing written beside or inside the run
    advice = _advised_command(line)
    code, out, err = cli(*advice, "-q")
    assert code == 0, err
    target = advice[advice.index("--out") + 1]
    assert line.endswith(f"then give {flag} {target}")
    code, out, err = cli("metrics", other, digits16.path, flag, target, "--features", "domain", "--max-images",
                         "200", "--cache", tmp_path / "cache", "-q", "domain_preset=tiny", "domain_epochs=1",
                         "kid_subsets=5")
    assert code == 0, err
    assert "fid" in out


def test_metrics_given_the_saved_generator_inside_a_run_names_a_folder_beside_the_run(refused, run, digits16):
    line = refused("metrics", "--real", digits16.path, "--fake", run / "model",
                   match=(ERROR, "is a saved generator", f"--from {run / 'model'}"))
    target = _advised_command(line)[-1]
    assert not target.startswith(str(run) + "/")  # generate refuses an output inside its input


@pytest.fixture(scope="module")
def study(digits16, tmp_path_factory):
    """A finished one-cell study: (spec file, results folder)."""
    from synthworth.cli import main

    folder = tmp_path_factory.mktemp("study")
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "one", "real": str(digits16.path), "compositions": ["real"],
                                    "sizes": [20], "seeds": [0], "classifier_preset": "tiny",
                                    "classifier": {"train": {"epochs": 1, "batch_size": 16}}}))
    assert main(["study", "run", str(spec), "-q"]) == 0
    return spec, folder / "spec-results"


def test_study_run_given_a_results_folders_saved_copy_says_what_it_is(cli, refused, study):
    spec, results = study
    before = snapshot(results)
    line = refused("study", "run", results / "study.yaml",
                   match=(ERROR, "is the copy of the spec that the study's results folder", "original spec file"))
    refused("study", "status", results / "study.yaml", match="is the copy of the spec")
    assert snapshot(results) == before
    # The advice works: the report of the folder, and the original spec (nothing left to train).
    report = line.split("to see these results: ")[1]
    code, out, err = cli(*shlex.split(report)[1:])
    assert code == 0, err
    code, out, err = cli("study", "run", spec, "-q")
    assert code == 0 and out.startswith("0 cell(s) trained, 1 already complete"), (out, err)


def test_a_mistyped_key_in_a_spec_file_gets_a_suggestion_that_runs(cli, refused, study, tmp_path):
    spec, _ = study
    data = yaml.safe_load(spec.read_text())
    data["seed"] = data.pop("seeds")
    data["out"] = str(tmp_path / "results")
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(data))
    refused("study", "run", typo, match=(ERROR, "key 'seed' in config file", "did you mean 'seeds'?"))
    assert not (tmp_path / "results").exists()
    typo.write_text(typo.read_text().replace("seed:", "seeds:"))
    code, out, err = cli("study", "status", typo)
    assert code == 0, err


def test_a_mistyped_preset_and_source_get_suggestions_that_work(cli, refused, small_digits, tmp_path):
    line = refused("train", "dcgan", "--data", small_digits.path, "--out", tmp_path / "run", "--preset", "digit",
                   match=(ERROR, "did you mean 'digits'?"))
    assert not (tmp_path / "run").exists()
    preset = re.search(r"did you mean '([^']+)'", line).group(1)
    code, _, err = cli("train", "dcgan", "--data", small_digits.path, "--out", tmp_path / "run", "--preset", preset,
                       "train.max_steps=1", "train.epochs=1", "train.progress=false",
                       "train.mixed_precision=no")  # a text field given what YAML reads as False
    assert code == 0, err
    line = refused("data", "prepare", "--source", "digit", "--out", tmp_path / "d",
                   match=(ERROR, "did you mean 'digits'?", "(see 'synthworth data prepare --help')"))
    code, _, err = cli("data", "prepare", "--source", re.search(r"did you mean '([^']+)'", line).group(1),
                       "--out", tmp_path / "d", "--size", "8", "--workers", "0", "-q")
    assert code == 0, err


# A bad input for every sub-command (a new sub-command adds its own here).
BAD_INPUT = {
    ("data", "prepare"): (["--out", "{tmp}/o", "--source", "digits", "size=huge"], "key 'size'"),
    ("data", "presets"): (["extra"], "unexpected extra argument"),
    ("data", "info"): (["{tmp}/missing"], "does not exist"),
    ("data", "export"): (["{tmp}/missing", "--out", "{tmp}/o"], "does not exist"),
    ("data", "merge"): (["--out", "{tmp}/missing"], "not a generation folder"),
    ("train", "dcgan"): (["--data", "{tmp}/missing", "--out", "{tmp}/o"], "does not exist"),
    ("train", "ddpm"): (["--data", "{tmp}/missing", "--out", "{tmp}/o", "train.epoch=1"], "did you mean"),
    ("train", "ldm"): (["--data", "{tmp}/missing", "--out", "{tmp}/o", "--preset", "nope"], "unknown ldm preset"),
    ("train", "vae"): (["--data", "{tmp}/missing"], "Missing option '--out'"),
    ("train", "classifier"): (["--data", "{tmp}/missing", "--out", "{tmp}/o", "train.epochz=1"], "did you mean"),
    ("train", "presets"): (["--nope"], "No such option"),
    ("generate",): (["--out", "{tmp}/o", "--dtype", "float8"], "Invalid value for '--dtype'"),
    ("study", "run"): (["{tmp}/missing.yaml"], "does not exist"),
    ("study", "status"): (["{tmp}/missing.yaml", "seed=1"], "does not exist"),
    ("study", "exchange"): (["{tmp}/a_file"], "is not a folder"),
    ("metrics",): (["--real", "{tmp}/missing", "--fake", "{tmp}/missing"], "does not exist"),
    ("report",): (["{tmp}/missing"], "does not exist"),
    ("demo",): (["--out", "{tmp}/a_file"], "is a file"),
    ("compare",): (["--run", "gan", "--real", "{tmp}/missing", "--out", "{tmp}/o"], "is not NAME=PATH"),
    ("plan",): (["{tmp}/missing", "--generator", "g", "--images", "10"], "Missing option '--out'"),
    ("plan-check",): (["{tmp}/missing", "--planned", "a", "--uniform", "b"], "holds no results.csv"),
}


def _leaf_commands(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _leaf_commands(command, prefix + (name,))
        else:
            yield prefix + (name,)


@pytest.mark.parametrize("command", sorted(BAD_INPUT), ids=" ".join)
def test_every_sub_command_answers_a_bad_input_with_the_one_error_line(cli, command, tmp_path):
    (tmp_path / "a_file").write_text("mine")
    args, reason = BAD_INPUT[command]
    before = snapshot(tmp_path)
    code, out, err = cli(*command, *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and out == "", (code, out, err)
    assert len(err) == 1 and err[0].startswith(ERROR) and reason in err[0], err
    assert snapshot(tmp_path) == before


def test_every_sub_command_has_a_bad_input_above():
    missing = [" ".join(c) for c in _leaf_commands(click_group) if c not in BAD_INPUT]
    assert not missing, f"add a bad input to BAD_INPUT for: {', '.join(missing)}"


def test_an_interrupt_and_an_unexpected_file_system_error_are_one_line_too(cli, monkeypatch, tmp_path):
    import errno

    prepare_module = importlib.import_module("synthworth.data.prepare")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "prepare", interrupted)
    code, _, err = cli("data", "prepare", "--source", "digits", "--out", tmp_path / "o")
    assert code == 130 and len(err) == 1 and err[0].startswith(ERROR + "interrupted"), err

    def too_long(*args, **kwargs):
        raise OSError(errno.ENAMETOOLONG, "File name too long", str(tmp_path / "x"))

    monkeypatch.setattr(prepare_module, "prepare", too_long)
    code, _, err = cli("data", "prepare", "--source", "digits", "--out", tmp_path / "o")
    assert code == 2 and err == [f"{ERROR}File name too long ({tmp_path / 'x'})"], err


def test_a_spec_that_is_a_folder_or_not_text_is_one_line_that_says_so(cli, refused, study, tmp_path):
    """``study run RESULTS`` used to say the folder does not exist; a binary file given as a spec
    (a ``.npy`` by mistake) used to end in a UnicodeDecodeError traceback."""
    _, results = study
    before = snapshot(results)
    for command in ("run", "status"):
        line = refused("study", command, results, match="is a folder")
        assert "does not exist" not in line
    assert snapshot(results) == before
    code, _, err = cli(*shlex.split(line.split("to see them: ")[1])[1:])  # the advice works
    assert code == 0, err
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\x93NUMPY\x01\x00" + bytes(range(256)))
    refused("study", "run", binary, match="not a text file")


@pytest.mark.parametrize("command", [("data", "info"), ("data", "export", "--out", "{tmp}/out"),
                                     ("metrics", "--real", "{file}", "--fake")])
def test_a_file_given_as_a_dataset_is_named_a_file_not_an_interrupted_run(refused, command, tmp_path):
    file = tmp_path / "images.png"
    file.write_bytes(b"not a dataset")
    args = [a.format(tmp=tmp_path, file=file) for a in command] + [str(file)]
    line = refused(*args, match="is a file, not a Dataset folder")
    assert "interrupted" not in line and not (tmp_path / "out").exists()
