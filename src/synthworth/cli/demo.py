"""``synthworth demo``: the whole mission offline on bundled data."""

from __future__ import annotations

import click

from synthworth.cli.app import cli


@cli.command("demo")
@click.option("--out", type=click.Path(),
              help="Folder for everything the demo makes (data, runs, synthetic sets, study, report); default "
                   "synthworth-demo, synthworth-demo-quick, synthworth-faces-demo or synthworth-faces-demo-quick.")
@click.option("--quick", is_flag=True, help="The same path at toy size (under a minute; for tests).")
@click.option("--faces", is_flag=True, help="The faces project instead: DCGAN vs pixel DDPM vs latent diffusion on the "
              "bundled LFW faces, 3 replicates (seeds) of each, quality tracked while they train, four findings measured "
              "over the replicates (about 3-5 minutes on 2 cores).")
@click.option("--workers", type=int, envvar="SYNTHWORTH_WORKERS",
              help="Processes of one thread each (default: one per core; 1: every stage one after another).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def demo_cmd(out, quick, faces, workers, quiet):
    """Run the whole mission offline on the bundled digits and write the HTML report.

    Prepares the digits, trains a class-conditional DCGAN and a class-conditional diffusion model,
    generates a synthetic Dataset from each, runs the classifier study (real / artificial / mixed /
    subset_real, 3 seeds, scarce real data with a size sweep) and the image-quality metrics.
    With --faces: the second source project measured (see 'synthworth compare').
    """
    from synthworth.demo import run_demo

    click.echo(str(run_demo(out, quick=quick, faces=faces, progress=not quiet, workers=workers)))
