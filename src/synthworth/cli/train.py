"""``synthworth train``: one sub-command per model, and the presets."""

from __future__ import annotations

import click

from synthworth.cli.app import cli


@cli.group()
def train() -> None:
    """Train generators on a prepared Dataset (one run folder per run)."""


def _train_options(func):
    func = click.option("--data", required=True, type=click.Path(), help="A prepared Dataset folder.")(func)
    func = click.option("--out", required=True, type=click.Path(), help="The run folder to create (or resume).")(func)
    func = click.option("--preset", help="A shipped preset of this model (see 'synthworth train presets').")(func)
    func = click.option("--config", "config_file", type=click.Path(), help="A YAML file of options.")(func)
    func = click.option("--resume", is_flag=True, help="Continue the newest complete checkpoint in --out.")(func)
    return click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")(func)


def _add_train_command(kind: str, summary: str, examples: str) -> None:
    def command(data, out, preset, config_file, resume, overrides):
        from synthworth.train import train as run_training

        run = run_training(kind, data, out, preset=preset, config_file=config_file,
                           overrides=overrides, resume=resume)
        click.echo(str(run.path))

    command.__doc__ = f"{summary}\n\n\b\nExamples:\n{examples}"
    train.command(kind)(_train_options(command))


_add_train_command("dcgan", "Train a DCGAN (unconditional, or class-conditional with model.conditional=true).", """\
  synthworth train dcgan --data data/celeba64 --out runs/celeba-dcgan --preset celeba-dcgan
  synthworth train dcgan --data data/digits --out runs/digits-gan --preset digits train.epochs=30
  synthworth train dcgan --data data/celeba64 --out runs/celeba-dcgan --resume""")
_add_train_command("ddpm", "Train a pixel-space DDPM (diffusers UNet2DModel; conditional=true for classes).", """\
  synthworth train ddpm --data data/digits --out runs/digits-ddpm --preset digits-ddpm
  synthworth train ddpm --data data/celeba64 --out runs/celeba-ddpm --preset celeba-ddpm""")
_add_train_command("ldm", "Train a latent diffusion model on the latents of a VAE (vae=PATH).", """\
  synthworth train ldm --data data/celeba64 --out runs/celeba-ldm --preset celeba-ldm vae=~/sd-vae
  synthworth train ldm --data data/faces --out runs/faces-ldm --preset small vae=runs/faces-vae""")
_add_train_command("vae", "Train an AutoencoderKL for latent diffusion.", """\
  synthworth train vae --data data/faces --out runs/faces-vae --preset small""")
_add_train_command("classifier", "Train an image classifier; its model/ folder can give metric features (--features).", """\
  synthworth train classifier --data data/lfw --out runs/face-features --preset small
  synthworth metrics --real data/faces --fake synthetic/faces --features runs/face-features/model""")


@train.command("presets")
def train_presets() -> None:
    """List the shipped training presets of every model."""
    from synthworth.config import preset_names

    from synthworth.train import MODELS

    for group in MODELS:
        click.echo(f"{group}: {', '.join(preset_names(group))}")
