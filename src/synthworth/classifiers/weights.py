"""Where a classifier's pretrained weights come from (``model.weights``), checked before anything
is built, and read without unpickling anything a user handed in.

A ``weights`` value is one of:

- a local ``.safetensors`` file: the state dict of the network ``model.name`` builds (the keys of
  ``torchvision.models.get_model(name).state_dict()``, or of a saved synthworth classifier's
  ``model.safetensors``, whose ``net.`` prefix is taken off). A pickled file (``.pt``, ``.pth``,
  ``.bin``, ``.ckpt``, ``.pkl``) is refused: unpickling can run code; the error gives the
  one-line conversion to safetensors;
- torchvision's named weights of that model, ``ResNet18_Weights.IMAGENET1K_V1`` (or the member
  alone, ``IMAGENET1K_V1``, ``DEFAULT``): read from torch.hub's cache
  (``$TORCH_HOME/hub/checkpoints``), where torchvision itself keeps them. Nothing is downloaded
  here; a missing file is one error with the command that fetches it. torchvision publishes these
  weights only as pickles: the file must carry the SHA-256 prefix its published name ends with
  (the file torchvision released, byte for byte) and is read with ``torch.load(weights_only=True)``,
  PyTorch's loader that builds tensors and plain containers only;
- for the transformers encoders (``model.name`` ``dinov2`` or ``clip``), a folder as
  ``save_pretrained`` writes it (``config.json`` + ``model.safetensors``, and the image
  processor's ``preprocessor_config.json`` when there is one), or a Hugging Face hub id
  (``facebook/dinov2-small``): the local Hugging Face cache first, downloaded only when the Hub
  can be reached and ``HF_HUB_OFFLINE`` is not set; otherwise one error naming the
  ``hf download`` command.

Every :class:`Weights` carries the SHA-256 of what it reads, which keys stored results (replaced
weights make them stale) and is recorded beside them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthworth.classifiers.extract import file_sha256
from synthworth.errors import ConfigError

# transformers image encoders a classifier can use: model.name -> the model_type values of their folders.
ENCODERS = {"dinov2": ("dinov2",), "clip": ("clip_vision_model", "clip")}
HUB_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
PICKLED = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TORCHVISION_NAME = re.compile(r"^(\w+_Weights\.)?[A-Z][A-Z0-9_]*$")  # ResNet18_Weights.IMAGENET1K_V1, DEFAULT
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's convention: NAME-<sha256 prefix>.pth


@dataclass(frozen=True)
class Weights:
    """Resolved pretrained weights: what was given, their kind (``torchvision``, ``file`` or
    ``transformers``), the local file or folder, and the SHA-256 of its contents."""

    given: str
    kind: str
    path: Path
    sha256: str
    hub_id: str | None = None
    torchvision: str | None = None  # the enum's full name, e.g. ResNet18_Weights.IMAGENET1K_V1

    def record(self) -> dict[str, Any]:
        """What results keep of them (JSON-ready)."""
        return {"weights": self.given, "kind": self.kind, "path": str(self.path), "sha256": self.sha256,
                "hub_id": self.hub_id, "torchvision": self.torchvision}


def resolve_weights(given: str, name: str) -> Weights:
    """The weights ``given`` names for the network ``name``; any problem is one ConfigError line."""
    if name in ENCODERS:
        return _transformers_weights(given, name)
    path = Path(given).expanduser()
    if path.is_dir():
        kind = _model_type(path)
        hint = (f"it holds a transformers {kind} model: set model.name to "
                + " or ".join(n for n, types in ENCODERS.items() if kind in types)
                if any(kind in types for types in ENCODERS.values()) else
                "give the .safetensors file of the network's state dict")
        raise ConfigError(f"model.weights {given}: a folder, not a weights file for {name} ({hint})")
    if path.is_file():
        return _file_weights(path, given)
    if _TORCHVISION_NAME.match(given):
        return _torchvision_weights(given, name)
    if _HUB_ID.match(given) and not path.suffix:
        raise ConfigError(f"model.weights {given}: a hub id names a transformers model, but model.name is {name!r}: "
                          f"set model.name to one of {', '.join(ENCODERS)} (or give weights for {name})")
    raise ConfigError(f"model.weights {given}: no such file (give a .safetensors file, torchvision's named "
                      f"weights such as {_example(name)}, or null to train from scratch)")


def _example(name: str) -> str:
    try:
        import torchvision

        enum = torchvision.models.get_model_weights(name)
        return f"{enum.__name__}.{next(iter(enum)).name}"
    except (ValueError, KeyError, StopIteration, ImportError):
        return "ResNet18_Weights.IMAGENET1K_V1"


# ------------------------------------------------------------------------------ local files
def conversion_advice(path: Path) -> str:
    """A command that turns a pickled state dict into a safetensors file (runs the unpickling in
    torch's tensors-only loader, on the user's own decision)."""
    target = path.with_suffix(".safetensors")
    code = (f"import torch; from safetensors.torch import save_file; "
            f"save_file({{k: v.contiguous() for k, v in torch.load({str(path)!r}, weights_only=True).items()}}, "
            f"{str(target)!r})")
    return f"python -c {shlex.quote(code)}"


def _file_weights(path: Path, given: str) -> Weights:
    if path.suffix.lower() in PICKLED:
        raise ConfigError(f"model.weights {given}: pickled weights are not read (unpickling a file can run code); "
                          f"if you trust it, convert its state dict to safetensors with {conversion_advice(path)} "
                          f"and give the .safetensors file")
    if path.suffix.lower() != ".safetensors":
        raise ConfigError(f"model.weights {given}: not a .safetensors file (only safetensors weights are read)")
    return Weights(given=given, kind="file", path=path.resolve(), sha256=file_sha256(path))


def read_file_state(weights: Weights) -> dict[str, Any]:
    """The tensors of a local safetensors file, a saved synthworth classifier's ``net.`` prefix taken off."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights.path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"model.weights {weights.given}: cannot read it as safetensors ({_first_line(exc)})") from None
    if state and all(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items()}
    return state


