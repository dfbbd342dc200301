"""Benchmark: the demo's study grid serially, on ``--workers N`` local processes and on Ray.

The grid is the full demo's (digits at 16x16; real / subset_real / artificial / mixed; two
generators; sizes 100, 50, 200, 500; seeds 0-2; the ``small`` classifier: 72 distinct
trainings). The two "generators" are stand-ins unless ``--demo`` names a finished demo folder:
noisy copies of 750 real training digits each (a cell's cost does not depend on what its
images show). Image-quality metrics are left out (one job per generator, not per cell).

Each executor trains the grid into a fresh results folder; the tables must come out the same
(every column but the clocks), and the wall times, the speed-ups over serial and Ray's overhead
per cell, (Ray wall - workers wall) / cells with the cluster already started, are printed, with
the time the local Ray cluster took to start on its own line.

Run:  .venv/bin/python benchmarks/bench_study_executors.py                    (the full grid: ~10 min serial on 2 cores)
      .venv/bin/python benchmarks/bench_study_executors.py --sizes 50 --seeds 0   (a quick check)
      .venv/bin/python benchmarks/bench_study_executors.py --demo synthworth-demo  (the demo's own Datasets)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_note  # noqa: E402

CLOCKS = {"train_seconds", "eval_seconds", "finished_at", "host"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="local worker processes, and the Ray cluster's CPUs")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 50, 200, 500])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--demo", help="a finished demo folder: use its data/digits16 and synthetic/{dcgan,ddpm}")
    p.add_argument("--skip", nargs="*", default=[], choices=["serial", "workers", "ray"], help="executors to leave out")
    p.add_argument("--keep", help="write the results folders here (default: a temporary folder)")
    return p.parse_args(argv)


def inputs(root: Path, demo: str | None) -> tuple[Path, dict[str, Path]]:
    if demo:
        demo_path = Path(demo)
        return demo_path / "data" / "digits16", {g: demo_path / "synthetic" / g for g in ("dcgan", "ddpm")}
    from synthworth.data.compose import subset
    from synthworth.data.dataset import atomic_folder, write_packed
    from synthworth.data.prepare import PrepareConfig, prepare

    real = prepare(PrepareConfig(source="digits", size=16, fit="stretch", test_fraction=0.2, seed=0),
                   root / "digits16", progress=False)
    synthetic = {}
    for name, seed, noise in (("dcgan", 11, 12), ("ddpm", 12, 24)):
        part = subset(real.split("train"), per_class=75, seed=seed)
        pixels = part.take(np.arange(len(part))).astype(int)
        pixels += np.random.default_rng(seed).integers(-noise, noise + 1, pixels.shape)
        with atomic_folder(root / name, kind="dataset") as tmp:
            write_packed(tmp, np.clip(pixels, 0, 255).astype(np.uint8), part.labels,
                         np.full(len(part), "train"), part.class_names, [{} for _ in range(len(part))],
                         {"kind": "synthetic"})
        synthetic[name] = root / name
    return real.path, synthetic


def table(out: Path):
    import pandas as pd

    frame = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    return frame.drop(columns=[c for c in frame.columns if c in CLOCKS])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from synthworth.study.runner import plan_study, run_study
    from synthworth.study.spec import StudySpec

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        real, synthetic = inputs(root, args.demo)

        def spec(name: str) -> StudySpec:
            return StudySpec(name="digits (scarce real data)", out=str(root / name), real=str(real),
                             synthetic={k: {"path": str(v)} for k, v in synthetic.items()},
                             compositions=["real", "artificial", "mixed", "subset_real"], sizes=args.sizes,
                             seeds=args.seeds, classifier_preset="small", threads=1)

        cells = len(plan_study(spec("plan")).keys)
        print(f"{cells} distinct trainings; {cpu_note()}; --workers {args.workers}", flush=True)
        walls: dict[str, float] = {}
        runs = [("serial", {"workers": 1}), ("workers", {"workers": args.workers}),
                ("ray", {"workers": args.workers, "executor": "ray"})]
        for name, options in runs:
            if name in args.skip:
                continue
            if name == "ray":
                import ray

                t0 = time.perf_counter()
                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
                print(f"  Ray local cluster started in {time.perf_counter() - t0:.1f} s (not in its wall time)")
            try:
                t0 = time.perf_counter()
                run_study(spec(name), progress=False, **options)
                walls[name] = time.perf_counter() - t0
            finally:
                if name == "ray":
                    ray.shutdown()
            print(f"  {name:8s} {walls[name]:7.1f} s", flush=True)
        names = list(walls)
        for other in names[1:]:
            pd.testing.assert_frame_equal(table(root / other), table(root / names[0]))
        print(f"the results of {', '.join(names)} are identical (every column but the clocks)")
        if "serial" in walls:
            for other in names[1:]:
                print(f"speed-up {other} / serial: {walls['serial'] / walls[other]:.2f}x")
        if "ray" in walls and "workers" in walls:
            print(f"Ray overhead per cell: {(walls['ray'] - walls['workers']) / cells:+.2f} s "
                  "((ray wall - workers wall) / cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
