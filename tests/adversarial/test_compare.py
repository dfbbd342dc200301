"""``synthworth compare``: every bad input is one clear line (exit 2) and writes nothing; advice works."""

from __future__ import annotations

import html
import json
import re

import pytest
import torch
from adversarial_helpers import snapshot

from synthworth.classifiers.models import build_classifier
from synthworth.classifiers.task import ClassifierModelConfig, save_classifier
from synthworth.data.prepare import PrepareConfig, prepare
from synthworth.generators.dcgan import DCGAN, DCGANModelConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """LFW faces and non-faces at 16 px with and without a test split (and faces alone), two saved
    (untrained) 16 px DCGANs (b class-conditional on face / non_face), a 32 px one, and an
    untrained classifier folder as the features (no training: fast)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("compare-world")
    faces = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", test_fraction=0.3,
                                  workers=0), root / "faces", progress=False)
    prepare(PrepareConfig(source="lfw", size=16, fit="stretch", classes=["face"], test_fraction=0.3, workers=0),
            root / "faces-only", progress=False)
    only_train = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", classes=["face"], test_fraction=0.0,
                                       workers=0), root / "faces-train", progress=False)
    small = DCGANModelConfig(latent_dim=8, base_channels=4)
    for name, side in (("gan-a", 16), ("gan-32", 32)):
        DCGAN(small, side, 1, []).save(root / name)
    DCGAN(small.model_copy(update={"conditional": True}), 16, 1, ["face", "non_face"]).save(root / "gan-b")
    model = ClassifierModelConfig(name="small_cnn", resolution=None, width=4)
    save_classifier(build_classifier("small_cnn", 2, 1, 16, width=4), root / "clf", model, ["face", "non_face"])
    return root, faces.path, only_train.path


def base_args(root, real, out, *runs):
    runs = runs or (f"a={root / 'gan-a'}", f"b={root / 'gan-b'}")
    return ("compare", *(x for r in runs for x in ("--run", r)), "--real", real, "--features", root / "clf",
            "--draws", "2", "--samples", "8", "--out", out, "-q", "kid_subsets=5")


@pytest.mark.parametrize("run, match", [("gan", "is not NAME=PATH"), ("=somewhere", "is not NAME=PATH"),
                                        ("gan=", "is not NAME=PATH")])
def test_a_malformed_run_is_refused(world, refused, tmp_path, run, match):
    root, real, _ = world
    before = snapshot(tmp_path)
    refused(*base_args(root, real, tmp_path / "out", run), match=match)
    assert snapshot(tmp_path) == before


def test_a_name_given_twice_is_refused(world, refused, tmp_path):
    root, real, _ = world
    refused(*base_args(root, real, tmp_path / "out", f"a={root / 'gan-a'}", f"a={root / 'gan-b'}"),
            match=("'a' is given twice",))
    assert not (tmp_path / "out").exists()


def test_a_run_without_a_finished_model_or_not_a_generator_is_refused_by_name(world, refused, tmp_path):
    root, real, _ = world
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "config.yaml").write_text("kind: dcgan\n")
    before = snapshot(tmp_path)
    refused(*base_args(root, real, tmp_path / "out", f"a={root / 'gan-a'}", f"late={unfinished}"),
            match=(f"--run late={unfinished}", "no finished model", "--resume"))
    refused(*base_args(root, real, tmp_path / "out", f"data={real}"), match=("--run data=", "no saved generator"))
    refused(*base_args(root, real, tmp_path / "out", f"gone={tmp_path / 'gone'}"), match="does not exist")
    assert snapshot(tmp_path) == before


def test_a_real_dataset_without_a_held_out_split_says_how_to_make_one(world, refused, tmp_path):
    root, _, only_train = world
    line = refused(*base_args(root, only_train, tmp_path / "out"),
                   match=("has no 'test' split (it has: train)", "--test-fraction 0.2"))
    assert "pass --real-split" not in line  # it has no other split to name
    assert not (tmp_path / "out").exists()


def test_a_missing_split_names_the_one_to_pass_and_that_advice_works(world, refused, cli, tmp_path):
    root, real, _ = world
    out = tmp_path / "out"
    refused(*base_args(root, real, out), "--real-split", "valid", match=("no 'valid' split", "pass --real-split test"))
    refused(*base_args(root, real, out), "--train-split", "test", match="both for training images and as the held-out")
    refused(*base_args(root, real, out), "--train-split", "everything", match=("no 'everything' split",
                                                                              "pass --train-split train"))
    assert not out.exists()
    code, printed, err = cli(*base_args(root, real, out), "--real-split", "test")  # the advice followed
    assert code == 0, err
    assert printed.strip().splitlines()[-1] == str(out / "report" / "index.html")
    models = json.loads((out / "findings.json").read_text())["models"]
    assert set(models) == {"a", "b"} and models["a"]["labels"] is None
    # The conditional generator samples its classes in turn, and the findings say so.
    assert models["b"]["labels"] == "evenly over its 2 classes (face, non_face)"
    assert "labels drawn evenly over its 2 classes" in models["b"]["sentences"]["quality"]


@pytest.mark.parametrize("flags, match", [(("--draws", "1"), "at least 2 draws"),
                                          (("--samples", "3"), "at least 4 samples"),
                                          (("--samples", "5"), "need at least 6 samples")])
def test_too_few_draws_or_samples_are_refused(world, refused, tmp_path, flags, match):
    root, real, _ = world
    refused(*base_args(root, real, tmp_path / "out"), *flags, match=match)
    assert not (tmp_path / "out").exists()


def test_a_foreign_or_other_kind_of_out_folder_is_never_touched(world, refused, tmp_path):
    root, real, _ = world
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    before = snapshot(tmp_path)
    refused(*base_args(root, real, mine), match=("not written by synthworth", "choose a new folder"))
    refused(*base_args(root, real, root / "gan-32"), match="holds a synthworth generator")
    assert snapshot(tmp_path) == before


def test_an_out_inside_or_equal_to_an_input_is_refused(world, refused, tmp_path):
    root, real, _ = world
    before = snapshot(root)
    refused(*base_args(root, real, real / "findings"), match="lies inside the input")
    refused(*base_args(root, real, root / "gan-a" / "findings"), match="lies inside the input")
    refused(*base_args(root, real, root / "gan-b"), match="is the input")
    assert snapshot(root) == before


def test_a_run_given_as_real_or_a_generator_of_another_size_is_refused(world, refused, tmp_path):
    root, real, _ = world
    refused(*base_args(root, root / "gan-a", tmp_path / "out"), match=("--real", "a saved generator, not a Dataset"))
    refused(*base_args(root, real, tmp_path / "out", f"a={root / 'gan-a'}", f"big={root / 'gan-32'}"),
            match=("--run big=", "makes 32x32x1 images", "16x16x1"))
    assert not (tmp_path / "out").exists()


def test_a_comparison_is_replaced_by_the_next_but_not_once_the_user_adds_a_file(world, cli, refused, tmp_path):
    root, real, _ = world
    out = tmp_path / "out"
    for seed in ("0", "1"):
        code, _, err = cli(*base_args(root, real, out), "--seed", seed)
        assert code == 0, err
    assert json.loads((out / "findings.json").read_text())["seed"] == 1
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == [
        ".synthworth", "findings.csv", "findings.json", "report"]
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    refused(*base_args(root, real, out), match=("notes.txt", "will not be replaced"))
    assert snapshot(out) == before


def test_a_compare_killed_before_its_page_leaves_no_page_of_the_previous_comparison(world, cli, tmp_path,
                                                                                      monkeypatch):
    """Killed between its findings and its page, a rerun into a comparison's folder leaves its own
    findings alone, never beside the previous comparison's page and figures presented as one."""
    import csv

    import synthworth.report.compare as compare_page

    root, real, _ = world
    out = tmp_path / "out"
    code, _, err = cli(*base_args(root, real, out, f"a={root / 'gan-a'}"), "--seed", "0")
    assert code == 0 and (out / "report" / "index.html").is_file(), err
    assert (out / "report" / "index-figures").is_dir()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_page, "build_compare_report", killed)
    code, _, err = cli(*base_args(root, real, out, f"a={root / 'gan-a'}", f"b={root / 'gan-b'}"), "--seed", "1")
    assert code == 130, err
    findings = json.loads((out / "findings.json").read_text())
    assert (findings["seed"], sorted(findings["models"])) == (1, ["a", "b"])
    with open(out / "findings.csv", newline="") as fh:  # both files are this comparison's
        assert [row["model"] for row in csv.DictReader(fh)] == ["a", "b"]
    assert not (out / "report" / "index.html").exists() and not (out / "report" / "index-figures").exists()
    monkeypatch.undo()
    code, _, err = cli(*base_args(root, real, out, f"a={root / 'gan-a'}", f"b={root / 'gan-b'}"), "--seed", "1")
    page = (out / "report" / "index.html").read_text()
    assert code == 0 and "generators compared: a, b" in page, err


