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
    func = click.option("--resume", is_flag=True, help="Continue the newest complete checkpoint in --out "
                                                      "(with --replicates/--seeds: every replicate).")(func)
    func = click.option("--replicates", type=click.IntRange(min=1), metavar="K",
                        help="Train K runs of this recipe differing only in seed (train.seed, +1, ...) into "
                             "--out/seed-N: a replicates folder every command takes where it takes a run.")(func)
    func = click.option("--seeds", callback=_seeds, metavar="LIST",
                        help="As --replicates, with these seeds, e.g. 0,1,2.")(func)
    return click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")(func)


def _seeds(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of whole numbers, e.g. 0,1,2") from None


def _add_train_command(kind: str, summary: str, examples: str) -> None:
    def command(data, out, preset, config_file, resume, replicates, seeds, overrides):
        if replicates is not None or seeds is not None:
            from synthworth.train import train_replicates

            folder = train_replicates(kind, data, out, replicates=replicates, seeds=seeds, preset=preset,
                                      config_file=config_file, overrides=overrides, resume=resume)
            click.echo(str(folder.path))
            return
        from synthworth.train import train as run_training

        run = run_training(kind, data, out, preset=preset, config_file=config_file,
                           overrides=overrides, resume=resume)
        click.echo(str(run.path))

    command.__doc__ = f"{summary}\n\n\b\nExamples:\n{examples}"
    train.command(kind)(_train_options(command))


_add_train_command("dcgan", "Train a DCGAN (unconditional, or class-conditional with model.conditional=true).", """\
  synthworth train dcgan --data data/celeba64 --out runs/celeba-dcgan --preset celeba-dcgan
  synthworth train dcgan --data data/digits --out runs/digits-gan --preset digits train.epochs=30
  synthworth train dcgan --data data/celeba64 --out runs/celeba-dcgan --resume
  synthworth train dcgan --data data/faces --out runs/faces-dcgan --preset dcgan --replicates 3""")
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
