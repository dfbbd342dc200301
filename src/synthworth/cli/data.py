"""``synthworth data``: prepare, inspect, export and merge Datasets."""

from __future__ import annotations

import json

import click

from synthworth.cli.app import Choice, cli


@cli.group()
def data() -> None:
    """Prepare, inspect and export Datasets."""


@data.command("prepare", context_settings={"ignore_unknown_options": False})
@click.option("--source", type=Choice(["folder", "animals10", "fruits", "celeba", "digits", "lfw"]),
              help="Kind of source (default: folder, or the preset's).")
@click.option("--path", type=click.Path(), help="Folder of the downloaded data (not for digits/lfw).")
@click.option("--out", required=True, type=click.Path(), help="Folder to write the prepared Dataset to.")
@click.option("--size", type=int, help="Side of the square images in pixels (default 64).")
@click.option("--fit", type=Choice(["crop", "pad", "stretch"]), help="Resize policy (default crop).")
@click.option("--channels", type=Choice(["1", "3"]), help="1 = grayscale, 3 = RGB (default: the source's).")
@click.option("--test-fraction", type=float, help="Held-out test share where the source has no splits (0.2).")
@click.option("--max-per-class", type=int, help="At most this many images per class (seeded draw).")
@click.option("--classes", help="Comma-separated class names to keep.")
@click.option("--label-attr", help="CelebA: label by this attribute, e.g. Smiling.")
@click.option("--seed", type=int, help="Seed of the class cap and the split (default 0).")
@click.option("--workers", type=int, help="Decoding processes (default: all CPUs; 0: none).")
@click.option("--strict", is_flag=True, default=None, help="Fail on any unusable file instead of skipping it.")
@click.option("--preset", help="A shipped preset (see 'synthworth data presets').")
@click.option("--config", "config_file", type=click.Path(), help="A YAML file of options.")
@click.option("--overwrite", is_flag=True, help="Replace an existing Dataset at --out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def data_prepare(source, path, out, size, fit, channels, test_fraction, max_per_class, classes,
                 label_attr, seed, workers, strict, preset, config_file, overwrite, quiet, overrides):
    """Turn a real image source into a packed Dataset at --out.

    \b
    Examples:
      synthworth data prepare --source digits --out data/digits --size 16
      synthworth data prepare --source animals10 --path ~/Downloads/animals10 --out data/animals --size 256
      synthworth data prepare --preset celeba-64 --path ~/Downloads/celeba --out data/celeba64
    """
    from synthworth.config import resolve_config
    from synthworth.data.prepare import PrepareConfig, prepare

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
    from synthworth.config import preset_path, preset_names, read_yaml

    for name in preset_names("data"):
        options = " ".join(f"{k}={v}" for k, v in read_yaml(preset_path("data", name)).items())
        click.echo(f"{name:14s} {options}")


@data.command("info")
@click.argument("dataset", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def data_info(dataset, as_json):
    """Describe a Dataset: shape, classes, counts per split, fingerprint, skipped files."""
    from synthworth.data.dataset import Dataset

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
    if m.get("kind") != "prepared":  # what a synthetic Dataset's generator saw
        from synthworth.data import provenance

        click.echo(f"provenance   {provenance.describe(provenance.read(m))}")
        from synthworth.data import timing

        click.echo(f"generation   {timing.describe(m)}")
    skipped = m.get("skipped", [])
    click.echo(f"skipped      {len(skipped)} file(s)")
    for s in skipped[:10]:
        click.echo(f"  {s['file']}: {s['reason']}")
    if len(skipped) > 10:
        click.echo(f"  ... {len(skipped) - 10} more (synthworth data info --json)")


@data.command("export")
@click.argument("dataset", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Folder to write the PNG split and class folders to.")
@click.option("--split", help="Export only this split (default: all, one folder each).")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder at --out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def data_export(dataset, out, split, overwrite, quiet):
    """Write a Dataset as a Hugging Face dataset folder: PNG files in split and class folders,
    metadata and a dataset card (read by datasets.load_dataset(OUT), load_dataset("imagefolder",
    data_dir=OUT) and, per split folder, torchvision's ImageFolder)."""
    from synthworth.data.dataset import Dataset
    from synthworth.data.export import export_imagefolder

    path = export_imagefolder(Dataset.open(dataset), out, split=split, overwrite=overwrite,
                              progress=not quiet)
    click.echo(str(path))


@data.command("merge")
@click.option("--out", required=True, type=click.Path(), help="The generation folder to finish.")
@click.argument("shards", nargs=-1, type=click.Path())
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def data_merge(out, shards, quiet):
    """Finish a sharded 'synthworth generate': copy the images of the SHARDS folders (if they were
    written elsewhere) into --out, then write its metadata.jsonl and packed form."""
    from synthworth.generate import merge

    merge(out, list(shards), progress=not quiet)
    click.echo(str(out))