def _fake_run(folder, rows):
    """A run folder: an untrained 16 px DCGAN as model/ and ``rows`` (dicts or raw text lines) as
    its metrics.jsonl."""
    DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4), 16, 1, []).save(folder / "model")
    (folder / "metrics.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return folder


def _eval(epoch, fid, samples=16):
    return {"step": epoch * 8, "epoch": epoch, "kind": "eval", "train_s": float(epoch), "samples": samples,
            "seed": 100000, "features": "domain", "features_label": "domain: x", "real_split": "test",
            "real_images": 60, "fid": fid}


def test_damaged_or_non_finite_timings_are_unknown_never_nan(world, cli, tmp_path):
    """A metrics.jsonl with garbage lines, a NaN train_s in its last epoch row and an infinite
    FID: the run's cost is 'unknown' (not 'nan s', not an older smaller total) and the other
    model's ratio stays a number."""
    root, real, _ = world
    bad = _fake_run(tmp_path / "bad", [
        {"step": 8, "epoch": 1, "kind": "epoch", "elapsed_s": 4.0, "train_s": 3.0}, "{garbage",
        {"step": 16, "epoch": 2, "kind": "epoch", "elapsed_s": 8.0, "train_s": float("nan")},
        _eval(2, float("inf")), "\x00\x01 half a li"])
    good = _fake_run(tmp_path / "good", [{"step": 8, "epoch": 1, "kind": "epoch", "elapsed_s": 4.0, "train_s": 3.0}])
    out = tmp_path / "out"
    code, stdout, err = cli(*base_args(root, real, out, f"bad={bad / 'model'}", f"good={good}"))
    assert code == 0, err
    findings = json.loads((out / "findings.json").read_text())
    assert findings["models"]["bad"]["cost"]["train_seconds"] is None
    assert "unknown" in findings["models"]["bad"]["sentences"]["cost"]
    assert findings["models"]["good"]["cost"]["ratio"] == 1.0
    page = (out / "report" / "index.html").read_text()
    for text in (stdout, (out / "findings.csv").read_text(), page):
        assert not re.search(r"\bnan\b|\binf\b|None", text, re.I), re.search(r".{60}\b(nan|inf|None)\b.{20}", text, re.I)


def test_the_plateau_joins_only_evaluations_logged_with_the_same_settings(world, cli, tmp_path):
    """A run resumed with other eval.samples: FID at 16 and at 64 samples are not one curve (FID
    depends on the sample count). The earlier five are left out, and the statement says so."""
    root, real, _ = world
    rows = [_eval(e, 100.0 - 10 * e, samples=16) for e in range(1, 6)] + [_eval(e, 40.0, samples=64) for e in (6, 7, 8)]
    run = _fake_run(tmp_path / "resumed", rows)
    out = tmp_path / "out"
    code, _, err = cli(*base_args(root, real, out, f"r={run}"))
    assert code == 0, err
    result = json.loads((out / "findings.json").read_text())["models"]["r"]["plateau"]
    assert (result["status"], result["first_epoch"], result["points"]) == ("plateaued", 6, 3)
    assert "5 earlier evaluation(s) logged with other eval settings" in result["statement"]


def test_a_perfectly_flat_quality_curve_is_plateaued_not_nan(world, cli, tmp_path):
    """A collapsed generator scores exactly the same FID every epoch: plateaued, no 'nan' in the
    statement (scipy's stderr of a constant is undefined)."""
    root, real, _ = world
    run = _fake_run(tmp_path / "flat", [_eval(e, 40.0) for e in range(1, 7)])
    out = tmp_path / "out"
    code, stdout, err = cli(*base_args(root, real, out, f"flat={run}"))
    assert code == 0, err
    result = json.loads((out / "findings.json").read_text())["models"]["flat"]["plateau"]
    assert result["status"] == "plateaued" and (result["low"], result["high"]) == (0.0, 0.0)
    assert "nan" not in result["statement"].lower() and "nan" not in stdout.lower()


def test_a_run_of_a_fraction_of_a_second_is_not_said_to_take_0_s(world, cli, tmp_path):
    """The quick demo's models train in under a second: '0.24 s', '1.4 s', never '0 s' beside 6×."""
    root, real, _ = world
    fast = _fake_run(tmp_path / "fast", [{"step": 8, "epoch": 3, "kind": "epoch", "elapsed_s": 1.0, "train_s": 0.241}])
    slow = _fake_run(tmp_path / "slow", [{"step": 8, "epoch": 3, "kind": "epoch", "elapsed_s": 2.0, "train_s": 1.446}])
    out = tmp_path / "out"
    code, stdout, err = cli(*base_args(root, real, out, f"fast={fast}", f"slow={slow}"))
    assert code == 0, err
    models = json.loads((out / "findings.json").read_text())["models"]
    assert "in 0.24 s of wall-clock time" in models["fast"]["sentences"]["cost"]
    assert models["fast"]["sentences"]["cost"].endswith("; the cheapest model")
    assert "in 1.4 s of wall-clock time" in models["slow"]["sentences"]["cost"]
    assert models["slow"]["sentences"]["cost"].endswith("; 6.0× the wall-clock time of fast")
    assert "fast is the cheapest (0.24 s)" in stdout and " 0 s" not in stdout


def test_a_latent_model_whose_vae_run_was_deleted_is_not_called_pretrained(world, cli, tmp_path):
    """The ldm's config names a synthworth VAE run that was deleted after training: its cost note
    says the VAE is no longer there (not 'a pretrained autoencoder')."""
    from synthworth.metrics.findings import training_cost

    run = tmp_path / "ldm"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 8, "epoch": 1, "kind": "epoch", "train_s": 2.0}) + "\n")
    (run / "config.yaml").write_text(f"kind: ldm\nvae: {tmp_path / 'runs' / 'vae'}\n")
    cost = training_cost(run)
    assert "no longer there" in cost["extra_note"] and "pretrained" not in cost["extra_note"]
    assert cost["total_seconds"] == 2.0


