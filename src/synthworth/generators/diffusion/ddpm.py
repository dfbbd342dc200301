"""Pixel-space DDPM: its training config, the trained generator (a diffusers ``DDPMPipeline``
folder, which the latent model extends) and its engine task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from synthworth.config import StrictModel
from synthworth.data.dataset import Dataset, atomic_folder
from synthworth.engine.config import EvalConfig, TrainConfig
from synthworth.engine.plots import plot_curves, save_grid
from synthworth.engine.precision import autocast
from synthworth.engine.task import StepContext, Task
from synthworth.errors import SynthworthError
from synthworth.generators.base import MODEL_CONFIG, Generator, read_model_config, seeded_normal, to_uint8
from synthworth.generators.diffusion.shared import (DEFAULT_STEPS, SAMPLERS, DiffusionOptimConfig, EMAConfig,
                                                    NoiseConfig, SamplingConfig, UNetConfig, check_unet_size,
                                                    denoise, diffusion_loss, make_noise_scheduler, make_sampler,
                                                    make_unet)


# ------------------------------------------------------------------------------ config
class DiffusionConfig(StrictModel):
    """A pixel-space DDPM training run (preset group ``ddpm``)."""

    model: UNetConfig = Field(default_factory=UNetConfig, description="The UNet.")
    conditional: bool = Field(False, description="Condition on the class label (classifier-free guidance).")
    cond_drop_prob: float = Field(0.1, ge=0, le=1, description="Share of training labels replaced by the null class.")
    noise: NoiseConfig = Field(default_factory=NoiseConfig, description="The noise schedule.")
    optim: DiffusionOptimConfig = Field(default_factory=DiffusionOptimConfig, description="The optimizer.")
    ema: EMAConfig = Field(default_factory=EMAConfig, description="EMA of the weights.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Default sampler.")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=50, batch_size=64), description="The training loop.")
    preview_count: int = Field(4, ge=1, le=64, description="Samples from fixed seeds shown after every epoch.")
    grid_size: int = Field(64, ge=1, le=1024, description="Samples in the larger grid at train.grid_epochs.")
    grid_seed: int = Field(1234, description="Seed of the preview and grid samples.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Image quality measured while training (eval.every epochs).")

    @model_validator(mode="after")
    def _check_guidance(self) -> DiffusionConfig:
        if not self.conditional and self.sampling.guidance != 1.0:
            raise ValueError("sampling.guidance applies to conditional models only (set conditional=true or guidance=1)")
        return self


# ------------------------------------------------------------------------------ generator
class DiffusionGenerator(Generator):
    """A trained pixel-space diffusion model, saved as a diffusers ``DDPMPipeline`` folder."""

    kind = "ddpm"

    def __init__(self, unet, scheduler_config: dict[str, Any], class_names: list[str],
                 sampling: SamplingConfig, channels: int, resolution: int, vae=None,
                 latent_scale: float = 1.0, autoencoder: dict[str, Any] | None = None,
                 scale_record: dict[str, Any] | None = None):
        self.unet, self.scheduler_config = unet, dict(scheduler_config)
        self.class_names = list(class_names)
        self.sampling = sampling
        self.channels, self.resolution = channels, resolution
        self.vae, self.latent_scale = vae, latent_scale
        # A latent model's autoencoder's provenance (generators.provenance.autoencoder), kept in the model.
        self.autoencoder = autoencoder
        # A latent model's scale factor: given or measured, and the latents' spread (latent.describe_scale).
        self.scale_record = scale_record
        self.device = next(unet.parameters()).device
        self.last_sampling: dict[str, Any] = {}

    def to(self, device) -> DiffusionGenerator:
        self.device = torch.device(device)
        self.unet.to(self.device)
        if self.vae is not None:
            self.vae.to(self.device)
        return self

    def sampling_options(self, sampler: str | None, steps: int | None, guidance: float | None) -> dict[str, Any]:
        """Resolve and check sampler, steps and guidance (recorded with every sample)."""
        sampler = sampler or self.sampling.sampler
        if sampler not in SAMPLERS:
            raise SynthworthError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if steps is None:
            steps = self.sampling.steps if sampler == self.sampling.sampler and self.sampling.steps else None
        total = self.scheduler_config["num_train_timesteps"]
        steps = steps or min(DEFAULT_STEPS[sampler] or total, total)
        if steps > total:
            raise SynthworthError(f"{steps} sampling steps exceed the model's {total} noise levels; "
                                  f"use at most {total} steps")
        if guidance is None:
            guidance = self.sampling.guidance if self.conditional else 1.0
        if guidance != 1.0 and not self.conditional:
            raise SynthworthError("a guidance scale needs a class-conditional model; this one is "
                                  "unconditional (leave guidance out)")
        return {"sampler": sampler, "steps": int(steps), "guidance": float(guidance)}

    @torch.no_grad()
    def sample(self, n: int, labels=None, seed: int = 0, sampler: str | None = None,
               steps: int | None = None, guidance: float | None = None,
               batch_size: int = 64, dtype: str | None = None) -> np.ndarray:
        """``dtype``: bfloat16 or float16 runs the networks under autocast (the sampler's own
        arithmetic stays fp32); float32 or None: as trained."""
        labels = self.check_labels(n, labels)
        options = self.sampling_options(sampler, steps, guidance)
        self.last_sampling = {**options, **({"dtype": dtype} if dtype not in (None, "float32") else {})}
        unet = self.unet
        was_training = unet.training
        unet.eval()
        side = unet.config.sample_size
        shape = (unet.config.in_channels, side, side)
        out = []
        try:
            for start in range(0, n, batch_size):
                count = min(batch_size, n - start)
                noise = seeded_normal(shape, seed + start, count, self.device)
                # The sampler's own noise (ancestral DDPM) also comes from per-image generators,
                # seeded apart from the initial noise, so image i depends on seed + i alone.
                gens = [torch.Generator(self.device).manual_seed(10_000_019 + seed + start + i)
                        for i in range(count)]
                y = None if labels is None else torch.as_tensor(labels[start:start + count], device=self.device)
                with autocast(self.device, dtype):
                    x = denoise(unet, make_sampler(options["sampler"], self.scheduler_config), noise,
                                options["steps"], y, len(self.class_names), options["guidance"], gens)
                    images = self.decode(x)
                out.append(to_uint8(images))
        finally:
            unet.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, self.resolution, self.resolution, self.channels), np.uint8)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    # ---------------------------------------------------------------- storage
    def _meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "resolution": self.resolution, "channels": self.channels,
                "class_names": self.class_names, "sampling": self.sampling.model_dump(mode="json"),
                "latent_scale": self.latent_scale,
                **({"autoencoder": self.autoencoder} if self.autoencoder is not None else {}),
                **({"latent_scale_record": self.scale_record} if self.scale_record is not None else {})}

    def save(self, folder: str | Path) -> None:
        from diffusers import DDPMPipeline, DDPMScheduler

        scheduler = DDPMScheduler.from_config(self.scheduler_config)
        with atomic_folder(folder, kind="generator", replace=True) as tmp:
            # A DDPMPipeline folder (model_index.json, unet/, scheduler/) that diffusers loads as is.
            DDPMPipeline(unet=self.unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
            if self.vae is not None:
                self.vae.save_pretrained(tmp / "vae", safe_serialization=True)
            (tmp / MODEL_CONFIG).write_text(json.dumps(self._meta(), indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> DiffusionGenerator:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel

        folder = Path(folder)
        meta = read_model_config(folder)
        for part in ("unet", "scheduler") + (("vae",) if cls.kind == "ldm" else ()):
            if not (folder / part).is_dir():
                raise SynthworthError(f"{folder}: the {part}/ folder of the saved model is missing")
        unet = UNet2DModel.from_pretrained(folder, subfolder="unet", use_safetensors=True)
        scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", use_safetensors=True) if cls.kind == "ldm" else None
        gen = cls(unet, dict(scheduler.config), meta["class_names"], SamplingConfig(**meta["sampling"]),
                  meta["channels"], meta["resolution"], vae=vae, latent_scale=meta["latent_scale"],
                  autoencoder=meta.get("autoencoder") if isinstance(meta.get("autoencoder"), dict) else None,
                  scale_record=meta.get("latent_scale_record") if isinstance(meta.get("latent_scale_record"), dict) else None)
        unet.eval()
        return gen


# ------------------------------------------------------------------------------ training
class DiffusionTask(Task):
    """Pixel-space DDPM for the shared engine."""

    kind = "ddpm"
    generator_class = DiffusionGenerator

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        self.ema = None
        self.vae = None
        self.latent_scale = 1.0
        self.autoencoder = None
        self.scale_record = None
        self.class_names: list[str] = []
        self._ema_device = None

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def check_data(self, dataset: Dataset) -> None:
        check_unet_size(self.config.model, self.latent_side(dataset), self.size_label())
        if self.config.conditional and (not dataset.labelled or (dataset.labels < 0).any()):
            raise SynthworthError("a conditional diffusion model needs a labelled Dataset with every image "
                                  "labelled (or set conditional=false)")

    def latent_side(self, dataset: Dataset) -> int:
        return dataset.resolution

    def size_label(self) -> str:
        return "the image size"

    def build(self, dataset: Dataset, device: torch.device) -> None:
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        c = self.config
        self.class_names = list(dataset.class_names) if c.conditional else []
        self.prepare_inputs(dataset, device)
        channels = self.unet_channels(dataset)
        unet = make_unet(c.model, self.latent_side(dataset), channels, len(self.class_names))
        self.noise = make_noise_scheduler(c.noise, clip_sample=self.vae is None)
        self.modules = {"unet": unet}
        opt = torch.optim.AdamW(unet.parameters(), lr=c.optim.lr, betas=(c.optim.beta1, c.optim.beta2),
                                weight_decay=c.optim.weight_decay)
        per_epoch = len(dataset) // c.train.batch_size
        total = max(1, (c.train.max_steps or per_epoch * c.train.epochs) // c.train.grad_accum)
        self.optimizers = {"opt": opt}
        self.schedulers = {"lr": get_scheduler(
            "constant_with_warmup" if c.optim.lr_schedule == "constant" else "cosine", opt,
            num_warmup_steps=c.optim.warmup_steps, num_training_steps=total)}
        if c.ema.enabled:
            self.ema = EMAModel(unet.parameters(), decay=c.ema.decay, use_ema_warmup=True,
                                power=c.ema.power, model_cls=type(unet), model_config=unet.config)
        self.resolution, self.channels = dataset.resolution, dataset.channels

    # Hooks the latent task overrides.
    def prepare_inputs(self, dataset: Dataset, device: torch.device) -> None:
        pass

    def unet_channels(self, dataset: Dataset) -> int:
        return dataset.channels

    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def step(self, batch, ctx: StepContext) -> dict[str, float]:
        images, labels = batch
        acc = ctx.accelerator
        unet, opt, lr = self.modules["unet"], self.optimizers["opt"], self.schedulers["lr"]
        with acc.autocast():  # a latent model's frozen VAE encodes in the run's precision too (fp32 latents out)
            x0 = self.to_model_space(images.float().div_(127.5).sub_(1.0))
        y = None
        if self.class_names:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.config.cond_drop_prob
            y = torch.where(drop, torch.full_like(labels, len(self.class_names)), labels)
        loss = diffusion_loss(unet, self.noise, x0, y)
        acc.backward(loss)
        if acc.sync_gradients and self.config.optim.grad_clip:
            acc.clip_grad_norm_(unet.parameters(), self.config.optim.grad_clip)
        opt.step()
        lr.step()
        opt.zero_grad(set_to_none=True)
        if self.ema is not None and acc.sync_gradients:
            if self._ema_device != x0.device:
                self.ema.to(x0.device)
                self._ema_device = x0.device
            self.ema.step(unet.parameters())
        return {"loss": loss.item(), "lr": lr.get_last_lr()[0]}

    def generator(self, accelerator) -> DiffusionGenerator:
        """A generator over the current weights (EMA ones are swapped in by :meth:`_with_ema`)."""
        unet = accelerator.unwrap_model(self.modules["unet"])
        return self.generator_class(unet, dict(self.noise.config), self.class_names, self.config.sampling,
                                    self.channels, self.resolution, vae=self.vae,
                                    latent_scale=self.latent_scale, autoencoder=self.autoencoder,
                                    scale_record=self.scale_record)

    def _with_ema(self, accelerator, action):
        unet = accelerator.unwrap_model(self.modules["unet"])
        if self.ema is None:
            return action(self.generator(accelerator))
        self.ema.store(unet.parameters())
        self.ema.copy_to(unet.parameters())
        try:
            return action(self.generator(accelerator))
        finally:
            self.ema.restore(unet.parameters())

    def evaluation_generator(self, accelerator, action):
        return self._with_ema(accelerator, action)

    def on_epoch_end(self, ctx: StepContext, epoch_means: dict[str, float]) -> None:
        if not ctx.accelerator.is_main_process:
            return
        epoch = ctx.epoch + 1
        c = self.config
        k = len(self.class_names)

        def previews(gen: DiffusionGenerator) -> None:
            labels = (np.arange(c.preview_count) % k) if k else None
            save_grid(gen.sample(c.preview_count, labels, seed=c.grid_seed), ctx.run.samples /
                      f"epoch-{epoch:03d}.png", nrow=c.preview_count, scale=max(1, 64 // self.resolution))
            if epoch in set(ctx.config.grid_epochs) | {ctx.config.epochs}:
                n, nrow, labels = c.grid_size, None, None
                if k:
                    per = max(1, n // k)
                    labels, nrow = np.repeat(np.arange(k), per), per
                    n = len(labels)
                save_grid(gen.sample(n, labels, seed=c.grid_seed), ctx.run.samples / f"grid-epoch-{epoch:03d}.png",
                          nrow=nrow, scale=max(1, 64 // self.resolution))

        self._with_ema(ctx.accelerator, previews)
        if not self.plots_due(ctx):
            return
        rows = ctx.run.read_metrics()
        plot_curves(rows, ["loss"], ctx.run.plots / "loss_per_iteration.png",
                    title=f"{self.kind.upper()} loss per iteration", ylabel="MSE loss", smooth=25)
        plot_curves(rows, ["loss"], ctx.run.plots / "loss_per_epoch.png",
                    title=f"{self.kind.upper()} mean loss per epoch", ylabel="MSE loss", per_epoch=True)

    def extra_state(self) -> Any:
        return {"ema": self.ema.state_dict() if self.ema is not None else None,
                "latent_scale": self.latent_scale}

    def load_extra_state(self, state: Any) -> None:
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.latent_scale = state.get("latent_scale", self.latent_scale)

    def export(self, folder: Path, accelerator) -> None:
        self._with_ema(accelerator, lambda gen: gen.save(folder))
