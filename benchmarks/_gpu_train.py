"""Training rows of ``gpu_check.py``: images/s of synthworth's engine vs a plain PyTorch loop.

Not a benchmark itself (the leading underscore keeps it apart from the scripts). For each model
(the DDPM UNet and ResNet-34) and each setting (fp32, bf16 autocast, bf16 + channels_last,
bf16 + channels_last + ``torch.compile``), two ways train the same network on the same shapes:

  synthworth  ``synthworth.engine.loop.fit`` with the model's own Task (``DiffusionTask`` /
              ``ClassifierTask``) on a prepared Dataset on disk (memory-mapped, random pixels),
              through the real loop: accelerate's ``prepare``, its data loader and device
              placement, ``accumulate``, the task's step (which reads its losses with
              ``.item()``), metrics rows. bf16 is the engine's ``train.mixed_precision=bf16``;
              ``torch.compile`` is accelerate's own (``ACCELERATE_DYNAMO_BACKEND``, what
              ``accelerate launch --dynamo_backend`` sets). channels_last has no synthworth
              option: this script converts the task's networks (and the DDPM's EMA copy) after
              ``build`` and each batch before the task's step, and says so in the notes.
  plain       a hand-written loop: diffusers' ``UNet2DModel`` / torchvision's ``resnet34`` built
              directly with the same shapes, the images already on the device (one uint8 tensor,
              sliced per step), ``torch.autocast`` for bf16, ``torch.compile(model)``, and the
              same arithmetic as the task's step with no per-step host sync: for the DDPM
              noise, timesteps, ``add_noise``, MSE, backward, gradient clipping, AdamW, the LR
              schedule and the EMA update (as diffusers' training example does); for ResNet-34
              scaling and ImageNet normalisation, cross-entropy, backward and the optimizer of the
              task (Adam: the classifier preset's; its step costs what AdamW's does).

Timing: W untimed warm-up steps (compilation happens there), then K steps between two
device-synchronised clock readings: images/s = K x batch / seconds. In the engine the clock is
read in a subclass of the task at the start of steps W and W + K, which then stops the run by
raising (so neither the final checkpoint nor the export is timed or written); everything the
loop does between those two points is inside the window.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    bf16: bool
    channels_last: bool
    compile: bool


SETTINGS = (
    Setting("fp32", "fp32", False, False, False),
    Setting("bf16", "bf16 autocast", True, False, False),
    Setting("bf16-cl", "bf16 + channels_last", True, True, False),
    Setting("bf16-cl-compile", "bf16 + channels_last + torch.compile", True, True, True),
)


@dataclass(frozen=True)
class Model:
    key: str             # ddpm / resnet34
    side: int            # image side
    batch: int
    warmup: int
    steps: int
    preset: str          # the synthworth preset the config starts from
    classes: int = 0     # >0: a labelled Dataset (the classifier)


def models(tiny: bool) -> dict[str, Model]:
    if tiny:
        return {"ddpm": Model("ddpm", 32, 2, 1, 2, "tiny"),
                "resnet34": Model("resnet34", 32, 2, 1, 2, "thesis", classes=10)}
    return {"ddpm": Model("ddpm", 64, 64, 3, 20, "celeba-ddpm"),
            "resnet34": Model("resnet34", 256, 32, 3, 30, "thesis", classes=10)}


class _Timed(Exception):
    """Raised by the timed task once the window is over: ends ``fit`` before its final checkpoint."""


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next ``Accelerator`` takes its own mixed
    precision and dynamo settings (accelerate keeps the first ones for the whole process)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def free(device, compiled: bool) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if compiled:  # (importing dynamo just to reset it would cost seconds)
        torch._dynamo.reset()


# ------------------------------------------------------------------------------ data
def make_dataset(folder: Path, model: Model, seed: int = 0):
    """A prepared Dataset of random pixels with enough images that no epoch ends in the window."""
    from synthworth.data.dataset import Dataset, atomic_folder, write_packed

    n = (model.warmup + model.steps + 3) * model.batch
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, model.side, model.side, 3), dtype=np.uint8)
    classes = max(model.classes, 1)
    labels = np.arange(n) % classes
    with atomic_folder(folder, kind="dataset") as tmp:
        write_packed(tmp, images, labels, np.full(n, "train"), [f"class_{i}" for i in range(classes)],
                     [{} for _ in range(n)], {"kind": "synthetic", "note": "gpu_check random pixels"})
    return Dataset.open(folder)


def device_images(dataset, device):
    """The Dataset's pixels and labels as tensors on ``device`` (uint8 NCHW, int64)."""
    import torch

    train = dataset.split("train")
    pixels = torch.from_numpy(np.ascontiguousarray(train.take(np.arange(len(train)))))
    return pixels.permute(0, 3, 1, 2).contiguous().to(device), torch.as_tensor(train.labels, device=device)


