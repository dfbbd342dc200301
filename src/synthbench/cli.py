"""The ``synthbench`` command line. Each sub-command is a thin call of one entry function."""

from __future__ import annotations

import json
import sys

import click

from synthbench import __version__
from synthbench.errors import SynthbenchError

OVERRIDES_HELP = "KEY=VALUE overrides of any config key, e.g. size=32 classes=[cat,dog]."


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="synthbench")
def cli() -> None:
    """synthbench: can generated images stand in for real ones?

    Prepare real image datasets, train or load generators, make labelled synthetic datasets
    and judge them against the real ones.
    """


# ------------------------------------------------------------------------------------ data
@cli.group()
def data() -> None:
    """Prepare, inspect and export Datasets."""


@data.command("prepare", context_settings={"ignore_unknown_options": False})
@click.option("--source", type=click.Choice(["folder", "animals10", "fruits", "celeba", "digits", "lfw"]),
              help="Kind of source (default: folder, or the preset's).")
@click.option("--path", type=click.Path(), help="Folder of the downloaded data (not for digits/lfw).")
@click.option("--out", required=True, type=click.Path(), help="Folder to write the prepared Dataset to.")
@click.option("--size", type=int, help="Side of the square images in pixels (default 64).")
@click.option("--fit", type=click.Choice(["crop", "pad", "stretch"]), help="Resize policy (default crop).")
@click.option("--channels", type=click.Choice(["1", "3"]), help="1 = grayscale, 3 = RGB (default: the source's).")
@click.option("--test-fraction", type=float, help="Held-out test share where the source has no splits (0.2).")
@click.option("--max-per-class", type=int, help="At most this many images per class (seeded draw).")
@click.option("--classes", help="Comma-separated class names to keep.")
@click.option("--label-attr", help="CelebA: label by this attribute, e.g. Smiling.")
@click.option("--seed", type=int, help="Seed of the class cap and the split (default 0).")
@click.option("--workers", type=int, help="Decoding processes (default: all CPUs; 0: none).")
@click.option("--strict", is_flag=True, default=None, help="Fail on any unusable file instead of skipping it.")
@click.option("--preset", help="A shipped preset (see 'synthbench data presets').")
@click.option("--config", "config_file", type=click.Path(), help="A YAML file of options.")
@click.option("--overwrite", is_flag=True, help="Replace an existing Dataset at --out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def data_prepare(source, path, out, size, fit, channels, test_fraction, max_per_class, classes,
                 label_attr, seed, workers, strict, preset, config_file, overwrite, quiet, overrides):
    """Turn a real image source into a packed Dataset at --out.

    \b
    Examples:
      synthbench data prepare --source digits --out data/digits --size 16
      synthbench data prepare --source animals10 --path ~/Downloads/animals10 --out data/animals --size 256
      synthbench data prepare --preset celeba-64 --path ~/Downloads/celeba --out data/celeba64
    """
    from synthbench.config import resolve_config
    from synthbench.data.prepare import PrepareConfig, prepare

    flags = {"source": source, "path": path, "size": size, "fit": fit,
             "channels": int(channels) if channels else None, "test_fraction": test_fraction,
             "max_per_class": max_per_class, "label_attr": label_attr, "seed": seed,
             "workers": workers, "strict": strict,
             "classes": [c.strip() for c in classes.split(",") if c.strip()] if classes else None}
    config = resolve_config(PrepareConfig, preset=("data", preset) if preset else None,
                            config_file=config_file, flags=flags, overrides=overrides)
    dataset = prepare(config, out, overwrite=overwrite, progress=not quiet)
    click.echo(str(dataset.path))


@data.command("presets")
def data_presets() -> None:
    """List the shipped data-preparation presets."""
    from synthbench.config import preset_path, preset_names, read_yaml

    for name in preset_names("data"):
        options = " ".join(f"{k}={v}" for k, v in read_yaml(preset_path("data", name)).items())
        click.echo(f"{name:14s} {options}")