# ------------------------------------------------------------------------------ trained on --real? (issue 19, item 4)
def _trained_run(folder, data, split="train"):
    """A run folder whose run.json records the Dataset ``data`` (split ``split``) as its training data."""
    from synthworth.data.dataset import Dataset

    ds = Dataset.open(data)
    _fake_run(folder, [{"step": 8, "epoch": 1, "kind": "epoch", "train_s": 1.0}])
    (folder / "run.json").write_text(json.dumps({"data": {"path": str(ds.path), "fingerprint": ds.fingerprint,
                                                          "split": split, "images": 10}}))
    return folder


def test_a_conditional_generator_of_another_class_count_is_refused(world, refused, tmp_path):
    root, _, _ = world
    refused(*base_args(root, root / "faces-only", tmp_path / "out", f"b={root / 'gan-b'}"),
            match=(f"--run b={root / 'gan-b'} generates 2 classes (face, non_face)", "has 1 (face)",
                   "compare it against the Dataset it was trained on"))
    assert not (tmp_path / "out").exists()


def test_a_generator_trained_on_another_dataset_is_refused_unless_allowed_and_then_marked(world, refused, cli,
                                                                                          tmp_path):
    from synthworth.report.numbers import esc

    root, real, only_train = world
    other = _trained_run(tmp_path / "other", only_train)
    out = tmp_path / "out"
    args = base_args(root, real, out, f"o={other}", f"a={_trained_run(tmp_path / 'mine', real)}")
    refused(*args, match=(f"--run o={other} was trained on {only_train}", f"not on --real {real}",
                          "--allow-other-real"))
    assert not out.exists()
    code, _, err = cli(*args, "--allow-other-real")  # the advice followed
    assert code == 0, err
    warned = [line for line in err if line.startswith("synthworth: warning: --run o=")]
    assert len(warned) == 1 and f"was trained on {only_train}" in warned[0]
    assert not any("--run a=" in line for line in err)  # trained on --real: nothing to say
    findings = json.loads((out / "findings.json").read_text())
    assert len(findings["warnings"]) == 1 and findings["warnings"][0].startswith(f"--run o={other} was trained on")
    page = (out / "report" / "index.html").read_text()
    assert f"<p class='warning'>{esc(findings['warnings'][0])}</p>" in page


