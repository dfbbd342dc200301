"""Image-quality metrics: agreement with torch-fidelity, batch-size independence, known cases,
the Inception-weights errors, the domain extractor and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthworth.classifiers import build_classifier
from synthworth.cli import main
from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset
from synthworth.errors import ConfigError
from synthworth.metrics import (
    InceptionFeatures,
    MetricsConfig,
    compute_metrics,
    density_coverage,
    fid,
    find_inception_weights,
    get_extractor,
    precision_recall,
)
from synthworth.metrics import features as features_module
from synthworth.metrics.features import ClassifierFeatures

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = {"kid_subsets": 10, "max_images": 400}


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No Inception weights anywhere: an empty torch.hub folder and no environment variable."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(features_module.ENV_WEIGHTS, raising=False)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def random_features():
    """An untrained small CNN in eval mode: fixed features, no training needed."""
    torch.manual_seed(0)
    return ClassifierFeatures(build_classifier("small_cnn", 10, 1, 16, width=8), "random small_cnn (test)", kind="file")


# ------------------------------------------------------------------------------ reference
def test_fid_kid_pr_agree_with_torch_fidelity_computing_everything_itself(digits16, random_features):
    import torch_fidelity
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    real = digits16.split("train")
    test = digits16.split("test")
    # "Generated" images: the real test images at half brightness, so every metric is far from 0.
    fake = Dataset.from_arrays(test.take(np.arange(len(test))) // 2, test.labels, test.class_names)
    ours = compute_metrics(digits16, fake, MetricsConfig(**FAST, kid_subset_size=300, floor=False),
                           extractor=random_features)

    model = random_features.model

    class Extractor(FeatureExtractorBase):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            self.model = model

        @staticmethod
        def get_provided_features_list():
            return ("penultimate",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "penultimate"

        @staticmethod
        def can_be_compiled():
            return False

        def forward(self, x):
            return (self.model.features(x),)

    class Images(torch.utils.data.Dataset):
        def __init__(self, ds):
            self.images = ds.take(np.arange(len(ds)))

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return torch.from_numpy(self.images[i]).permute(2, 0, 1)

    if "synthworth-test" not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor("synthworth-test", Extractor)
    picked_real = subset(real, count=400, seed=0)  # what max_images=400 draws
    reference = torch_fidelity.calculate_metrics(
        input1=Images(fake), input2=Images(picked_real), fid=True, kid=True, prc=True,
        feature_extractor="synthworth-test", cuda=False, batch_size=50, cache=False, verbose=False,
        kid_subsets=10, kid_subset_size=300, rng_seed=0, prc_neighborhood=3)
    assert ours["fid"] == pytest.approx(reference["frechet_inception_distance"], rel=1e-3)
    assert ours["kid"] == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-3)
    assert ours["precision"] == pytest.approx(reference["precision"], abs=1e-6)
    assert ours["recall"] == pytest.approx(reference["recall"], abs=1e-6)


def test_metrics_do_not_depend_on_the_batch_size(digits16, random_features):
    fake = digits16.split("test")
    results = [compute_metrics(digits16, fake, MetricsConfig(**FAST, batch_size=b), extractor=random_features)
               for b in (7, 256)]
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "fid_real_floor"):
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-5, abs=1e-9), key


# ------------------------------------------------------------------------------ known cases
def test_fid_of_a_shifted_copy_is_the_squared_shift():
    x = np.random.default_rng(0).normal(size=(500, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert fid(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    assert abs(fid(x, x)) < 1e-6


def test_precision_recall_density_coverage_on_points_on_a_line():
    real = np.arange(6, dtype=float)[:, None]           # k=1 radius of every real ball: 1
    fake = np.array([[0.5], [10.0]])                     # one inside two balls, one far away
    assert density_coverage(real, fake, k=1) == pytest.approx((2 / (1 * 2), 2 / 6))
    # The fake points' own k=1 radius is 9.5, so every real point lies in the fake manifold.
    assert precision_recall(real, fake, k=1) == pytest.approx((0.5, 1.0))


def test_identical_sets_score_like_the_floor_would_promise(digits16, random_features):
    real = digits16.split("train")
    result = compute_metrics(real, real, MetricsConfig(**FAST, real_split=None), extractor=random_features)
    assert abs(result["fid"]) < 1e-6 and result["precision"] == 1.0 and result["coverage"] == 1.0
    assert result["n_half"] == 200 and result["fid_real_floor"] > 0 and result["fid_half_n"] > 0
    assert result["real"]["images"] == result["fake"]["images"] == 400


# ------------------------------------------------------------------------------ Inception weights
def test_missing_inception_weights_say_where_to_get_and_put_them(no_weights, tmp_path, monkeypatch):
    assert find_inception_weights() is None
    with pytest.raises(ConfigError) as info:
        InceptionFeatures()
    message = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message and "https://github.com/" in message
    assert str(no_weights) in message and "--inception-weights" in message and "--features domain" in message
    with pytest.raises(ConfigError, match="does not exist"):
        find_inception_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(features_module.ENV_WEIGHTS, str(tmp_path / "absent.pth"))
    with pytest.raises(ConfigError, match="SYNTHWORTH_INCEPTION_WEIGHTS=.*absent.pth does not name a file"):
        find_inception_weights()


def test_a_file_that_is_not_the_inception_weights_is_refused(no_weights, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a plain PyTorch weights file"):
        InceptionFeatures(junk)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ConfigError, match="does not hold Inception-v3 FID weights"):
        InceptionFeatures(other)
    # Found in torch.hub's folder under the standard name, the same checks apply.
    no_weights.mkdir(parents=True)
    (no_weights / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"junk")
    assert find_inception_weights() == no_weights / "pt_inception-2015-12-05-6726825d.pth"


# ------------------------------------------------------------------------------ domain features
def test_auto_without_weights_trains_a_labelled_domain_extractor_once(digits16, no_weights, tmp_path,
                                                                      monkeypatch):
    from synthworth.classifiers import task as task_module
    from synthworth.classifiers.task import ClassifierConfig
    from synthworth.config import resolve_config

    config = resolve_config(ClassifierConfig, preset=("classifier", "tiny"), overrides=["train.epochs=1"])
    real_train = subset(digits16.split("train"), count=200, seed=0)
    extractor = get_extractor("auto", real_train=real_train, classifier_config=config, cache_dir=tmp_path)
    assert extractor.kind == "domain" and "NOT comparable with published Inception FIDs" in extractor.label
    trained = list((tmp_path / "domain-features").iterdir())
    assert len(trained) == 1 and (trained[0] / "run" / "model" / "model.safetensors").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached extractor should have been reused")

    monkeypatch.setattr(task_module, "train_classifier", no_training)
    again = get_extractor("domain", real_train=real_train, classifier_config=config, cache_dir=tmp_path)
    x = torch.from_numpy(real_train.take(np.arange(8))).permute(0, 3, 1, 2)
    torch.testing.assert_close(again.features(x), extractor.features(x))


def test_cli_prints_the_table_with_the_floor_and_writes_json(digits16, no_weights, tmp_path, capsys):
    fake = tmp_path / "fake"
    from synthworth.data.dataset import atomic_folder, write_packed

    part = subset(digits16.split("test"), count=100, seed=0)
    with atomic_folder(fake, kind="dataset") as tmp:
        write_packed(tmp, part.take(np.arange(len(part))), part.labels, part.splits, part.class_names,
                     [{} for _ in range(len(part))], {"kind": "synthetic"})
    out = tmp_path / "m.json"
    code = main(["metrics", "--real", str(digits16.path), "--fake", str(fake), "--cache", str(tmp_path / "c"),
                 "--max-images", "300", "--out", str(out), "-q", "domain_preset=tiny", "domain_epochs=1",
                 "kid_subsets=5"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "domain: penultimate layer" in printed and "NOT comparable" in printed
    assert "real floor" in printed and "fid" in printed and "coverage" in printed
    saved = json.loads(out.read_text())
    assert saved["features"] == "domain" and saved["fake"]["images"] == 100 and saved["real"]["images"] == 300
    assert {"fid", "fid_real_floor", "kid", "precision", "recall", "density", "coverage"} <= set(saved)
    code = main(["metrics", "--real", str(digits16.path), "--fake", str(fake), "--features", "inception"])
    err = capsys.readouterr().err
    assert code == 2 and "Inception-v3 weights not found" in err and "\n" not in err.strip()
