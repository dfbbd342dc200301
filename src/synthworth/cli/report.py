"""``synthworth report``: the offline HTML page of a study's results folder."""

from __future__ import annotations

import click

from synthworth.cli.app import cli


@cli.command("report")
@click.argument("results", type=click.Path())
@click.option("--out", type=click.Path(), help="The HTML file to write (default: RESULTS/report/index.html).")
@click.option("--run", "runs", multiple=True, metavar="NAME=PATH",
              help="A trained generator's run folder to show (grids per epoch, loss curves); repeatable.")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME=PATH",
              help="A Dataset of the study (real, or a generator's name) to show sample grids of; repeatable.")
def report_cmd(results, out, runs, datasets):
    """Write one offline HTML page (tables, figures, sample grids) from a study's results folder."""
    from synthworth.report import build_report

    def named(items, flag):
        pairs = {}
        for item in items:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise click.BadParameter(f"{item!r} is not NAME=PATH", param_hint=flag)
            pairs[name] = path
        return pairs

    click.echo(str(build_report(results, out, runs=named(runs, "--run"), datasets=named(datasets, "--dataset"))))