# ------------------------------------------------------------------------------ torchvision
def _torchvision_weights(given: str, name: str) -> Weights:
    import torch
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        raise ConfigError(f"model.weights {given}: torchvision has no named weights for {name!r}; give a "
                          ".safetensors file") from None
    member = given.split(".", 1)[1] if "." in given else given
    if "." in given and given.split(".", 1)[0] != enum.__name__ or member not in enum.__members__:
        known = ", ".join(f"{enum.__name__}.{m}" for m in enum.__members__)
        raise ConfigError(f"model.weights {given}: not a weights file here, nor named weights of {name} "
                          f"(torchvision has {known})")
    weight = enum[member]
    full = f"{enum.__name__}.{weight.name}"
    file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weight.url)
    if not file.is_file():
        raise ConfigError(f"model.weights {given}: torchvision's {full} are not in torch.hub's cache here ({file}); "
                          f"fetch them with: curl -L --create-dirs -o {shlex.quote(str(file))} {weight.url} (on a "
                          "machine without network, fetch the file elsewhere and copy it to that path)")
    prefix = _HASH_IN_NAME.search(file.name)
    sha256 = file_sha256(file)
    if prefix is None or not sha256.startswith(prefix.group(1)):
        raise ConfigError(f"model.weights {given}: {file} is not the file torchvision published (its SHA-256 "
                          f"{sha256[:12]} does not start with the prefix in its name); delete it and fetch it again "
                          f"with: curl -L -o {shlex.quote(str(file))} {weight.url}")
    return Weights(given=given, kind="torchvision", path=file, sha256=sha256, torchvision=full)


def torchvision_enum(weights: Weights):
    """The torchvision weights enum member (its ``transforms()`` give the preprocessing)."""
    import torchvision

    return torchvision.models.get_weight(weights.torchvision)