# ------------------------------------------------------------------------------ synthworth
def synthworth_config(model: Model, setting: Setting, run_root: Path):
    from synthworth.train import resolve_train_config

    total = model.warmup + model.steps + 2
    common = [f"train.batch_size={model.batch}", "train.epochs=1", f"train.max_steps={total}",
              "train.progress=false", "train.checkpoint_every=1000000", "train.seed=0",
              f"train.mixed_precision={'bf16' if setting.bf16 else 'no'}"]
    if model.key == "ddpm":
        return resolve_train_config("ddpm", run_root / "unused", preset=model.preset,
                                    overrides=common + ["conditional=false", "sampling.guidance=1.0"])
    return resolve_train_config("classifier", run_root / "unused", preset=model.preset,
                                overrides=common + [f"model.name={model.key}", f"model.resolution={model.side}"])


def _timed_task(model: Model, setting: Setting, config, device):
    import torch

    from synthworth.classifiers.task import ClassifierTask
    from synthworth.generators.diffusion import DiffusionTask

    base = DiffusionTask if model.key == "ddpm" else ClassifierTask
    fmt = torch.channels_last
    first, last = model.warmup, model.warmup + model.steps

    class Timed(base):
        marks: list[float]

        def build(self, dataset, dev):
            super().build(dataset, dev)
            self.marks = []
            if setting.channels_last:
                for module in self.modules.values():
                    module.to(memory_format=fmt)
                ema = getattr(self, "ema", None)
                if ema is not None:  # the EMA copy follows the weights' layout, as in the plain loop
                    ema.shadow_params = [p.contiguous(memory_format=fmt) if p.dim() == 4 else p
                                         for p in ema.shadow_params]

        def step(self, batch, ctx):
            if ctx.global_step in (first, last):
                _sync(device)
                self.marks.append(time.perf_counter())
                if ctx.global_step == last:
                    raise _Timed
            if setting.channels_last:
                images, labels = batch
                batch = (images.contiguous(memory_format=fmt), labels)
            return super().step(batch, ctx)

    return Timed(config)


@contextlib.contextmanager
def _dynamo_env(backend: str | None):
    key = "ACCELERATE_DYNAMO_BACKEND"
    before = os.environ.get(key)
    if backend:
        os.environ[key] = backend.upper()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def run_synthworth(model: Model, setting: Setting, dataset, run_root: Path, device, backend: str) -> tuple[float, int]:
    """(images/s, parameters) of the engine's ``fit`` with the model's task."""
    from synthworth.engine.loop import fit

    config = synthworth_config(model, setting, run_root)
    task = _timed_task(model, setting, config, device)
    reset_accelerate()
    folder = run_root / f"run-{model.key}-{setting.key}"
    try:
        with _dynamo_env(backend if setting.compile else None):
            fit(task, dataset, folder, config.train)
    except _Timed:
        pass
    finally:
        reset_accelerate()
    if len(task.marks) != 2:
        raise RuntimeError(f"the engine stopped after {len(task.marks)} clock readings (expected 2)")
    params = sum(p.numel() for m in task.modules.values() for p in m.parameters())
    return model.steps * model.batch / (task.marks[1] - task.marks[0]), params


