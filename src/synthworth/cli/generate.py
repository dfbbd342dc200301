"""``synthworth generate``: a labelled synthetic Dataset from a trained generator or a pipeline."""

from __future__ import annotations

import click

from synthworth.cli.app import Choice, cli


@cli.command("generate")
@click.option("--from", "from_run", type=click.Path(), help="A trained generator: a run folder, a saved generator folder, or a folder of "
                   "replicates ('train --replicates': an equal share of the images from each).")
@click.option("--pipeline", help="A text-to-image pipeline: sd21, realistic-vision-14, openjourney-v4, "
              "kandinsky-22, sdxl, another hub id, or a local diffusers folder.")
@click.option("--prior", help="Kandinsky: its prior pipeline (hub id or folder; default: the decoder's own).")
@click.option("--theme", help="Text-to-image prompts: animals, fruits, or a theme YAML file.")
@click.option("--subjects-from", type=click.Path(), help="Text-to-image: the subjects are this prepared Dataset's classes.")
@click.option("--count", type=int, help="Number of images (classes take turns).")
@click.option("--per-class", type=int, help="Images per class (instead of --count).")
@click.option("--plan", "plan_file", type=click.Path(), help="A plan of 'synthworth plan': its images per class "
              "(instead of --count / --per-class).")
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
@click.option("--dtype", type=Choice(["auto", "float16", "bfloat16", "float32"]), help="Precision (auto: fp16 on GPU for pipelines; trained generators: fp32, or sample under bf16/fp16 autocast).")
@click.option("--variant", help="Weight variant to download, e.g. fp16.")
@click.option("--cpu", is_flag=True, default=None, help="Generate on the CPU even where a GPU is available.")
@click.option("--allow-pickle", is_flag=True, default=None, help="Allow pickled .bin weights (only from sources you trust).")
@click.option("--name", help="Generator name in the metadata (default: pipeline or run folder name).")
@click.option("--shard", help="i/n: make only this share (then 'synthworth data merge').")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: blocks spread over Ray actors, one per GPU (pip install \"synthworth[ray]\").")
@click.option("--workers", type=int, help="--executor ray without GPUs: one-CPU actors (default: the cluster's CPUs).")
@click.option("--address", help="Ray cluster to join (HOST:PORT or auto; default: RAY_ADDRESS, else a local one).")
@click.option("--config", "config_file", type=click.Path(), help="A YAML file of options.")
@click.option("--overwrite", is_flag=True,
              help="Start --out (and OUT-native) again; only a generation synthworth wrote is replaced.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def generate_cmd(from_run, pipeline, prior, theme, subjects_from, count, per_class, plan_file, classes, out, seed,
                 batch_size, size, native_size, keep_native, test_fraction, sampler, steps, guidance, negative_prompt,
                 max_retries, dtype, variant, cpu, allow_pickle, name, shard, executor, workers, address, config_file,
                 overwrite, quiet, overrides):
    """Generate a labelled synthetic Dataset: PNG class folders, metadata.jsonl and the packed form.

    \b
    Examples:
      synthworth generate --from runs/digits-gan --per-class 100 --out synthetic/digits-gan
      synthworth generate --from runs/digits-gan --plan plan.json --out synthetic/digits-gan-planned
      synthworth generate --pipeline sd21 --theme animals --count 1000 --out synthetic/animals-sd21
      synthworth generate --pipeline ./pipelines/sd21 --theme my-theme.yaml --count 200 --out synthetic/mine
      synthworth generate --pipeline sd21 --theme fruits --count 1000 --out synthetic/fruits-sd21 --shard 0/4
    """
    from synthworth.config import resolve_config
    from synthworth.generate import GenerateConfig, Shard, generate

    flags = {"from_run": from_run, "pipeline": pipeline, "prior": prior, "theme": theme,
             "subjects_from": subjects_from, "count": count, "per_class": per_class, "seed": seed,
             "batch_size": batch_size, "size": size, "native_size": native_size, "keep_native": keep_native,
             "test_fraction": test_fraction, "sampler": sampler, "steps": steps, "guidance": guidance,
             "negative_prompt": negative_prompt, "max_retries": max_retries, "dtype": dtype,
             "variant": variant, "cpu": cpu, "allow_pickle": allow_pickle, "name": name,
             "classes": [c.strip() for c in classes.split(",") if c.strip()] if classes else None}
    if plan_file is not None:
        from synthworth.generate.planfile import read_plan

        flags["class_counts"] = read_plan(plan_file)
    config = resolve_config(GenerateConfig, config_file=config_file, flags=flags, overrides=overrides)
    from synthworth.procs import check_workers

    check_workers(workers)
    report = generate(config, out, shard=Shard.parse(shard) if shard else Shard(), overwrite=overwrite,
                      progress=not quiet, executor=executor, workers=workers, address=address)
    if report.dataset is not None:
        click.echo(str(report.out))
