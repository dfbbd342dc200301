"""Benchmark: a grid of 100 linear probes on the digits, with the backbone's features cached.

A study of ``--sizes`` x ``--seeds`` cells (by default 10 sizes x 10 seeds = 100 ``real`` cells)
on the bundled digits, ``classifier_preset: probe`` with a small local backbone: a torchvision
ResNet-18 with random weights saved as safetensors (no download; the timing does not depend on
what the weights learned), images resized to ``--side`` px. Three figures:

a. cold: ``run_study`` into a new results folder: every image of the real pool and test set
   goes through the backbone once (the extraction), then the 100 probes are fitted and scored;
b. warm: the same grid into another new results folder holding a's features cache: no image
   goes through the backbone, the 100 cells are fitted and scored again;
c. the baseline, what the probes would cost without the cache: every cell runs the backbone
   over its own training images and the real test set before fitting the same probe; timed on
   ``--baseline-cells`` cells in this run and extrapolated to the grid (printed as such).

Target: a, the whole grid from a cold cache, under 60 s on 2 CPU cores.

Run:  OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_probe.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_note, load_note, torch_note  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 60, 80, 100, 150, 200, 300, 400, 500],
                   help="training-set sizes of the grid")
    p.add_argument("--seeds", type=int, default=10, help="seeds per size")
    p.add_argument("--side", type=int, default=32, help="side the backbone sees (the digits are 16 px)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes of the study (as 'study run --workers'; each one opens the inputs and "
                        "loads the backbone's weights once)")
    p.add_argument("--baseline-cells", type=int, default=5, help="cells timed without the cache")
    p.add_argument("--target", type=float, default=60.0, help="seconds the cold grid must stay under")
    return p.parse_args(argv)


def _spec(root: Path, real: Path, weights: Path, args: argparse.Namespace, name: str) -> Path:
    spec = {"name": name, "real": str(real), "compositions": ["real"], "sizes": args.sizes,
            "seeds": list(range(args.seeds)), "classifier_preset": "probe", "out": str(root / name),
            "classifier": {"model": {"name": "resnet18", "weights": str(weights), "resolution": args.side}}}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _baseline(spec: Path, cells: int) -> float:
    """Seconds per cell of a probe that extracts its own features (no cache): the backbone over
    the cell's training images and the real test set, then the same fit and scores."""
    import numpy as np

    from synthworth.classifiers.backbones import build_model
    from synthworth.classifiers.extract import extract_features
    from synthworth.classifiers.feature_cache import backbone_features
    from synthworth.classifiers.probe import fit_probe
    from synthworth.study import plan_study
    from synthworth.study.spec import load_spec

    plan = plan_study(load_spec(spec)[0])
    h, _, c = plan.inputs.real.shape
    config = plan.classifier
    picked = plan.cells[:: max(1, len(plan.cells) // cells)][:cells]
    started = time.perf_counter()
    for planned in picked:
        model = build_model(config.model, plan.inputs.num_classes, c, h).eval()  # each cell loads its backbone
        extractor = backbone_features(model)
        x = extract_features(extractor, planned.train_set, config.eval_batch_size)
        test = extract_features(extractor, plan.inputs.test, config.eval_batch_size)
        probe, _ = fit_probe(x, planned.train_set.labels, plan.inputs.num_classes, config.probe)
        probe.score(test.astype(np.float32), plan.inputs.test)
    return (time.perf_counter() - started) / len(picked)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import torchvision
    from safetensors.torch import save_file

    from synthworth.data.prepare import PrepareConfig, prepare
    from synthworth.study import run_study

    print(f"bench_probe: {cpu_note()}, {torch_note()}, {load_note()}")
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        root = Path(tmp)
        real = prepare(PrepareConfig(source="digits", size=16, fit="stretch", workers=0), root / "digits",
                       progress=False)
        torch.manual_seed(0)
        weights = root / "resnet18.safetensors"
        save_file({k: v.contiguous() for k, v in torchvision.models.resnet18().state_dict().items()}, str(weights))
        cells = len(args.sizes) * args.seeds
        print(f"grid: {cells} real cells ({len(args.sizes)} sizes x {args.seeds} seeds) on the digits "
              f"({len(real.split('train'))} train / {len(real.split('test'))} test images), random ResNet-18 at "
              f"{args.side} px, {args.workers} worker(s)")

        cold_spec = _spec(root, real.path, weights, args, "cold")
        t0 = time.perf_counter()
        cold = run_study(cold_spec, workers=args.workers, progress=False)
        cold_s = time.perf_counter() - t0
        extracted = sum(1 for _ in (root / "cold" / "features").rglob("*.npz"))

        warm_spec = _spec(root, real.path, weights, args, "warm")
        (root / "warm").mkdir()
        shutil.copytree(root / "cold" / "features", root / "warm" / "features")
        shutil.copy(root / "cold" / ".synthworth", root / "warm" / ".synthworth")  # the study's own marker
        t0 = time.perf_counter()
        warm = run_study(warm_spec, workers=args.workers, progress=False)
        warm_s = time.perf_counter() - t0
        assert len(cold.trained) == len(warm.trained) == cells, (cold.trained, warm.trained)

        per_cell = _baseline(cold_spec, args.baseline_cells)
        baseline_s = per_cell * cells
        print(f"a. cold (extraction + {cells} probes): {cold_s:.1f} s ({extracted} feature chunks written)")
        print(f"b. warm (features cached, {cells} probes): {warm_s:.1f} s; the extraction took about "
              f"{cold_s - warm_s:.1f} s of a")
        print(f"c. baseline without the cache: {per_cell:.2f} s per cell over {args.baseline_cells} cells, "
              f"extrapolated {baseline_s:.0f} s for {cells} cells: {baseline_s / cold_s:.1f}x a, "
              f"{baseline_s / warm_s:.1f}x b")
    ok = cold_s < args.target
    print(f"{'PASS' if ok else 'FAIL'}: {cells} probes from a cold cache in {cold_s:.1f} s "
          f"(target < {args.target:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
