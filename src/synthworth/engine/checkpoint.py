"""Full training state on disk: written under a temporary name, renamed when complete.

A checkpoint folder ``checkpoints/step-<N>/`` holds what ``accelerate`` saves (model weights as
safetensors; optimizers, LR schedulers, grad scaler and every RNG as tensors-only files that
accelerate reads back with ``torch.load(weights_only=True)``), plus ours:

- ``engine_state.json``: epoch, position in the epoch, step counters, running epoch sums,
  the resolved config and the package version;
- ``extra.safetensors`` + ``extra.json``: a task's own state (e.g. EMA weights), split into
  tensors and plain values, so nothing is ever unpickled.

Only folders named ``step-<N>`` count as checkpoints; a killed save leaves ``step-<N>.tmp``,
which is ignored and removed on the next start. ``engine_state.json`` is written last and lists
the size of every other file, so :func:`damage` can tell a whole checkpoint from one truncated
or overwritten later (by a full disk, a bad copy, a colleague's tool) before anything is loaded.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

STATE_FILE = "engine_state.json"
STATE_KEYS = ("epoch", "position", "global_step", "epoch_sums", "epoch_count", "config")
_NAME = re.compile(r"^step-(\d+)$")


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        match = _NAME.match(p.name)
        if match and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(match.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: Path) -> Path | None:
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def remove_partial(folder: Path) -> None:
    if folder.is_dir():
        for p in folder.glob("step-*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def prune(folder: Path, keep: int) -> None:
    for old in complete_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_engine_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())


def file_sizes(folder: Path) -> dict[str, int]:
    """``{relative path: size}`` of every file under ``folder`` but the engine state itself."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != STATE_FILE}


def damage(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (a short phrase naming the file), or None when
    every file is whole: the engine state parses, each file has the size recorded when it was
    written, safetensors headers cover their files and torch's zip archives open."""
    try:
        state = read_engine_state(checkpoint)
    except (OSError, ValueError, UnicodeDecodeError):
        return f"{STATE_FILE} is unreadable"
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        return f"{STATE_FILE} is incomplete"
    for name, size in (state.get("files") or {}).items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{name} has {actual} bytes, {size} were written"
    for path in sorted(checkpoint.rglob("*")):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt"):
                    pass
            elif path.suffix in (".bin", ".pkl", ".pt") and path.is_file():
                zipfile.ZipFile(path).close()  # torch.save's format; a cut file has no directory
        except (OSError, SafetensorError, zipfile.BadZipFile, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return f"{path.relative_to(checkpoint).as_posix()} is unreadable ({reason})"
    return None


# ---------------------------------------------------------------- tensor-safe state of a task
def flatten_state(state: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state (dicts, lists, tensors, plain values) into a flat dict of tensors
    and a JSON-ready skeleton that refers to them by key."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(value, dict):
            return {"__dict__": [[k, walk(v, f"{key}.{k}")] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} at {key!r} in a checkpoint")

    return tensors, walk(state, prefix or "state")


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    if isinstance(skeleton, dict) and "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {k: unflatten_state(tensors, v) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten_state(tensors, v) for v in skeleton]
    return skeleton


def save_extra(folder: Path, state: Any) -> None:
    tensors, skeleton = flatten_state(state)
    save_file(tensors, str(folder / "extra.safetensors"))
    (folder / "extra.json").write_text(json.dumps(skeleton))


def load_extra(folder: Path) -> Any:
    skeleton = json.loads((folder / "extra.json").read_text())
    tensors = load_file(str(folder / "extra.safetensors"))
    return unflatten_state(tensors, skeleton)
