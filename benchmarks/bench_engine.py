"""Benchmark: per-step overhead of synthworth's training engine (``engine.loop.fit``).

Issues 3 and 4, "Speed". The same networks are trained in several ways, side by side in one run
(bare and engine for the DCGAN; bare, accel, example and engine for the DDPM):

  bare   a plain PyTorch loop on in-memory tensors: the whole Dataset is loaded into one uint8
         tensor before the loop; each step slices the next batch, scales it to [-1, 1] and does
         exactly the arithmetic of the synthworth task's step (for the DCGAN: D on real and on
         detached fakes, BCE-with-logits, Adam step, then G through the frozen D, Adam step; for
         the DDPM: noise, random timesteps, ``add_noise``, UNet, MSE, backward, gradient
         clipping, AdamW and LR-schedule steps, EMA update). No accelerate, no logging.
  accel  (DDPM only) a plain ``accelerate`` loop written the way diffusers'
         ``examples/unconditional_image_generation/train_unconditional.py`` is (our code):
         Accelerator, ``prepare(model, optimizer, dataloader, lr_scheduler)``, ``accumulate``,
         ``accelerator.backward``, ``clip_grad_norm_``, EMA, per-step loss/lr logging, over a
         shuffled DataLoader of the in-memory tensors: the strictest stand-in.
  example (DDPM only) the same accelerate loop fed as train_unconditional.py feeds it: image
         files decoded and transformed on every step (Resize + CenterCrop + ToTensor +
         Normalize, DataLoader with the script's default of 0 workers), here from the JPEGs the
         Dataset was prepared from. That script's published figure (15.2 s/step at batch 16,
         64x64, on a 2-core CPU) was measured elsewhere; this is its side-by-side stand-in.
  engine synthworth's ``fit`` with the model's own Task (``DCGANTask`` / ``DiffusionTask``) on
         a prepared Dataset on disk (memory-mapped), with ``train.progress=false``.

Models: the DCGAN at 64x64 (preset ``dcgan``: 100-dim noise, 64 base channels, five layers per
network), batch 128, on a prepared Dataset of generated CelebA-sized JPEGs made in a temp dir;
and the unconditional DDPM with a small UNet (``--unet small``: channels 32-64-64, one ResNet
block per level, the digits preset's UNet) at 64x64, batch 16 -- or with ``--unet
diffusers-example``, the UNet of diffusers' train_unconditional.py (channels 128-128-256-256-
512-512, two blocks per level, attention at the fifth level, ~114M parameters), which is slow
(~15 s/step on 2 cores).

What is timed: each training function records ``time.perf_counter()`` as each step starts and
ends, once the batch is in hand (for the engine, a subclass of the Task whose ``step`` records
the time around the real step). The per-step time of a run is (start of step W+K - start of step W) / K: K full
iterations after W warm-up steps, including everything the loop does between two steps (data
loading, accelerate's ``accumulate`` context, metrics rows, progress bookkeeping) and none of
the one-time costs (building networks, the Accelerator, the run folder, the final checkpoint
and export). The engine's periodic costs are kept out of the window on purpose: the Dataset
is large enough that no epoch ends inside it and ``train.checkpoint_every`` is larger than the
run, because they are per-epoch / per-N-step costs (a checkpoint or an epoch's sample grid),
not per-step overhead; ``bench_dcgan_recipe.py`` measures whole epochs, those costs included.
Each way runs ``--repeats`` times, interleaved (the order alternates between repeats); the
verdicts use the median over repeats of the per-repeat ratio (the ways of one repeat run back to
back, so a change in the machine's load between repeats does not bias it; the median of each
way and the ratio of those medians are printed too). The time each loop spends OUTSIDE the step's
arithmetic (from the end of one step to the start of the next: fetching the batch and the
loop's bookkeeping) is also printed: it isolates the loop's own cost from the noise of the
compute. Requirements: engine / bare - 1 < 10 % for each model (issues 3 and 4); for the
DDPM, engine throughput >= the train_unconditional.py-style loop's (example s/step / engine
s/step >= 1.0, issue 4); engine vs the in-memory accelerate loop is printed for information.

On a CPU shared with other busy processes, run it with OMP_WAIT_POLICY=PASSIVE (see
``_common.torch_note``): spinning OpenMP threads otherwise make every figure erratic.

Run:  OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_engine.py     (~7 min on 2 cores)
      .venv/bin/python benchmarks/bench_engine.py --models ddpm --unet diffusers-example --ddpm-steps 3 --warmup 1 --repeats 2
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

from _common import cpu_note, jpeg_folder, load_note, torch_note  # noqa: E402

UNETS = {
    "small": {"block_out_channels": [32, 64, 64], "layers_per_block": 1, "attention_levels": [],
              "norm_num_groups": 8},
    "diffusers-example": {"block_out_channels": [128, 128, 256, 256, 512, 512], "layers_per_block": 2,
                          "attention_levels": [4], "norm_num_groups": 32},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default="dcgan,ddpm", help="comma-separated: dcgan, ddpm")
    p.add_argument("--size", type=int, default=64, help="image side")
    p.add_argument("--dcgan-batch", type=int, default=128, help="DCGAN batch size")
    p.add_argument("--dcgan-steps", type=int, default=8, help="timed DCGAN steps per run (K)")
    p.add_argument("--unet", choices=sorted(UNETS), default="small", help="DDPM UNet config")
    p.add_argument("--ddpm-batch", type=int, default=16, help="DDPM batch size")
    p.add_argument("--ddpm-steps", type=int, default=20, help="timed DDPM steps per run (K)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every run (W)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each way; the median counts")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--cache", default=None, help="keep the generated JPEGs and the Dataset here between runs")
    p.add_argument("--max-overhead", type=float, default=0.10, help="allowed engine overhead vs bare")
    p.add_argument("--min-vs-accelerate", type=float, default=1.0, help="required DDPM throughput ratio engine/accel")
    return p.parse_args(argv)


# ------------------------------------------------------------------------ helpers
def per_step(stamps: list[float], warmup: int, steps: int) -> float:
    """Seconds per iteration over the window: K iterations from the start of step W."""
    if len(stamps) < warmup + steps + 1:
        raise RuntimeError(f"only {len(stamps)} step stamps, need {warmup + steps + 1}")
    return (stamps[warmup + steps] - stamps[warmup]) / steps


def outside(stamps: list[float], ends: list[float], warmup: int, steps: int) -> float:
    """Mean seconds per iteration spent OUTSIDE the step's arithmetic over the window (from the
    end of one step to the start of the next: data loading and the loop's own bookkeeping)."""
    return sum(stamps[i + 1] - ends[i] for i in range(warmup, warmup + steps)) / steps


