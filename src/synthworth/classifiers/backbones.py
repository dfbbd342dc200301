"""Classifiers on pretrained backbones: the network ``model.name`` given the weights
``model.weights`` (see :mod:`synthworth.classifiers.weights` for where they come from) and the
input handling that goes with them.

- torchvision models: the network is built as for training from scratch (a fresh last layer to
  the Dataset's classes) and every other weight is loaded from the weights; a weight missing or
  left over, or of another shape, is an error, never a silently random layer;
- ``dinov2`` and ``clip``: a transformers image encoder (``Dinov2Model``, ``CLIPVisionModel``)
  followed by a linear layer on its pooled output (``pooler_output``: the layer-normed CLS
  token of both), :class:`EncoderNet`.

The input pipeline follows the weights (:class:`Preprocess`): torchvision's named weights give
their ``transforms()`` (crop size, mean, std, interpolation), a transformers folder its image
processor (``preprocessor_config.json``; without one, the defaults of its model family). Both
resize and then centre-crop large photographs; the images here are small (16 to 64 px), so
they are resized straight to the crop size instead, which keeps their borders (the choice
:mod:`synthworth.metrics.dinov2` makes for the same reason). A local safetensors file carries
no preprocessing: ``model.resolution`` and ``model.normalize`` apply, as for training from
scratch.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from synthworth.classifiers.models import SMALL_CNN, Classifier, _last_linear, build_classifier, build_net, normalization
from synthworth.classifiers.weights import (
    ENCODERS,
    Weights,
    read_file_state,
    read_torchvision_state,
    resolve_weights,
    torchvision_enum,
)
from synthworth.errors import ConfigError

# Image statistics of the transformers families, for a folder without preprocessor_config.json:
# DINOv2 was trained on ImageNet-normalised inputs, CLIP on its own (OpenAI's) statistics.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "bicubic"}  # lanczos: bicubic, the closest torch has
# Old torchvision DenseNet files name layers 'norm.1' where the modules are now 'norm1'.
_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
_AUX = {"inception_v3": ("AuxLogits.",), "googlenet": ("aux1.", "aux2.")}  # auxiliary heads built without here


@dataclass(frozen=True)
class Preprocess:
    """What images become before the network: resized to ``size`` (``interpolation``) and
    normalised with ``mean`` / ``std`` after scaling to [0, 1]; ``source`` says where it came from."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    source: str

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}


class EncoderNet(nn.Module):
    """A transformers image encoder and a linear layer on its pooled output."""

    def __init__(self, encoder: nn.Module, num_classes: int, interpolate: bool = False):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)
        # CLIP's position embeddings are for one input side; another one needs them interpolated.
        self.options = {"interpolate_pos_encoding": True} if interpolate else {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(pixel_values=x, **self.options).pooler_output)


# ------------------------------------------------------------------------------ building
def build_model(m, num_classes: int, channels: int, data_resolution: int) -> Classifier:
    """The classifier ``m`` (a ClassifierModelConfig) describes for ``num_classes`` classes of
    ``channels``-channel images at ``data_resolution``: untrained without weights, else with
    every weight but the last layer's from ``m.weights``."""
    if m.weights is None:
        if m.name in ENCODERS:
            raise ConfigError(f"model.name {m.name} is a pretrained encoder: give its weights (model.weights: a "
                              "save_pretrained folder or a hub id)")
        return build_classifier(m.name, num_classes, channels, m.resolution or data_resolution,
                                normalize=m.normalize, width=m.width, dropout=m.dropout)
    weights = resolve_weights(m.weights, m.name)
    if m.name in ENCODERS:
        encoder = _load_encoder(weights, m.name)
        pre = encoder_preprocess(weights, m.name, encoder.config)
        net, net_channels = EncoderNet(encoder, num_classes, _needs_interpolation(m.name, encoder.config, pre)), 3
        extra = {"encoder_config": encoder.config.to_dict()}
    else:
        net_channels = channels if m.name == SMALL_CNN else 3
        pre = torchvision_preprocess(weights) if weights.kind == "torchvision" else file_preprocess(m, net_channels,
                                                                                                     data_resolution)
        net, _ = build_net(m.name, num_classes, channels, pre.size, width=m.width, dropout=m.dropout, pretrained=True)
        state = read_torchvision_state(weights) if weights.kind == "torchvision" else read_file_state(weights)
        load_backbone_state(net, state, m.name, weights)
        extra = {}
    backbone = {**weights.record(), "preprocess": pre.record(), **extra}
    return Classifier(net, name=m.name, num_classes=num_classes, channels=channels, resolution=pre.size,
                      net_channels=net_channels, mean=pre.mean, std=pre.std, interpolation=pre.interpolation,
                      backbone=backbone)


