"""``synthworth plan`` and ``synthworth plan-check``: per-class generation from a study's
per-class exchange rates, and that plan measured against uniform generation."""

from __future__ import annotations

import click

from synthworth.cli.app import cli


def _write(path, data) -> None:
    import json
    import os
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise click.UsageError(f"--out {path} is a folder; give a file name, e.g. {path / 'plan.json'}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@cli.command("plan")
@click.argument("results", type=click.Path())
@click.option("--generator", required=True, help="The synthetic Dataset's name in the study's spec.")
@click.option("--images", type=int, help="Budget: synthetic images to generate in all.")
@click.option("--seconds", type=float, help="Budget: seconds of sampling (needs the generation time per image its "
              "Dataset records).")
@click.option("--target-accuracy", type=float, help="Budget: the fewest images expected to reach this class-averaged "
              "accuracy.")
@click.option("--real-images", type=int, help="Real training images to plan for, all classes (default: the study's "
              "largest real size).")
@click.option("--real-cost", type=float, help="Price of one labelled real image in synthetic images: then a class "
              "may be told to label real images instead.")
@click.option("--resamples", type=int, default=1000, show_default=True, help="Bootstrap replicates of the intervals.")
@click.option("--out", required=True, type=click.Path(), help="The plan file to write (JSON), for 'generate --plan'.")
def plan_cmd(results, generator, images, seconds, target_accuracy, real_images, real_cost, resamples, out):
    """How many synthetic images of each class to generate, from the per-class curves of a study.

    \b
    Examples:
      synthworth plan study-results --generator dcgan --images 2000 --out plan.json
      synthworth plan study-results --generator dcgan --target-accuracy 0.95 --real-images 100 --out plan.json
      synthworth plan study-results --generator sd21 --seconds 3600 --real-cost 20 --out plan.json
      synthworth generate --from runs/dcgan --plan plan.json --out synthetic/dcgan-planned
    """
    from synthworth.study.plan_text import format_plan
    from synthworth.study.planner import make_plan

    if resamples < 100:
        raise click.UsageError(f"--resamples {resamples}: at least 100 (a 95 % percentile interval needs them)")
    plan = make_plan(results, generator, images=images, seconds=seconds, target_accuracy=target_accuracy,
                     real_cost=real_cost, real_images=real_images, resamples=resamples)
    _write(out, plan)
    click.echo(format_plan(plan))
    click.echo(f"Written: {out}")


@cli.command("plan-check")
@click.argument("results", type=click.Path())
@click.option("--planned", required=True, help="The Dataset generated from the plan (its name in the spec; "
              "draw: as_generated).")
@click.option("--uniform", required=True, help="The Dataset of the same generator and size generated uniformly.")
@click.option("--size", type=int, help="The mixed cells' size to compare (default: the largest both have).")
@click.option("--plan", "plan_file", type=click.Path(), help="The plan file, to set its prediction beside the result.")
@click.option("--resamples", type=int, default=1000, show_default=True, help="Bootstrap replicates of the n_eff interval.")
@click.option("--out", type=click.Path(), help="Also write the check as JSON here.")
def plan_check_cmd(results, planned, uniform, size, plan_file, resamples, out):
    """Planned against uniform generation in one study: accuracy and real-image equivalents, paired.

    \b
    Example:
      synthworth plan-check check-results --planned planned --uniform uniform --plan plan.json
    """
    from synthworth.study.plan_check import check_plan
    from synthworth.study.plan_text import format_check
    from synthworth.study.planner import json_ready

    if resamples < 100:
        raise click.UsageError(f"--resamples {resamples}: at least 100 (a 95 % percentile interval needs them)")
    check = json_ready(check_plan(results, planned, uniform, size=size, plan_file=plan_file, resamples=resamples))
    click.echo(format_check(check))
    if out:
        _write(out, check)
