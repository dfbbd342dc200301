"""Feature extractors for the image-quality metrics.

- ``inception``: Inception-v3 pool features (2048-d) from the standard TensorFlow-ported weights
  ``pt_inception-2015-12-05`` that torch-fidelity and torchmetrics use, read from a LOCAL file
  (nothing is downloaded). FIDs on these features are comparable with published ones.
- ``domain``: the penultimate layer of a classifier trained (through the shared engine) on the
  real Dataset's train split. It works offline on any image size, but its numbers are only
  comparable with each other on the same real data, never with published FIDs: every output
  says so.
- ``dinov2``: DINOv2 ViT-L/14 CLS-token features through ``transformers``, from a hub id or a
  local folder (see :mod:`synthworth.metrics.dinov2`); the Fréchet distance on them is the
  FD_DINOv2 that Stein et al. (2023) recommend in place of FID.
- a saved synthworth classifier folder (``model.safetensors`` + ``config.json``): its
  penultimate layer, likewise labelled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from synthworth.data.dataset import Dataset
from synthworth.errors import ConfigError, SynthworthError
from synthworth.classifiers.extract import extract_features  # noqa: F401 (re-exported: metrics.extract_features)
from synthworth.metrics.extractor import FeatureExtractor, file_sha256
from synthworth.safety import output_lock

ENV_WEIGHTS = "SYNTHWORTH_INCEPTION_WEIGHTS"
ENV_CACHE = "SYNTHWORTH_CACHE"
WEIGHT_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
WEIGHTS_SHA256_PREFIX = "6726825d"  # torch.hub convention: the name ends with the file's SHA-256 prefix
WEIGHTS_URLS = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
)


# ------------------------------------------------------------------------------ Inception
def default_weights_folder() -> Path:
    """Where torch-fidelity and torchmetrics keep downloaded weights (torch.hub's checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception_weights(given: str | os.PathLike | None = None) -> Path | None:
    """The weights file: ``given``, else ${SYNTHWORTH_INCEPTION_WEIGHTS}, else one of the standard
    names in torch.hub's checkpoint folder; None when none exists (``given`` missing is an error)."""
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ConfigError(f"Inception weights file {path} does not exist. {weights_help()}")
        return path
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_WEIGHTS}={env} does not name a file. {weights_help()}")
        return path
    for name in WEIGHT_FILES:
        candidate = default_weights_folder() / name
        if candidate.is_file():
            return candidate
    return None


def weights_help() -> str:
    return (f"Download the standard Inception-v3 FID weights on a machine with a network ({WEIGHTS_URLS[0]} "
            f"or {WEIGHTS_URLS[1]}, about 92 MB) and put the file at {default_weights_folder() / WEIGHT_FILES[0]}, "
            f"or pass --inception-weights FILE, or set {ENV_WEIGHTS}=FILE; without them use --features domain")


class InceptionFeatures(FeatureExtractor):
    """torch-fidelity's Inception-v3 (2048-d pool features), weights from a local file."""

    kind = "inception"

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = find_inception_weights(weights)
        if path is None:
            raise ConfigError(f"Inception-v3 weights not found. {weights_help()}")
        self.path = path
        self.standard = _sha256_prefix(path) == WEIGHTS_SHA256_PREFIX
        try:
            # Tensors only: refuse anything that would need unpickling arbitrary objects. Only then
            # hand the file to torch-fidelity (which reads it again with a full unpickler).
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means: not a plain weights file
            raise ConfigError(f"{path} is not a plain PyTorch weights file ({type(exc).__name__}). "
                              f"{weights_help()}") from exc
        try:
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
        except RuntimeError as exc:  # load_state_dict: missing / unexpected keys or shapes
            raise ConfigError(f"{path} does not hold Inception-v3 FID weights ({str(exc).splitlines()[0]}). "
                              f"{weights_help()}") from exc
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.source = {"path": str(path), "standard": self.standard}
        self.label = ("inception: Inception-v3 pool features (2048-d, standard FID weights"
                      + ("" if self.standard else f"? {path.name} is NOT the standard file") + ")")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x.contiguous())[0]