def in_memory(dataset) -> "torch.Tensor":
    import torch

    train = dataset.split("train")
    return torch.from_numpy(np.ascontiguousarray(train.take(np.arange(len(train))))).permute(0, 3, 1, 2).contiguous()


def batches(images, batch_size: int):
    """Endless consecutive batches of an in-memory uint8 tensor (a fresh random order per pass)."""
    import torch

    g = torch.Generator().manual_seed(0)
    while True:
        order = torch.randperm(len(images), generator=g)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield images[order[start:start + batch_size]]


def timed_task(base, config):
    """``base`` (a synthworth Task class) whose step records its start time."""

    class Timed(base):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.stamps: list[float] = []
            self.ends: list[float] = []

        def step(self, batch, ctx):
            self.stamps.append(time.perf_counter())
            logs = super().step(batch, ctx)
            self.ends.append(time.perf_counter())
            return logs

        def on_epoch_end(self, ctx, epoch_means):  # not reached inside the window; keep runs short
            pass

        def export(self, folder, accelerator):
            pass

    return Timed(config)


def engine_run(kind: str, config, dataset, tmp: Path, tag: str) -> tuple[list[float], list[float]]:
    from synthworth.engine.loop import fit
    from synthworth.metrics.tracking import training_hooks
    from synthworth.train import MODELS

    task = timed_task(MODELS[kind].task(), config)
    fit(task, dataset, tmp / f"run-{tag}", config.train, hooks=training_hooks(config))
    return task.stamps, task.ends


