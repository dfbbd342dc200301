"""What a generator's run folder says it learnt from, as the provenance records of
:mod:`synthworth.data.provenance`: read from a run (its ``run.json`` and the model's
``synthworth.json``), or from the autoencoder a latent model is trained with (a ``synthworth
train vae`` run, found by :func:`vae_run`, or a pretrained one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthworth.data.provenance import of_generator, pretrained, trained
from synthworth.engine.run import RunFolder


def _run_kind(run: Path) -> str | None:
    try:
        info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return info.get("kind") if isinstance(info, dict) else None


def vae_run(path: str | Path) -> Path | None:
    """The ``synthworth train vae`` run behind a VAE path (its run folder or ``model/``), or None
    for a foreign (e.g. pretrained) autoencoder."""
    path = Path(path).expanduser()
    for folder in (path, path.parent) if path.name == "model" else (path,):
        if folder.is_dir() and (_run_kind(folder) == "vae" or
                                ((folder / "model").is_dir() and (folder / "metrics.jsonl").is_file())):
            return folder
    return None


def of_run(run: str | Path) -> dict[str, Any]:
    """What a run folder's generator saw: its run.json's Dataset and, for a latent model, its
    autoencoder's data as recorded in ``model/synthworth.json``."""
    run = Path(run)
    info = RunFolder(run).info() if (run / "run.json").is_file() else None
    meta: Any = {}
    for model in (run / "model", run):   # a run folder, or a saved generator folder itself
        try:
            meta = json.loads((model / "synthworth.json").read_text(encoding="utf-8"))
            break
        except (OSError, ValueError, UnicodeDecodeError):
            continue
    meta = meta if isinstance(meta, dict) else {}
    kind = meta.get("kind") or (info or {}).get("kind")
    return of_generator(info, where=str(run), kind=kind, autoencoder=meta.get("autoencoder"))


def autoencoder(vae: str | Path) -> dict[str, Any]:
    """Provenance of the autoencoder a latent model is trained with (``vae=PATH``), taken when
    the model is trained: a 'synthworth train vae' run's own training data, or a pretrained
    autoencoder's external data (named by its folder's name: the path is local)."""
    run = vae_run(vae)
    if run is None:
        return pretrained(Path(vae).expanduser().resolve().name)
    return trained(RunFolder(run).info(), where=str(run))
