"""CLIP image and text embeddings (the study's ``clip`` filter, :mod:`synthworth.study.clip_filter`).

The model is a ``transformers`` CLIPModel with its CLIPProcessor (image processor and tokenizer):
images go through the processor's own resize, crop and normalisation, texts through its tokenizer,
and both through the model's projections; every embedding is scaled to unit length, so the dot
product of an image's and a text's is their cosine similarity.

Where the model comes from (:func:`resolve_clip`):

1. a local folder written by ``CLIPModel.save_pretrained`` and ``CLIPProcessor.save_pretrained``
   (config.json, model.safetensors, the image processor's and the tokenizer's files);
2. a hub id (default ``openai/clip-vit-base-patch32``): the local Hugging Face cache first;
   offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable) a model that is not cached is one error
   saying how to fetch it, not a wait for network timeouts.

Only safetensors weights are read (unpickling an untrusted ``.bin`` can run code) and every
weight the model needs must be in them. :func:`clip_identity` names the model without loading
it: its hub id or folder, the SHA-256 of its weights and a fingerprint of every file that
decides an embedding (weights, config, processor, tokenizer), which keys cached embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthworth.errors import ConfigError
from synthworth.metrics.extractor import file_sha256

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
ENV_CLIP = "SYNTHWORTH_CLIP_WEIGHTS"
# Files beside the weights that decide an embedding (those present are fingerprinted).
SIDE_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "tokenizer.json",
              "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json")
HUB_PATTERNS = ["*.json", "*.txt", "*.safetensors"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def download_advice(hub_id: str = DEFAULT_MODEL) -> str:
    return ("on a machine with network run python -c \"from transformers import CLIPModel, CLIPProcessor; "
            f"m = '{hub_id}'; CLIPModel.from_pretrained(m).save_pretrained('DIR'); "
            "CLIPProcessor.from_pretrained(m).save_pretrained('DIR')\", copy DIR here and set clip_model: DIR "
            "in the study spec")


def resolve_clip(given: str | os.PathLike | None = None, *, download: bool = True) -> tuple[Path, str | None]:
    """The local folder of the CLIP model ``given`` names (else ${SYNTHWORTH_CLIP_WEIGHTS}, else the
    default hub id) and its hub id (None for a folder given as such). With ``download`` false a hub
    id missing from the cache is an error even when the Hub could be reached."""
    spec = str(given or os.environ.get(ENV_CLIP) or DEFAULT_MODEL)
    path = Path(spec).expanduser()
    if path.exists():
        check_folder(path)
        return path, None
    if not _HUB_ID.match(spec):
        raise ConfigError(f"CLIP model {spec}: no such folder, and not a Hugging Face hub id (owner/name); "
                          f"{download_advice()}")
    return _from_hub(spec, download), spec


def _from_hub(hub_id: str, download: bool) -> Path:
    from huggingface_hub import try_to_load_from_cache

    from synthworth.generators.text2image import _hub_unreachable, _offline

    cached = try_to_load_from_cache(hub_id, "config.json")
    if isinstance(cached, str):
        folder = Path(cached).parent
        check_folder(folder, hub_id)
        return folder
    missing = f"CLIP model {hub_id} is neither a folder here nor in the local Hugging Face cache"
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
        folder = Path(snapshot_download(hub_id, allow_patterns=HUB_PATTERNS))
    except RepositoryNotFoundError as exc:
        raise ConfigError(f"no model {hub_id} on the Hugging Face Hub (CLIP models: openai/clip-vit-base-patch32, "
                          "openai/clip-vit-large-patch14, ...)") from exc
    except OSError as exc:
        raise ConfigError(f"cannot fetch {hub_id} from the Hugging Face Hub ({_first_line(exc)}): "
                          f"{download_advice(hub_id)}") from exc
    check_folder(folder, hub_id)
    return folder


def weight_files(folder: Path) -> list[Path]:
    """The safetensors weights of a model folder (one file, or the shards its index names)."""
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []
        files = [folder / s for s in shards]
        return files if files and all(f.is_file() for f in files) else []
    return []


def check_folder(folder: Path, hub_id: str | None = None) -> None:
    """Refuse, before loading anything, a folder that is not a CLIP model and processor in safetensors."""
    again = download_advice(hub_id or DEFAULT_MODEL)
    if not folder.is_dir():
        raise ConfigError(f"CLIP model {folder} is a file, not a model folder: {again}")
    config = folder / "config.json"
    if not config.is_file():
        raise ConfigError(f"{folder} is not a Hugging Face model folder (no config.json): {again}")
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise ConfigError(f"{config} is not a valid model config ({_first_line(exc)}): {again}") from None
    if kind != "clip":
        raise ConfigError(f"{folder} holds a {kind or 'unknown'} model, not CLIP (model_type 'clip'): {again}")
    if not weight_files(folder):
        other = [p.name for p in folder.glob("*.bin")]
        why = f" (it has {', '.join(other)}: pickled weights are not read)" if other else ""
        raise ConfigError(f"{folder} has no model.safetensors{why}: {again}")
    if not any((folder / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
        raise ConfigError(f"{folder} has no image processor (preprocessor_config.json or processor_config.json, "
                          f"written by CLIPProcessor.save_pretrained): {again}")
    if not ((folder / "tokenizer.json").is_file() or
            ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())):
        raise ConfigError(f"{folder} has no tokenizer (tokenizer.json, or vocab.json and merges.txt, written by "
                          f"CLIPProcessor.save_pretrained): {again}")


def clip_identity(folder: Path, hub_id: str | None) -> dict[str, Any]:
    """What names the model in records and keys (without loading it): its name, hub id, folder, the
    SHA-256 of its weights and ``fingerprint``, a hash of every file that decides an embedding."""
    weights = weight_files(folder)
    hashes = {f.name: file_sha256(f) for f in weights}
    hashes.update({name: file_sha256(folder / name) for name in SIDE_FILES if (folder / name).is_file()})
    fingerprint = hashlib.blake2b(json.dumps(hashes, sort_keys=True).encode(), digest_size=16).hexdigest()
    sha256 = hashes[weights[0].name] if len(weights) == 1 else hashlib.sha256(
        "".join(hashes[f.name] for f in weights).encode()).hexdigest()
    return {"model": hub_id or str(folder), "hub_id": hub_id, "path": str(folder), "sha256": sha256,
            "fingerprint": fingerprint}


@contextmanager
def _quiet():
    """transformers' progress bars and warnings off while loading: a model that does not fit is
    reported as one error, not as its table of missing weights."""
    from transformers.utils import logging as hf_logging

    progress, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress:
            hf_logging.enable_progress_bar()


def _pooled(out: Any) -> torch.Tensor:
    """The projected embeddings of ``get_*_features`` (a tensor in transformers 4, the output's
    ``pooler_output`` in 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipEmbedder:
    """Unit-length CLIP embeddings of images and texts."""

    def __init__(self, folder: Path, hub_id: str | None = None, device: str | torch.device | None = None):
        from transformers import CLIPModel, CLIPProcessor

        again = download_advice(hub_id or DEFAULT_MODEL)
        self.identity = clip_identity(folder, hub_id)
        try:
            with _quiet():
                model, info = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                        output_loading_info=True)
                self.processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways; all mean: get it again
            raise ConfigError(f"cannot read the CLIP model in {folder} ({type(exc).__name__}: "
                              f"{_first_line(exc)}); the copy may be incomplete: {again}") from None
        if info.get("missing_keys") or info.get("mismatched_keys"):
            names = sorted(map(str, info.get("missing_keys") or info.get("mismatched_keys")))
            raise ConfigError(f"the weights in {folder} lack what the CLIP model needs ({len(names)}, e.g. "
                              f"{names[0]}): {again}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        cfg = model.config
        self.identity["architecture"] = {"projection_dim": cfg.projection_dim,
                                         "vision_layers": cfg.vision_config.num_hidden_layers,
                                         "patch_size": cfg.vision_config.patch_size,
                                         "image_size": cfg.vision_config.image_size}

    @torch.no_grad()
    def images(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(n, d) float32 embeddings of uint8 images (n, H, W, C); grayscale is given as three
        equal channels."""
        out = []
        for start in range(0, len(pixels), batch_size):
            chunk = pixels[start:start + batch_size]
            if chunk.shape[-1] == 1:
                chunk = np.repeat(chunk, 3, axis=-1)
            inputs = self.processor.image_processor(images=list(chunk), return_tensors="pt",
                                                    input_data_format="channels_last")
            x = inputs["pixel_values"].to(self.device, self.model.dtype)
            out.append(_unit(_pooled(self.model.get_image_features(pixel_values=x))))
        d = self.model.config.projection_dim
        return np.concatenate(out) if out else np.zeros((0, d), np.float32)

    @torch.no_grad()
    def texts(self, texts: list[str]) -> np.ndarray:
        """(n, d) float32 embeddings of texts (cut at the tokenizer's longest input)."""
        tokens = self.processor.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _unit(_pooled(self.model.get_text_features(**tokens)))


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
