"""The ``synthbench`` command line. Each sub-command is a thin call of one entry function."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from pathlib import Path

import click

from synthbench import __version__
from synthbench.errors import DataError, SynthbenchError

OVERRIDES_HELP = "KEY=VALUE overrides of any config key, e.g. size=32 classes=[cat,dog]."


class Choice(click.Choice):
    """click.Choice whose error names the closest choice ("did you mean 'digits'?"), as click
    does for a mistyped sub-command."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            from synthbench.config import did_you_mean

            hint = did_you_mean(value, self.choices)
            if hint:
                exc.message = exc.message.rstrip(".") + hint

            raise


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
    if m.get("kind") != "prepared":  # what a synthetic Dataset's generator saw
        from synthbench.data import provenance

        click.echo(f"provenance   {provenance.describe(provenance.read(m))}")
    skipped = m.get("skipped", [])
    click.echo(f"skipped      {len(skipped)} file(s)")
    for s in skipped[:10]:
        click.echo(f"  {s['file']}: {s['reason']}")
    if len(skipped) > 10:
        click.echo(f"  ... {len(skipped) - 10} more (synthbench data info --json)")


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


def _add_train_command(kind: str, summary: str, examples: str) -> None:
    def command(data, out, preset, config_file, resume, overrides):
        from synthbench.train import train as run_training

        run = run_training(kind, data, out, preset=preset, config_file=config_file,
                           overrides=overrides, resume=resume)
        click.echo(str(run.path))

    command.__doc__ = f"{summary}\n\n\b\nExamples:\n{examples}"
    train.command(kind)(_train_options(command))


_add_train_command("dcgan", "Train a DCGAN (unconditional, or class-conditional with model.conditional=true).", """\
  synthbench train dcgan --data data/celeba64 --out runs/celeba-dcgan --preset celeba-dcgan
  synthbench train dcgan --data data/digits --out runs/digits-gan --preset digits train.epochs=30
  synthbench train dcgan --data data/celeba64 --out runs/celeba-dcgan --resume""")
_add_train_command("ddpm", "Train a pixel-space DDPM (diffusers UNet2DModel; conditional=true for classes).", """\
  synthbench train ddpm --data data/digits --out runs/digits-ddpm --preset digits-ddpm
  synthbench train ddpm --data data/celeba64 --out runs/celeba-ddpm --preset celeba-ddpm""")
_add_train_command("ldm", "Train a latent diffusion model on the latents of a VAE (vae=PATH).", """\
  synthbench train ldm --data data/celeba64 --out runs/celeba-ldm --preset celeba-ldm vae=~/sd-vae
  synthbench train ldm --data data/faces --out runs/faces-ldm --preset small vae=runs/faces-vae""")
_add_train_command("vae", "Train an AutoencoderKL for latent diffusion.", """\
  synthbench train vae --data data/faces --out runs/faces-vae --preset small""")
_add_train_command("classifier", "Train an image classifier; its model/ folder can give metric features (--features).", """\
  synthbench train classifier --data data/lfw --out runs/face-features --preset small
  synthbench metrics --real data/faces --fake synthetic/faces --features runs/face-features/model""")


@train.command("presets")
def train_presets() -> None:
    """List the shipped training presets of every model."""
    from synthbench.config import preset_names

    from synthbench.train import MODELS

    for group in MODELS:
        click.echo(f"{group}: {', '.join(preset_names(group))}")


# ------------------------------------------------------------------------------------ generate
@cli.command("generate")
@click.option("--from", "from_run", type=click.Path(), help="A trained generator: a run folder or a saved generator folder.")
@click.option("--pipeline", help="A text-to-image pipeline: sd21, realistic-vision-14, openjourney-v4, "
              "kandinsky-22, sdxl, another hub id, or a local diffusers folder.")
