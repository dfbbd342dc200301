"""The Generator protocol: anything that turns seeds (and labels) into uint8 images.

- ``sample(n, labels=None, seed=0) -> np.ndarray`` of shape (n, H, W, C), dtype uint8. Image
  ``i`` depends only on ``seed + i`` (and its label), so a dataset can be generated in pieces,
  on several machines, or resumed, and still be the same images.
- ``save(folder)`` / ``load(folder)``: a self-describing folder (``synthworth.json`` names the kind).

Trainable generators also have a training task for the engine; text-to-image pipelines wrap
``diffusers``. :func:`load_generator` opens any saved generator, or a run folder's model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthworth.errors import SynthworthError

MODEL_CONFIG = "synthworth.json"  # beside diffusers' own config.json files, never instead
OLD_MODEL_CONFIG = "synthbench.json"  # the same file, written before the rename: still read


def model_config_file(folder: Path) -> Path:
    """The model folder's own config file: ``synthworth.json``, or ``synthbench.json`` in a model
    saved before the rename (the new name when neither exists)."""
    folder = Path(folder)
    return folder / OLD_MODEL_CONFIG if not (folder / MODEL_CONFIG).exists() and (folder / OLD_MODEL_CONFIG).exists() \
        else folder / MODEL_CONFIG
_REGISTRY: dict[str, type[Generator]] = {}


class Generator:
    """Base class of every generator (see the module docstring for the contract)."""

    kind = "generator"
    resolution: int
    channels: int
    class_names: list[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind != "generator":
            _REGISTRY[cls.kind] = cls

    @property
    def conditional(self) -> bool:
        return bool(self.class_names)

    def sample(self, n: int, labels: np.ndarray | list[int] | None = None, seed: int = 0) -> np.ndarray:
        raise NotImplementedError

    def save(self, folder: str | Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, folder: str | Path) -> Generator:
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers for subclasses
    def check_labels(self, n: int, labels) -> np.ndarray | None:
        """Validate labels; a conditional generator without labels gets balanced ones."""
        if labels is None:
            if not self.conditional:
                return None
            return np.arange(n) % len(self.class_names)
        if not self.conditional:
            raise SynthworthError(f"this {self.kind} generator is unconditional: it cannot generate "
                                  "chosen labels; leave the labels out")
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != n:
            raise SynthworthError(f"got {len(labels)} labels for {n} images")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise SynthworthError(f"labels must be within 0..{len(self.class_names) - 1} "
                                  f"({', '.join(self.class_names)})")
        return labels


def seeded_normal(shape_per_item: tuple[int, ...], seed: int, n: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` standard-normal tensors, item ``i`` drawn from its own generator seeded ``seed + i``."""
    out = torch.empty((n,) + tuple(shape_per_item))
    for i in range(n):
        g = torch.Generator().manual_seed(int(seed) + i)
        out[i] = torch.randn(shape_per_item, generator=g)
    return out.to(device)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(n, C, H, W) floats in [-1, 1] to (n, H, W, C) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def read_model_config(folder: Path) -> dict[str, Any]:
    """A saved generator's ``synthworth.json``, checked: a model folder may come from someone else."""
    file = model_config_file(folder)
    if not file.is_file():
        raise SynthworthError(f"{folder} holds no saved generator ({MODEL_CONFIG} is missing)")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SynthworthError(f"{file} is not readable JSON ({exc}); it is not a generator synthworth saved") from None
    if not isinstance(meta, dict):
        raise SynthworthError(f"{file} is not a JSON object; it is not a generator synthworth saved")
    names = meta.get("class_names", [])
    if not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == len(names)):
        raise SynthworthError(f"{file}: class_names must be a list of distinct, non-empty names")
    for key, allowed in (("resolution", range(8, 4097)), ("channels", (1, 3))):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or value not in allowed):
            raise SynthworthError(f"{file}: {key} {value!r} is not a valid value")
    return meta


def check_safe_weights(folder: Path) -> None:
    """Refuse a saved generator whose weights are pickles (loading one can run code hidden in it), and
    name any .safetensors file that is damaged (cut short, not safetensors), before torch sees them."""
    from safetensors import SafetensorError, safe_open

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        if path.suffix in PICKLED and not path.with_suffix(".safetensors").is_file():
            raise SynthworthError(f"{path} holds pickled weights where synthworth expects safetensors "
                                  "(loading a pickle can run code hidden in it); synthworth loads trained "
                                  "generators from .safetensors files only: convert it, or save the model again "
                                  "with synthworth")
        if path.suffix == ".safetensors":
            try:
                with safe_open(str(path), framework="pt") as fh:  # checks the header covers the file
                    fh.keys()
            except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
                raise SynthworthError(f"{path} is damaged or not a safetensors file ({str(exc).splitlines()[0]}); "
                                      "copy or save the model again") from None


def load_generator(path: str | Path) -> Generator:
    """Open a saved generator folder, or the finished model of a training run folder."""
    path = Path(path)
    if not path.exists():
        raise SynthworthError(f"{path} does not exist")
    from synthworth.engine.replicates import ReplicatesFolder, is_replicates

    if is_replicates(path):
        found = ReplicatesFolder(path).replicates()
        raise SynthworthError(f"{path} is a folder of {len(found)} replicates, not one generator: give one of "
                              f"them, e.g. {found[0].path} ('synthworth compare' and 'generate --from' take the "
                              "whole folder)")
    if model_config_file(path / "model").is_file():
        path = path / "model"
    elif (path / "checkpoints").is_dir() and not model_config_file(path).is_file():
        raise SynthworthError(f"run {path} has no finished model yet (no {path / 'model'}); finish it "
                              f"with 'synthworth train ... --out {path} --resume'")
    kind = read_model_config(path).get("kind")
    if not isinstance(kind, str) or kind not in _REGISTRY:
        _import_all()
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise SynthworthError(f"{path}: unknown generator kind {kind!r} (known: {', '.join(sorted(_REGISTRY))})")
    check_safe_weights(path)
    from safetensors import SafetensorError

    try:
        return _REGISTRY[kind].load(path)
    except SynthworthError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OSError, SafetensorError) as exc:
        # A synthworth.json that does not fit the kind or the weights (edited, from another version).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SynthworthError(f"{path}: the saved {kind} generator cannot be loaded ({type(exc).__name__}: "
                              f"{first}); {MODEL_CONFIG} or the weights are damaged or do not match") from None


def _import_all() -> None:
    import importlib

    for name in ("dcgan", "diffusion"):
        importlib.import_module(f"synthworth.generators.{name}")