# ------------------------------------------------------------------------------ plain loops
def _plain_unet(config, side: int):
    """diffusers' UNet2DModel built by hand from the preset's numbers (the shapes synthworth's
    ``make_unet`` gives: attention at the listed levels, head dim 8)."""
    from diffusers import UNet2DModel

    m = config.model
    levels = len(m.block_out_channels)
    return UNet2DModel(
        sample_size=side, in_channels=3, out_channels=3, block_out_channels=tuple(m.block_out_channels),
        layers_per_block=m.layers_per_block, norm_num_groups=m.norm_num_groups, attention_head_dim=8,
        down_block_types=tuple("AttnDownBlock2D" if i in m.attention_levels else "DownBlock2D"
                               for i in range(levels)),
        up_block_types=tuple("AttnUpBlock2D" if levels - 1 - i in m.attention_levels else "UpBlock2D"
                             for i in range(levels)),
        add_attention=bool(m.attention_levels), dropout=m.dropout)


def _ddpm_step(config, side: int, device, setting: Setting, backend: str) -> tuple[Callable, Any, int]:
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    unet = _plain_unet(config, side).to(device)
    if setting.channels_last:
        unet.to(memory_format=torch.channels_last)
    c = config
    noise_sched = DDPMScheduler(num_train_timesteps=c.noise.num_train_timesteps,
                                beta_schedule={"linear": "linear", "cosine": "squaredcos_cap_v2"}[c.noise.beta_schedule],
                                prediction_type="epsilon", clip_sample=True)
    opt = torch.optim.AdamW(unet.parameters(), lr=c.optim.lr, betas=(c.optim.beta1, c.optim.beta2),
                            weight_decay=c.optim.weight_decay)
    lr = get_scheduler("constant_with_warmup" if c.optim.lr_schedule == "constant" else "cosine", opt,
                       num_warmup_steps=c.optim.warmup_steps, num_training_steps=1000)
    ema = EMAModel(unet.parameters(), decay=c.ema.decay, use_ema_warmup=True, power=c.ema.power)
    forward = torch.compile(unet, backend=backend) if setting.compile else unet
    T = noise_sched.config.num_train_timesteps
    clip = c.optim.grad_clip

    def step(images, labels):
        x0 = images.float().div_(127.5).sub_(1.0)
        if setting.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        noise = torch.randn_like(x0)
        t = torch.randint(0, T, (x0.shape[0],), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.bf16):
            pred = forward(noise_sched.add_noise(x0, noise, t), t).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(unet.parameters(), clip)
        opt.step()
        lr.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())

    return step, unet, sum(p.numel() for p in unet.parameters())


def _resnet_step(config, classes: int, device, setting: Setting, backend: str) -> tuple[Callable, Any, int]:
    import torch
    import torch.nn.functional as F
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model(config.model.name, weights=None, num_classes=classes).to(device)
    if setting.channels_last:
        net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225), device=device).view(1, 3, 1, 1)
    forward = torch.compile(net, backend=backend) if setting.compile else net

    def step(images, labels):
        if setting.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.bf16):
            logits = forward((images.float().div(255.0) - mean) / std)
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, net, sum(p.numel() for p in net.parameters())


def run_plain(model: Model, setting: Setting, config, pixels, labels, device, backend: str) -> tuple[float, int]:
    """(images/s, parameters) of the hand-written loop on device-resident images."""
    if model.key == "ddpm":
        step, net, params = _ddpm_step(config, model.side, device, setting, backend)
    else:
        step, net, params = _resnet_step(config, model.classes, device, setting, backend)
    net.train()
    b = model.batch
    start = 0
    for i in range(model.warmup + model.steps):
        if i == model.warmup:
            _sync(device)
            t0 = time.perf_counter()
        if start + b > len(pixels):
            start = 0
        step(pixels[start:start + b], labels[start:start + b])
        start += b
    _sync(device)
    return model.steps * b / (time.perf_counter() - t0), params

