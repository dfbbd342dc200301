"""Pretrained backbones: weights read the way a user's are (a safetensors state dict, a
save_pretrained folder, torchvision's named weights from torch.hub's cache), pickles refused,
missing weights named with the command that fetches them, and the three protocols trained,
saved and loaded again."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synthworth.classifiers.backbones import build_model, encoder_preprocess, torchvision_preprocess
from synthworth.classifiers.evaluate import score
from synthworth.classifiers.feature_cache import FeatureCache, backbone_features
from synthworth.classifiers.extract import extract_features
from synthworth.classifiers.probe import ProbeConfig, fit_probe, load_probe
from synthworth.classifiers.task import ClassifierConfig, ClassifierModelConfig, load_classifier, train_classifier
from synthworth.classifiers.weights import Weights, read_torchvision_state, resolve_weights
from synthworth.config import resolve_config
from synthworth.data.dataset import Dataset
from synthworth.errors import ConfigError, SynthworthError


def _load(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


tiny = _load("tiny_backbones", Path(__file__).with_name("tiny_backbones.py"))
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {"resnet": tiny.resnet_file(root / "resnet18.safetensors"), "dinov2": tiny.dinov2_folder(root / "dinov2"),
            "clip": tiny.clip_folder(root / "clip")}


def _data(n: int = 60, side: int = 16, channels: int = 1, classes: int = 3, seed: int = 0) -> Dataset:
    """Noise images whose class sets their brightness, so a probe has something to find."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 80, (n, side, side, channels)) + 80 * labels[:, None, None, None]
    return Dataset.from_arrays(images.astype(np.uint8), labels, [f"c{i}" for i in range(classes)])


def _model(**keys) -> ClassifierModelConfig:
    return ClassifierModelConfig(**{"resolution": None, **keys})


def _config(preset: str, *overrides: str) -> ClassifierConfig:
    return resolve_config(ClassifierConfig, preset=("classifier", preset), overrides=list(overrides))


# ------------------------------------------------------------------------------ reading weights
def test_a_state_dict_file_gives_every_weight_but_the_last_layer(backbones):
    model = build_model(_model(name="resnet18", weights=str(backbones["resnet"]), mode="finetune"), 3, 1, 16)
    saved = load_file(str(backbones["resnet"]))
    own = model.net.state_dict()
    assert torch.equal(own["conv1.weight"], saved["conv1.weight"])
    assert torch.equal(own["layer4.1.bn2.running_var"], saved["layer4.1.bn2.running_var"])
    assert own["fc.weight"].shape == (3, 512) and saved["fc.weight"].shape == (1000, 512)  # a fresh last layer
    assert model.resolution == 16 and model.backbone["sha256"] and model.backbone["kind"] == "file"
    assert "model.resolution and model.normalize" in model.backbone["preprocess"]["source"]


def test_weights_of_another_network_are_refused_with_what_does_not_fit(backbones):
    with pytest.raises(ConfigError, match=r"do not fit resnet34 \(\d+ of its weights missing \(e.g. layer1.2"):
        build_model(_model(name="resnet34", weights=str(backbones["resnet"]), mode="finetune"), 3, 1, 16)


def _refused(weights: Path, monkeypatch) -> str:
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))  # nothing may unpickle it
    with pytest.raises(ConfigError, match="pickled weights are not read") as caught:
        build_model(_model(name="resnet18", weights=str(weights), mode="linear_probe"), 3, 1, 16)
    monkeypatch.undo()
    assert not calls and "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".ckpt"])
def test_pickled_weights_are_never_read(tmp_path, suffix, monkeypatch):
    pickled = tmp_path / f"resnet18{suffix}"
    torch.save({"conv1.weight": torch.zeros(1)}, pickled)
    _refused(pickled, monkeypatch)


