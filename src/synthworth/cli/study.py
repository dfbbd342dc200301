"""``synthworth study``: run a study spec, show its status, print its exchange rates."""

from __future__ import annotations

import contextlib

import click

from synthworth.cli.app import cli


@contextlib.contextmanager
def _study_warnings():
    """Print each of the study's warnings (resizes, ...), not only the first of its kind (the
    one-line form is main's)."""
    import warnings

    from synthworth.study import StudyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", StudyWarning)
        yield


@cli.group()
def study() -> None:
    """Run a study spec: classifiers on real / artificial / mixed / subset_real data over seeds."""


@study.command("run")
@click.argument("spec", type=click.Path())
@click.option("--shard", help="i/n: run only every n-th distinct cell from the i-th (0 <= i < n), e.g. in a SLURM array.")
@click.option("--out", type=click.Path(), help="Results folder (default: the spec's 'out', or SPEC-results beside it).")
@click.option("--workers", type=int, envvar="SYNTHWORTH_WORKERS",
              help="Cells trained at once in local processes (default: one per GPU, else one per CPU core; 1: serial).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: every cell a Ray task (pip install \"synthworth[ray]\"), with the spec's 'resources'.")
@click.option("--address", help="Ray cluster to join (HOST:PORT or auto; default: RAY_ADDRESS, else a local one).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def study_run(spec, shard, out, workers, executor, address, quiet, overrides):
    """Train and score every cell of SPEC not done yet; rewrite the results tables.

    \b
    Examples:
      synthworth study run digits.yaml
      synthworth study run digits.yaml seeds=[0,1,2,3,4] classifier.train.epochs=20
      synthworth study run animals.yaml --shard $SLURM_ARRAY_TASK_ID/8   (then once more without --shard)
      synthworth study run animals.yaml --executor ray --address auto
    """
    from synthworth.study import run_study

    with _study_warnings():
        report = run_study(spec, shard=shard, out=out, overrides=overrides, progress=not quiet,
                           workers=workers, executor=executor, address=address)
    click.echo(f"{len(report.trained)} cell(s) trained, {len(report.skipped)} already complete"
               + (f", metrics for {', '.join(report.metrics)}" if report.metrics else "")
               + f" in {report.seconds:.1f}s")
    if report.predictions_added:
        click.echo(f"{len(report.predictions_added)} finished cell(s) given per-image predictions by their saved "
                   "models (not retrained)")
    click.echo(str(report.tables.get("results.csv", report.out)))


@study.command("status")
@click.argument("spec", type=click.Path())
@click.option("--out", type=click.Path(), help="Results folder (default: the spec's).")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def study_status_cmd(spec, out, overrides):
    """Show how many cells of SPEC are complete, interrupted or not started."""
    from synthworth.study import study_status

    with _study_warnings():
        click.echo(study_status(spec, out=out, overrides=overrides).format())


@study.command("exchange")
@click.argument("results", type=click.Path())
def study_exchange_cmd(results):
    """How many synthetic images one real image is worth, per generator and size (needs real cells at 3+ sizes).

    Prints exchange_rates.csv of the RESULTS folder (or computes it from results.csv)."""
    from synthworth.report.exchange_table import format_table, from_folder

    table, source = from_folder(results)
    click.echo(f"Exchange rates ({source}); n_eff: real images worth the same accuracy, rate: synthetic images "
               "per real image; '-': outside the measured range or not estimable.")
    click.echo(format_table(table))
