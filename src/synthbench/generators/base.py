"""The Generator protocol: anything that turns seeds (and labels) into uint8 images.

- ``sample(n, labels=None, seed=0) -> np.ndarray`` of shape (n, H, W, C), dtype uint8. Image
  ``i`` depends only on ``seed + i`` (and its label), so a dataset can be generated in pieces,
  on several machines, or resumed, and still be the same images.
- ``save(folder)`` / ``load(folder)``: a self-describing folder (``synthbench.json`` names the kind).

Trainable generators also have a training task for the engine; text-to-image pipelines wrap
``diffusers``. :func:`load_generator` opens any saved generator, or a run folder's model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthbench.errors import SynthbenchError

MODEL_CONFIG = "synthbench.json"  # beside diffusers' own config.json files, never instead
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
            raise SynthbenchError(f"this {self.kind} generator is unconditional: it cannot generate "
                                  "chosen labels; leave the labels out")
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != n:
            raise SynthbenchError(f"got {len(labels)} labels for {n} images")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise SynthbenchError(f"labels must be within 0..{len(self.class_names) - 1} "
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


def read_model_config(folder: Path) -> dict[str, Any]:
    file = folder / MODEL_CONFIG
    if not file.is_file():
        raise SynthbenchError(f"{folder} holds no saved generator ({MODEL_CONFIG} is missing)")
    return json.loads(file.read_text())


def load_generator(path: str | Path) -> Generator:
    """Open a saved generator folder, or the finished model of a training run folder."""
    path = Path(path)
    if not path.exists():
        raise SynthbenchError(f"{path} does not exist")
    if (path / "model" / MODEL_CONFIG).is_file():
        path = path / "model"
    elif (path / "checkpoints").is_dir() and not (path / MODEL_CONFIG).is_file():
        raise SynthbenchError(f"run {path} has no finished model yet (no {path / 'model'}); finish it "
                              f"with 'synthbench train ... --out {path} --resume'")
    kind = read_model_config(path).get("kind")
    if kind not in _REGISTRY:
        _import_all()
    if kind not in _REGISTRY:
        raise SynthbenchError(f"{path}: unknown generator kind {kind!r} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[kind].load(path)


def _import_all() -> None:
    import importlib

    for name in ("dcgan", "diffusion"):
        importlib.import_module(f"synthbench.generators.{name}")
