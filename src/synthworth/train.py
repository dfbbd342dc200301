"""``synthworth train``: one entry function per trainable model, shared by the CLI and Python.

Each model is a (config model, engine task, preset group, default preset) entry in ``MODELS``;
:func:`train` resolves the config (preset < YAML file < ``key=value`` overrides, or the run's
saved config when resuming), opens the Dataset and hands the task to the shared engine, with the
quality tracking the config asks for (``eval``) as a hook of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from synthworth.config import read_yaml, resolve_config
from synthworth.data.dataset import Dataset
from synthworth.engine.config import EvalConfig
from synthworth.engine.loop import fit
from synthworth.engine.run import RunFolder
from synthworth.errors import SynthworthError


@dataclass(frozen=True)
class TrainableModel:
    config: Callable[[], type]
    task: Callable[[], type]
    default_preset: str
    summary: str


def _lazy(module: str, name: str) -> Callable[[], type]:
    def load() -> type:
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


MODELS: dict[str, TrainableModel] = {
    "dcgan": TrainableModel(_lazy("synthworth.generators.dcgan", "DCGANConfig"),
                            _lazy("synthworth.generators.dcgan", "DCGANTask"), "dcgan",
                            "DCGAN (unconditional, or class-conditional with model.conditional=true)."),
    "ddpm": TrainableModel(_lazy("synthworth.generators.diffusion", "DiffusionConfig"),
                           _lazy("synthworth.generators.diffusion", "DiffusionTask"), "digits-ddpm",
                           "Pixel-space DDPM (a diffusers UNet2DModel), optionally class-conditional."),
    "ldm": TrainableModel(_lazy("synthworth.generators.diffusion", "LDMConfig"),
                          _lazy("synthworth.generators.diffusion", "LatentDiffusionTask"), "celeba-ldm",
                          "Latent diffusion on the latents of a VAE (vae=PATH)."),
    "vae": TrainableModel(_lazy("synthworth.generators.diffusion", "VAEConfig"),
                          _lazy("synthworth.generators.diffusion", "VAETask"), "small",
                          "An AutoencoderKL for latent diffusion."),
    "classifier": TrainableModel(_lazy("synthworth.classifiers.task", "ClassifierConfig"),
                                 _lazy("synthworth.classifiers.task", "ClassifierTask"), "small",
                                 "An image classifier (its model/ folder also serves as metric features)."),
}


def resolve_train_config(kind: str, out: str | Path, *, preset: str | None = None,
                         config_file: str | Path | None = None,
                         overrides: tuple[str, ...] | list[str] = (), resume: bool = False):
    """The validated config of a training run (see the module docstring for the layers).

    With ``resume`` and neither a preset nor a config file, the run's saved config is the base
    (``key=value`` overrides still apply); with either, the config is resolved as for a new run,
    so the original command with ``--resume`` added gives the original config. The engine then
    compares it with the checkpoint's and refuses only a change to what was computed."""
    if kind not in MODELS:
        raise SynthworthError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    entry = MODELS[kind]
    base = None
    if resume:
        run = RunFolder(out)
        if run.config_file.is_file():
            try:
                saved = run.saved_config()
            except (OSError, ValueError, yaml.YAMLError) as exc:
                raise SynthworthError(f"--resume: {run.config_file} is unreadable ({str(exc).splitlines()[0]}); "
                                      f"resume with the run's --preset/--config given again") from None
            if not isinstance(saved, dict):
                raise SynthworthError(f"--resume: {run.config_file} is not a run's config")
            saved_kind = saved.pop("kind", kind)
            if saved_kind != kind:
                raise SynthworthError(f"--resume: {out} is a run of {saved_kind}, not {kind}; "
                                      f"use 'synthworth train {saved_kind}'")
            if preset is None and config_file is None:
                base = (saved, f"the run's saved config ({run.config_file})")
    if base is None and config_file is not None and "kind" in read_yaml(config_file):
        # A run's own config.yaml (which names its model): that run's settings, e.g. to start it again.
        saved = read_yaml(config_file)
        found = saved.pop("kind")
        if found != kind:
            raise SynthworthError(f"--config {config_file} is the config of a {found!r} run, not {kind}; "
                                  f"use 'synthworth train {found}'")
        base, config_file = (saved, f"config file {config_file}"), None
    if base is None and preset is None and config_file is None:
        preset = entry.default_preset
    config = resolve_config(entry.config(), preset=(kind, preset) if preset else None, base=base,
                            config_file=config_file, overrides=overrides)
    evaluation = getattr(config, "eval", None)
    if isinstance(evaluation, EvalConfig) and evaluation.every:  # a mistyped name fails now, not when training starts
        from synthworth.metrics.features import check_features

        check_features(evaluation.features, "eval.features")
    return config


def train(kind: str, data: str | Path, out: str | Path, *, preset: str | None = None,
          config_file: str | Path | None = None, overrides: tuple[str, ...] | list[str] = (),
          resume: bool = False) -> RunFolder:
    """Train model ``kind`` on the prepared Dataset ``data`` into the run folder ``out``."""
    config = resolve_train_config(kind, out, preset=preset, config_file=config_file,
                                  overrides=overrides, resume=resume)
    dataset = Dataset.open(data)
    if kind == "classifier":  # as the study trains them: small sets get min_steps batches
        from synthworth.classifiers.task import stretch_to_min_steps

        config = stretch_to_min_steps(config, len(dataset.split(config.train.split)))
    # Quality tracking (a generator's eval.every) and an autoencoder's reconstruction quality, wired in here.
    from synthworth.metrics.reconstruction import reconstruction_hooks
    from synthworth.metrics.tracking import training_hooks

    return fit(MODELS[kind].task()(config), dataset, out, config.train, resume=resume,
               hooks=training_hooks(config) + reconstruction_hooks(config))


def train_dcgan(data: str | Path, out: str | Path, **options: Any):
    """Train a DCGAN (see :func:`train`); returns the trained generator."""
    from synthworth.generators.dcgan import DCGAN

    return DCGAN.load(train("dcgan", data, out, **options).model)


def train_ddpm(data: str | Path, out: str | Path, **options: Any):
    """Train a pixel-space DDPM (see :func:`train`); returns the trained generator."""
    from synthworth.generators.diffusion import DiffusionGenerator

    return DiffusionGenerator.load(train("ddpm", data, out, **options).model)


def train_ldm(data: str | Path, out: str | Path, **options: Any):
    """Train a latent diffusion model (see :func:`train`); returns the trained generator."""
    from synthworth.generators.diffusion import LatentDiffusionGenerator

    return LatentDiffusionGenerator.load(train("ldm", data, out, **options).model)


def train_vae(data: str | Path, out: str | Path, **options: Any) -> Path:
    """Train an AutoencoderKL (see :func:`train`); returns the diffusers folder of the VAE."""
    return train("vae", data, out, **options).model