# ------------------------------------------------------------------------ DCGAN
def dcgan_config(args, total_steps: int, tmp: Path):
    from synthworth.train import resolve_train_config

    return resolve_train_config("dcgan", tmp / "unused", preset="dcgan", overrides=[
        f"model.resolution={args.size}", "model.conditional=false", f"train.batch_size={args.dcgan_batch}",
        "train.epochs=1", f"train.max_steps={total_steps}", "train.progress=false",
        "train.checkpoint_every=1000000", "train.seed=0"])


def dcgan_bare(config, images, channels: int, total_steps: int) -> list[float]:
    import torch
    from torch import nn

    from synthworth.generators.dcgan import DCGANDiscriminatorNet, DCGANGeneratorNet

    m, o = config.model, config.optim
    torch.manual_seed(0)
    size = images.shape[-1]
    gen = DCGANGeneratorNet(size, channels, m.latent_dim, m.base_channels)
    disc = DCGANDiscriminatorNet(size, channels, m.base_channels)
    opt_g = torch.optim.Adam(gen.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
    loss_fn = nn.BCEWithLogitsLoss()
    stamps, ends = [], []
    feed = batches(images, config.train.batch_size)
    for _ in range(total_steps):
        batch = next(feed)
        stamps.append(time.perf_counter())
        x = batch.float().div_(127.5).sub_(1.0)
        n = x.shape[0]
        ones, zeros = torch.ones(n), torch.zeros(n)
        fake = gen(torch.randn(n, m.latent_dim))
        loss_d = loss_fn(disc(x), ones) + loss_fn(disc(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        disc.requires_grad_(False)
        loss_g = loss_fn(disc(fake), ones)
        loss_g.backward()
        disc.requires_grad_(True)
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
    stamps.append(time.perf_counter())
    return stamps, ends


# ------------------------------------------------------------------------ DDPM
def ddpm_config(args, total_steps: int, tmp: Path):
    from synthworth.train import resolve_train_config

    unet = UNETS[args.unet]
    return resolve_train_config("ddpm", tmp / "unused", preset="digits-ddpm", overrides=[
        f"model.block_out_channels={unet['block_out_channels']}", f"model.layers_per_block={unet['layers_per_block']}",
        f"model.attention_levels={unet['attention_levels']}", f"model.norm_num_groups={unet['norm_num_groups']}",
        "conditional=false", "sampling.guidance=1.0", f"train.batch_size={args.ddpm_batch}", "train.epochs=1",
        f"train.max_steps={total_steps}", "train.progress=false", "train.checkpoint_every=1000000",
        "train.seed=0"])


def _ddpm_parts(config, size: int, channels: int, total_steps: int):
    import torch
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from synthworth.generators.diffusion import make_noise_scheduler, make_unet

    c = config
    torch.manual_seed(0)
    unet = make_unet(c.model, size, channels, 0)
    noise = make_noise_scheduler(c.noise, clip_sample=True)
    opt = torch.optim.AdamW(unet.parameters(), lr=c.optim.lr, betas=(c.optim.beta1, c.optim.beta2),
                            weight_decay=c.optim.weight_decay)
    lr = get_scheduler("constant_with_warmup" if c.optim.lr_schedule == "constant" else "cosine", opt,
                       num_warmup_steps=c.optim.warmup_steps, num_training_steps=total_steps)
    ema = EMAModel(unet.parameters(), decay=c.ema.decay, use_ema_warmup=True, power=c.ema.power,
                   model_cls=type(unet), model_config=unet.config)
    return unet, noise, opt, lr, ema


def ddpm_bare(config, images, channels: int, total_steps: int) -> list[float]:
    import torch
    import torch.nn.functional as F

    unet, noise_sched, opt, lr, ema = _ddpm_parts(config, images.shape[-1], channels, total_steps)
    T = noise_sched.config.num_train_timesteps
    clip = config.optim.grad_clip
    stamps, ends = [], []
    feed = batches(images, config.train.batch_size)
    for _ in range(total_steps):
        batch = next(feed)
        stamps.append(time.perf_counter())
        x0 = batch.float().div_(127.5).sub_(1.0)
        noise = torch.randn_like(x0)
        t = torch.randint(0, T, (x0.shape[0],))
        pred = unet(noise_sched.add_noise(x0, noise, t), t).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(unet.parameters(), clip)
        opt.step()
        lr.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        ends.append(time.perf_counter())
    stamps.append(time.perf_counter())
    return stamps, ends


def ddpm_accelerate(config, images, channels: int, total_steps: int, jpegs: Path | None = None):
    """A plain accelerate loop written the way diffusers' train_unconditional.py is, over the
    in-memory tensors (``jpegs`` None) or, as that script does, over image files decoded and
    transformed on every step (Resize + CenterCrop + ToTensor + Normalize, DataLoader with its
    default of 0 workers)."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator

    size = images.shape[-1]
    unet, noise_sched, opt, lr, ema = _ddpm_parts(config, size, channels, total_steps)
    if jpegs is None:
        data = torch.utils.data.TensorDataset(images)
    else:
        from torchvision import datasets, transforms

        data = datasets.ImageFolder(str(jpegs), transform=transforms.Compose([
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]))
    loader = torch.utils.data.DataLoader(data, batch_size=config.train.batch_size, shuffle=True, drop_last=True,
                                         num_workers=0)
    accelerator = Accelerator(gradient_accumulation_steps=1, mixed_precision="no")
    unet, opt, loader, lr = accelerator.prepare(unet, opt, loader, lr)
    T = noise_sched.config.num_train_timesteps
    stamps: list[float] = []
    ends: list[float] = []
    while len(stamps) < total_steps:
        for batch, *_ in loader:
            stamps.append(time.perf_counter())
            x0 = batch.float().div_(127.5).sub_(1.0) if batch.dtype == torch.uint8 else batch
            noise = torch.randn_like(x0)
            t = torch.randint(0, T, (x0.shape[0],), device=x0.device)
            with accelerator.accumulate(unet):
                pred = unet(noise_sched.add_noise(x0, noise, t), t).sample
                loss = F.mse_loss(pred.float(), noise.float())
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(unet.parameters(), config.optim.grad_clip or 1.0)
                opt.step()
                lr.step()
                opt.zero_grad()
            if accelerator.sync_gradients:
                ema.step(unet.parameters())
            _ = {"loss": loss.detach().item(), "lr": lr.get_last_lr()[0]}  # what the example logs per step
            ends.append(time.perf_counter())
            if len(stamps) == total_steps:
                break
    stamps.append(time.perf_counter())
    accelerator.end_training()
    return stamps, ends


# ------------------------------------------------------------------------ main
def measure(name: str, ways: dict, args, warmup: int, steps: int):
    times: dict[str, list[float]] = {k: [] for k in ways}
    gaps: dict[str, list[float]] = {k: [] for k in ways}
    keys = list(ways)
    for r in range(args.repeats):
        order = keys if r % 2 == 0 else keys[::-1]
        for key in order:
            stamps, ends = ways[key](f"{r}")
            s = per_step(stamps, warmup, steps)
            g = outside(stamps, ends, warmup, steps)
            times[key].append(s)
            gaps[key].append(g)
            print(f"  {name} run {r + 1}: {key:<7} {s:8.3f} s/step, of which {g * 1000:6.1f} ms outside the step  "
                  f"({load_note()})", flush=True)
    return times, gaps


def paired(times: dict[str, list[float]], num: str, den: str) -> tuple[float, float, float]:
    """(median, min, max) of the per-repeat ratios num/den: each repeat runs the ways back to back,
    so a ratio within a repeat is not moved by the machine's load changing between repeats."""
    ratios = [a / b for a, b in zip(times[num], times[den])]
    return statistics.median(ratios), min(ratios), max(ratios)


def judged(value: float, low: float, high: float, ok: bool, ok_somewhere: bool) -> str:
    if ok:
        return "OK"
    return f"FAIL (within run-to-run noise: paired ratios {low:.3f} .. {high:.3f})" if ok_somewhere else "FAIL"


def spread(times: dict[str, list[float]]) -> str:
    return ", ".join(f"{k} {(max(v) - min(v)) / statistics.median(v):.1%}" for k, v in times.items())


def report(name: str, measured, batch: int) -> tuple[dict[str, float], dict[str, float]]:
    times, gaps = measured
    med = {k: statistics.median(v) for k, v in times.items()}
    gap = {k: statistics.median(v) for k, v in gaps.items()}
    print(f"\n{name}: median over {len(next(iter(times.values())))} runs (min .. max)")
    for k, v in times.items():
        print(f"  {k:<7} {med[k]:8.3f} s/step ({min(v):.3f} .. {max(v):.3f})  {batch / med[k]:8.1f} images/s  "
              f"outside the step {gap[k] * 1000:6.1f} ms/step ({gap[k] / med[k]:.1%} of a step)")
    return med, gap


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from synthworth.data.dataset import Dataset
    from synthworth.data.prepare import PrepareConfig, prepare

    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    W = args.warmup
    need = max((W + args.dcgan_steps + 1) * args.dcgan_batch if "dcgan" in models else 0,
               (W + args.ddpm_steps + 1) * args.ddpm_batch if "ddpm" in models else 0)
    n = -(-need // 128) * 128 + 128  # no epoch ends inside the timed window
    print(f"bench_engine: {', '.join(models)} at {args.size}x{args.size}; W={W} warm-up steps, "
          f"{args.repeats} interleaved repeat(s), median counts; {cpu_note()}, {torch_note()}; "
          f"{load_note()} at start", flush=True)
    lines = []
    with jpeg_folder(n, args.cache, seed=1) as src, tempfile.TemporaryDirectory(prefix="synthworth-engine-") as tmp:
        tmp = Path(tmp)
        base = Path(args.cache) if args.cache else tmp
        ds_dir = base / f"dataset-n{n}-size{args.size}-s1"
        prepare(PrepareConfig(source="folder", path=str(src), size=args.size, fit="crop", workers=2,
                              test_fraction=0.0), ds_dir, progress=False)
        dataset = Dataset.open(ds_dir)
        images = in_memory(dataset)
        channels = dataset.channels
        print(f"prepared Dataset: {len(dataset.split('train'))} train images {tuple(images.shape[1:])} in {ds_dir}")

        if "dcgan" in models:
            K = args.dcgan_steps
            total = W + K + 1
            config = dcgan_config(args, total, tmp)
            print(f"\nDCGAN {args.size}x{args.size}, batch {args.dcgan_batch}, preset dcgan "
                  f"(latent {config.model.latent_dim}, base channels {config.model.base_channels}); K={K} timed steps")
            ways = {"bare": lambda tag: dcgan_bare(config, images, channels, total),
                    "engine": lambda tag: engine_run("dcgan", config, dataset, tmp, f"dcgan-{tag}")}
            measured = measure("DCGAN", ways, args, W, K)
            med, gap = report("DCGAN", measured, args.dcgan_batch)
            r, lo, hi = paired(measured[0], "engine", "bare")
            over = r - 1
            print(f"  engine / bare per repeat: median {r:.3f} ({lo:.3f} .. {hi:.3f}); ratio of the medians "
                  f"{med['engine'] / med['bare']:.3f}; time outside the step: engine {gap['engine'] * 1000:.1f} ms vs "
                  f"bare {gap['bare'] * 1000:.1f} ms ({(gap['engine'] - gap['bare']) / med['bare']:+.2%} of a bare step); "
                  f"run-to-run spread (max - min) / median: {spread(measured[0])}")
            lines.append(f"DCGAN engine overhead per step vs bare PyTorch: {over:+.1%} (target < {args.max_overhead:.0%}): "
                         + judged(over, lo, hi, over < args.max_overhead, lo - 1 < args.max_overhead))

        if "ddpm" in models:
            K = args.ddpm_steps
            total = W + K + 1
            config = ddpm_config(args, total, tmp)
            from synthworth.generators.diffusion import make_unet

            params = sum(p.numel() for p in make_unet(config.model, args.size, channels, 0).parameters())
            print(f"\nDDPM {args.size}x{args.size}, batch {args.ddpm_batch}, UNet {args.unet} "
                  f"{config.model.block_out_channels} ({params / 1e6:.2f} M parameters); K={K} timed steps")
            ways = {"bare": lambda tag: ddpm_bare(config, images, channels, total),
                    "accel": lambda tag: ddpm_accelerate(config, images, channels, total),
                    "example": lambda tag: ddpm_accelerate(config, images, channels, total, jpegs=src),
                    "engine": lambda tag: engine_run("ddpm", config, dataset, tmp, f"ddpm-{tag}")}
            measured = measure("DDPM", ways, args, W, K)
            med, gap = report("DDPM", measured, args.ddpm_batch)
            r, lo, hi = paired(measured[0], "engine", "bare")
            over = r - 1
            vs_example, ex_lo, ex_hi = paired(measured[0], "example", "engine")
            vs_accel, ac_lo, ac_hi = paired(measured[0], "accel", "engine")
            print(f"  engine / bare per repeat: median {r:.3f} ({lo:.3f} .. {hi:.3f}); ratio of the medians "
                  f"{med['engine'] / med['bare']:.3f}; time outside the step: engine {gap['engine'] * 1000:.1f} ms vs "
                  f"bare {gap['bare'] * 1000:.1f} ms ({(gap['engine'] - gap['bare']) / med['bare']:+.2%} of a bare step)")
            print(f"  throughput engine / train_unconditional-style loop decoding JPEGs, per repeat: median "
                  f"{vs_example:.3f}x ({ex_lo:.3f} .. {ex_hi:.3f}); engine / the same accelerate loop on in-memory "
                  f"tensors: {vs_accel:.3f}x ({ac_lo:.3f} .. {ac_hi:.3f}); run-to-run spread (max - min) / median: "
                  f"{spread(measured[0])}")
            if args.unet == "diffusers-example":
                print(f"  (for information: diffusers' train_unconditional.py was reported at 15.2 s/step on another "
                      f"2-core CPU; the engine here: {med['engine']:.1f} s/step)")
            lines.append(f"DDPM engine overhead per step vs bare PyTorch: {over:+.1%} (target < {args.max_overhead:.0%}): "
                         + judged(over, lo, hi, over < args.max_overhead, lo - 1 < args.max_overhead))
            lines.append(f"DDPM training throughput vs a train_unconditional.py-style accelerate loop (JPEGs decoded "
                         f"per step, as the script does): {vs_example:.3f}x (target >= {args.min_vs_accelerate:g}x): "
                         + judged(vs_example, ex_lo, ex_hi, vs_example >= args.min_vs_accelerate,
                                  ex_hi >= args.min_vs_accelerate))
    print(f"\n({load_note()} at end; verdicts use the median of the per-repeat ratios)")
    print("\n".join(lines))
    return 0 if all(line.endswith("OK") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