def test_a_generator_trained_on_the_held_out_split_or_recording_nothing(world, refused, cli, tmp_path):
    root, real, _ = world
    on_test = _trained_run(tmp_path / "on-test", real, split="test")
    refused(*base_args(root, real, tmp_path / "out", f"t={on_test}"),
            match=(f"--run t={on_test} was trained on the 'test' split", "pass --real-split"))
    # A model saved outside a run recorded no Dataset: compared, with a warning that it could not be checked.
    code, _, err = cli(*base_args(root, real, tmp_path / "out", f"a={root / 'gan-a'}"))
    assert code == 0, err
    assert any("--run a=" in line and "records no training Dataset" in line for line in err)


# ------------------------------------------------------------------------------ findings that hold up (issue 22, part 4)
def test_the_page_says_each_findings_method_plateau_over_draws_exposure_against_held_out_cost_by_cpu(world, cli,
                                                                                                       tmp_path):
    """Evaluations with three draws each falling 30 % over the window, CPU seconds in the epoch
    rows: the page and findings.json carry the plateau's basis (one run, the correlation allowed
    for, the draws), the exposure comparison with the held-out real images and its test, and a
    cost compared by CPU time (not the wall time inflated beside a neighbour)."""
    root, real, _ = world
    evals = [{**_eval(e, 100.0 - 3 * e), "draws": 3, "fid_draws": [99.0 - 3 * e, 100.0 - 3 * e, 101.0 - 3 * e]}
             for e in range(1, 11)]
    a = _fake_run(tmp_path / "a", [*evals, {"step": 80, "epoch": 10, "kind": "epoch", "elapsed_s": 13.0,
                                            "train_s": 12.3, "train_cpu_s": 3.6, "device": "cpu"}])
    b = _fake_run(tmp_path / "b", [{"step": 80, "epoch": 10, "kind": "epoch", "elapsed_s": 4.0, "train_s": 3.5,
                                    "train_cpu_s": 3.4, "device": "cpu"}])
    out = tmp_path / "out"
    code, stdout, err = cli(*base_args(root, real, out, f"a={a}", f"b={b}"))
    assert code == 0, err
    findings = json.loads((out / "findings.json").read_text())
    plateau, sentences = findings["models"]["a"]["plateau"], findings["models"]["a"]["sentences"]
    assert (plateau["status"], plateau["draws"], plateau["method"]) == ("improving", 3, "one run")
    assert "each the mean of 3 draws, the interval allowing for neighbouring evaluations correlated up to 0.5" \
        in sentences["plateau"]
    versus = findings["models"]["a"]["exposure"]["versus_heldout"]
    assert "held-out real images" in sentences["exposure"] and f"{versus['heldout_outside']} of the " \
        f"{versus['heldout_n']} held-out" in sentences["exposure"]
    assert findings["models"]["a"]["cost"]["measure"] == "cpu"
    assert sentences["cost"].endswith("; 1.1× the CPU time of b") and "wall clock 12 s" in sentences["cost"]
    page = (out / "report" / "index.html").read_text()
    for text in (sentences["plateau"], sentences["exposure"], sentences["cost"], findings["summary"][-1]):
        assert html.escape(text, quote=True) in page
    assert "compared by CPU time" in page and "Fisher p" in page and "3 draws each" in page
    assert "binomial p against 2 %" in page  # the range's coverage on the held-out images, in the floor row
    assert "CPU time" in stdout