@click.option("--prior", help="Kandinsky: its prior pipeline (hub id or folder; default: the decoder's own).")
@click.option("--theme", help="Text-to-image prompts: animals, fruits, or a theme YAML file.")
@click.option("--subjects-from", type=click.Path(), help="Text-to-image: the subjects are this prepared Dataset's classes.")
@click.option("--count", type=int, help="Number of images (classes take turns).")
@click.option("--per-class", type=int, help="Images per class (instead of --count).")
@click.option("--classes", help="Comma-separated classes to generate (default: all).")
@click.option("--out", required=True, type=click.Path(), help="Folder of the synthetic Dataset (resumed if it exists).")
@click.option("--seed", type=int, help="Seed of image 0; image i has seed + i (default 0).")
@click.option("--batch-size", type=int, help="Images per sampling call (default 8).")
@click.option("--size", type=int, help="Side of the saved images (default: 256 for pipelines, else the generator's).")
@click.option("--native-size", type=int, help="Pipelines: side of the rendered images (default: the pipeline's own).")
@click.option("--no-native", "keep_native", flag_value=False, default=None,
              help="Do not keep the native-size copies (OUT-native).")
@click.option("--test-fraction", type=float, help="Share of each class marked as test (default 0).")
@click.option("--sampler", help="Pipelines: scheduler (dpm++ default, ddim, euler, euler-a, pndm, unipc, default); "
              "diffusion generators: their sampler.")
@click.option("--steps", type=int, help="Sampling steps (default: the model's own).")
@click.option("--guidance", type=float, help="Classifier-free guidance scale (default: the model's own).")
@click.option("--negative-prompt", help="Negative prompt (default: the theme's).")
@click.option("--max-retries", type=int, help="Retries of an image blanked by the safety filter (default 3).")
@click.option("--dtype", type=Choice(["auto", "float16", "bfloat16", "float32"]), help="Pipeline precision (auto: fp16 on GPU).")
@click.option("--variant", help="Weight variant to download, e.g. fp16.")
@click.option("--cpu", is_flag=True, default=None, help="Generate on the CPU even where a GPU is available.")
@click.option("--allow-pickle", is_flag=True, default=None, help="Allow pickled .bin weights (only from sources you trust).")
@click.option("--name", help="Generator name in the metadata (default: pipeline or run folder name).")
@click.option("--shard", help="i/n: make only this share (then 'synthbench data merge').")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: blocks spread over Ray actors, one per GPU (pip install \"synthbench[ray]\").")
@click.option("--workers", type=int, help="--executor ray without GPUs: one-CPU actors (default: the cluster's CPUs).")
@click.option("--address", help="Ray cluster to join (HOST:PORT or auto; default: RAY_ADDRESS, else a local one).")
@click.option("--config", "config_file", type=click.Path(), help="A YAML file of options.")
@click.option("--overwrite", is_flag=True,
              help="Start --out (and OUT-native) again; only a generation synthbench wrote is replaced.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def generate_cmd(from_run, pipeline, prior, theme, subjects_from, count, per_class, classes, out, seed,
                 batch_size, size, native_size, keep_native, test_fraction, sampler, steps, guidance, negative_prompt,
                 max_retries, dtype, variant, cpu, allow_pickle, name, shard, executor, workers, address, config_file,
                 overwrite, quiet, overrides):
    """Generate a labelled synthetic Dataset: PNG class folders, metadata.jsonl and the packed form.

    \b
    Examples:
      synthbench generate --from runs/digits-gan --per-class 100 --out synthetic/digits-gan
      synthbench generate --pipeline sd21 --theme animals --count 1000 --out synthetic/animals-sd21
      synthbench generate --pipeline ./pipelines/sd21 --theme my-theme.yaml --count 200 --out synthetic/mine
      synthbench generate --pipeline sd21 --theme fruits --count 1000 --out synthetic/fruits-sd21 --shard 0/4
    """
    from synthbench.config import resolve_config
    from synthbench.generate import GenerateConfig, Shard, generate

    flags = {"from_run": from_run, "pipeline": pipeline, "prior": prior, "theme": theme,
             "subjects_from": subjects_from, "count": count, "per_class": per_class, "seed": seed,
             "batch_size": batch_size, "size": size, "native_size": native_size, "keep_native": keep_native,
             "test_fraction": test_fraction, "sampler": sampler, "steps": steps, "guidance": guidance,
             "negative_prompt": negative_prompt, "max_retries": max_retries, "dtype": dtype,
             "variant": variant, "cpu": cpu, "allow_pickle": allow_pickle, "name": name,
             "classes": [c.strip() for c in classes.split(",") if c.strip()] if classes else None}
    config = resolve_config(GenerateConfig, config_file=config_file, flags=flags, overrides=overrides)
    from synthbench.study.executors import check_workers

    check_workers(workers)
    report = generate(config, out, shard=Shard.parse(shard) if shard else Shard(), overwrite=overwrite,
                      progress=not quiet, executor=executor, workers=workers, address=address)
    if report.dataset is not None:
        click.echo(str(report.out))


