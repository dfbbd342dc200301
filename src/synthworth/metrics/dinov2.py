"""DINOv2 features for the image-quality metrics (``--features dinov2``).

Stein et al. (2023, "Exposing flaws of generative model evaluation metrics and their unfair
treatment of diffusion models") found that Fréchet distances on DINOv2 ViT-L/14 features agree
with human judgement far better than FID on Inception-v3, and recommend them (FD_DINOv2). Their
reference code (dgm-eval) feeds the ViT-L/14 weights images resized to 224 x 224 (bicubic),
scaled to [0, 1] and normalised with the ImageNet mean and std, and takes the model's output: the
layer-normed CLS token. Here the same weights come through ``transformers`` (``Dinov2Model``,
whose ``pooler_output`` is that token) and the same preprocessing is done in torch (bicubic with
antialiasing, as PIL's resize is), so the numbers match dgm-eval's up to the resize's rounding.
Not ``AutoImageProcessor``: the Hub's processor config resizes to 256 and crops the centre,
which cuts off image borders that dgm-eval keeps.

Where the model comes from (:func:`resolve_dinov2`):

1. a local folder (``config.json`` + ``model.safetensors``, as ``save_pretrained`` or
   ``hf download ID config.json model.safetensors --local-dir DIR`` write it);
2. a hub id (default ``facebook/dinov2-large``, the ViT-L/14 of Stein et al.): the local Hugging
   Face cache first; offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable) a model that is not
   cached is one error naming the download command, not a wait for network timeouts.

Only safetensors weights are read (unpickling an untrusted ``.bin`` can run code), every weight
the model needs must be in the file (no silently random layers), and the file's SHA-256 is
recorded with the results; the hash of the model's files keys the study's stored metrics.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from synthworth.errors import ConfigError
from synthworth.metrics.extractor import FeatureExtractor, file_sha256

DEFAULT_MODEL = "facebook/dinov2-large"  # ViT-L/14, the encoder of Stein et al. 2023 (dgm-eval's default)
# The Hub's SHA-256 of facebook/dinov2-large's model.safetensors (its LFS details).
STANDARD_SHA256 = {"facebook/dinov2-large": "399fba97a95f22c36834418bc69373364a99af3a1153da1c0fb31db567c92e23"}
ENV_DINOV2 = "SYNTHWORTH_DINOV2_WEIGHTS"
FILES = ("config.json", "model.safetensors")
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def download_advice(hub_id: str = DEFAULT_MODEL) -> str:
    return (f"on a machine with network run 'hf download {hub_id} {' '.join(FILES)} --local-dir DIR' "
            "and pass --dinov2-weights DIR (or dinov2_weights: DIR in a study's metrics)")


def resolve_dinov2(given: str | os.PathLike | None = None, *, download: bool = True) -> tuple[Path, str | None]:
    """The local folder of the DINOv2 model ``given`` names (else ${SYNTHWORTH_DINOV2_WEIGHTS}, else
    the default hub id) and its hub id (None for a folder given as such). With ``download`` false a
    hub id missing from the cache is an error even when the Hub could be reached."""
    spec = str(given or os.environ.get(ENV_DINOV2) or DEFAULT_MODEL)
    path = Path(spec).expanduser()
    if path.exists():
        check_folder(path)
        return path, None
    if not _HUB_ID.match(spec):
        raise ConfigError(f"DINOv2 model {spec}: no such folder, and not a Hugging Face hub id (owner/name); "
                          f"{download_advice()}")
    return _from_hub(spec, download), spec


def _from_hub(hub_id: str, download: bool) -> Path:
    from huggingface_hub import try_to_load_from_cache

    from synthworth.generators.text2image import _hub_unreachable, _offline

    cached = [try_to_load_from_cache(hub_id, name) for name in FILES]
    if all(isinstance(c, str) for c in cached):
        folder = Path(cached[1]).parent
        check_folder(folder, hub_id)
        return folder
    missing = f"DINOv2 model {hub_id} is neither a folder here nor in the local Hugging Face cache"
    if not download:
        raise ConfigError(f"{missing}: {download_advice(hub_id)}")
    if _offline():
        raise ConfigError(f"{missing} and HF_HUB_OFFLINE is set: {download_advice(hub_id)} "
                          "(or unset HF_HUB_OFFLINE to download it now)")
    host = _hub_unreachable()
    if host:
        raise ConfigError(f"{missing} and {host} cannot be reached: {download_advice(hub_id)}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(hub_id, allow_patterns=list(FILES)))
    except RepositoryNotFoundError as exc:
        raise ConfigError(f"no model {hub_id} on the Hugging Face Hub (DINOv2 models: facebook/dinov2-small, "
                          f"-base, -large, -giant)") from exc
    except OSError as exc:
        raise ConfigError(f"cannot fetch {hub_id} from the Hugging Face Hub ({_first_line(exc)}): "
                          f"{download_advice(hub_id)}") from exc
    check_folder(folder, hub_id)
    return folder


def check_folder(folder: Path, hub_id: str | None = None) -> None:
    """Refuse, before loading anything, a folder that is not a DINOv2 model in safetensors."""
    again = download_advice(hub_id or DEFAULT_MODEL)
    if not folder.is_dir():
        raise ConfigError(f"DINOv2 model {folder} is a file, not a model folder: {again}")
    config = folder / "config.json"
    if not config.is_file():
        raise ConfigError(f"{folder} is not a Hugging Face model folder (no config.json): {again}")
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
        kind = settings.get("model_type")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise ConfigError(f"{config} is not a valid model config ({_first_line(exc)}): {again}") from None
    if kind != "dinov2":
        raise ConfigError(f"{folder} holds a {kind or 'unknown'} model, not DINOv2 (model_type 'dinov2'): {again}")
    _check_shape(settings, folder, again)
    if not (folder / "model.safetensors").is_file():
        other = [p.name for p in folder.glob("*.bin")]
        why = f" (it has {', '.join(other)}: pickled weights are not read)" if other else ""
        raise ConfigError(f"{folder} has no model.safetensors{why}: {again}")


def _check_shape(settings: dict[str, Any], folder: Path, again: str) -> None:
    """Refuse a DINOv2 whose input the images cannot be: they reach it as 3 channels (grayscale
    repeated) at INPUT_SIZE px, which its first convolution would fail on with a traceback."""
    channels, patch = settings.get("num_channels", 3), settings.get("patch_size", 14)
    if channels != 3:
        raise ConfigError(f"{folder} holds a DINOv2 model for {channels}-channel images (num_channels in its "
                          f"config.json); the metrics give it RGB images (grayscale as three equal channels), so "
                          f"they need a model with num_channels 3, as every released DINOv2 has: {again}")
    sides = patch if isinstance(patch, list) and len(patch) == 2 else [patch]  # transformers takes both
    if not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= INPUT_SIZE for p in sides):
        raise ConfigError(f"{folder} holds a DINOv2 model with patch_size {patch!r} (its config.json); the images "
                          f"reach it at {INPUT_SIZE} x {INPUT_SIZE} px, so the patch size must be a whole number "
                          f"from 1 to {INPUT_SIZE} (released DINOv2 models use 14): {again}")


def weights_sha256(folder: Path) -> str:
    """SHA-256 of the folder's model.safetensors (as the Hub lists it: compared with STANDARD_SHA256)."""
    return file_sha256(folder / "model.safetensors")


