"""Tiny randomly initialised pretrained-looking backbones, saved the way a user's weights come:
a torchvision state dict as safetensors, and transformers encoders as save_pretrained folders.
Loaded by the tests by path (tests/ has no packages): ``_load`` in each test module."""

from __future__ import annotations

from pathlib import Path

import torch

ENCODER = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
           "patch_size": 8, "image_size": 32}


def resnet_file(path: Path, name: str = "resnet18", seed: int = 0) -> Path:
    """A torchvision ``name`` with random weights (ImageNet's 1000 classes), its state dict as safetensors."""
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = torchvision.models.get_model(name, weights=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def dinov2_folder(path: Path, processor: bool = True, seed: int = 0) -> Path:
    """A one-layer, 16-wide Dinov2Model (patch 8) and, unless ``processor`` is false, an image
    processor that resizes to 32 px (as DINOv2's do to 224)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    Dinov2Model(Dinov2Config(**ENCODER)).save_pretrained(path)
    if processor:
        BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                          image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(path)
    return path


def clip_folder(path: Path, seed: int = 0) -> Path:
    """A one-layer, 16-wide CLIPVisionModel (32 px, patch 8), without an image processor."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    CLIPVisionModel(CLIPVisionConfig(**ENCODER)).save_pretrained(path)
    return path