def test_the_advice_for_pickled_weights_converts_them(backbones, tmp_path, monkeypatch):
    state = load_file(str(backbones["resnet"]))
    pickled = tmp_path / "resnet18.pth"
    torch.save(state, pickled)
    message = _refused(pickled, monkeypatch)
    command = message.split("convert its state dict to safetensors with ", 1)[1].split(" and give", 1)[0]
    words = shlex.split(command)
    assert words[0] == "python"
    subprocess.run([sys.executable, *words[1:]], check=True, capture_output=True)
    converted = pickled.with_suffix(".safetensors")
    model = build_model(_model(name="resnet18", weights=str(converted), mode="finetune"), 3, 1, 16)
    assert torch.equal(model.net.state_dict()["conv1.weight"], state["conv1.weight"])


def test_named_torchvision_weights_come_from_the_hub_cache_with_their_hash_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError) as caught:
        resolve_weights("ResNet18_Weights.IMAGENET1K_V1", "resnet18")
    message = str(caught.value)
    target = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "\n" not in message and f"curl -L --create-dirs -o {target} " in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    # A file at that place that is not the published one (its hash does not start with f37072fd).
    target.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(1)}, target)
    with pytest.raises(ConfigError, match="is not the file torchvision published"):
        resolve_weights("IMAGENET1K_V1", "resnet18")
    with pytest.raises(ConfigError, match="not a weights file here, nor named weights of resnet18"):
        resolve_weights("ResNet34_Weights.IMAGENET1K_V1", "resnet18")
    # Their preprocessing is torchvision's transforms(): 224 px, ImageNet statistics, bilinear.
    pre = torchvision_preprocess(Weights("x", "torchvision", target, "0", torchvision="ResNet18_Weights.IMAGENET1K_V1"))
    assert (pre.size, pre.mean, pre.interpolation) == (224, (0.485, 0.456, 0.406), "bilinear")


class Payload:
    """An object a full unpickler would build (and could run code for)."""


def test_a_torchvision_file_is_read_by_the_tensors_only_loader(backbones, tmp_path):
    file = tmp_path / "r.pth"
    torch.save(load_file(str(backbones["resnet"])), file)
    state = read_torchvision_state(Weights("x", "torchvision", file, "0"))
    assert torch.equal(state["fc.bias"], load_file(str(backbones["resnet"]))["fc.bias"])
    torch.save({"w": Payload()}, file)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_torchvision_state(Weights("x", "torchvision", file, "0"))


def test_protocol_and_weights_must_agree():
    with pytest.raises(ValueError, match="model.mode is scratch"):
        _model(name="resnet18", weights="x.safetensors")
    with pytest.raises(ValueError, match="linear_probe starts from pretrained weights: give model.weights"):
        _model(name="resnet18", mode="linear_probe")
    with pytest.raises(ConfigError, match="pretrained encoder: give its weights"):
        build_model(_model(name="dinov2"), 3, 1, 16)


# ------------------------------------------------------------------------------ transformers
@pytest.mark.parametrize("kind", ["dinov2", "clip"])
def test_transformers_folders_load_as_saved_with_their_preprocessing(backbones, kind):
    from transformers import AutoModel

    model = build_model(_model(name=kind, weights=str(backbones[kind]), mode="linear_probe"), 3, 1, 16)
    saved = AutoModel.from_pretrained(backbones[kind])
    x = torch.rand(2, 3, 32, 32)
    model_out = model.net.encoder(pixel_values=x).pooler_output
    assert torch.allclose(model_out, saved(pixel_values=x).pooler_output)
    pre = model.backbone["preprocess"]
    assert model.resolution == pre["size"] == 32 and pre["interpolation"] == "bicubic"
    assert "preprocessor_config.json" in pre["source"] if kind == "dinov2" else "clip defaults" in pre["source"]
    assert tuple(pre["mean"]) == ((0.485, 0.456, 0.406) if kind == "dinov2" else (0.48145466, 0.4578275, 0.40821073))
    features = model.features(torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8))
    assert features.shape == (4, 16)


