"""Benchmark: bf16 mixed precision vs fp32, time per training step of every trainer, and (``--demo``)
whether bf16 moves the digits demo's accuracy table beyond its intervals.

Step times. Each trainer is trained through synthworth's own engine (``engine.loop.fit``) with its
own Task and model builders, once with ``train.mixed_precision=no`` and once with ``bf16``, side by
side in one run (the order alternates between repeats):

  resnet34   the thesis classifier (torchvision ResNet-34 from scratch), 64x64 RGB, batch 32
  small_cnn  the ``small`` classifier preset (the demo's), 32x32 RGB, batch 16
  dcgan      the ``dcgan`` preset (64x64, five layers per network), batch 128
  ddpm       the ``digits-ddpm`` preset (class-conditional UNet, channels 32-64-64), 32x32 RGB, batch 16
  vae        the ``vae/small`` preset (AutoencoderKL, channels 32-64), 32x32 RGB, batch 32
  ldm        the ``ldm/small`` preset (UNet on the latents of a ``vae/small`` autoencoder), batch 32

on Datasets of random pixels written in a temporary folder (step time does not depend on the
pictures). What is timed, as in ``bench_engine.py``: a subclass of the Task records
``time.perf_counter()`` as each step starts; the per-step time of a run is (start of step W+K -
start of step W) / K, so it covers the whole iteration (data, forward, backward, optimizer, the
loop's bookkeeping) and none of the one-time costs. Each Dataset is large enough that no epoch
ends inside the window (no sample grids) and no checkpoint is written inside it. The speed-up
is fp32 s/step / bf16 s/step (above 1: bf16 is faster), the median over repeats of the
per-repeat ratio. No target: the figures are for the decision. Then the dcgan and ddpm models
those runs exported are sampled (256 DCGAN images; 16 DDPM images, 20 DPM-Solver++ steps) in
fp32 and with ``dtype="bfloat16"`` (forward passes only), interleaved, medians of the repeats.

``--demo``: the digits demo (``synthworth demo``, fp32, into a temporary folder, or ``--demo-from``
an existing one, read only) gives the Datasets; its study (the spec the demo saved, image metrics
off) is then run twice into new folders, ``precision: fp32`` and ``precision: bf16``, and the
accuracy table (summary.csv) is compared group by group: is each bf16 mean inside the fp32
group's 95 % interval (``accuracy_ci_low`` .. ``accuracy_ci_high``, the interval named by
``accuracy_interval``), and how far do the cells of the same seed move. The fp32 run is also
checked against the demo's own table (the same keys: it must reproduce it).

On a CPU shared with other busy processes run it with OMP_WAIT_POLICY=PASSIVE (see
``_common.torch_note``) and compare ratios within one run only.

Run:  OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_bf16.py      (about 20 minutes on 2 loaded cores)
      OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_bf16.py --models small_cnn,ddpm --repeats 3
      OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_bf16.py --models none --demo
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_note, load_note, torch_note  # noqa: E402

# name: (train kind, preset, image side, channels, overrides, default timed steps)
MODELS = {
    "resnet34": ("classifier", "thesis", 64, 3, ["model.resolution=64", "train.batch_size=32"], 4),
    "small_cnn": ("classifier", "small", 32, 3, ["train.batch_size=16"], 30),
    "dcgan": ("dcgan", "dcgan", 64, 3, ["train.batch_size=128"], 4),
    "ddpm": ("ddpm", "digits-ddpm", 32, 3, ["train.batch_size=16"], 10),
    "vae": ("vae", "small", 32, 3, ["train.batch_size=32"], 10),
    "ldm": ("ldm", "small", 32, 3, ["train.batch_size=32", "scale_samples=64"], 10),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, or none: {', '.join(MODELS)}")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (K; default: per model)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every run (W)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each precision; the median ratio counts")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--demo", action="store_true", help="also compare the digits demo's accuracy table, fp32 vs bf16")
    p.add_argument("--demo-from", default=None, help="an existing 'synthworth demo' folder to take the data from (read only)")
    p.add_argument("--keep", default=None, help="write the runs and studies here instead of a temporary folder")
    return p.parse_args(argv)


# ------------------------------------------------------------------------ the machine
def precision_note() -> str:
    import torch

    from synthworth.engine.precision import cpu_native_bf16

    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    flags = [f for f in ("amx_bf16", "avx512_bf16") if caps.get(f)]
    native = cpu_native_bf16()
    return (f"native bf16 on this CPU: {native} (/proc/cpuinfo; torch sees {', '.join(flags) or 'neither'} "
            "of amx_bf16, avx512_bf16)")


# ------------------------------------------------------------------------ step times
def random_dataset(path: Path, n: int, side: int, channels: int, classes: int = 4):
    """A packed labelled Dataset of ``n`` random images (what step time needs, nothing more)."""
    from synthworth.data.dataset import Dataset, atomic_folder, write_packed

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, side, side, channels), dtype=np.uint8)
    labels = np.arange(n) % classes
    with atomic_folder(path, kind="dataset") as tmp:
        write_packed(tmp, images, labels, np.full(n, "train"), [f"c{i}" for i in range(classes)],
                     [{} for _ in range(n)], {"kind": "benchmark"})
    return Dataset.open(path)


def make_vae(root: Path, dataset) -> Path:
    """A ``vae/small`` AutoencoderKL built by synthworth's VAE task (random weights), saved where
    ``ldm`` finds it: step time does not depend on what it learnt."""
    import torch

    from synthworth.config import resolve_config
    from synthworth.generators.diffusion import VAEConfig, VAETask

    folder = root / "vae"
    if not folder.is_dir():
        task = VAETask(resolve_config(VAEConfig, preset=("vae", "small")))
        task.build(dataset, torch.device("cpu"))
        task.modules["vae"].vae.save_pretrained(folder, safe_serialization=True)
    return folder


def timed_run(name: str, precision: str, dataset, root: Path, steps: int, warmup: int, run_id: str) -> float:
    """Seconds per step of ``name`` trained in ``precision`` (no / bf16) by the engine."""
    from synthworth.engine.loop import fit
    from synthworth.engine.precision import PrecisionWarning
    from synthworth.train import MODELS as TRAINERS
    from synthworth.train import resolve_train_config

    kind, preset, _, _, overrides, _ = MODELS[name]
    total = warmup + steps + 1
    extra = [f"vae={make_vae(root, dataset)}"] if kind == "ldm" else []
    out = root / "runs" / f"{name}-{precision}-{run_id}"
    config = resolve_train_config(kind, out, preset=preset, overrides=[
        *overrides, *extra, f"train.mixed_precision={precision}", f"train.max_steps={total}",
        "train.epochs=1", "train.progress=false", f"train.checkpoint_every={10 * total}"])
    stamps: list[float] = []

    class Timed(TRAINERS[kind].task()):
        def step(self, batch, ctx):
            stamps.append(time.perf_counter())
            return super().step(batch, ctx)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)  # said once in the header
        run = fit(Timed(config), dataset, out, config.train)
    recorded = json.loads(run.info_file.read_text())["history"][0]["precision"]["mixed_precision"]
    assert recorded == precision, (recorded, precision)
    if len(stamps) < total:
        raise RuntimeError(f"{name}: only {len(stamps)} steps ran, need {total} (is the Dataset one epoch long?)")
    return (stamps[warmup + steps] - stamps[warmup]) / steps


def step_times(args: argparse.Namespace, root: Path) -> list[dict]:
    names = [n for n in args.models.split(",") if n and n != "none"]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    datasets = {}
    rows = []
    for name in names:
        kind, preset, side, channels, overrides, default_steps = MODELS[name]
        steps = args.steps or default_steps
        batch = int(next(o for o in overrides if o.startswith("train.batch_size=")).split("=")[1])
        need = (args.warmup + steps + 2) * batch
        key = (side, channels, need)
        if key not in datasets:
            datasets[key] = random_dataset(root / "data" / f"{side}px-{channels}ch-{need}", need, side, channels)
        dataset = datasets[key]
        per_repeat = []
        times = {"no": [], "bf16": []}
        for r in range(args.repeats):
            order = ("no", "bf16") if r % 2 == 0 else ("bf16", "no")
            got = {}
            for precision in order:
                got[precision] = timed_run(name, precision, dataset, root, steps, args.warmup, str(r))
                times[precision].append(got[precision])
            per_repeat.append(got["no"] / got["bf16"])
            print(f"  {name} repeat {r + 1}: fp32 {got['no']:.3f} s/step, bf16 {got['bf16']:.3f} s/step, "
                  f"speed-up {per_repeat[-1]:.2f}x", flush=True)
        rows.append({"model": name, "batch": batch, "side": side, "steps": steps,
                     "fp32": statistics.median(times["no"]), "bf16": statistics.median(times["bf16"]),
                     "speedup": statistics.median(per_repeat)})
    return rows


def sampling_times(root: Path, repeats: int) -> list[dict]:
    """Seconds to sample from the dcgan and ddpm models the step-time runs exported (random-ish
    weights: time does not depend on them), fp32 vs ``dtype="bfloat16"`` autocast, interleaved."""
    from synthworth.generators.base import load_generator

    jobs = {"dcgan": (256, {}), "ddpm": (16, {"steps": 20})}
    rows = []
    for name, (n, options) in jobs.items():
        runs = sorted((root / "runs").glob(f"{name}-no-*"))
        if not runs:
            continue
        gen = load_generator(runs[0])
        gen.sample(2, seed=0, **options)  # warm-up of both paths
        gen.sample(2, seed=0, dtype="bfloat16", **options)
        times = {None: [], "bfloat16": []}
        for r in range(repeats):
            for dtype in ((None, "bfloat16") if r % 2 == 0 else ("bfloat16", None)):
                t0 = time.perf_counter()
                gen.sample(n, seed=0, dtype=dtype, **options)
                times[dtype].append(time.perf_counter() - t0)
        fp32, bf16 = statistics.median(times[None]), statistics.median(times["bfloat16"])
        what = f"{n} images" + (f", {options['steps']} DPM-Solver++ steps" if options else "")
        rows.append({"model": f"{name} sampling ({what})", "fp32": fp32, "bf16": bf16, "speedup": fp32 / bf16})
        print(f"  {name} sampling: fp32 {fp32:.2f} s, bf16 {bf16:.2f} s", flush=True)
    return rows


def print_steps(rows: list[dict]) -> None:
    if not rows:
        return
    print("\n| trainer | batch | side | fp32 s/step | bf16 s/step | speed-up fp32/bf16 (median of repeats) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['side']} | {r['fp32']:.3f} | {r['bf16']:.3f} | {r['speedup']:.2f}x |")


# ------------------------------------------------------------------------ the demo's table
def demo_comparison(args: argparse.Namespace, root: Path) -> None:
    import pandas as pd
    import yaml

    from synthworth.study.runner import run_study
    from synthworth.study.spec import StudySpec

    demo = Path(args.demo_from) if args.demo_from else root / "demo"
    if args.demo_from is None:
        from synthworth.demo import run_demo

        t0 = time.perf_counter()
        run_demo(demo, progress=False, workers=1)
        print(f"\ndemo (fp32, the default) in {time.perf_counter() - t0:.0f} s: {demo}", flush=True)
    saved = yaml.safe_load((demo / "study" / "study.yaml").read_text(encoding="utf-8"))["spec"]
    seconds, tables = {}, {}
    for precision in ("fp32", "bf16"):
        out = root / f"study-{precision}"
        spec = StudySpec.model_validate({**saved, "out": str(out), "precision": precision,
                                         "metrics": {**saved.get("metrics", {}), "enabled": False}})
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the study's notes were the demo's; bf16's is in the header
            run_study(spec, progress=False, workers=1)
        seconds[precision] = time.perf_counter() - t0
        tables[precision] = (pd.read_csv(out / "summary.csv"), pd.read_csv(out / "results.csv"))
        print(f"study in {precision}: {seconds[precision]:.0f} s ({out})", flush=True)

    group = ["composition", "generator", "filter", "size"]
    (s32, r32), (s16, r16) = tables["fp32"], tables["bf16"]
    own = pd.read_csv(demo / "study" / "results.csv")
    cell = group + ["seed"]
    same = r32.merge(own, on=cell, suffixes=("", "_demo"))
    reproduced = len(same) == len(r32) and bool((same["accuracy"] == same["accuracy_demo"]).all())
    print(f"the fp32 rerun reproduces the demo's own results.csv: {reproduced} ({len(same)} cells matched)")

    both = s32.merge(s16, on=group, suffixes=("_fp32", "_bf16"))
    both["inside"] = ((both["accuracy_mean_bf16"] >= both["accuracy_ci_low_fp32"])
                      & (both["accuracy_mean_bf16"] <= both["accuracy_ci_high_fp32"]))
    print("\n| composition | generator | size | fp32 accuracy [95 % interval] | bf16 accuracy [95 % interval] "
          "| bf16 - fp32 | bf16 mean inside fp32 interval |")
    print("|---|---|---:|---|---|---:|---|")
    for _, r in both.iterrows():
        gen = r["generator"] if isinstance(r["generator"], str) and r["generator"] else "-"
        print(f"| {r['composition']} | {gen} | {int(r['size'])} | {r['accuracy_mean_fp32']:.4f} "
              f"[{r['accuracy_ci_low_fp32']:.4f}, {r['accuracy_ci_high_fp32']:.4f}] | {r['accuracy_mean_bf16']:.4f} "
              f"[{r['accuracy_ci_low_bf16']:.4f}, {r['accuracy_ci_high_bf16']:.4f}] | "
              f"{r['accuracy_mean_bf16'] - r['accuracy_mean_fp32']:+.4f} | {'yes' if r['inside'] else 'NO'} |")
    interval = ", ".join(sorted(set(both["accuracy_interval_fp32"].astype(str))))
    cells = r32.merge(r16, on=cell, suffixes=("_fp32", "_bf16"))
    diff = (cells["accuracy_bf16"] - cells["accuracy_fp32"]).abs()
    print(f"\nintervals: {interval}")
    print(f"cells of the same seed: {len(cells)}; identical accuracy {int((diff == 0).sum())}; mean |bf16 - fp32| "
          f"{diff.mean():.4f}, largest {diff.max():.4f}")
    print(f"study seconds: fp32 {seconds['fp32']:.0f}, bf16 {seconds['bf16']:.0f} "
          f"(speed-up {seconds['fp32'] / seconds['bf16']:.2f}x; one run each, not interleaved)")
    print(f"VERDICT: {int(both['inside'].sum())} of {len(both)} bf16 group means lie inside the fp32 group's "
          "95 % interval")
    if args.keep:
        both.to_csv(Path(args.keep) / "bf16_vs_fp32_summary.csv", index=False)


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"bench_bf16: {cpu_note()}, {torch_note()}, {load_note()}")
    print(precision_note(), flush=True)
    with tempfile.TemporaryDirectory(prefix="synthworth-bf16-") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        rows = step_times(args, root)
        print_steps(rows)
        sampled = sampling_times(root, args.repeats)
        if sampled:
            print("\n| sampling | fp32 s | bf16 s | speed-up fp32/bf16 (medians) |")
            print("|---|---:|---:|---:|")
            for r in sampled:
                print(f"| {r['model']} | {r['fp32']:.2f} | {r['bf16']:.2f} | {r['speedup']:.2f}x |")
        if args.demo:
            demo_comparison(args, root)
    print(f"done; {load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
