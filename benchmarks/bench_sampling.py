"""Benchmark: sampling the digits DDPM with DPM-Solver++ (20 steps) and DDIM (50) vs ancestral DDPM (1,000).

Issue 4, "Speed". A class-conditional pixel DDPM of the bundled digits (16x16, preset
``ddpm/digits-ddpm``) is trained here through synthworth's engine, or loaded with ``--model
RUN``. Then class-balanced images are sampled three ways from the same model, the same seeds
and the same labels, side by side: DPM-Solver++ at 20 steps, DDIM at 50 steps and ancestral
DDPM at all 1,000 steps (with the model's classifier-free guidance scale for all three).

Timing is interleaved: the images are made in chunks of ``--batch-size`` (image i depends only
on seed + i, so chunks give the same images as one call), and chunk k of every sampler runs
before chunk k+1 of any, so a change in the machine's load hits all three alike. Seconds per
image of each sampler = the median over its chunks; "seconds for 1,000" = that x 1,000.
Ancestral DDPM is slow (about 50x DPM-Solver++), so by default it makes only ``--ddpm-n``
images (fewer than ``--n``) and its time for 1,000 is EXTRAPOLATED from them (said so in the
output); its agreement is measured on those images only. The step-count ratio (1,000 / steps,
the number of UNet evaluations saved) is printed beside the measured speed-up.

Quality is the classifier-agreement score (``_agreement.py``): the share of samples a CNN
trained on the real digits (>= 97 % on the real test split) labels as the intended class.

Run:  .venv/bin/python benchmarks/bench_sampling.py                   (trains ~4 min, then ~5 min of sampling)
      .venv/bin/python benchmarks/bench_sampling.py --model RUN_OR_MODEL_FOLDER --ddpm-n 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _agreement import balanced_labels, prepare_digits, train_judge  # noqa: E402
from _common import cpu_note, load_note, torch_note  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None, help="a trained digits DDPM (run folder or model folder); default: train one")
    p.add_argument("--data", default=None, help="a prepared 16x16 digits Dataset (default: prepared in a temp dir)")
    p.add_argument("--preset", default="digits-ddpm", help="DDPM preset when training")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of the training config (repeatable)")
    p.add_argument("--keep", default=None, help="keep the trained run in this folder (reuse it with --model)")
    p.add_argument("--n", type=int, default=1000, help="images per fast sampler (DPM-Solver++, DDIM)")
    p.add_argument("--ddpm-n", type=int, default=200,
                   help="images for ancestral DDPM-1000; fewer than --n: its time for --n is extrapolated")
    p.add_argument("--batch-size", type=int, default=100, help="images per sampling chunk (one batch)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    return p.parse_args(argv)


SAMPLERS = (("dpmsolver++", 20), ("ddim", 50), ("ddpm", 1000))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from synthworth.data.dataset import Dataset
    from synthworth.generators.base import load_generator

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"bench_sampling: digits DDPM, {cpu_note()}, {torch_note()}; "
          f"{load_note()} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="synthworth-sampling-") as tmp:
        base = Path(tmp)
        data = Path(args.data) if args.data else base / "digits16"
        ds = Dataset.open(data) if args.data else prepare_digits(data)
        if args.model:
            gen = load_generator(args.model)
            print(f"model: {args.model}")
        else:
            from synthworth.train import train

            run_dir = Path(args.keep) if args.keep else base / "ddpm-run"
            t0 = time.perf_counter()
            run = train("ddpm", data, run_dir, preset=args.preset, overrides=["train.progress=false", *args.set])
            print(f"trained preset {args.preset}{' ' + ' '.join(args.set) if args.set else ''} in "
                  f"{(time.perf_counter() - t0) / 60:.1f} min ({load_note()}); run folder {run_dir}", flush=True)
            gen = load_generator(run.model)
        judge = train_judge(ds)
        print(judge.describe(), flush=True)
        return measure(gen, judge, args)


def measure(gen, judge, args) -> int:
    k = len(gen.class_names)
    if not k:
        raise SystemExit("the model is unconditional; this benchmark needs a class-conditional digits DDPM")
    guidance = args.guidance if args.guidance is not None else gen.sampling.guidance
    params = sum(p.numel() for p in gen.unet.parameters())
    want = {"dpmsolver++": args.n, "ddim": args.n, "ddpm": min(args.ddpm_n, args.n)}
    labels = balanced_labels(args.n, k)
    print(f"UNet {list(gen.unet.config.block_out_channels)} ({params / 1e6:.2f} M parameters), guidance {guidance:g}; "
          f"{args.n} class-balanced images per sampler ({want['ddpm']} for DDPM-1000), chunks of {args.batch_size}, "
          f"interleaved", flush=True)
    images = {name: [] for name, _ in SAMPLERS}
    per_image = {name: [] for name, _ in SAMPLERS}
    seconds = {name: 0.0 for name, _ in SAMPLERS}
    for start in range(0, args.n, args.batch_size):
        for name, steps in SAMPLERS:
            count = min(args.batch_size, want[name] - start)
            if count <= 0:
                continue
            t0 = time.perf_counter()
            out = gen.sample(count, labels[start:start + count], seed=args.seed + start, sampler=name,
                             steps=steps, guidance=guidance, batch_size=args.batch_size)
            s = time.perf_counter() - t0
            assert gen.last_sampling == {"sampler": name, "steps": steps, "guidance": float(guidance)}
            images[name].append(out)
            per_image[name].append(s / count)
            seconds[name] += s
        print(f"  images {start}..{start + args.batch_size - 1}: " +
              ", ".join(f"{name} {per_image[name][-1] * 1000:.0f} ms/image" for name, _ in SAMPLERS
                        if want[name] > start) + f"  ({load_note()})", flush=True)

    med = {name: statistics.median(v) for name, v in per_image.items()}
    print(f"\n{'sampler':<14}{'steps':>6}{'images':>8}{'s measured':>12}{'s per 1,000':>13}{'speed-up':>10}"
          f"{'1000/steps':>12}{'agreement':>11}")
    results = {}
    for name, steps in SAMPLERS:
        made = np.concatenate(images[name])
        score = judge.score(made, labels[:len(made)])
        per_1000 = med[name] * 1000
        speedup = med["ddpm"] / med[name]
        note = "  (extrapolated)" if len(made) < 1000 else ""
        results[name] = (steps, len(made), per_1000, speedup, score)
        print(f"{name:<14}{steps:>6}{len(made):>8}{seconds[name]:>12.1f}{per_1000:>13.1f}{speedup:>9.1f}x"
              f"{1000 / steps:>11.0f}x{score:>11.1%}{note}")
    if want["ddpm"] < 1000:
        print(f"DDPM-1000 made {want['ddpm']} images; its 's per 1,000' is extrapolated from them "
              f"(median seconds per image x 1,000), and its agreement is on those {want['ddpm']} images.")
    print(f"({load_note()} at end)")
    print()
    lines = []
    for name in ("dpmsolver++", "ddim"):
        steps, _, per_1000, speedup, score = results[name]
        lines.append(f"{name}-{steps}: {speedup:.1f}x faster than DDPM-1000 ({per_1000:.0f} s vs "
                     f"{results['ddpm'][2]:.0f} s per 1,000 images), agreement {score:.1%} vs DDPM-1000's "
                     f"{results['ddpm'][4]:.1%}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