def test_a_dinov2_folder_without_processor_gets_its_family_defaults(tmp_path):
    folder = tiny.dinov2_folder(tmp_path / "d", processor=False)
    weights = resolve_weights(str(folder), "dinov2")
    from transformers import Dinov2Config

    pre = encoder_preprocess(weights, "dinov2", Dinov2Config.from_pretrained(folder))
    assert (pre.size, pre.mean, pre.interpolation) == (224, (0.485, 0.456, 0.406), "bicubic")


def test_transformers_folders_that_cannot_be_read_safely_are_refused(backbones, tmp_path):
    folder = tmp_path / "bin-only"
    folder.mkdir()
    (folder / "config.json").write_text((backbones["dinov2"] / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ConfigError, match="no model.safetensors \\(it has pytorch_model.bin: pickled weights"):
        resolve_weights(str(folder), "dinov2")
    with pytest.raises(ConfigError, match="holds a dinov2 model, not clip"):
        resolve_weights(str(backbones["dinov2"]), "clip")
    with pytest.raises(ConfigError, match="it holds a transformers dinov2 model: set model.name to dinov2"):
        resolve_weights(str(backbones["dinov2"]), "resnet18")


def test_a_hub_id_offline_and_not_cached_is_one_line_naming_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    config = _config("probe")
    with pytest.raises(ConfigError) as caught:
        build_model(config.model, 3, 1, 16)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("model.weights facebook/dinov2-small: neither a folder here")
    assert ("hf download facebook/dinov2-small config.json model.safetensors preprocessor_config.json --local-dir DIR"
            in message and "classifier.model.weights=DIR" in message)


# ------------------------------------------------------------------------------ protocols
def test_a_linear_probe_trains_saves_and_loads(backbones, tmp_path):
    data = _data(channels=1)
    weights = tmp_path / "resnet18.safetensors"
    weights.write_bytes(backbones["resnet"].read_bytes())
    config = _config("probe", "model.name=resnet18", f"model.weights={weights}", "model.resolution=16")
    model, run = train_classifier(data, tmp_path / "run", config)
    assert run.budget_used()["budget"] == "linear_probe" and run.budget_used()["probe_converged"]
    evaluation = score(model, data)[0]
    assert evaluation.accuracy > 0.9  # brightness tells the classes apart on the training images
    saved = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert set(saved) == {"head.weight", "head.bias"}  # the last layer only: the backbone is a reference
    again, meta = load_classifier(tmp_path / "run" / "model")
    assert meta["backbone"]["sha256"] == model.backbone["sha256"]
    x = torch.from_numpy(data.take(np.arange(8))).permute(0, 3, 1, 2)
    assert torch.allclose(again(x), model(x), atol=1e-5)
    # The probe's logits from features are the network's on the images.
    probe, _ = load_probe(tmp_path / "run" / "model")
    features = extract_features(backbone_features(model), data.select(np.arange(8)))
    assert np.allclose(probe.logits(features), model(x).detach().numpy(), atol=1e-4)
    # Replaced weights (same path) no longer fit the saved probe: said, not silently used.
    tiny.resnet_file(weights, seed=1)
    with pytest.raises(SynthworthError, match="was fitted on the features of weights with SHA-256"):
        load_classifier(tmp_path / "run" / "model")


def test_the_folded_probe_predicts_as_the_logistic_regression_it_came_from():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 7)) * rng.uniform(0.1, 10, 7) + rng.normal(size=7)
    y = (x[:, 0] / 10 + x[:, 1] > 0).astype(int) + 2 * (x[:, 2] > x[:, 2].mean())  # classes 0..3, not 4
    probe, fit = fit_probe(x, y, 5, ProbeConfig(c=0.5))
    scaled = StandardScaler().fit(x)
    reference = LogisticRegression(C=0.5, max_iter=1000).fit(scaled.transform(x), y)
    logits = probe.logits(x)
    assert (logits.argmax(1) == reference.predict(scaled.transform(x))).mean() >= 0.99
    assert (logits[:, 4] < -1e3).all()  # a class never seen is never predicted
    binary, _ = fit_probe(x, (y > 1).astype(int), 2, ProbeConfig())
    assert set(binary.logits(x).argmax(1)) == {0, 1}