def read_torchvision_state(weights: Weights) -> dict[str, Any]:
    """The state dict of a torchvision weights file, read with the tensors-only loader."""
    import pickle

    import torch

    try:
        return torch.load(weights.path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ConfigError(f"model.weights {weights.given}: {weights.path} cannot be read ({_first_line(exc)}); "
                          "delete it and fetch it again") from None


# ------------------------------------------------------------------------------ transformers
def hub_advice(hub_id: str) -> str:
    return (f"on a machine with network run 'hf download {hub_id} {' '.join(HUB_FILES)} --local-dir DIR', "
            "copy DIR here and give it as the weights (classifier.model.weights=DIR)")


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return None


def _transformers_weights(given: str, name: str) -> Weights:
    path = Path(given).expanduser()
    hub_id = None
    if not path.exists():
        if not _HUB_ID.match(given):
            raise ConfigError(f"model.weights {given}: no such folder, and not a Hugging Face hub id (owner/name) "
                              f"of a {name} model")
        hub_id, path = given, _from_hub(given)
    check_encoder_folder(path, name, hub_id or given)
    parts = [(f, file_sha256(path / f) if (path / f).is_file() else None) for f in HUB_FILES]
    sha256 = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    return Weights(given=given, kind="transformers", path=path.resolve(), sha256=sha256, hub_id=hub_id)


def check_encoder_folder(folder: Path, name: str, given: str) -> None:
    """Refuse, before loading anything, a folder that is not a ``name`` model in safetensors."""
    again = hub_advice(given) if _HUB_ID.match(given) else "give a save_pretrained folder of one"
    if not folder.is_dir():
        raise ConfigError(f"model.weights {given}: a file, not a transformers model folder ({again})")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model.weights {given}: {folder} has no config.json, so it is no transformers model "
                          f"folder ({again})")
    kind = _model_type(folder)
    if kind not in ENCODERS[name]:
        raise ConfigError(f"model.weights {given}: {folder} holds a {kind or 'unknown'} model, not {name} "
                          f"(model_type {' or '.join(ENCODERS[name])}); set model.name to match, or {again}")
    if not (folder / "model.safetensors").is_file():
        other = sorted(p.name for p in folder.glob("*.bin"))
        why = f" (it has {', '.join(other)}: pickled weights are not read)" if other else ""
        raise ConfigError(f"model.weights {given}: {folder} has no model.safetensors{why}; {again}")


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _unreachable(timeout: float = 3.0) -> str | None:
    """The Hub's host when one plain connection to it fails at once (huggingface_hub itself would
    retry for about 25 s first); None behind a proxy, where only the library can tell.
    (The same check as synthworth.generators.text2image's, which this floor cannot import.)"""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    try:
        with socket.create_connection((host, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout):
            return None
    except OSError:
        return host


def _from_hub(hub_id: str) -> Path:
    from huggingface_hub import try_to_load_from_cache

    cached = {f: try_to_load_from_cache(hub_id, f) for f in HUB_FILES}
    if all(isinstance(cached[f], str) for f in HUB_FILES[:2]):
        return Path(cached["model.safetensors"]).parent
    missing = f"model.weights {hub_id}: neither a folder here nor in the local Hugging Face cache"
    if _offline():
        raise ConfigError(f"{missing}, and HF_HUB_OFFLINE is set: {hub_advice(hub_id)}")
    host = _unreachable()
    if host:
        raise ConfigError(f"{missing}, and {host} cannot be reached: {hub_advice(hub_id)}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return Path(snapshot_download(hub_id, allow_patterns=list(HUB_FILES)))
    except RepositoryNotFoundError:
        raise ConfigError(f"model.weights {hub_id}: no such model on the Hugging Face Hub") from None
    except OSError as exc:
        raise ConfigError(f"model.weights {hub_id}: cannot fetch it ({_first_line(exc)}): {hub_advice(hub_id)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