class Dinov2Features(FeatureExtractor):
    """DINOv2's layer-normed CLS token (``pooler_output``) of images resized to 224 x 224."""

    kind = "dinov2"

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        from transformers import Dinov2Model
        from transformers.utils import logging as hf_logging

        folder, hub_id = resolve_dinov2(weights)
        again = download_advice(hub_id or DEFAULT_MODEL)
        sha256 = weights_sha256(folder)
        # Quiet while loading: a model that does not fit is reported below as one error, not as
        # transformers' table of missing weights.
        progress, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        try:
            model, info = Dinov2Model.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                      output_loading_info=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways; all mean: get it again
            raise ConfigError(f"cannot read the DINOv2 model in {folder} ({type(exc).__name__}: "
                              f"{_first_line(exc)}); the download may be incomplete: {again}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if progress:
                hf_logging.enable_progress_bar()
        if info.get("missing_keys") or info.get("mismatched_keys"):
            names = sorted(info.get("missing_keys") or info.get("mismatched_keys"))
            raise ConfigError(f"{folder}/model.safetensors lacks weights the DINOv2 model needs "
                              f"({len(names)}, e.g. {names[0]}): {again}")
        self.device = torch.device(device)
        self.net = model.to(self.device).eval()
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        cfg = model.config
        standard = hub_id is not None and STANDARD_SHA256.get(hub_id) == sha256
        name = hub_id or str(folder)
        self.source: dict[str, Any] = {
            "model": name, "hub_id": hub_id, "path": str(folder), "sha256": sha256, "standard": standard,
            "input_size": INPUT_SIZE, "feature": "pooler_output (layer-normed CLS token)",
            "architecture": {"hidden_size": cfg.hidden_size, "layers": cfg.num_hidden_layers,
                             "patch_size": cfg.patch_size}}
        self.label = (f"dinov2: DINOv2 CLS-token features ({cfg.hidden_size}-d, {cfg.num_hidden_layers} layers, "
                      f"patch {cfg.patch_size}; {name}, sha256 {sha256[:12]}"
                      + (", the standard weights" if standard else "") + f", images at {INPUT_SIZE} px); "
                      "'fid' is FD_DINOv2 (Stein et al. 2023)")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32) / 255.0
        if x.shape[1] == 1:  # grayscale: the same value in the three channels, as for Inception
            x = x.expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic",
                                            align_corners=False, antialias=True).clamp_(0.0, 1.0)
        return self.net(pixel_values=(x - self.mean) / self.std).pooler_output


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