def test_a_finetuned_model_trains_every_layer_and_reloads_without_its_weights_file(backbones, tmp_path):
    data = _data()
    copy = tmp_path / "weights.safetensors"
    copy.write_bytes(backbones["resnet"].read_bytes())
    config = _config("finetune", f"model.weights={copy}", "model.resolution=16", "train.epochs=1",
                     "train.batch_size=30", "train.progress=false", "optim.step_size=null")
    model, task = train_classifier(data, tmp_path / "run", config)
    before = load_file(str(copy))
    assert not torch.equal(model.net.state_dict()["conv1.weight"], before["conv1.weight"])  # trained, not frozen
    copy.unlink()  # a fine-tuned model holds all its weights
    again, meta = load_classifier(tmp_path / "run" / "model")
    x = torch.from_numpy(data.take(np.arange(6))).permute(0, 3, 1, 2)
    assert torch.allclose(again(x), model(x), atol=1e-5) and meta["model"]["mode"] == "finetune"


def test_a_transformers_encoder_finetunes_and_reloads(backbones, tmp_path):
    data = _data(n=12)
    config = _config("finetune", "model.name=clip", f"model.weights={backbones['clip']}", "train.epochs=1",
                     "train.batch_size=12", "train.progress=false", "optim.step_size=null")
    model, _ = train_classifier(data, tmp_path / "run", config)
    again, _ = load_classifier(tmp_path / "run" / "model")
    x = torch.from_numpy(data.take(np.arange(4))).permute(0, 3, 1, 2)
    assert torch.allclose(again(x), model(x), atol=1e-5)


# ------------------------------------------------------------------------------ the feature cache
def test_features_are_extracted_once_per_image_and_match_the_backbone(backbones, tmp_path):
    model = build_model(_model(name="dinov2", weights=str(backbones["dinov2"]), mode="linear_probe"), 3, 1, 16)
    built = []

    def backbone():
        built.append(1)
        return model

    data = _data(n=40)
    cache = FeatureCache(tmp_path / "features", model.backbone)
    first = cache.features(data, backbone, batch_size=16)
    direct = extract_features(backbone_features(model), data, batch_size=40).astype(np.float32)
    assert first.shape == (40, 16) and np.allclose(first, direct, atol=1e-5) and cache.extracted == 40
    # A subset and a mixture with a repeated image: nothing new to extract, the backbone never built.
    again = FeatureCache(tmp_path / "features", model.backbone)
    rows = np.array([5, 3, 3, 39])
    assert np.array_equal(again.features(data.select(rows), backbone), first[rows]) and again.extracted == 0
    assert len(built) == 1
    # New images: only those go through the backbone.
    more = _data(n=10, seed=9)
    both = Dataset.from_arrays(np.concatenate([data.take(np.arange(40)), more.take(np.arange(10))]),
                               np.r_[data.labels, more.labels], data.class_names)
    again.features(both, backbone)
    assert again.extracted == 10 and len(list((tmp_path / "features").glob("*.npz"))) == 2


def test_train_classifier_from_the_cli_fits_a_probe_whose_model_gives_metric_features(backbones, tmp_path):
    from synthworth.cli import main
    from synthworth.data.dataset import atomic_folder, write_packed
    from synthworth.metrics.features import file_features

    data = _data(n=30)
    with atomic_folder(tmp_path / "data", kind="dataset") as folder:
        write_packed(folder, data.take(np.arange(30)), data.labels, np.full(30, "train"), data.class_names,
                     [{} for _ in range(30)], {"kind": "real"})
    out = tmp_path / "probe"
    assert main(["train", "classifier", "--data", str(tmp_path / "data"), "--out", str(out), "--preset", "probe",
                 "model.name=dinov2", f"model.weights={backbones['dinov2']}"]) == 0
    assert (out / "model" / "config.json").is_file() and "linear probe on 30 images" in (out / "log.txt").read_text()
    extractor = file_features(out / "model")  # a saved probe serves as metric features too
    assert extract_features(extractor, data.select(np.arange(5))).shape == (5, 16)
