"""DINOv2 features (``--features dinov2``) on a tiny randomly initialised DINOv2 saved by the test:
the metrics on them, the dgm-eval preprocessing, the CLI, the offline rules and the weights key."""

from __future__ import annotations

import hashlib
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthworth.cli import main
from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset
from synthworth.errors import ConfigError
from synthworth.metrics import MetricsConfig, compute_metrics, density_coverage, extract_features, precision_recall
from synthworth.metrics.dinov2 import Dinov2Features, resolve_dinov2
from synthworth.metrics.features import weights_key

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = {"kid_subsets": 5, "kid_subset_size": 50, "max_images": 120}


def save_tiny_dinov2(folder, seed: int = 0):
    """A DINOv2 with 16-d features and one layer, randomly initialised, as save_pretrained writes it."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                          patch_size=14, image_size=28)
    Dinov2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_dinov2(tmp_path_factory.mktemp("dinov2") / "tiny")


@pytest.fixture(scope="module")
def extractor(tiny):
    return Dinov2Features(tiny)


def darker(ds: Dataset, factor: float) -> Dataset:
    images = (ds.take(np.arange(len(ds))).astype(np.float32) * factor).astype(np.uint8)
    return Dataset.from_arrays(images, ds.labels, ds.class_names)


# ------------------------------------------------------------------------------ the metrics
def test_fd_dinov2_of_a_set_against_itself_is_zero_and_grows_with_a_shift(digits16, extractor):
    real = subset(digits16.split("train"), count=120, seed=0)
    config = MetricsConfig(**FAST, real_split=None, floor=False)
    same = compute_metrics(real, real, config, extractor=extractor)
    slightly, much = (compute_metrics(real, darker(real, f), config, extractor=extractor) for f in (0.8, 0.3))
    assert same["features"] == "dinov2" and same["feature_dim"] == 16
    assert abs(same["fid"]) < 1e-6 and same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert 1e-3 < slightly["fid"] < much["fid"]
    assert much["coverage"] < 1.0


def test_precision_recall_density_coverage_are_those_of_the_scores_on_these_features(digits16, extractor):
    real = subset(digits16.split("train"), count=120, seed=0)
    fake = darker(subset(digits16.split("test"), count=120, seed=0), 0.6)
    result = compute_metrics(real, fake, MetricsConfig(**FAST, real_split=None, floor=False), extractor=extractor)
    fr, ff = extract_features(extractor, real, 50), extract_features(extractor, fake, 50)
    assert (result["precision"], result["recall"]) == pytest.approx(precision_recall(fr, ff, k=3))
    assert (result["density"], result["coverage"]) == pytest.approx(density_coverage(fr, ff, k=5))
    for name in ("precision", "recall", "coverage"):
        assert 0.0 <= result[name] <= 1.0, name
    assert result["density"] >= 0.0


def test_features_follow_dgm_eval_preprocessing_pil_bicubic_224_imagenet_norm(extractor):
    """dgm-eval (Stein et al.) resizes the PIL image to 224 x 224 bicubic, scales to [0, 1],
    normalises with ImageNet's mean/std and takes the layer-normed CLS token."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 3, 20, 30), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = []
    for image in images:
        resized = Image.fromarray(image.transpose(1, 2, 0)).resize((224, 224), Image.BICUBIC)
        pixels.append(((np.asarray(resized) / 255.0 - mean) / std).transpose(2, 0, 1))
    with torch.no_grad():
        expected = extractor.net(pixel_values=torch.tensor(np.stack(pixels), dtype=torch.float32))
        expected = expected.last_hidden_state[:, 0]  # the CLS token after the final layer norm
        ours = extractor.features(torch.from_numpy(images))
    # PIL rounds the resized pixels to integers (differences ~7e-4 here); torch's bicubic without
    # antialiasing (another kernel) differs by ~7e-3 and bilinear by ~2e-2.
    torch.testing.assert_close(ours, expected, atol=2e-3, rtol=0)
    # Grayscale: the value copied into the three channels.
    gray = torch.from_numpy(images[:, :1])
    with torch.no_grad():
        torch.testing.assert_close(extractor.features(gray), extractor.features(gray.expand(-1, 3, -1, -1)))