def _sha256_prefix(path: Path) -> str:
    return file_sha256(path)[: len(WEIGHTS_SHA256_PREFIX)]


# ------------------------------------------------------------------------------ weights keys
def content_sha256(path: str | os.PathLike, names: tuple[str, ...]) -> str:
    """SHA-256 of a weights file, or of the files ``names`` of a model folder (each name with its
    content's hash; a missing one counts as absent): what an extractor reads, not where it lies."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    parts = [(name, file_sha256(path / name) if (path / name).is_file() else None) for name in names]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def weights_key(config) -> str | None:
    """A hash of the contents of the weights that ``config``'s features read (a MetricsConfig or an
    EvalConfig: ``features``, ``inception_weights``, ``dinov2_weights``), for the keys of stored results:
    weights retrained or replaced in place (same path) make the old results stale. None where
    there are none (domain: its extractor is keyed by the real data and its config) or they
    cannot be found now (computing the metrics then fails with the reason)."""
    from synthworth.classifiers.task import CONFIG_FILE, MODEL_FILE

    features, inception_weights, dinov2_weights = config.features, config.inception_weights, config.dinov2_weights
    try:
        if features == "auto":
            features = "inception" if find_inception_weights(inception_weights) else "domain"
        if features == "inception":
            return content_sha256(find_inception_weights(inception_weights), ())
        if features == "dinov2":
            from synthworth.metrics.dinov2 import FILES, resolve_dinov2

            return content_sha256(resolve_dinov2(dinov2_weights, download=False)[0], FILES)
        path = Path(features).expanduser()
        if features != "domain" and path.exists():  # a saved classifier: its folder, or its weights file
            return content_sha256(path.parent if path.is_file() else path, (CONFIG_FILE, MODEL_FILE))
    except (ConfigError, OSError, TypeError):
        return None
    return None


# ------------------------------------------------------------------------------ classifiers
class ClassifierFeatures(FeatureExtractor):
    """The penultimate layer of a synthworth classifier."""

    def __init__(self, model, label: str, kind: str = "domain", device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.kind, self.label = kind, label

    def features(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.features(images.to(device))


def file_features(path: str | os.PathLike, device: str | torch.device = "cpu") -> ClassifierFeatures:
    """Features of a saved synthworth classifier (folder with model.safetensors and config.json)."""
    from synthworth.classifiers.task import load_classifier

    model, meta = load_classifier(path)
    return ClassifierFeatures(model, f"file: penultimate layer of the {meta['model']['name']} classifier in {path} "
                                     "(not comparable with published Inception FIDs)", kind="file", device=device)


def cache_root(given: str | os.PathLike | None = None) -> Path:
    """Where trained domain extractors are kept: ``given``, ${SYNTHWORTH_CACHE} or ~/.cache/synthworth."""
    if given:
        return Path(given)
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "synthworth")


def check_domain_classes(real_train: Dataset) -> None:
    """Domain features come from a classifier of the real classes: one class teaches it nothing."""
    classes = np.unique(real_train.labels[real_train.labels >= 0])
    if len(classes) < 2:
        names = ", ".join(repr(real_train.class_names[c]) for c in classes) or "none"
        raise ConfigError(f"domain features need real images of 2 or more classes to train a classifier on, "
                          f"but the real training images have {len(classes)} (classes: {names}): train a classifier on "
                          "related labelled images (synthworth train classifier --data LABELLED --out RUN) and give "
                          "RUN/model as the features (--features RUN/model, or eval.features=RUN/model while "
                          "training), or give Inception weights (--features inception --inception-weights FILE)")


def domain_features(real_train: Dataset, config, cache_dir: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu") -> ClassifierFeatures:
    """A classifier trained on ``real_train`` (every image, whatever its split name) with
    ``config`` (a ClassifierConfig), kept in the cache under a hash of the data's fingerprint,
    the config and the package version, so it is trained once per real Dataset."""
    from synthworth import __version__
    from synthworth.classifiers.task import load_classifier, train_classifier
    from synthworth.engine import checkpoint as ckpt

    check_domain_classes(real_train)
    payload = {"data": real_train.fingerprint, "config": config.model_dump(mode="json"), "version": __version__}
    key = hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest()
    folder = cache_root(cache_dir) / "domain-features" / key
    model_dir = folder / "run" / "model"
    # Two processes needing the same extractor (two metrics calls, two study shards): the second
    # waits for the first and then loads its model instead of training into the same folder.
    with output_lock(folder, wait=True):
        if not model_dir.is_dir():
            resume = ckpt.latest_checkpoint(folder / "run" / "checkpoints") is not None
            if not resume:
                shutil.rmtree(folder / "run", ignore_errors=True)  # inside the cache's own keyed folder
            (folder / "source.json").write_text(json.dumps(payload, indent=1))
            train_classifier(_all_train(real_train), folder / "run", config, resume=resume)
            shutil.rmtree(folder / "run" / "checkpoints", ignore_errors=True)
    model, meta = load_classifier(model_dir)
    return ClassifierFeatures(model, f"domain: penultimate layer of a {meta['model']['name']} classifier trained "
                                     f"on the real train split ({real_train.fingerprint[:12]}); "
                                     "NOT comparable with published Inception FIDs", device=device)


def _all_train(dataset: Dataset) -> Dataset:
    """The same images with every split named ``train`` (the engine trains on one split)."""
    from dataclasses import replace

    return replace(dataset, splits=np.full(len(dataset), "train"))


FEATURES = ("auto", "inception", "dinov2", "domain")
FEATURES_HELP = ("use auto, inception, dinov2, domain, or the folder of a saved synthworth classifier "
                 "(model.safetensors and config.json, e.g. RUN/model of 'synthworth train classifier')")


def check_features(features: str, key: str) -> None:
    """Refuse, when a config is read (before anything trains), ``features`` that name no extractor:
    a mistyped name (with the closest one) or a path that is not a saved classifier. ``key`` is
    the config key that gave it (``metrics.features``, ``eval.features``)."""
    from synthworth.classifiers.task import CONFIG_FILE, MODEL_FILE
    from synthworth.config import did_you_mean

    if features in FEATURES:
        return
    path = Path(features).expanduser()
    folder = path.parent if path.is_file() and path.name == MODEL_FILE else path
    if not path.exists():
        raise ConfigError(f"key {key!r}: {features!r} is no feature extractor and no such folder exists "
                          f"({FEATURES_HELP}){did_you_mean(features, FEATURES)}")
    if not ((folder / MODEL_FILE).is_file() and (folder / CONFIG_FILE).is_file()):
        raise ConfigError(f"key {key!r}: {path} is not a saved synthworth classifier (it needs {MODEL_FILE} and "
                          f"{CONFIG_FILE}); {FEATURES_HELP}")


def get_extractor(features: str, *, real_train: Dataset | None = None, classifier_config=None,
                  inception_weights: str | None = None, dinov2_weights: str | None = None, cache_dir: str | os.PathLike | None = None,
                  device: str = "cpu") -> FeatureExtractor:
    """``features`` is ``auto`` (Inception when its weights are found, else domain), ``inception``,
    ``dinov2`` (``dinov2_weights``: a hub id or a folder), ``domain`` or the path of a saved classifier."""
    if features == "auto":
        features = "inception" if find_inception_weights(inception_weights) else "domain"
    if features == "inception":
        return InceptionFeatures(inception_weights, device=device)
    if features == "dinov2":
        from synthworth.metrics.dinov2 import Dinov2Features

        return Dinov2Features(dinov2_weights, device=device)
    if features == "domain":
        if real_train is None or classifier_config is None:
            raise SynthworthError("domain features need the real train split and a classifier config")
        return domain_features(real_train, classifier_config, cache_dir, device=device)
    if Path(features).exists():
        return file_features(features, device=device)
    from synthworth.config import did_you_mean

    raise ConfigError(f"--features {features!r}: no feature extractor of that name and no such folder "
                      f"({FEATURES_HELP}){did_you_mean(features, FEATURES)}")
