"""Benchmark: the source study's grid for one theme, by its protocol versus by synthworth.

The grid of one theme: ``real`` and ``subset_real`` once, ``artificial`` and ``mixed`` once per
generator (the source had 4 generators: 10 classifiers per theme). Both sides train the same
network with the same settings (Adam, lr 1e-3, batch 32, StepLR step 7 gamma 0.1, ImageNet
normalisation, images stretched to ``--size``) on the same image folders:

a. the source study's protocol: a plain PyTorch loop over ``torchvision.datasets.ImageFolder``
   (``Resize((size, size))``, ``ToTensor``, ``Normalize``) through a ``DataLoader`` with
   ``--workers`` processes (started anew each epoch, as a plain script does): every image is
   decoded from its JPEG again in every epoch of every cell; training sets are ``Subset`` /
   ``ConcatDataset`` views of the folders; each classifier is tested on the real test folder;
b. synthworth: ``prepare`` each folder once into a packed Dataset, then ``run_study`` with the
   same compositions, sizes and settings (this also scores every classifier on each generator's
   held-out images, work the baseline does not do).

The folders hold generated CelebA-sized JPEGs (178x218, four classes, see ``_common.py``): a
real one with train/test splits and one per generator. Wall times of the whole grid (b includes
preparing) and their ratio are printed; ratios, not seconds, are what carry across machines.

Run:  .venv/bin/python benchmarks/bench_study.py            (a few minutes on 2 cores)
      .venv/bin/python benchmarks/bench_study.py --n 1000 --generators 4 --epochs 30   (the source's grid size)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_note, make_jpeg_folder  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="images per training set (the source: 1000)")
    p.add_argument("--generators", type=int, default=2, help="synthetic folders (the source: 4)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per classifier (the source: 30)")
    p.add_argument("--size", type=int, default=32, help="side the images are resized to (the source: 256)")
    p.add_argument("--model", default="small_cnn", help="small_cnn or a torchvision model (the source: resnet34)")
    p.add_argument("--width", type=int, default=16, help="small_cnn: channels of its first block")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the training process on both sides (0: torch's default); one thread "
                        "keeps a busy 2-core machine from thrashing and leaves a core to the loader workers")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    p.add_argument("--test", type=int, default=100, help="real test images")
    p.add_argument("--cache", default=None, help="keep the generated JPEG folders here between runs")
    return p.parse_args(argv)


# ------------------------------------------------------------------------ the folders
def make_folders(root: Path, args: argparse.Namespace) -> dict[str, Path]:
    """real/{train,test}/<class>/ and gen<i>/<class>/ (each generator has 25 % extra images,
    which synthworth holds out for its synthetic test)."""
    folders = {"real": root / "real", **{f"gen{i}": root / f"gen{i}" for i in range(args.generators)}}
    done = root / ".done"
    if done.is_file():
        return folders
    t0 = time.perf_counter()
    make_jpeg_folder(folders["real"] / "train", args.n, seed=0)
    make_jpeg_folder(folders["real"] / "test", args.test, seed=1)
    for i in range(args.generators):
        make_jpeg_folder(folders[f"gen{i}"], args.n + args.n // 4, seed=10 + i)
    done.write_text("ok\n")
    total = args.n + args.test + args.generators * (args.n + args.n // 4)
    print(f"made {total} JPEGs (178x218) in {time.perf_counter() - t0:.1f}s")
    return folders


# ------------------------------------------------------------------------ a. the source protocol
def baseline(folders: dict[str, Path], args: argparse.Namespace) -> tuple[float, list[float]]:
    """Every cell of the grid with ImageFolder + DataLoader; returns (seconds, accuracies)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import ConcatDataset, DataLoader, Subset
    from torchvision import datasets, transforms

    from synthworth.classifiers.models import IMAGENET_MEAN, IMAGENET_STD, build_classifier

    tf = transforms.Compose([transforms.Resize((args.size, args.size)), transforms.ToTensor(),
                             transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    real = datasets.ImageFolder(str(folders["real"] / "train"), transform=tf)
    test = datasets.ImageFolder(str(folders["real"] / "test"), transform=tf)
    gens = [datasets.ImageFolder(str(folders[f"gen{i}"]), transform=tf) for i in range(args.generators)]
    rng = np.random.default_rng(0)
    half = args.n // 2
    real_idx = rng.permutation(len(real))[:args.n].tolist()
    sets = {"real": Subset(real, real_idx), "subset_real": Subset(real, real_idx[:half])}
    for i, g in enumerate(gens):
        idx = rng.permutation(len(g))[:args.n].tolist()
        sets[f"artificial-gen{i}"] = Subset(g, idx)
        sets[f"mixed-gen{i}"] = ConcatDataset([Subset(real, real_idx[:half]), Subset(g, idx[:args.n - half])])
    accuracies = []
    t0 = time.perf_counter()
    for name, train_set in sets.items():
        torch.manual_seed(0)
        net = build_classifier(args.model, len(real.classes), 3, args.size, width=args.width).net
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
        loader = DataLoader(train_set, batch_size=32, shuffle=True, num_workers=args.workers)
        for _ in range(args.epochs):
            net.train()
            for x, y in loader:
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for x, y in DataLoader(test, batch_size=64, num_workers=args.workers):
                correct += int((net(x).argmax(1) == y).sum())
        accuracies.append(correct / len(test))
    return time.perf_counter() - t0, accuracies


# ------------------------------------------------------------------------ b. synthworth
def with_synthworth(folders: dict[str, Path], work: Path, args: argparse.Namespace) -> tuple[float, float, list[float]]:
    """prepare every folder once, then run the same grid as a study; (prepare s, study s, accuracies)."""
    import yaml

    from synthworth.data.prepare import PrepareConfig, prepare
    from synthworth.study import run_study

    t0 = time.perf_counter()
    prepared = {}
    for name, folder in folders.items():
        # Generators' folders have no splits: a 20 % test split (the study's synthetic held-out).
        config = PrepareConfig(source="folder", path=str(folder), size=args.size, fit="stretch", workers=args.workers,
                               test_fraction=0.2)
        prepared[name] = prepare(config, work / "datasets" / name, progress=False).path
    t1 = time.perf_counter()
    spec = {"name": "bench", "out": str(work / "results"), "real": str(prepared["real"]),
            "synthetic": {k: str(v) for k, v in prepared.items() if k != "real"},
            "compositions": ["real", "artificial", "mixed", "subset_real"], "sizes": [args.n], "seeds": [0],
            "classifier_preset": "thesis",
            "classifier": {"model": {"name": args.model, "resolution": args.size, "width": args.width},
                           "train": {"epochs": args.epochs, "progress": False}}}
    spec_file = work / "bench.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    run_study(spec_file, progress=False)
    t2 = time.perf_counter()
    import pandas as pd

    table = pd.read_csv(work / "results" / "results.csv")
    return t1 - t0, t2 - t1, table["accuracy"].tolist()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cells = 2 + 2 * args.generators
    print(f"bench_study: one theme's grid = {cells} classifiers (real, subset_real, artificial and mixed x "
          f"{args.generators} generators), {args.n} images per set, {args.epochs} epochs, {args.model} at "
          f"{args.size}x{args.size}, {cpu_note()}, {args.threads or 'default'} torch thread(s)")
    with tempfile.TemporaryDirectory(prefix="synthworth-bench-study-") as tmp:
        root = Path(args.cache) if args.cache else Path(tmp) / "jpegs"
        folders = make_folders(root, args)
        base_s, base_acc = baseline(folders, args)
        print(f"a. source protocol (ImageFolder, JPEGs decoded every epoch, {args.workers} workers): "
              f"{base_s:.1f}s  (mean accuracy {np.mean(base_acc):.3f})")
        prep_s, study_s, ours_acc = with_synthworth(folders, Path(tmp) / "work", args)
        ours = prep_s + study_s
        print(f"b. synthworth (prepare once {prep_s:.1f}s + study {study_s:.1f}s): {ours:.1f}s  "
              f"(mean accuracy {np.mean(ours_acc):.3f})")
        print(f"ratio a/b: {base_s / ours:.2f}x faster with synthworth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
