"""Benchmark: preparing a folder of CelebA-sized JPEGs into a packed Dataset.

What is measured (images/s, wall clock, warm page cache):

- ``synthworth.data.prepare.prepare`` at size 64 (fit=crop, the CelebA recipe) with
  ``workers=2`` (parallel decoding in worker processes) and with ``workers=0`` (in-process);
  the whole call is timed: listing, decoding, writing ``images.npy``, splits, fingerprint, manifest.

Baseline, measured side by side in the same run: the obvious hand-written loop that decodes
each file with PIL (``Image.open(path).convert("RGB")``), applies
``torchvision.transforms.Compose([Resize(64), CenterCrop(64)])`` and stores the result in a
preallocated uint8 numpy array (one process).

The JPEGs are generated (178x218 RGB, quality 90, smooth colour fields + shapes + texture +
noise, ~9-10 KB each like CelebA's) in four class folders, in a temporary directory unless
``--cache DIR`` keeps them between runs. Each method runs ``--repeats`` times, interleaved, and
the best run counts (the median is printed too), so a noisy neighbour on a shared machine does
not decide the result. Ratios, not absolute seconds, are the figures to compare across machines.

The issue (2, "Speed") asks for the images/s figures only; the two checked targets are this
benchmark's own: parallel decoding must give a real speed-up on 2+ cores (default >= 1.3x) and
prepare must not be slower than the hand-written loop (default >= 1.0x).

Run:  .venv/bin/python benchmarks/bench_prepare.py            (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (all_files, cpu_note, cpu_seconds, jpeg_folder, load_note, summarise, timed, verdict,
                     warm_files)  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="number of JPEGs (spread over 4 class folders)")
    p.add_argument("--size", type=int, default=64, help="side of the prepared square images")
    p.add_argument("--workers", type=int, default=2, help="decoding processes of the parallel run")
    p.add_argument("--repeats", type=int, default=5, help="runs of each method; the best counts")
    p.add_argument("--cache", default=None,
                   help="folder in which to keep the generated JPEGs between runs (None: a temporary folder)")
    p.add_argument("--min-speedup", type=float, default=1.3,
                   help="required speed-up of workers=N over workers=0 (only checked with 2+ cores)")
    p.add_argument("--min-vs-baseline", type=float, default=1.0,
                   help="required ratio of prepare(workers=N) to the hand-written PIL+torchvision loop")
    return p.parse_args(argv)


def run_prepare(src: Path, out_root: Path, size: int, workers: int, tag: str) -> int:
    from synthworth.data.prepare import PrepareConfig, prepare

    out = out_root / tag
    shutil.rmtree(out, ignore_errors=True)
    ds = prepare(PrepareConfig(source="folder", path=str(src), size=size, fit="crop", workers=workers),
                 out, progress=False)
    count = len(ds)
    del ds
    return count


def run_baseline(src: Path, size: int, sink: dict) -> int:
    """The hand-written approach: PIL decode + torchvision Resize/CenterCrop, one by one."""
    from PIL import Image
    from torchvision import transforms

    files = sorted(p for p in src.rglob("*.jpg"))
    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size)])
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        with Image.open(path) as img:
            out[i] = np.asarray(tf(img.convert("RGB")), dtype=np.uint8)
    sink["images"], sink["files"] = out, files
    return len(files)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"bench_prepare: {args.n} JPEGs -> {args.size}x{args.size} (crop), {cpu_note()}, "
          f"{args.repeats} repeat(s), best run counts")
    rates: dict[str, list[float]] = {"prepare workers=%d" % args.workers: [], "prepare workers=0": [],
                                     "baseline PIL+torchvision loop": []}
    key_par, key_seq, key_base = list(rates)
    busy: dict[str, list[float]] = {k: [] for k in rates}  # CPU seconds / wall seconds per run
    print(f"at start: {load_note()}")
    with jpeg_folder(args.n, args.cache) as src, tempfile.TemporaryDirectory(prefix="synthworth-out-") as out:
        out_root = Path(out)
        warm_files(all_files(src))
        # One untimed pass of each, so imports and first-use costs are paid before timing.
        run_prepare(src, out_root, args.size, args.workers, "warmup")
        sink: dict = {}
        run_baseline(src, args.size, sink)
        for r in range(args.repeats):
            for key, fn in ((key_par, lambda: run_prepare(src, out_root, args.size, args.workers, "par")),
                            (key_seq, lambda: run_prepare(src, out_root, args.size, 0, "seq")),
                            (key_base, lambda: run_baseline(src, args.size, sink))):
                cpu0 = cpu_seconds()
                seconds, count = timed(fn)
                cores = (cpu_seconds() - cpu0) / seconds
                if count != args.n:
                    raise SystemExit(f"{key} handled {count} images, expected {args.n}")
                rates[key].append(count / seconds)
                busy[key].append(cores)
                print(f"  run {r + 1}: {key:<32} {seconds:7.2f} s  {count / seconds:9,.0f} images/s  "
                      f"{cores:4.2f} cores busy")
        diff = pixel_difference(out_root / "par", src, sink)

    best = {k: summarise(v)[0] for k, v in rates.items()}
    print()
    print(f"at end: {load_note()}")
    print(f"{'method':<34}{'best images/s':>15}{'median images/s':>18}{'vs baseline':>13}{'cores busy':>12}")
    for key, values in rates.items():
        b, m = summarise(values)
        print(f"{key:<34}{b:>15,.0f}{m:>18,.0f}{b / best[key_base]:>12.2f}x{busy[key][values.index(b)]:>12.2f}")
    speedup = best[key_par] / best[key_seq]
    vs_base = best[key_par] / best[key_base]
    print(f"parallel speed-up (workers={args.workers} / workers=0): {speedup:.2f}x")
    print("(cores busy = CPU seconds of the benchmark and its worker processes per wall second, best run;\n"
          " a parallel run near 1.0 means other processes held the remaining cores)")
    print(f"mean |prepare - baseline| per pixel: {diff:.2f} of 255 (bicubic vs torchvision's "
          f"antialiased bilinear; same crop)")
    print()
    cores = int(cpu_note().split()[0])
    lines = []
    if cores >= 2 and args.workers >= 2:
        lines.append(verdict(f"parallel decoding speed-up (workers={args.workers} vs 0)", speedup,
                             args.min_speedup))
    else:
        lines.append(f"parallel decoding speed-up (workers={args.workers} vs 0): {speedup:.2f}x "
                     f"(not checked: needs 2+ cores and workers >= 2)")
    lines.append(verdict(f"prepare (workers={args.workers}) vs PIL+torchvision loop", vs_base,
                         args.min_vs_baseline))
    print("\n".join(lines))
    return 0 if all(not line.endswith("FAIL") for line in lines) else 1


def pixel_difference(dataset_dir: Path, src: Path, sink: dict) -> float:
    """Sanity check: both pipelines crop the same region; compare their pixels image by image."""
    from synthworth.data.dataset import Dataset

    ds = Dataset.open(dataset_dir)
    position = {str(p.relative_to(src)): i for i, p in enumerate(sink["files"])}
    order = [position[item["source_file"]] for item in ds.items()]
    ours = ds.take(np.arange(len(ds))).astype(np.int16)
    theirs = sink["images"][order].astype(np.int16)
    return float(np.abs(ours - theirs).mean())


if __name__ == "__main__":
    sys.exit(main())
