"""Benchmark: reading shuffled training batches from a prepared Dataset.

From a folder of generated CelebA-sized JPEGs (178x218, quality 90, four class folders) a
Dataset is prepared at 64x64 (fit=crop). Then shuffled batches of 128 images + labels are read
three ways, side by side in the same run, each yielding torch tensors:

  a. ``torchvision.datasets.ImageFolder`` on the JPEGs (PIL decode + Resize(64) + CenterCrop(64)
     + ToTensor) through ``torch.utils.data.DataLoader(batch_size=128, shuffle=True,
     num_workers=2, persistent_workers=True)``: the usual baseline (float batches);
  b. a bare memory-mapped uint8 array (``np.load("images.npy", mmap_mode="r")``): a random
     permutation per epoch, each batch's indices sorted, fancy-indexed, ``torch.from_numpy``:
     the ceiling for reading a packed array (uint8 batches);
  c. synthworth's ``Dataset.open(path).batches(128, shuffle=True)``, converted with
     ``torch.from_numpy`` the same way (uint8 batches, rows in the shuffled order).

Before timing, the page cache is warmed for all three (every JPEG and ``images.npy`` read once)
and each reader runs one untimed epoch (for a, this also starts its persistent workers, so
worker start-up is not charged to the baseline). Each reader then runs ``--repeats`` times,
interleaved; the best run counts (the median is printed too). The requirements (issue 2,
"Speed"): c/a >= 50 and c/b >= 0.8. Ratios, not absolute figures, are what to compare across
machines.

Run:  .venv/bin/python benchmarks/bench_read.py              (well under a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import all_files, cpu_note, jpeg_folder, summarise, timed, verdict, warm_files  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="number of JPEGs / Dataset rows")
    p.add_argument("--size", type=int, default=64, help="side of the square images")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch")
    p.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers of the ImageFolder baseline")
    p.add_argument("--folder-epochs", type=int, default=2, help="epochs per timed run of the ImageFolder baseline")
    p.add_argument("--batches", type=int, default=2000,
                   help="batches per timed run of the memory-mapped readers (b, c)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each reader; the best counts")
    p.add_argument("--cache", default=None,
                   help="folder in which to keep the generated JPEGs and the Dataset between runs "
                        "(None: a temporary folder)")
    p.add_argument("--min-vs-folder", type=float, default=50.0, help="required ratio c/a")
    p.add_argument("--min-vs-mmap", type=float, default=0.8, help="required ratio c/b")
    return p.parse_args(argv)


# ------------------------------------------------------------------------ the three readers
def folder_reader(src: Path, size: int, batch_size: int, workers: int):
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    folder = datasets.ImageFolder(str(src), transform=tf)
    loader = torch.utils.data.DataLoader(folder, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)

    def run(epochs: int) -> int:
        count = 0
        for _ in range(epochs):
            for x, y in loader:
                assert x.dtype == torch.float32 and x.shape[1:] == (3, size, size)
                count += len(y)
        return count

    return run, loader


def mmap_reader(dataset_dir: Path, batch_size: int):
    import torch

    images = np.load(dataset_dir / "images.npy", mmap_mode="r")
    labels = np.load(dataset_dir / "labels.npy")
    rng = np.random.default_rng(0)
    n = len(images)

    def run(batches: int) -> int:
        count = done = 0
        while done < batches:
            perm = rng.permutation(n)
            for start in range(0, n, batch_size):
                idx = np.sort(perm[start:start + batch_size])
                x = torch.from_numpy(images[idx])
                y = torch.from_numpy(labels[idx])
                count += len(y)
                done += 1
                if done == batches:
                    break
        assert x.dtype == torch.uint8
        return count

    return run


def dataset_reader(dataset_dir: Path, batch_size: int):
    import torch

    from synthworth.data.dataset import Dataset

    ds = Dataset.open(dataset_dir)
    epoch = [0]

    def run(batches: int) -> int:
        count = done = 0
        while done < batches:
            epoch[0] += 1
            for xb, yb in ds.batches(batch_size, shuffle=True, seed=epoch[0]):
                x = torch.from_numpy(xb)
                y = torch.from_numpy(yb)
                count += len(y)
                done += 1
                if done == batches:
                    break
        assert x.dtype == torch.uint8
        return count

    return run


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from synthworth.data.prepare import PrepareConfig, prepare

    print(f"bench_read: {args.n} images at {args.size}x{args.size}, batches of {args.batch_size}, "
          f"{cpu_note()}, {args.repeats} repeat(s), best run counts")
    with jpeg_folder(args.n, args.cache) as src, tempfile.TemporaryDirectory(prefix="synthworth-out-") as tmp:
        base = Path(args.cache) if args.cache else Path(tmp)
        dataset_dir = base / f"dataset-n{args.n}-size{args.size}"
        ds = prepare(PrepareConfig(source="folder", path=str(src), size=args.size, fit="crop", workers=2),
                     dataset_dir, progress=False)
        assert len(ds) == args.n, (len(ds), args.n)
        del ds

        warm_files(all_files(src))
        warm_files([dataset_dir / "images.npy", dataset_dir / "labels.npy"])
        run_a, loader = folder_reader(src, args.size, args.batch_size, args.loader_workers)
        run_b = mmap_reader(dataset_dir, args.batch_size)
        run_c = dataset_reader(dataset_dir, args.batch_size)
        per_epoch = -(-args.n // args.batch_size)
        run_a(1)
        run_b(per_epoch)
        run_c(per_epoch)

        names = {"a": f"a. ImageFolder + DataLoader({args.loader_workers} workers)",
                 "b": "b. bare memory-mapped uint8 array",
                 "c": "c. synthworth Dataset.batches"}
        jobs = {"a": lambda: run_a(args.folder_epochs), "b": lambda: run_b(args.batches),
                "c": lambda: run_c(args.batches)}
        rates: dict[str, list[float]] = {k: [] for k in names}
        for r in range(args.repeats):
            for key, job in jobs.items():
                seconds, count = timed(job)
                rates[key].append(count / seconds)
                print(f"  run {r + 1}: {names[key]:<40} {count:7d} images in {seconds:6.3f} s  "
                      f"{count / seconds:10,.0f} images/s")
        del loader

    best = {k: summarise(v)[0] for k, v in rates.items()}
    print()
    print(f"{'reader':<42}{'best images/s':>15}{'median images/s':>18}")
    for key, values in rates.items():
        b, m = summarise(values)
        print(f"{names[key]:<42}{b:>15,.0f}{m:>18,.0f}")
    c_over_a = best["c"] / best["a"]
    c_over_b = best["c"] / best["b"]
    med = {k: summarise(v)[1] for k, v in rates.items()}
    print(f"ratios of medians (for information): c/a {med['c'] / med['a']:.1f}x, c/b {med['c'] / med['b']:.2f}x")
    print()
    lines = [verdict("read speed vs ImageFolder (c/a)", c_over_a, args.min_vs_folder),
             verdict("read speed vs bare memory-mapped array (c/b)", c_over_b, args.min_vs_mmap)]
    print("\n".join(lines))
    return 0 if all(line.endswith("OK") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
