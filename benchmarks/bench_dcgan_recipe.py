"""Benchmark: DCGAN training speed, the classic recipe vs synthworth on a prepared Dataset.

Issue 3, "Speed". The same unconditional DCGAN (synthworth's networks with the ``dcgan``
preset: 100-dim noise, 64 base channels, five layers per network, Adam 2e-4 / (0.5, 0.999),
BCE on logits) is trained at 64x64, batch 128, on the same images, two ways, side by side:

  classic    the pytorch/examples ``dcgan`` way (our own loop, not their code):
             ``torchvision.datasets.ImageFolder`` over the JPEGs with Resize(64) +
             CenterCrop(64) + ToTensor + Normalize(0.5, 0.5), decoded again every epoch by
             ``DataLoader(batch_size=128, shuffle=True, num_workers=2)`` (workers started per
             epoch, as there); a plain PyTorch loop; after each epoch a grid of fixed-noise
             fakes (``torchvision.utils.save_image``) and ``torch.save`` of both networks.
  synthworth ``synthworth.train.train("dcgan", DATASET, RUN, preset="dcgan", ...)`` on a Dataset
             prepared once from the same JPEGs (``prepare``, size 64, fit=crop): the shared
             engine reads memory-mapped uint8 batches; after each epoch it writes its sample
             grid, loss plots and a full checkpoint (training state, atomically), as any run does.

Both train the same number of epochs over the same N images (N a multiple of 128, so both see
N images per epoch). Images/s = images trained / wall time of the whole training call,
everything a user waits for included (building the networks, data loading, per-epoch outputs,
checkpoints). The one-time ``prepare`` is not in synthworth's figure (a Dataset is prepared once
and trained on many times); its time is printed beside it. The JPEGs are in the page cache
for both. Each way runs ``--repeats`` times, interleaved (order alternating); the median
counts. Requirement (issue 3): synthworth / classic >= 1.0. For reference, pytorch/examples'
dcgan was reported at 41.5 images/s on another 2-core CPU (absolute figures depend on the
machine and its load; compare the ratio).

Run:  .venv/bin/python benchmarks/bench_dcgan_recipe.py          (~6 min on 2 idle cores)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import all_files, cpu_note, jpeg_folder, load_note, torch_note, warm_files  # noqa: E402

REFERENCE_IMAGES_PER_S = 41.5  # pytorch/examples dcgan, 64x64, batch 128, a 2-core CPU (issue 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=1024, help="images (rounded down to a multiple of the batch)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    p.add_argument("--size", type=int, default=64, help="image side")
    p.add_argument("--batch-size", type=int, default=128, help="batch size")
    p.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers of the classic recipe")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each way; the median counts")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--cache", default=None, help="keep the generated JPEGs and the Dataset here between runs")
    p.add_argument("--min-ratio", type=float, default=1.0, help="required ratio synthworth/classic")
    return p.parse_args(argv)


def classic(src: Path, out: Path, args) -> int:
    """The pytorch/examples-style DCGAN loop over ImageFolder; returns images trained."""
    import torch
    import torchvision.utils as vutils
    from torch import nn
    from torchvision import datasets, transforms

    from synthworth.generators.dcgan import DCGANDiscriminatorNet, DCGANGeneratorNet

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tf = transforms.Compose([transforms.Resize(args.size), transforms.CenterCrop(args.size), transforms.ToTensor(),
                             transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    folder = datasets.ImageFolder(str(src), transform=tf)
    loader = torch.utils.data.DataLoader(folder, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.loader_workers)
    nz = 100
    gen = DCGANGeneratorNet(args.size, 3, nz, 64)
    disc = DCGANDiscriminatorNet(args.size, 3, 64)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss_fn = nn.BCEWithLogitsLoss()
    fixed = torch.randn(64, nz)
    count = 0
    for epoch in range(args.epochs):
        for x, _ in loader:
            n = x.shape[0]
            ones, zeros = torch.ones(n), torch.zeros(n)
            fake = gen(torch.randn(n, nz))
            loss_d = loss_fn(disc(x), ones) + loss_fn(disc(fake.detach()), zeros)
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            opt_g.zero_grad()
            loss_g = loss_fn(disc(fake), ones)
            loss_g.backward()
            opt_g.step()
            count += n
            _ = (loss_d.item(), loss_g.item())  # what the example prints per iteration
        with torch.no_grad():
            gen.eval()
            vutils.save_image(gen(fixed), out / f"fake_samples_epoch_{epoch:03d}.png", normalize=True)
            gen.train()
        torch.save(gen.state_dict(), out / f"netG_epoch_{epoch}.pth")
        torch.save(disc.state_dict(), out / f"netD_epoch_{epoch}.pth")
    return count


def synthworth_run(dataset_dir: Path, out: Path, args) -> int:
    from synthworth.train import train

    run = train("dcgan", dataset_dir, out, preset="dcgan", overrides=[
        f"model.resolution={args.size}", "model.conditional=false", f"train.batch_size={args.batch_size}",
        f"train.epochs={args.epochs}", "train.progress=false", "train.seed=0"])
    rows = [r for r in run.read_metrics() if r.get("kind") != "epoch"]
    return len(rows) * args.batch_size


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from synthworth.data.prepare import PrepareConfig, prepare

    if args.threads:
        torch.set_num_threads(args.threads)
    # Import what both ways use up front, so neither pays a first import inside its timing.
    import accelerate  # noqa: F401
    import torchvision.datasets  # noqa: F401
    import torchvision.utils  # noqa: F401

    import synthworth.generators.dcgan  # noqa: F401
    import synthworth.train  # noqa: F401
    from synthworth.engine.loop import _has_tensorboard

    _has_tensorboard()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    n = args.n // args.batch_size * args.batch_size
    print(f"bench_dcgan_recipe: DCGAN {args.size}x{args.size}, batch {args.batch_size}, {n} images x "
          f"{args.epochs} epochs per run, {args.repeats} interleaved repeat(s), median counts; {cpu_note()}, "
          f"{torch_note()}; {load_note()} at start", flush=True)
    with jpeg_folder(n, args.cache, seed=2) as src, tempfile.TemporaryDirectory(prefix="synthworth-recipe-") as tmp:
        tmp = Path(tmp)
        base = Path(args.cache) if args.cache else tmp
        dataset_dir = base / f"dataset-n{n}-size{args.size}-s2"
        reused = (dataset_dir / "manifest.json").is_file()
        t0 = time.perf_counter()
        ds = prepare(PrepareConfig(source="folder", path=str(src), size=args.size, fit="crop", workers=2,
                                   test_fraction=0.0), dataset_dir, progress=False)
        prep_s = time.perf_counter() - t0
        assert len(ds.split("train")) == n, (len(ds.split("train")), n)
        print(f"prepare (one-time, not in synthworth's figure): {n} JPEGs -> {dataset_dir.name} "
              + ("reused from --cache" if reused else f"in {prep_s:.1f} s"))
        warm_files(all_files(src))

        ways = {"classic": lambda tag: classic(src, tmp / f"classic-{tag}", args),
                "synthworth": lambda tag: synthworth_run(dataset_dir, tmp / f"synthworth-{tag}", args)}
        rates: dict[str, list[float]] = {k: [] for k in ways}
        keys = list(ways)
        for r in range(args.repeats):
            for key in (keys if r % 2 == 0 else keys[::-1]):
                t0 = time.perf_counter()
                count = ways[key](str(r))
                seconds = time.perf_counter() - t0
                rates[key].append(count / seconds)
                print(f"  run {r + 1}: {key:<11} {count:6d} images in {seconds:7.1f} s  {count / seconds:7.1f} images/s"
                      f"  ({load_note()})", flush=True)

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n{'way':<13}{'median images/s':>17}{'min .. max':>20}")
    for k, v in rates.items():
        print(f"{k:<13}{med[k]:>17.1f}{f'{min(v):.1f} .. {max(v):.1f}':>20}")
    ratio = med["synthworth"] / med["classic"]
    paired = statistics.median(s / c for s, c in zip(rates["synthworth"], rates["classic"]))
    print(f"ratio of medians synthworth/classic {ratio:.2f}x (median of paired ratios {paired:.2f}x); "
          f"for information, pytorch/examples' dcgan was reported at {REFERENCE_IMAGES_PER_S} images/s on another "
          f"2-core CPU ({load_note()} at end)")
    print()
    line = (f"DCGAN training speed synthworth vs classic ImageFolder recipe: {ratio:.2f}x "
            f"(target >= {args.min_ratio:g}x): {'OK' if ratio >= args.min_ratio else 'FAIL'}")
    print(line)
    return 0 if line.endswith("OK") else 1


if __name__ == "__main__":
    sys.exit(main())
