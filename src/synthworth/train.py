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
from synthworth.engine.replicates import ReplicatesFolder
from synthworth.engine.run import RunFolder
from synthworth.errors import ConfigError, SynthworthError


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
                         overrides: tuple[str, ...] | list[str] = (), resume: bool = False,
                         recipe: tuple[dict[str, Any], str] | None = None):
    """The validated config of a training run (see the module docstring for the layers).

    With ``resume`` and neither a preset nor a config file, the run's saved config is the base
    (``key=value`` overrides still apply); with either, the config is resolved as for a new run,
    so the original command with ``--resume`` added gives the original config. The engine then
    compares it with the checkpoint's and refuses only a change to what was computed.
    ``recipe``: ``(values, where from)``, the base in place of a preset (a replicates folder's)."""
    if kind not in MODELS:
        raise SynthworthError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    entry = MODELS[kind]
    base = recipe if recipe is not None and preset is None and config_file is None else None
    if resume and base is None:
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
          resume: bool = False, recipe: tuple[dict[str, Any], str] | None = None) -> RunFolder:
    """Train model ``kind`` on the prepared Dataset ``data`` into the run folder ``out``
    (``recipe``: see :func:`resolve_train_config`)."""
    config = resolve_train_config(kind, out, preset=preset, config_file=config_file,
                                  overrides=overrides, resume=resume, recipe=recipe)
    dataset = Dataset.open(data)
    if kind == "classifier" and config.model.mode == "linear_probe":
        # Fitted to convergence on the frozen backbone's features, not by the engine (seconds: a
        # --resume fits it again).
        from synthworth.classifiers.task import train_classifier

        train_classifier(dataset, out, config)
        return RunFolder(out)
    if kind == "classifier":  # as the study trains them: small sets get min_steps batches
        from synthworth.classifiers.task import stretch_to_min_steps

        config = stretch_to_min_steps(config, len(dataset.split(config.train.split)))
    # Quality tracking (a generator's eval.every) and an autoencoder's reconstruction quality, wired in here.
    from synthworth.metrics.reconstruction import reconstruction_hooks
    from synthworth.metrics.tracking import training_hooks

    return fit(MODELS[kind].task()(config), dataset, out, config.train, resume=resume,
               hooks=training_hooks(config) + reconstruction_hooks(config))


def replicate_seeds(base: int, replicates: int | None, seeds: list[int] | None) -> list[int]:
    """The seeds of a replicates training: ``seeds`` as given, or ``replicates`` seeds counting up
    from the recipe's ``train.seed`` (``base``)."""
    from synthworth.engine.config import MAX_SEED

    if (replicates is None) == (seeds is None):
        raise ConfigError("give the number of replicates (--replicates K) or their seeds (--seeds 0,1,2), not both")
    if seeds is None:
        if replicates < 1:
            raise ConfigError(f"--replicates {replicates}: give 1 or more")
        seeds = [base + i for i in range(replicates)]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {','.join(map(str, seeds))}: give one or more distinct seeds")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ConfigError(f"--seeds: {bad[0]} is not a seed (0 to 2**32 - 1)")
    return list(seeds)


def train_replicates(kind: str, data: str | Path, out: str | Path, *, replicates: int | None = None,
                     seeds: list[int] | None = None, preset: str | None = None,
                     config_file: str | Path | None = None, overrides: tuple[str, ...] | list[str] = (),
                     resume: bool = False) -> ReplicatesFolder:
    """Train one recipe once per seed into the replicates folder ``out`` (``OUT/seed-N``, see
    :mod:`synthworth.engine.replicates`): ``seeds`` as given, or ``replicates`` seeds from the
    recipe's ``train.seed`` up. Only the seed differs between the runs: the same config (its
    ``train.threads`` included), the same Dataset.

    Into a folder that already holds replicates, more seeds of the same recipe may be added.
    ``resume``: every replicate with a checkpoint is continued (a finished one is only exported
    again), every other one is started, so the same call finishes whatever an interrupted one
    left; a change of epochs or checkpoint settings is then allowed, as for one run."""
    from synthworth import safety
    from synthworth.config import dump_config, last_wins
    from synthworth.engine.replicates import KIND, is_replicates, recipe_of, run_name
    from synthworth.engine.resume import ENGINE_RESUMABLE

    out = Path(out)
    if seeds is not None and any(o.partition("=")[0].strip() == "train.seed" for o in overrides):
        raise ConfigError("train.seed=... and --seeds both set the seeds; give the seeds with --seeds alone")
    safety.check_apart(out, [data])
    if safety.owned_kind(out) == "run":
        raise SynthworthError(f"--out {out} holds one training run, not a folder of replicates; train the replicates "
                              f"into a new folder, e.g. {safety.suggest_new(out)}")
    safety.check_replaceable(out, KIND)
    found = ReplicatesFolder(out) if is_replicates(out) else None
    recipe = None
    if found is not None and resume and preset is None and config_file is None:
        recipe = (found.manifest().get("recipe") or {}, f"the recipe of the replicates in {out}")
    config = resolve_train_config(kind, out, preset=preset, config_file=config_file, overrides=overrides,
                                  recipe=recipe)
    chosen = replicate_seeds(config.train.seed, replicates, seeds)
    dataset = Dataset.open(data)
    shared = recipe_of(dump_config(config))
    with safety.output_lock(out, what="these replicates"):
        folder = ReplicatesFolder(out)
        if found is not None:
            resumable = ENGINE_RESUMABLE + tuple(MODELS[kind].task().resumable_changes)
            folder.check_recipe(kind, shared, dataset.fingerprint, resume=resume, resumable=resumable)
        folder.write(kind, shared, dataset.fingerprint, chosen)
        for seed in chosen:
            member = out / run_name(seed)
            again = resume and RunFolder(member).usable_checkpoint() is not None
            train(kind, data, member, preset=preset, config_file=config_file, resume=again, recipe=recipe,
                  overrides=last_wins([*overrides, f"train.seed={seed}"]))
    return folder


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
