"""``synthbench train``: one entry function per trainable model, shared by the CLI and Python."""

from __future__ import annotations

from pathlib import Path

from synthbench.config import resolve_config
from synthbench.data.dataset import Dataset
from synthbench.engine.loop import fit
from synthbench.engine.run import RunFolder
from synthbench.errors import SynthbenchError


def _resolve(model, group: str, out: Path, preset: str | None, config_file: str | None,
             overrides: tuple[str, ...] | list[str], resume: bool):
    base = None
    if resume:
        run = RunFolder(out)
        if not run.config_file.is_file():
            raise SynthbenchError(f"--resume: {out} is not a run folder (no config.yaml); "
                                  "start a new run without --resume")
        saved = run.saved_config()
        saved.pop("kind", None)
        base = (saved, f"the run's saved config ({run.config_file})")
        if preset is not None or config_file is not None:
            raise SynthbenchError("--resume continues with the run's saved config; leave out --preset "
                                  "and --config (KEY=VALUE overrides such as train.epochs=60 are allowed)")
    elif preset is None and config_file is None:
        preset = "dcgan" if group == "dcgan" else None
    return resolve_config(model, preset=(group, preset) if preset else None, base=base,
                          config_file=config_file, overrides=overrides)


def train_dcgan(data: str | Path, out: str | Path, *, preset: str | None = None,
                config_file: str | Path | None = None, overrides: tuple[str, ...] | list[str] = (),
                resume: bool = False):
    """Train a DCGAN on a prepared Dataset into the run folder ``out``; returns the generator.

    The config comes from a shipped preset (default ``dcgan``), a YAML file and ``key=value``
    overrides; with ``resume`` the run's saved config is the base.
    """
    from synthbench.generators.dcgan import DCGAN, DCGANConfig, DCGANTask

    out = Path(out)
    config = _resolve(DCGANConfig, "dcgan", out, preset, config_file, overrides, resume)
    dataset = Dataset.open(data)
    run = fit(DCGANTask(config), dataset, out, config.train, resume=resume)
    return DCGAN.load(run.model)
