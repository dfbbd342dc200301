"""``synthworth metrics`` (one generated Dataset against the real one) and ``synthworth compare``
(trained generators measured over sample draws: the findings and their page)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from synthworth.cli.app import cli
from synthworth.errors import DataError


@cli.command("metrics")
@click.option("--real", required=True, type=click.Path(), help="The real Dataset.")
@click.option("--fake", required=True, type=click.Path(), help="The generated Dataset.")
@click.option("--features", help="auto (default: inception if its weights are found, else domain), inception, "
                                 "dinov2, domain, or a saved classifier folder.")
@click.option("--inception-weights", type=click.Path(), help="Local pt_inception-2015-12-05 weights file "
                                                             "(or $SYNTHWORTH_INCEPTION_WEIGHTS).")
@click.option("--dinov2-weights", help="DINOv2 model for --features dinov2: a hub id or a local folder "
                                       "(default facebook/dinov2-large, or $SYNTHWORTH_DINOV2_WEIGHTS).")
@click.option("--real-split", help="Split of the real Dataset (default train; 'all' for every image).")
@click.option("--max-images", type=int, help="At most this many images per side (default 10000).")
@click.option("--cache", type=click.Path(), help="Folder for trained domain extractors "
                                                 "(default $SYNTHWORTH_CACHE or ~/.cache/synthworth).")
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
      synthworth metrics --real data/digits --fake data/digits-dcgan
      synthworth metrics --real data/celeba64 --fake data/celeba-ddpm --features inception --inception-weights ~/pt_inception-2015-12-05-6726825d.pth
      synthworth metrics --real data/celeba64 --fake data/celeba-ddpm --features dinov2 --dinov2-weights ~/dinov2-large
    """
    from synthworth.config import resolve_config
    from synthworth.metrics.compute import MetricsConfig, check_json_out, compute_metrics, format_metrics, write_json

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
    """A training run (run.json, or a ``.synthworth`` marker of kind "run") or a saved generator
    (synthworth.json) given where a Dataset belongs: say what it is and the command that makes a
    Dataset from it."""
    from synthworth.generators.base import MODEL_CONFIG
    from synthworth.safety import read_marker, suggest_new

    def is_run(folder: Path) -> bool:
        return (folder / "run.json").is_file() or (read_marker(folder) or {}).get("kind") == "run"

    folder = Path(path)
    if not folder.is_dir() or (folder / "manifest.json").is_file():
        return
    from synthworth.engine.replicates import is_replicates

    if is_replicates(folder):
        what, run = "a folder of trained replicates", folder
    elif is_run(folder):
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
                    f"'synthworth generate --from {shlex.quote(str(path))} --per-class 100 --out "
                    f"{shlex.quote(str(target))}', then give {flag} {shlex.quote(str(target))}")


@cli.command("compare")
@click.option("--run", "runs", multiple=True, required=True, metavar="NAME=PATH",
              help="A trained generator: its run folder (or saved model folder), or a folder of replicates "
                   "('train --replicates': intervals over its runs and a test between models); repeatable.")
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
                                                 "(default $SYNTHWORTH_CACHE or ~/.cache/synthworth).")
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
      synthworth compare --run dcgan=runs/faces-dcgan --run ldm=runs/faces-ldm --real data/faces --out findings
      synthworth compare --run gan=runs/gan --run ddpm=runs/ddpm --real data/faces --draws 10 --samples 500 --out cmp
      synthworth compare --run gan=runs/gan-replicates --run ldm=runs/ldm-replicates --real data/faces --out cmp
    """
    from synthworth.config import resolve_config
    from synthworth.metrics.compute import MetricsConfig
    from synthworth.metrics.findings import PAGE, compare_generators, format_findings

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
    from synthworth.report.compare import build_compare_report

    # The page shows each run's grids and curves: a model folder given as NAME=RUN/model is shown from its run.
    shown = {name: path.parent if path.name == "model" and (path.parent / "metrics.jsonl").is_file() else path
             for name, path in named.items()}
    page = build_compare_report(findings, shown, Path(out) / PAGE,
                                title="generators compared: " + ", ".join(named))
    click.echo(f"findings: {Path(out) / 'findings.json'}; the report, one offline HTML page:")
    click.echo(str(page))