@data.command("info")
@click.argument("dataset", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def data_info(dataset, as_json):
    """Describe a Dataset: shape, classes, counts per split, fingerprint, skipped files."""
    from synthbench.data.dataset import Dataset

    ds = Dataset.open(dataset)
    if as_json:
        click.echo(json.dumps(ds.manifest, indent=2, ensure_ascii=False))
        return
    m = ds.manifest
    h, w, c = ds.shape
    click.echo(f"Dataset      {ds.path}")
    click.echo(f"kind         {m.get('kind', '?')} (source: {m.get('source', {}).get('kind', '?')})")
    click.echo(f"images       {len(ds)} of {h}x{w}x{c} uint8")
    click.echo(f"classes      {ds.num_classes}: {', '.join(ds.class_names) or '(unlabelled)'}")
    for split, counts in ds.counts().items():
        per = ", ".join(f"{k} {v}" for k, v in counts.items())
        click.echo(f"{split:12s} {sum(counts.values())} ({per})")
    click.echo(f"fingerprint  {ds.fingerprint}")
    skipped = m.get("skipped", [])
    click.echo(f"skipped      {len(skipped)} file(s)")
    for s in skipped[:10]:
        click.echo(f"  {s['file']}: {s['reason']}")
    if len(skipped) > 10:
        click.echo(f"  ... {len(skipped) - 10} more (synthbench data info --json)")


@data.command("export")
@click.argument("dataset", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Folder to write the PNG class folders to.")
@click.option("--split", help="Export only this split (default: all, with a split column).")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder at --out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def data_export(dataset, out, split, overwrite, quiet):
    """Write a Dataset as class folders of PNG files with a metadata.jsonl
    (readable by datasets.load_dataset("imagefolder") and torchvision's ImageFolder)."""
    from synthbench.data.dataset import Dataset
    from synthbench.data.export import export_imagefolder

    path = export_imagefolder(Dataset.open(dataset), out, split=split, overwrite=overwrite,
                              progress=not quiet)
    click.echo(str(path))


# ------------------------------------------------------------------------------------ train
@cli.group()
def train() -> None:
    """Train generators on a prepared Dataset (one run folder per run)."""


def _train_options(func):
    func = click.option("--data", required=True, type=click.Path(), help="A prepared Dataset folder.")(func)
    func = click.option("--out", required=True, type=click.Path(), help="The run folder to create (or resume).")(func)
    func = click.option("--preset", help="A shipped preset of this model (see 'synthbench train presets').")(func)
    func = click.option("--config", "config_file", type=click.Path(), help="A YAML file of options.")(func)
    func = click.option("--resume", is_flag=True, help="Continue the newest complete checkpoint in --out.")(func)
    return click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")(func)


@train.command("dcgan")
@_train_options
def train_dcgan_cmd(data, out, preset, config_file, resume, overrides):
    """Train a DCGAN (unconditional, or class-conditional with model.conditional=true).

    \b
    Examples:
      synthbench train dcgan --data data/celeba64 --out runs/celeba-dcgan --preset celeba-dcgan
      synthbench train dcgan --data data/digits --out runs/digits-gan --preset digits train.epochs=30
      synthbench train dcgan --data data/celeba64 --out runs/celeba-dcgan --resume
    """
    from synthbench.train import train_dcgan

    train_dcgan(data, out, preset=preset, config_file=config_file, overrides=overrides, resume=resume)
    click.echo(str(out))


@train.command("presets")
def train_presets() -> None:
    """List the shipped training presets of every model."""
    from synthbench.config import preset_names

    for group in ("dcgan",):
        click.echo(f"{group}: {', '.join(preset_names(group))}")


# ------------------------------------------------------------------------------------ entry
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and exit with code 2."""
    try:
        cli.main(args=argv, prog_name="synthbench", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "synthbench"
        click.echo(f"{where}: error: {exc.format_message()} (see '{where} --help')", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"synthbench: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except SynthbenchError as exc:
        click.echo(f"synthbench: error: {' '.join(str(exc).split())}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("synthbench: interrupted (nothing half-written is left under its final name)", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