@data.command("merge")
@click.option("--out", required=True, type=click.Path(), help="The generation folder to finish.")
@click.argument("shards", nargs=-1, type=click.Path())
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def data_merge(out, shards, quiet):
    """Finish a sharded 'synthbench generate': copy the images of the SHARDS folders (if they were
    written elsewhere) into --out, then write its metadata.jsonl and packed form."""
    from synthbench.generate import merge

    merge(out, list(shards), progress=not quiet)
    click.echo(str(out))


# ------------------------------------------------------------------------------------ study
@contextlib.contextmanager
def _study_warnings():
    """Print each of the study's warnings (resizes, ...), not only the first of its kind (the
    one-line form is main's)."""
    import warnings

    from synthbench.study import StudyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", StudyWarning)
        yield


@contextlib.contextmanager
def _one_line_warnings():
    """Every Python warning (a library's too) as one ``synthbench: warning: ...`` line, the
    same shape as the errors, instead of Python's two-line 'file:line: Category: ...' form."""
    import warnings

    def show(message, category, *args, **kwargs):
        kind = "" if category.__module__.startswith("synthbench") or category is UserWarning else f"{category.__name__}: "
        click.echo(f"synthbench: warning: {kind}{' '.join(str(message).split())}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@cli.group()
def study() -> None:
    """Run a study spec: classifiers on real / artificial / mixed / subset_real data over seeds."""


@study.command("run")
@click.argument("spec", type=click.Path())
@click.option("--shard", help="i/n: run only every n-th distinct cell from the i-th (0 <= i < n), e.g. in a SLURM array.")
@click.option("--out", type=click.Path(), help="Results folder (default: the spec's 'out', or SPEC-results beside it).")
@click.option("--workers", type=int, envvar="SYNTHBENCH_WORKERS",
              help="Cells trained at once in local processes (default: one per GPU, else one per CPU core; 1: serial).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: every cell a Ray task (pip install \"synthbench[ray]\"), with the spec's 'resources'.")
@click.option("--address", help="Ray cluster to join (HOST:PORT or auto; default: RAY_ADDRESS, else a local one).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def study_run(spec, shard, out, workers, executor, address, quiet, overrides):
    """Train and score every cell of SPEC not done yet; rewrite the results tables.

    \b
    Examples:
      synthbench study run digits.yaml
      synthbench study run digits.yaml seeds=[0,1,2,3,4] classifier.train.epochs=20
      synthbench study run animals.yaml --shard $SLURM_ARRAY_TASK_ID/8   (then once more without --shard)
      synthbench study run animals.yaml --executor ray --address auto
    """
    from synthbench.study import run_study

    with _study_warnings():
        report = run_study(spec, shard=shard, out=out, overrides=overrides, progress=not quiet,
                           workers=workers, executor=executor, address=address)
    click.echo(f"{len(report.trained)} cell(s) trained, {len(report.skipped)} already complete"
               + (f", metrics for {', '.join(report.metrics)}" if report.metrics else "")
               + f" in {report.seconds:.1f}s")
    click.echo(str(report.tables.get("results.csv", report.out)))


@study.command("status")
@click.argument("spec", type=click.Path())
@click.option("--out", type=click.Path(), help="Results folder (default: the spec's).")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def study_status_cmd(spec, out, overrides):
    """Show how many cells of SPEC are complete, interrupted or not started."""
    from synthbench.study import study_status

    with _study_warnings():
        click.echo(study_status(spec, out=out, overrides=overrides).format())


@study.command("exchange")
@click.argument("results", type=click.Path())
def study_exchange_cmd(results):
    """How many synthetic images one real image is worth, per generator and size (needs real cells at 3+ sizes).

    Prints exchange_rates.csv of the RESULTS folder (or computes it from results.csv)."""
    from synthbench.report.exchange_table import format_table, from_folder

    table, source = from_folder(results)
    click.echo(f"Exchange rates ({source}); n_eff: real images worth the same accuracy, rate: synthetic images "
               "per real image; '-': outside the measured range or not estimable.")
    click.echo(format_table(table))


# ------------------------------------------------------------------------------------ metrics
@cli.command("metrics")
@click.option("--real", required=True, type=click.Path(), help="The real Dataset.")
@click.option("--fake", required=True, type=click.Path(), help="The generated Dataset.")
@click.option("--features", help="auto (default: inception if its weights are found, else domain), inception, "
                                 "dinov2, domain, or a saved classifier folder.")
@click.option("--inception-weights", type=click.Path(), help="Local pt_inception-2015-12-05 weights file "
                                                             "(or $SYNTHBENCH_INCEPTION_WEIGHTS).")
@click.option("--dinov2-weights", help="DINOv2 model for --features dinov2: a hub id or a local folder "
                                       "(default facebook/dinov2-large, or $SYNTHBENCH_DINOV2_WEIGHTS).")
@click.option("--real-split", help="Split of the real Dataset (default train; 'all' for every image).")
@click.option("--max-images", type=int, help="At most this many images per side (default 10000).")
@click.option("--cache", type=click.Path(), help="Folder for trained domain extractors "
                                                 "(default $SYNTHBENCH_CACHE or ~/.cache/synthbench).")
@click.option("--out", type=click.Path(), help="Also write the result as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def metrics_cmd(real, fake, features, inception_weights, dinov2_weights, real_split, max_images, cache, out,
                as_json, quiet, overrides):
    """FID, KID, precision/recall and density/coverage of --fake against --real, each next to
    the same metric between two halves of the real images (the floor).

    \b
    Examples:
      synthbench metrics --real data/digits --fake data/digits-dcgan
      synthbench metrics --real data/celeba64 --fake data/celeba-ddpm --features inception --inception-weights ~/pt_inception-2015-12-05-6726825d.pth
      synthbench metrics --real data/celeba64 --fake data/celeba-ddpm --features dinov2 --dinov2-weights ~/dinov2-large
    """
    from synthbench.config import resolve_config
    from synthbench.metrics.compute import MetricsConfig, check_json_out, compute_metrics, format_metrics, write_json

    for flag, path in (("--real", real), ("--fake", fake)):
        _refuse_generator(flag, path)
    if out:
        check_json_out(out)
    flags = {"features": features, "inception_weights": inception_weights, "dinov2_weights": dinov2_weights,
             "max_images": max_images, "real_split": real_split}
    if real_split == "all":
        flags["real_split"], overrides = None, ("real_split=null", *overrides)
    config = resolve_config(MetricsConfig, flags=flags, overrides=overrides)
    result = compute_metrics(real, fake, config, cache_dir=cache, progress=not quiet)
    if out:
        write_json(result, out)
    click.echo(json.dumps(result, indent=2) if as_json else format_metrics(result))


def _refuse_generator(flag: str, path: str) -> None:
    """A training run (run.json, or a ``.synthbench`` marker of kind "run") or a saved generator
    (synthbench.json) given where a Dataset belongs: say what it is and the command that makes a
    Dataset from it."""
    from synthbench.generators.base import MODEL_CONFIG
    from synthbench.safety import read_marker, suggest_new

    def is_run(folder: Path) -> bool:
        return (folder / "run.json").is_file() or (read_marker(folder) or {}).get("kind") == "run"

    folder = Path(path)
    if not folder.is_dir() or (folder / "manifest.json").is_file():
        return
    if is_run(folder):
        what, run = "a training run", folder
    elif (folder / MODEL_CONFIG).is_file():
        what, run = "a saved generator", folder.parent if is_run(folder.parent) else folder
    else:
        return
    # Beside the run, never inside it: generate refuses an output inside its input.
    target = run.resolve().parent / f"{run.resolve().name}-samples"
    if target.exists():
        target = suggest_new(target)
    raise DataError(f"{flag} {path} is {what}, not a Dataset of images: make a Dataset from it with "
                    f"'synthbench generate --from {shlex.quote(str(path))} --per-class 100 --out "
                    f"{shlex.quote(str(target))}', then give {flag} {shlex.quote(str(target))}")


# ------------------------------------------------------------------------------------ report
@cli.command("report")
@click.argument("results", type=click.Path())
@click.option("--out", type=click.Path(), help="The HTML file to write (default: RESULTS/report/index.html).")
@click.option("--run", "runs", multiple=True, metavar="NAME=PATH",
              help="A trained generator's run folder to show (grids per epoch, loss curves); repeatable.")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME=PATH",
              help="A Dataset of the study (real, or a generator's name) to show sample grids of; repeatable.")
def report_cmd(results, out, runs, datasets):
    """Write one offline HTML page (tables, figures, sample grids) from a study's results folder."""
    from synthbench.report import build_report

    def named(items, flag):
        pairs = {}
        for item in items:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise click.BadParameter(f"{item!r} is not NAME=PATH", param_hint=flag)
            pairs[name] = path
        return pairs

    click.echo(str(build_report(results, out, runs=named(runs, "--run"), datasets=named(datasets, "--dataset"))))


# ------------------------------------------------------------------------------------ demo
@cli.command("demo")
@click.option("--out", type=click.Path(),
              help="Folder for everything the demo makes (data, runs, synthetic sets, study, report); default "
                   "synthbench-demo, synthbench-demo-quick, synthbench-faces-demo or synthbench-faces-demo-quick.")
@click.option("--quick", is_flag=True, help="The same path at toy size (under a minute; for tests).")
@click.option("--faces", is_flag=True, help="The faces project instead: DCGAN vs pixel DDPM vs latent diffusion on the "
              "bundled LFW faces, quality tracked while they train, four findings measured (about 5 minutes).")
@click.option("--workers", type=int, envvar="SYNTHBENCH_WORKERS",
              help="Processes of one thread each (default: one per core; 1: every stage one after another).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def demo_cmd(out, quick, faces, workers, quiet):
    """Run the whole mission offline on the bundled digits and write the HTML report.

    Prepares the digits, trains a class-conditional DCGAN and a class-conditional diffusion model,
    generates a synthetic Dataset from each, runs the classifier study (real / artificial / mixed /
    subset_real, 3 seeds, scarce real data with a size sweep) and the image-quality metrics.
    With --faces: the second source project measured (see 'synthbench compare').
    """
    from synthbench.demo import run_demo

    click.echo(str(run_demo(out, quick=quick, faces=faces, progress=not quiet, workers=workers)))


# ------------------------------------------------------------------------------------ compare
@cli.command("compare")
@click.option("--run", "runs", multiple=True, required=True, metavar="NAME=PATH",
              help="A trained generator: its run folder (or saved model folder); repeatable.")
@click.option("--real", required=True, type=click.Path(), help="The real Dataset the generators were trained on.")
@click.option("--real-split", default="test", show_default=True, help="Held-out split the samples are scored against.")
@click.option("--train-split", default="train", show_default=True,
              help="Split the generators trained on (the brightness range and the real-vs-real floor).")
@click.option("--draws", type=int, default=5, show_default=True, help="Sample draws per model (the intervals).")
@click.option("--samples", type=int, help="Samples per draw (default: the training images, at most 1000).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of draw 0; draw d starts at seed + d * samples.")
@click.option("--features", help="auto (default: inception if its weights are found, else domain), inception, "
                                 "dinov2, domain, or a saved classifier folder.")
@click.option("--inception-weights", type=click.Path(), help="Local pt_inception-2015-12-05 weights file.")
@click.option("--dinov2-weights", help="DINOv2 model for --features dinov2: a hub id or a local folder.")
@click.option("--cache", type=click.Path(), help="Folder for trained domain extractors "
                                                 "(default $SYNTHBENCH_CACHE or ~/.cache/synthbench).")
@click.option("--out", required=True, type=click.Path(), help="Folder for findings.json and findings.csv.")
@click.option("--allow-other-real", is_flag=True, help="Compare generators whose runs record another training "
                                                       "Dataset than --real (the findings and the page say so).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def compare_cmd(runs, real, real_split, train_split, draws, samples, seed, features, inception_weights,
                dinov2_weights, cache, out, allow_other_real, quiet, overrides):
    """Measure trained generators against the real data: which is closest (FID/KID/precision/recall
    over sample draws, next to the real-vs-real floor), whether each was still improving when it
    stopped, its share of over- and under-exposed samples, and its training cost.

    \b
    Examples:
      synthbench compare --run dcgan=runs/faces-dcgan --run ldm=runs/faces-ldm --real data/faces --out findings
      synthbench compare --run gan=runs/gan --run ddpm=runs/ddpm --real data/faces --draws 10 --samples 500 --out cmp
    """
    from synthbench.config import resolve_config
    from synthbench.metrics.compute import MetricsConfig
    from synthbench.metrics.findings import PAGE, compare_generators, format_findings

    named: dict[str, Path] = {}
    for item in runs:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise click.BadParameter(f"{item!r} is not NAME=PATH", param_hint="--run")
        if name in named:
            raise click.BadParameter(f"the name {name!r} is given twice; give each run its own name", param_hint="--run")
        named[name] = Path(path)
    _refuse_generator("--real", real)
    flags = {"features": features, "inception_weights": inception_weights, "dinov2_weights": dinov2_weights}
    config = resolve_config(MetricsConfig, flags=flags, overrides=overrides)
    findings = compare_generators(named, Path(real), Path(out), reference_split=real_split, train_split=train_split,
                                  draws=draws, samples=samples, seed=seed, metrics=config, cache_dir=cache,
                                  progress=not quiet, allow_other_real=allow_other_real)
    click.echo(format_findings(findings))
    from synthbench.report.compare import build_compare_report

    # The page shows each run's grids and curves: a model folder given as NAME=RUN/model is shown from its run.
    shown = {name: path.parent if path.name == "model" and (path.parent / "metrics.jsonl").is_file() else path
             for name, path in named.items()}
    page = build_compare_report(findings, shown, Path(out) / PAGE,
                                title="generators compared: " + ", ".join(named))
    click.echo(f"findings: {Path(out) / 'findings.json'}; the report, one offline HTML page:")
    click.echo(str(page))


# ------------------------------------------------------------------------------------ entry
def os_error_message(exc: OSError) -> str | None:
    """One line for the file-system failures a user can fix (a full disk, a folder they cannot
    write); None for any other OSError (a bug, shown with its traceback)."""
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"the disk is full{where}: free some space and run the same command again (a run "
                "never leaves a half-written result under its final name)")
    if exc.errno == errno.EROFS:
        return f"cannot write{where}: the file system is read-only; choose an output folder on a writable disk"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{exc.strerror}{where}: make the inputs readable and the output folder writable, or "
                "choose another output folder")
    return None


def error(message: str) -> None:
    """Print the one error format of every command: ``synthbench: error: <message>``, one line."""
    click.echo(f"synthbench: error: {' '.join(str(message).split())}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. Every failure a user can act on (a SynthbenchError, a usage error, a file
    system error) prints one ``synthbench: error: ...`` line and exits 2; an interrupt exits 130."""
    try:
        with _one_line_warnings():
            cli.main(args=argv, prog_name="synthbench", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "synthbench"
        error(f"{exc.format_message()} (see '{where} --help')")
        return 2
    except click.ClickException as exc:
        error(exc.format_message())
        return 2
    except SynthbenchError as exc:
        error(str(exc))
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except OSError as exc:
        # A failure the user can fix gets its advice; any other still gets the one line (the
        # system's own words and the file), never a traceback.
        where = f" ({exc.filename})" if exc.filename else ""
        error(os_error_message(exc) or f"{exc.strerror or exc}{where}")
        return 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        error("interrupted (nothing half-written is left under its final name)")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