# ------------------------------------------------------------------------------ CLI
def test_cli_features_dinov2_end_to_end_names_the_weights(digits16, tiny, tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["metrics", "--real", str(digits16.path), "--fake", str(digits16.path), "--features", "dinov2",
                 "--dinov2-weights", str(tiny), "--real-split", "train", "--max-images", "80", "--out", str(out),
                 "-q", "fake_split=test", "kid_subsets=5", "kid_subset_size=30"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "dinov2: DINOv2 CLS-token features (16-d" in printed and "FD_DINOv2" in printed
    assert "fd_dinov2" in printed and "coverage" in printed
    saved = json.loads(out.read_text())
    sha = hashlib.sha256((tiny / "model.safetensors").read_bytes()).hexdigest()
    assert saved["features"] == "dinov2" and saved["feature_dim"] == 16
    assert saved["features_source"]["sha256"] == sha and saved["features_source"]["path"] == str(tiny)
    assert saved["features_source"]["standard"] is False and sha[:12] in saved["features_label"]
    assert {"fid", "fid_real_floor", "kid", "precision", "recall", "density", "coverage"} <= set(saved)


# ------------------------------------------------------------------------------ offline rules
def test_offline_a_missing_model_names_the_download_command_and_the_folder_it_makes_works(
        offline_hub, tiny, tmp_path, digits16, capsys):
    with pytest.raises(ConfigError) as info:
        resolve_dinov2(None)
    message = str(info.value)
    command = "hf download facebook/dinov2-large config.json model.safetensors --local-dir DIR"
    assert "neither a folder here nor in the local Hugging Face cache and HF_HUB_OFFLINE is set" in message
    assert command in message and "--dinov2-weights DIR" in message
    # The advice followed: DIR holds exactly the files the command names (what it writes there).
    folder = tmp_path / "DIR"
    folder.mkdir()
    for name in command.split()[3:5]:
        shutil.copy(tiny / name, folder / name)
    assert resolve_dinov2(str(folder)) == (folder, None)
    code = main(["metrics", "--real", str(digits16.path), "--fake", str(digits16.path), "--features", "dinov2",
                 "--dinov2-weights", str(folder), "--max-images", "40", "-q", "fake_split=test", "kid_subsets=2",
                 "kid_subset_size=20", "floor=false"])
    assert code == 0, capsys.readouterr().err


def test_offline_a_cached_hub_id_loads_from_the_cache(offline_hub, tiny):
    repo = offline_hub / "models--someone--tiny-dinov2"
    shutil.copytree(tiny, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    extractor = Dinov2Features("someone/tiny-dinov2")
    assert extractor.source["hub_id"] == "someone/tiny-dinov2"
    assert extractor.source["path"].endswith("0123abcd") and "someone/tiny-dinov2" in extractor.label


def test_online_a_hub_id_is_downloaded_with_only_the_files_it_needs(offline_hub, tiny, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    from synthworth.generators import text2image

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)   # CI sets it too
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(text2image, "_hub_unreachable", lambda: None)
    asked = []

    def download(repo_id, allow_patterns):  # what the Hub would put in the cache
        asked.append((repo_id, allow_patterns))
        return str(shutil.copytree(tiny, tmp_path / "snapshot"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    assert resolve_dinov2(None) == (tmp_path / "snapshot", "facebook/dinov2-large")
    assert asked == [("facebook/dinov2-large", ["config.json", "model.safetensors"])]
    with pytest.raises(ConfigError, match="neither a folder here nor in the local Hugging Face cache"):
        resolve_dinov2(None, download=False)


# ------------------------------------------------------------------------------ keys
def test_the_weights_fingerprint_keys_the_studys_stored_metrics(tmp_path, tiny):
    from synthworth.study.runner import _metrics_key

    folder = shutil.copytree(tiny, tmp_path / "model")
    plan = SimpleNamespace(
        inputs=SimpleNamespace(real=SimpleNamespace(fingerprint="r"), synthetic={"g": SimpleNamespace(fingerprint="f")}),
        spec=SimpleNamespace(metrics=MetricsConfig(features="dinov2", dinov2_weights=str(folder))))
    before = _metrics_key(plan, "g")
    files = [(name, hashlib.sha256((folder / name).read_bytes()).hexdigest()) for name in ("config.json", "model.safetensors")]
    assert weights_key(plan.spec.metrics) == hashlib.sha256(json.dumps(files).encode()).hexdigest()
    assert _metrics_key(plan, "g") == before
    save_tiny_dinov2(folder, seed=1)  # other weights, same folder name and config
    assert _metrics_key(plan, "g") != before
    assert weights_key(MetricsConfig(features="dinov2", dinov2_weights=str(tmp_path / "absent"))) is None


def test_a_studys_dinov2_folder_is_relative_to_the_spec_and_a_hub_id_stays_one(tmp_path, tiny):
    from synthworth.study.spec import load_spec

    shutil.copytree(tiny, tmp_path / "models" / "dino")
    spec_file = tmp_path / "s.yaml"
    for given, expected in (("models/dino", str(tmp_path / "models" / "dino")),
                            ("facebook/dinov2-large", "facebook/dinov2-large")):
        spec_file.write_text("real: data\ncompositions: [real]\n"
                             f"metrics: {{enabled: true, features: dinov2, dinov2_weights: {given}}}\n")
        spec, _ = load_spec(spec_file)
        assert spec.metrics.dinov2_weights == expected
