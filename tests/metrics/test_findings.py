"""The faces project's findings: exposure on a hand-computed case, the plateau statement on known
curves, quality intervals over draws, training cost from metrics.jsonl, and ``synthworth compare``
end to end on two tiny real runs."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from synthworth.cli import main
from synthworth.data.dataset import Dataset
from synthworth.errors import SynthworthError
from synthworth.metrics.features import FeatureExtractor, extract_features
from synthworth.metrics.findings import (
    brightness,
    exposure,
    floor_draws,
    plateau,
    quality_draws,
    real_range,
    training_cost,
)
from synthworth.metrics.scores import score_features

pytestmark = pytest.mark.usefixtures("single_thread")
OPTIONS = {"kid_subset_size": 1000, "kid_subsets": 10, "pr_k": 3, "dc_k": 5, "seed": 0}


def constant_images(values, side=4, channels=3) -> np.ndarray:
    return np.stack([np.full((side, side, channels), v, np.uint8) for v in values])


# ------------------------------------------------------------------------------ exposure
def test_brightness_is_the_mean_pixel_value_over_height_width_and_channels():
    half = np.zeros((1, 2, 2, 3), np.uint8)
    half[0, 0] = 255  # one of two rows white: the mean is 127.5
    assert brightness(np.concatenate([constant_images([7], side=2), half])).tolist() == [7.0, 127.5]


def test_exposure_on_a_case_computed_by_hand():
    train = constant_images([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    low, high = real_range(train)
    # numpy's linear percentiles of 10..100: the 1st is 10 + 0.09 * 10, the 99th 100 - 0.09 * 10.
    assert (low, high) == pytest.approx((10.9, 99.1))
    assert (low, high) == tuple(np.percentile(np.arange(10, 101, 10), [1, 99]))
    samples = constant_images([0, 5, 10, 50, 60, 70, 80, 99, 100, 120])  # 3 below 10.9, 2 above 99.1
    result = exposure(samples, low, high)
    assert result["n"] == 10 and result["share"] == 0.5
    assert (result["dark_count"], result["bright_count"]) == (3, 2)
    assert (result["dark"], result["bright"]) == (0.3, 0.2)
    # Clopper-Pearson for 5 of 10: the beta quantiles.
    assert result["low"] == pytest.approx(stats.beta.ppf(0.025, 5, 6))
    assert result["high"] == pytest.approx(stats.beta.ppf(0.975, 6, 5))
    # Brightness values are accepted as well as images.
    assert exposure(brightness(samples), low, high)["share"] == 0.5
    assert exposure(np.zeros(0), low, high)["share"] is None


# ------------------------------------------------------------------------------ plateau
def line(values, start=1):
    return [(start + i, float(v)) for i, v in enumerate(values)]


def test_a_falling_fid_is_improving_and_the_window_is_the_last_half():
    result = plateau(line(100 - 5 * np.arange(10)))  # epochs 1..10, the window 6..10: FID 75 -> 55
    assert result["status"] == "improving"
    assert (result["first_epoch"], result["last_epoch"], result["points"]) == (6, 10, 5)
    assert result["slope"] == pytest.approx(-5)
    assert result["relative_change"] == pytest.approx(-5 * 4 / 65)
    assert result["statement"].startswith("improving: over epochs 6–10 its FID fell by −31 %")
    assert "not converged" in result["statement"]


def test_a_flat_fid_with_small_noise_has_plateaued():
    noise = np.random.default_rng(0).normal(0, 0.3, 12)
    result = plateau(line(50 + noise))
    assert result["status"] == "plateaued", result
    assert -0.1 <= result["relative_low"] <= result["relative_high"] <= 0.1
    assert result["statement"].startswith("plateaued: over epochs 7–12 its FID changed by ")
    assert result["statement"].endswith("within ±10 %")


def test_a_rising_fid_is_worsening_and_a_rising_precision_improving():
    assert plateau(line(20 + 3 * np.arange(8)))["status"] == "worsening"
    assert plateau(line(0.2 + 0.05 * np.arange(8)), metric="precision")["status"] == "improving"


def test_a_noisy_short_curve_is_undecided_with_the_t_interval_of_the_slope():
    """The slope's t interval, widened for neighbouring evaluations correlated up to 0.5
    (:func:`synthworth.metrics.plateau.ar1_correction`)."""
    from synthworth.metrics.plateau import ar1_correction

    points = [(1, 50.0), (2, 80.0), (3, 40.0), (4, 75.0)]
    result = plateau(points)
    assert result["status"] == "undecided" and result["points"] == 4
    fit = stats.linregress([1, 2, 3, 4], [50, 80, 40, 75])
    factor, df = ar1_correction(4, 0.5)
    half = stats.t.ppf(0.975, df) * fit.stderr * math.sqrt(factor)
    assert (result["low"], result["high"]) == pytest.approx((fit.slope - half, fit.slope + half))
    assert result["statement"].startswith("undecided: over epochs 1–4")


def test_two_points_are_too_few_and_non_finite_points_are_dropped():
    result = plateau([(1, 50.0), (2, 40.0)])
    assert result["status"] == "too few points" and result["slope"] is None
    assert "only 2 evaluation(s) of FID" in result["statement"]
    assert plateau([(1, float("nan")), (2, 40.0), (3, float("inf")), (4, 30.0)])["status"] == "too few points"
    assert plateau(line([60, 50, 40]))["points"] == 3  # three points: all of them


# ------------------------------------------------------------------------------ draws
class FakeGenerator:
    """Deterministic images from the seed (image i from seed + i); records the seeds asked for."""

    kind, conditional, class_names = "fake", False, []

    def __init__(self):
        self.seeds = []

    def sample(self, n, labels=None, seed=0):
        self.seeds.append(seed)
        return np.stack([np.random.default_rng(seed + i).integers(0, 256, (4, 4, 1), dtype=np.uint8)
                         for i in range(n)])


class PixelFeatures(FeatureExtractor):
    kind, label = "file", "the pixels (test)"

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1).float()


def test_quality_draws_are_the_student_t_interval_of_the_draws_from_separate_seeds():
    reference = np.random.default_rng(1).integers(0, 256, (40, 16)).astype(np.float64)
    gen = FakeGenerator()
    result, shades = quality_draws(gen, PixelFeatures(), reference, draws=3, samples=12, seed=5, options=OPTIONS)
    assert gen.seeds == [5, 17, 29]
    expected = []
    for seed in (5, 17, 29):
        images = FakeGenerator().sample(12, seed=seed)
        features = extract_features(PixelFeatures(), Dataset.from_arrays(images, np.zeros(12), ["generated"]))
        expected.append(score_features(reference, features, **OPTIONS))
    for metric in ("fid", "kid", "precision", "recall"):
        values = [e[metric] for e in expected]
        assert result[metric]["values"] == pytest.approx(values)
        low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
        if metric != "kid":  # FID and the shares cannot fall below 0, the shares not above 1: cut there
            low, high = max(low, 0.0), min(high, 1.0) if metric in ("precision", "recall") else high
        assert (result[metric]["mean"], result[metric]["low"], result[metric]["high"]) == pytest.approx(
            (np.mean(values), low, high))
    assert [s.tolist() for s in shades] == [brightness(FakeGenerator().sample(12, seed=s)).tolist() for s in (5, 17, 29)]
    with pytest.raises(SynthworthError, match="at least 2 draws"):
        quality_draws(gen, PixelFeatures(), reference, draws=1, samples=12, seed=0, options=OPTIONS)


def test_a_t_interval_is_cut_at_the_range_the_metric_can_take():
    from synthworth.metrics.findings import interval

    wide = interval([0.0, 1.0], (0.0, 1.0))
    assert (wide["low"], wide["high"]) == (0.0, 1.0) and wide["mean"] == 0.5
    free = interval([0.0, 1.0])
    assert free["low"] < -1 and free["high"] > 2  # KID has no such bound


def test_floor_draws_are_subsets_of_the_training_images_or_all_of_them_said_so():
    rng = np.random.default_rng(2)
    train = Dataset.from_arrays(rng.integers(0, 256, (30, 4, 4, 1), dtype=np.uint8), np.zeros(30), ["x"])
    reference = rng.integers(0, 256, (20, 16)).astype(np.float64)
    some = floor_draws(PixelFeatures(), train, reference, draws=3, samples=10, seed=0, options=OPTIONS)
    assert some["images"] == 10 and some["note"] is None and len(set(some["fid"]["values"])) == 3
    every = floor_draws(PixelFeatures(), train, reference, draws=2, samples=50, seed=0, options=OPTIONS)
    assert every["images"] == 30 and "all 30 real training images" in every["note"]
    whole = extract_features(PixelFeatures(), train)
    assert every["fid"]["values"] == pytest.approx([score_features(reference, whole, **OPTIONS)["fid"]] * 2)


# ------------------------------------------------------------------------------ cost
def fake_run(folder, kind, rows, **config):
    folder.mkdir(parents=True)
    (folder / "model").mkdir()
    (folder / "run.json").write_text(json.dumps({"kind": kind}))
    (folder / "config.yaml").write_text(yaml.safe_dump({"kind": kind, **config}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut sho')
    return folder


def epoch_rows(seconds, key="train_s", steps=10):
    out = []
    for i, s in enumerate(seconds, start=1):
        out += [{"step": i * steps - 1, "epoch": i, "loss": 0.5},
                {"step": i * steps, "epoch": i, "kind": "epoch", "loss_mean": 0.5, "elapsed_s": s + 1, key: s}]
    return out


def test_training_cost_reads_train_s_else_elapsed_s_summed_over_resumes(tmp_path):
    run = fake_run(tmp_path / "gan", "dcgan", epoch_rows([10.0, 21.5, 30.25]) +
                   [{"step": 30, "epoch": 3, "kind": "eval", "train_s": 30.25, "fid": 3.0}])
    cost = training_cost(run / "model")  # the model folder finds its run
    assert cost["train_seconds"] == 30.25 and cost["source"] == "train_s" and cost["total_seconds"] == 30.25
    assert (cost["epochs"], cost["steps"], cost["extra_seconds"], cost["ratio"]) == (3, 30, None, None)
    # An older run without train_s, resumed once: elapsed_s starts again from 0 at the resume.
    old = fake_run(tmp_path / "old", "ddpm", epoch_rows([10.0, 20.0, 5.0, 15.0], key="unused"))
    cost = training_cost(old)
    assert cost["source"] == "elapsed_s" and cost["train_seconds"] == (20 + 1) + (15 + 1)


def test_a_latent_model_counts_its_vae_run_and_says_when_its_vae_is_foreign(tmp_path):
    vae = fake_run(tmp_path / "vae", "vae", epoch_rows([40.0]))
    ldm = fake_run(tmp_path / "ldm", "ldm", epoch_rows([100.0, 200.0]), vae=str(vae / "model"))
    cost = training_cost(ldm)
    assert (cost["train_seconds"], cost["extra_seconds"], cost["total_seconds"]) == (200.0, 40.0, 240.0)
    assert str(vae) in cost["extra_note"]
    foreign = tmp_path / "sd-vae"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    other = fake_run(tmp_path / "ldm2", "ldm", epoch_rows([100.0]), vae=str(foreign))
    cost = training_cost(other)
    assert cost["extra_seconds"] is None and cost["total_seconds"] == 100.0
    assert cost["extra_note"] == "a pretrained autoencoder: its training cost is not counted"


# ------------------------------------------------------------------------------ words
def test_numbers_that_could_not_be_measured_are_said_so_never_printed_as_none():
    from synthworth.metrics.findings_text import add_sentences, csv_text, format_table

    unknown = {"mean": None, "low": None, "high": None, "values": [None, None]}
    known = {"mean": 2.0, "low": 1.0, "high": 3.0, "values": [1.5, 2.5]}
    findings = {
        "real": {"path": "data/faces", "train_split": "train", "train_images": 9, "reference_split": "test",
                 "reference_images": 6},
        "features": "dinov2", "features_label": "dinov2: test", "draws": 2, "samples": 8, "seed": 0,
        "floor": {**{m: known for m in ("fid", "kid", "precision", "recall")}, "images": 8, "note": None},
        "exposure_range": {"low": 50.0, "high": 150.0, "coverage": 0.98, "from": "the 9 real 'train' images",
                           "heldout_share": 0.0, "heldout_n": 6},
        "closest": None,
        "models": {"m": {"kind": "ddpm", "run": "runs/m", "epochs": None, "steps": None, "labels": None,
                         "quality": {m: unknown for m in ("fid", "kid", "precision", "recall")},
                         "plateau": plateau([]),
                         "exposure": exposure(np.zeros(0), 50.0, 150.0),
                         "cost": training_cost("nowhere")}}}
    findings["models"]["m"]["cost"].pop("epochs"), findings["models"]["m"]["cost"].pop("steps")
    add_sentences(findings)
    words = [*findings["models"]["m"]["sentences"].values(), *findings["summary"]]
    assert not any("None" in w for w in words), words
    assert "its FD_DINOv2 could not be computed" in findings["models"]["m"]["sentences"]["quality"]
    assert "no FD_DINOv2" not in words[1] and "no FID logged during training" in words[1]
    assert "its cost is unknown" in findings["models"]["m"]["sentences"]["cost"]
    assert "none is named closest" in findings["summary"][0]
    assert "FD_DINOv2 [95% CI]" in format_table(findings) and "None" not in format_table(findings)
    assert pd.read_csv(io.StringIO(csv_text(findings)))["fid_mean"].isna().all()


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def faces_world(tmp_path_factory):
    """LFW faces at 16 px (70 train / 30 test), a 1-epoch tiny DCGAN and DDPM on them, and a tiny
    classifier trained on faces vs non-faces whose features score them."""
    from synthworth.classifiers.task import ClassifierConfig, train_classifier
    from synthworth.config import resolve_config
    from synthworth.data.prepare import PrepareConfig, prepare

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("faces-compare")
    faces = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", classes=["face"], test_fraction=0.3,
                                  workers=0), root / "faces", progress=False)
    both = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", workers=0), root / "lfw", progress=False)
    train_classifier(both, root / "clf", resolve_config(ClassifierConfig, preset=("classifier", "tiny")))
    for kind in ("dcgan", "ddpm"):
        assert main(["train", kind, "--data", str(faces.path), "--out", str(root / kind), "--preset", "tiny",
                     "train.epochs=1"]) == 0
    return root, faces


def test_compare_writes_the_contract_findings_and_a_csv(faces_world, capsys):
    root, faces = faces_world
    # Quality logged during training (the engine's eval rows), falling over six epochs.
    with open(root / "ddpm" / "metrics.jsonl", "a") as fh:
        for epoch, value in enumerate([9.0, 8.0, 7.0, 6.0, 5.0, 4.0], start=1):
            fh.write(json.dumps({"step": epoch * 5, "epoch": epoch, "kind": "eval", "train_s": epoch * 1.0,
                                 "fid": value, "kid": 0.1, "precision": 0.5, "recall": 0.5}) + "\n")
        fh.write(json.dumps({"step": 35, "epoch": 7, "kind": "eval", "train_s": 7.0, "error": "out of memory"}) + "\n")
    out = root / "cmp"
    capsys.readouterr()
    code = main(["compare", "--run", f"gan={root / 'dcgan'}", "--run", f"diffusion={root / 'ddpm'}",
                 "--real", str(faces.path), "--draws", "2", "--features", str(root / "clf" / "model"),
                 "--out", str(out), "-q", "kid_subsets=10"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and printed[-1] == str(out / "report" / "index.html")
    page = (out / "report" / "index.html").read_text()
    assert "gan" in page and "diffusion" in page and "Findings" in page
    assert any(line.startswith("gan ") and "dcgan" in line for line in printed)

    text = (out / "findings.json").read_text()
    findings = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in findings.json"))
    assert set(findings) >= {"version", "real", "features", "features_label", "draws", "samples", "seed", "floor",
                             "exposure_range", "models", "closest", "summary"}
    assert findings["real"] == {"path": str(faces.path), "fingerprint": faces.fingerprint, "train_split": "train",
                                "train_images": 70, "reference_split": "test", "reference_images": 30}
    assert (findings["features"], findings["draws"], findings["samples"], findings["seed"]) == ("file", 2, 70, 0)
    assert findings["closest"] in ("gan", "diffusion") and findings["summary"]
    assert findings["floor"]["images"] == 70 and findings["floor"]["note"]
    for name, kind in (("gan", "dcgan"), ("diffusion", "ddpm")):
        model = findings["models"][name]
        assert model["kind"] == kind and model["epochs"] == 1 and model["steps"] > 0
        for metric in ("fid", "kid", "precision", "recall"):
            stat = model["quality"][metric]
            assert len(stat["values"]) == 2 and stat["low"] <= stat["mean"] <= stat["high"]
        assert set(model["plateau"]) >= {"metric", "status", "first_epoch", "last_epoch", "points", "slope", "low",
                                         "high", "relative_change", "statement"}
        assert model["exposure"]["n"] == 140 and set(model["exposure"]) >= {"share", "low", "high", "dark", "bright"}
        # train_s where the engine records it, else (an older engine) elapsed_s: the last epoch row's.
        last = [r for r in map(json.loads, (root / kind / "metrics.jsonl").read_text().splitlines())
                if r.get("kind") == "epoch"][-1]
        source = "train_s" if "train_s" in last else "elapsed_s"
        assert (model["cost"]["source"], model["cost"]["train_seconds"]) == (source, last[source])
        # The engine's CPU clock (the training process's CPU seconds): the measure compared by.
        assert last["device"] == "cpu" and 0 < last["train_cpu_s"]
        assert (model["cost"]["measure"], model["cost"]["seconds"]) == ("cpu", last["train_cpu_s"])
        assert "of CPU time" in model["sentences"]["cost"]
        assert set(model["sentences"]) == {"quality", "plateau", "exposure", "cost"}
        # Exposure: a comparison with the held-out real images, with its interval and test.
        versus = model["exposure"]["versus_heldout"]
        assert versus["heldout_n"] == 30 and versus["verdict"] in ("more", "fewer", "no clear difference")
        assert versus["difference_low"] <= versus["difference"] <= versus["difference_high"]
        assert "held-out real images" in model["sentences"]["exposure"]
        assert "Fisher's exact p = " in model["sentences"]["exposure"]
    assert findings["models"]["gan"]["plateau"]["status"] == "too few points"
    ddpm_plateau = findings["models"]["diffusion"]["plateau"]
    assert (ddpm_plateau["status"], ddpm_plateau["first_epoch"], ddpm_plateau["last_epoch"]) == ("improving", 3, 6)
    costs = [findings["models"][n]["cost"] for n in ("gan", "diffusion")]
    assert min(c["ratio"] for c in costs) == 1.0
    assert all(c["ratio"] == pytest.approx(c["total_cpu_seconds"] / min(d["total_cpu_seconds"] for d in costs))
               for c in costs)
    check = findings["exposure_range"]["check"]
    assert check["heldout_n"] == 30 and check["train_n"] == 70 and 0 <= check["binomial_p"] <= 1

    # The exposure share, recomputed from the generator's own samples and the training images.
    from synthworth.generators import load_generator

    images = np.concatenate([load_generator(root / "dcgan").sample(70, seed=s) for s in (0, 70)])
    train = faces.split("train")
    low, high = np.percentile(brightness(train.take(range(len(train)))), [1, 99])
    shade = brightness(images)
    assert findings["exposure_range"]["low"] == pytest.approx(low)
    assert findings["models"]["gan"]["exposure"]["share"] == pytest.approx(np.mean((shade < low) | (shade > high)))

    table = pd.read_csv(out / "findings.csv")
    assert table["model"].tolist() == ["gan", "diffusion"]
    assert table["fid_mean"].tolist() == pytest.approx([findings["models"][n]["quality"]["fid"]["mean"]
                                                        for n in ("gan", "diffusion")])
    assert table["plateau_status"].tolist() == ["too few points", "improving"]
    assert json.loads((out / ".synthworth").read_text())["kind"] == "compare"
    assert not math.isnan(table["exposure_share"].iloc[0])
