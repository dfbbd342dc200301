"""Image classifiers: any torchvision classification model trained from scratch, or a small CNN.

A :class:`Classifier` wraps the network together with its input handling, so the same module
takes raw uint8 batches (N, C, H, W) in training, evaluation and feature extraction:

- scale to [0, 1], resize to the network's side when the batch has another one (bilinear,
  antialiased), repeat a grayscale channel three times for torchvision models (whose first
  convolution expects RGB), and normalise (ImageNet mean/std, as the source study did);
- :meth:`Classifier.features` returns the input of the last linear layer: the penultimate
  representation used by the domain feature extractor of :mod:`synthworth.metrics`.

The torchvision models are built with ``weights=None`` and ``num_classes`` set, which gives
the same network as the source study's "take ResNet-34 and replace ``fc`` by a fresh
``nn.Linear(in_features, num_classes)``", for every classification model torchvision has.
Pretrained weights are loaded into these networks by :mod:`synthworth.classifiers.backbones`,
which also sets the input handling (side, mean, std, interpolation) the weights came with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthworth.errors import ConfigError

SMALL_CNN = "small_cnn"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Models whose torchvision builders add auxiliary classifiers by default; a classifier trained
# from scratch here has one output, so they are switched off.
_NO_AUX = {"inception_v3": {"aux_logits": False, "init_weights": True},
           "googlenet": {"aux_logits": False, "init_weights": True}}
# Smallest input side some torchvision models accept (fixed-size stems or attention windows).
_MIN_SIDE = {"inception_v3": 75, "alexnet": 63, "swin_t": 32, "swin_s": 32, "swin_b": 32}


def torchvision_names() -> list[str]:
    """Names of torchvision's classification models."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


class SmallCNN(nn.Module):
    """Two conv-conv-pool blocks, global average pooling and a linear layer, for 8 to 32 px.

    Few enough operations that a few hundred 16x16 images train for tens of epochs in seconds
    on a CPU; batch norm makes it train well at a high learning rate without tuning.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 32, dropout: float = 0.0):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                    nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2)]

        self.body = nn.Sequential(*block(channels, width), *block(width, 2 * width),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def _last_linear(net: nn.Module) -> str | None:
    """Qualified name of the last ``nn.Linear`` registered in ``net`` (its classification layer)."""
    found = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            found = name
    return found


def normalization(normalize: str, net_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of ``normalize`` (``imagenet`` or ``none``) for a network of ``net_channels``."""
    if normalize == "imagenet":
        if net_channels == 1:  # one grey channel: the ImageNet statistics averaged over RGB
            return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.0,) * net_channels, (1.0,) * net_channels


class Classifier(nn.Module):
    """A network plus its input handling; ``forward`` takes uint8 (or [0, 255] float) NCHW.

    ``mean`` / ``std``: per channel of the network's input after scaling to [0, 1];
    ``interpolation``: how images of another side are resized (``bilinear`` or ``bicubic``, with
    antialiasing, as PIL resizes); ``backbone``: for pretrained weights, where they came from and
    what the network needs to be built again (see :mod:`synthworth.classifiers.backbones`)."""

    def __init__(self, net: nn.Module, *, name: str, num_classes: int, channels: int, resolution: int,
                 net_channels: int, mean: tuple[float, ...], std: tuple[float, ...],
                 interpolation: str = "bilinear", backbone: dict | None = None):
        super().__init__()
        self.net = net
        self.name, self.num_classes, self.channels = name, num_classes, channels
        self.resolution, self.net_channels, self.interpolation = resolution, net_channels, interpolation
        self.backbone = backbone
        # Not persistent: they follow from the config, so the weights file holds only weights.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.head_name = _last_linear(net)  # a name, not a module: the weights stay registered once

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the normalised float batch the network sees."""
        x = images.float().div(255.0)
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode=self.interpolation,
                              align_corners=False, antialias=True)
            if self.interpolation == "bicubic":  # bicubic overshoots; PIL clips to the pixel range too
                x = x.clamp(0.0, 1.0)
        if x.shape[1] != self.net_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.net_channels, -1, -1)
            elif self.net_channels == 1:
                # ITU-R BT.601 luma, what PIL's convert("L") uses.
                weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
                x = (x * weights).sum(1, keepdim=True)
            else:
                raise ValueError(f"cannot feed {x.shape[1]}-channel images to a {self.net_channels}-channel network")
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare_input(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The input of the last linear layer (the penultimate representation), (N, D)."""
        if self.head_name is None:
            raise ConfigError(f"model {self.name!r} has no final linear layer to take features from")
        captured: list[torch.Tensor] = []
        head = self.net.get_submodule(self.head_name)
        handle = head.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        try:
            self.net(self.prepare_input(images))
        finally:
            handle.remove()
        return captured[-1].flatten(1)


def build_classifier(name: str, num_classes: int, channels: int, resolution: int, *,
                     normalize: str = "imagenet", width: int = 32, dropout: float = 0.0) -> Classifier:
    """A classifier for ``num_classes`` classes of ``channels``-channel images at ``resolution``.

    ``name`` is ``small_cnn`` or any torchvision classification model (``resnet34``,
    ``efficientnet_b0``, ``vit_b_16``, ...), built untrained with a fresh last layer to
    ``num_classes`` outputs. ``width`` and ``dropout`` apply to the small CNN only. (Pretrained
    weights: :func:`synthworth.classifiers.backbones.build_model`.)
    """
    net, net_channels = build_net(name, num_classes, channels, resolution, width=width, dropout=dropout)
    mean, std = normalization(normalize, net_channels)
    return Classifier(net, name=name, num_classes=num_classes, channels=channels, resolution=resolution,
                      net_channels=net_channels, mean=mean, std=std)


def build_net(name: str, num_classes: int, channels: int, resolution: int, *, width: int = 32,
              dropout: float = 0.0, pretrained: bool = False) -> tuple[nn.Module, int]:
    """The untrained network ``name`` for ``num_classes`` outputs and the channels it takes.
    ``pretrained``: it will get pretrained weights (Inception-v3 and GoogLeNet then take
    ImageNet-normalised inputs through their ``transform_input``, as torchvision builds them)."""
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    if name == SMALL_CNN:
        return SmallCNN(channels, num_classes, width=width, dropout=dropout), channels
    import torchvision

    known = torchvision_names()
    if name not in known:
        close = [k for k in known if k.startswith(name[:3])] or known[:8]
        raise ConfigError(f"unknown classifier model {name!r}: use {SMALL_CNN!r}, a torchvision "
                          f"classification model (e.g. {', '.join(close[:8])}) or, with pretrained weights, "
                          "dinov2 or clip")
    side = _MIN_SIDE.get(name)
    if side and resolution < side:
        raise ConfigError(f"{name} needs inputs of at least {side}x{side}; set model.resolution={side} "
                          f"or larger (images are resized on the fly)")
    options = dict(_NO_AUX.get(name, {}))
    if pretrained and name in _NO_AUX:
        options["transform_input"] = True
    # Vision transformers are built for one input side: build them for ours.
    if name.startswith("vit_"):
        options["image_size"] = resolution
    elif name == "maxvit_t":
        options["input_size"] = (resolution, resolution)
    try:
        net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    except (ValueError, AssertionError) as exc:
        raise ConfigError(f"{name} cannot be built for {resolution}x{resolution} inputs ({exc}); "
                          "set model.resolution to a size it accepts") from exc
    return net, 3