def rebuild_model(meta: dict[str, Any]) -> Classifier:
    """The architecture of a classifier saved with its ``config.json`` (``meta``), weights not
    loaded: pretrained ones need neither their weights file nor the network to rebuild it."""
    m, backbone = meta["model"], meta.get("backbone")
    num_classes, channels = len(meta["class_names"]), meta["channels"]
    if not backbone:
        return build_classifier(m["name"], num_classes, channels, meta["resolution"],
                                normalize=m.get("normalize", "imagenet"), width=m.get("width", 32),
                                dropout=m.get("dropout", 0.0))
    pre = Preprocess(**{**backbone["preprocess"], "mean": tuple(backbone["preprocess"]["mean"]),
                        "std": tuple(backbone["preprocess"]["std"])})
    if m["name"] in ENCODERS:
        config_class = _encoder_class(m["name"]).config_class
        encoder = _encoder_class(m["name"])(config_class.from_dict(backbone["encoder_config"]))
        net, net_channels = EncoderNet(encoder, num_classes, _needs_interpolation(m["name"], encoder.config, pre)), 3
    else:
        net, net_channels = build_net(m["name"], num_classes, channels, pre.size, width=m.get("width", 32),
                                      dropout=m.get("dropout", 0.0), pretrained=True)
    return Classifier(net, name=m["name"], num_classes=num_classes, channels=channels, resolution=pre.size,
                      net_channels=net_channels, mean=pre.mean, std=pre.std, interpolation=pre.interpolation,
                      backbone=backbone)


def load_backbone_state(net: nn.Module, state: dict[str, torch.Tensor], name: str, weights: Weights) -> None:
    """Load every weight of ``net`` but its last linear layer (kept fresh, for this Dataset's
    classes) from ``state``; anything missing, left over or misshapen is one error."""
    head = _last_linear(net)
    if head is None:
        raise ConfigError(f"model.name {name} ends in no linear layer, so it cannot get a fresh last layer for "
                          "these classes from pretrained weights; choose another model")
    if name.startswith("densenet"):
        state = {(_DENSENET_KEY.sub(r"\1\2", k)): v for k, v in state.items()}
    own = net.state_dict()
    ours = {k for k in own if k.startswith(head + ".")}
    aux = _AUX.get(name, ())  # startswith(()) is False
    state = {k: v for k, v in state.items() if not k.startswith(head + ".") and not (k not in own and k.startswith(aux))}
    # Files written before batch norm counted its batches lack the counters: not weights.
    missing = sorted(k for k in set(own) - set(state) - ours if not k.endswith("num_batches_tracked"))
    extra = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(state) & set(own) if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or extra or shapes:
        parts = [f"{len(missing)} of its weights missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(extra)} not its own (e.g. {extra[0]})"] if extra else []
        parts += [f"{len(shapes)} of another shape (e.g. {shapes[0]}: {tuple(state[shapes[0]].shape)}, not "
                  f"{tuple(own[shapes[0]].shape)})"] if shapes else []
        raise ConfigError(f"model.weights {weights.given} do not fit {name} ({'; '.join(parts)}): give weights "
                          f"of this very network (model.name {name})")
    net.load_state_dict({**own, **state})


# ------------------------------------------------------------------------------ preprocessing
def torchvision_preprocess(weights: Weights) -> Preprocess:
    t = torchvision_enum(weights).transforms()
    return Preprocess(size=int(t.crop_size[0]), mean=tuple(float(v) for v in t.mean),
                      std=tuple(float(v) for v in t.std), interpolation=t.interpolation.value,
                      source=f"torchvision's {weights.torchvision}.transforms() (resized straight to its crop size)")


def file_preprocess(m, net_channels: int, data_resolution: int) -> Preprocess:
    mean, std = normalization(m.normalize, net_channels)
    return Preprocess(size=m.resolution or data_resolution, mean=mean, std=std, interpolation="bilinear",
                      source="model.resolution and model.normalize (a weights file carries no preprocessing)")


def encoder_preprocess(weights: Weights, name: str, config) -> Preprocess:
    """The image processor's size, mean, std and resampling; the family's defaults without one."""
    file = weights.path / "preprocessor_config.json"
    if not file.is_file():
        mean, std = IMAGENET if name == "dinov2" else OPENAI_CLIP
        size = 224 if name == "dinov2" else int(config.image_size)  # DINOv2's processors crop to 224
        return Preprocess(size=size, mean=mean, std=std, interpolation="bicubic",
                          source=f"the {name} defaults (the folder has no preprocessor_config.json)")
    from transformers import AutoImageProcessor

    try:
        p = AutoImageProcessor.from_pretrained(weights.path, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"model.weights {weights.given}: its preprocessor_config.json cannot be read "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    crop = getattr(p, "crop_size", None) if getattr(p, "do_center_crop", False) else None
    box = crop or p.size
    size = _side(box)
    if size is None:
        raise ConfigError(f"model.weights {weights.given}: its preprocessor_config.json gives no image size")
    resample = getattr(p, "resample", 3)
    return Preprocess(size=size, mean=tuple(float(v) for v in p.image_mean), std=tuple(float(v) for v in p.image_std),
                      interpolation=_PIL_RESAMPLE.get(int(resample) if resample is not None else 3, "bicubic"),
                      source="the folder's preprocessor_config.json (resized straight to its "
                             + ("crop size)" if crop else "size)"))


def _side(box) -> int | None:
    for key in ("height", "shortest_edge"):
        value = getattr(box, key, None) if not isinstance(box, dict) else box.get(key)
        if value:
            return int(value)
    return None


def _needs_interpolation(name: str, config, pre: Preprocess) -> bool:
    return name == "clip" and int(config.image_size) != pre.size


# ------------------------------------------------------------------------------ transformers
def _encoder_class(name: str):
    from transformers import CLIPVisionModel, Dinov2Model

    return {"dinov2": Dinov2Model, "clip": CLIPVisionModel}[name]


def _load_encoder(weights: Weights, name: str) -> nn.Module:
    """The encoder's weights from safetensors only; one that lacks any of them is refused."""
    from transformers.utils import logging as hf_logging

    # Quiet while loading: a model that does not fit is reported below as one error, not as
    # transformers' table of missing weights.
    progress, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        model, info = _encoder_class(name).from_pretrained(weights.path, local_files_only=True, use_safetensors=True,
                                                           output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - a damaged folder fails in many ways; all mean: get it again
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"model.weights {weights.given}: cannot read the {name} model in {weights.path} "
                          f"({type(exc).__name__}: {text}); the download may be incomplete") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress:
            hf_logging.enable_progress_bar()
    lacking = sorted(info.get("missing_keys") or []) or sorted(info.get("mismatched_keys") or [])
    if lacking:
        raise ConfigError(f"model.weights {weights.given}: {weights.path}/model.safetensors lacks weights the {name} "
                          f"model needs ({len(lacking)}, e.g. {lacking[0]})")
    return model.eval()
