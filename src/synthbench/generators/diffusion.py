"""Diffusion generators on ``diffusers``: pixel-space DDPM and latent diffusion.

- DDPM (Ho, Jain & Abbeel 2020): the forward process adds Gaussian noise over T steps
  (``DDPMScheduler.add_noise``, eq. 4); a UNet (Ronneberger et al. 2015; ``UNet2DModel``) learns
  to predict the noise with the simplified loss ``|| eps - eps_theta(x_t, t) ||^2`` (eq. 14), or
  the velocity ``v`` (Salimans & Ho 2022) as an option. Fixed variances; linear or cosine
  (Nichol & Dhariwal 2021) betas.
- Latent diffusion (Rombach et al. 2022): the same UNet works on the latents of a frozen
  ``AutoencoderKL``, scaled to unit variance by a factor measured on the training data.
- Class conditioning with classifier-free guidance (Ho & Salimans 2022): labels are replaced by a
  "null" class with probability ``cond_drop_prob`` during training; at sampling the noise
  prediction is ``eps_null + w (eps_label - eps_null)``.
- Samplers are diffusers' schedulers: ancestral DDPM (all steps), DDIM, DPM-Solver++.

The network, the noise schedule, the loss and the sampler are separate pieces: the network is a
plain ``UNet2DModel``, the schedule and samplers are diffusers schedulers, the loss is
:func:`diffusion_loss` and the sampler loop is :func:`denoise`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from synthbench.config import StrictModel
from synthbench.data.dataset import Dataset, atomic_folder
from synthbench.engine.config import TrainConfig
from synthbench.engine.loop import StepContext, Task
from synthbench.engine.plots import plot_curves, save_grid
from synthbench.errors import SynthbenchError
from synthbench.metrics.tracking import EvalConfig
from synthbench.generators.base import MODEL_CONFIG, Generator, read_model_config, seeded_normal, to_uint8

SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
DEFAULT_STEPS = {"ddpm": None, "ddim": 50, "dpmsolver++": 20}
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


# ------------------------------------------------------------------------------ config
class UNetConfig(StrictModel):
    """The noise-prediction UNet (diffusers ``UNet2DModel``)."""

    block_out_channels: list[int] = Field([32, 64, 64], min_length=1, description="Channels per resolution level; each level after the first halves the side.")
    layers_per_block: int = Field(1, ge=1, description="ResNet blocks per level.")
    attention_levels: list[int] = Field([], description="Levels (0-based) that get self-attention.")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups; must divide every channel count.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout inside the ResNet blocks.")

    @model_validator(mode="after")
    def _check(self) -> UNetConfig:
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups {self.norm_num_groups} does not divide channels {bad}")
        wrong = [lvl for lvl in self.attention_levels if not 0 <= lvl < len(self.block_out_channels)]
        if wrong:
            raise ValueError(f"attention_levels {wrong} outside 0..{len(self.block_out_channels) - 1}")
        return self


class NoiseConfig(StrictModel):
    """The forward (noising) process."""

    num_train_timesteps: int = Field(1000, ge=2, description="T, the number of noise levels.")
    beta_schedule: Literal["linear", "cosine"] = Field("linear", description="Betas: linear (DDPM) or cosine (improved DDPM).")
    prediction_type: Literal["epsilon", "v_prediction"] = Field("epsilon", description="What the UNet predicts: the noise or the velocity v.")


class DiffusionOptimConfig(StrictModel):
    """AdamW with an optional warm-up and cosine decay."""

    lr: float = Field(1e-4, gt=0, description="Peak learning rate.")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.999, ge=0, lt=1, description="AdamW beta2.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="Learning-rate schedule after warm-up.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this value (none: no clipping).")


class EMAConfig(StrictModel):
    """Exponential moving average of the weights, used for sampling."""

    enabled: bool = Field(True, description="Keep EMA weights and sample from them.")
    decay: float = Field(0.9999, gt=0, lt=1, description="Largest EMA decay.")
    power: float = Field(0.75, gt=0, description="Warm-up power: decay = 1 - (1 + step)^-power until it reaches `decay`.")


class SamplingConfig(StrictModel):
    """Default sampler for previews and generation (each can be overridden when sampling)."""

    sampler: Literal["ddpm", "ddim", "dpmsolver++"] = Field("dpmsolver++", description="ddpm (ancestral, all steps), ddim or dpmsolver++.")
    steps: int | None = Field(None, ge=1, description="Denoising steps (default: T for ddpm, 50 for ddim, 20 for dpmsolver++).")
    guidance: float = Field(1.0, ge=0, description="Classifier-free guidance scale (1: none; conditional models only).")


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


class LDMConfig(DiffusionConfig):
    """A latent diffusion training run (preset group ``ldm``): the UNet works on VAE latents."""

    vae: str | None = Field(None, description="A diffusers AutoencoderKL folder, a pipeline folder with vae/, or a 'synthbench train vae' run.")
    scale_samples: int = Field(512, ge=8, description="Training images encoded to measure the latent scaling factor.")

    @field_validator("vae")
    @classmethod
    def _local_vae_absolute(cls, value: str | None) -> str | None:
        # A local folder typed relative to where 'train' ran is kept absolute in the run's config:
        # resuming, sampling or reporting from another working folder must find the same VAE.
        # A hub id (no such local path) stays as typed.
        return str(Path(value).absolute()) if value and Path(value).exists() else value


# ------------------------------------------------------------------------------ pieces
def make_unet(config: UNetConfig, sample_size: int, channels: int, num_classes: int):
    """A ``UNet2DModel``; ``num_classes`` > 0 adds a class embedding with one extra null class."""
    from diffusers import UNet2DModel

    levels = len(config.block_out_channels)
    down = tuple("AttnDownBlock2D" if i in config.attention_levels else "DownBlock2D" for i in range(levels))
    up = tuple("AttnUpBlock2D" if (levels - 1 - i) in config.attention_levels else "UpBlock2D"
               for i in range(levels))
    return UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(config.block_out_channels), layers_per_block=config.layers_per_block,
        down_block_types=down, up_block_types=up, norm_num_groups=config.norm_num_groups,
        dropout=config.dropout, attention_head_dim=8,
        add_attention=bool(config.attention_levels),
        num_class_embeds=(num_classes + 1) if num_classes else None,
    )


def check_unet_size(config: UNetConfig, side: int, what: str) -> None:
    factor = 2 ** (len(config.block_out_channels) - 1)
    if side % factor or side < factor:
        raise SynthbenchError(f"{what} {side}x{side} cannot go through a UNet with "
                              f"{len(config.block_out_channels)} levels (the side must be a multiple of "
                              f"{factor}); change model.block_out_channels or the image size")


def make_noise_scheduler(config: NoiseConfig, clip_sample: bool):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps,
                         beta_schedule=BETA_SCHEDULES[config.beta_schedule],
                         prediction_type=config.prediction_type, clip_sample=clip_sample)


def make_sampler(name: str, scheduler_config: dict[str, Any]):
    """A fresh diffusers scheduler of the named kind sharing the training noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    # A live scheduler's config lists the keys it left at their defaults ("_use_default_values");
    # from_config would then give the new scheduler ITS defaults for them (DPM-Solver++ would
    # start at t=999 instead of the DDPM schedule's "leading" spacing, where the capped cosine
    # schedule has alpha ~ 0 and samples blow up). Saved configs do not carry the key, so drop it
    # here: a model samples the same during training as after save/load.
    scheduler_config = {k: v for k, v in dict(scheduler_config).items() if k != "_use_default_values"}
    if name == "ddpm":
        return DDPMScheduler.from_config(scheduler_config)
    if name == "ddim":
        return DDIMScheduler.from_config(scheduler_config)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(scheduler_config, algorithm_type="dpmsolver++")
    raise SynthbenchError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def diffusion_loss(unet, scheduler, x0: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The simplified DDPM objective: MSE between the UNet's output and the noise (or v)."""
    noise = torch.randn_like(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
    noisy = scheduler.add_noise(x0, noise, t)
    target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, t)
    prediction = unet(noisy, t, class_labels=labels).sample
    return F.mse_loss(prediction.float(), target.float())


@torch.no_grad()
def denoise(unet, sampler, noise: torch.Tensor, steps: int, labels: torch.Tensor | None,
            null_label: int | None, guidance: float, generators: list[torch.Generator]) -> torch.Tensor:
    """Run ``sampler`` from ``noise`` to x_0 in ``steps`` steps, with classifier-free guidance
    when ``guidance`` != 1. ``generators`` (one per sample) drive any noise the sampler adds."""
    sampler.set_timesteps(steps, device=noise.device)
    x = noise * sampler.init_noise_sigma
    guided = labels is not None and guidance != 1.0
    for t in sampler.timesteps:
        model_in = sampler.scale_model_input(x, t)
        if guided:
            both = torch.cat([model_in, model_in])
            cls = torch.cat([labels, torch.full_like(labels, null_label)])
            out_label, out_null = unet(both, t, class_labels=cls).sample.chunk(2)
            out = out_null + guidance * (out_label - out_null)
        else:
            out = unet(model_in, t, class_labels=labels).sample
        x = sampler.step(out, t, x, generator=generators).prev_sample
    return x


# ------------------------------------------------------------------------------ generator
class DiffusionGenerator(Generator):
    """A trained pixel-space diffusion model, saved as a diffusers ``DDPMPipeline`` folder."""

    kind = "ddpm"

    def __init__(self, unet, scheduler_config: dict[str, Any], class_names: list[str],
                 sampling: SamplingConfig, channels: int, resolution: int, vae=None,
                 latent_scale: float = 1.0, autoencoder: dict[str, Any] | None = None):
        self.unet, self.scheduler_config = unet, dict(scheduler_config)
        self.class_names = list(class_names)
        self.sampling = sampling
        self.channels, self.resolution = channels, resolution
        self.vae, self.latent_scale = vae, latent_scale
        # A latent model's autoencoder's provenance (generators.provenance.autoencoder), kept in the model.
        self.autoencoder = autoencoder
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
            raise SynthbenchError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if steps is None:
            steps = self.sampling.steps if sampler == self.sampling.sampler and self.sampling.steps else None
        total = self.scheduler_config["num_train_timesteps"]
        steps = steps or min(DEFAULT_STEPS[sampler] or total, total)
        if steps > total:
            raise SynthbenchError(f"{steps} sampling steps exceed the model's {total} noise levels; "
                                  f"use at most {total} steps")
        if guidance is None:
            guidance = self.sampling.guidance if self.conditional else 1.0
        if guidance != 1.0 and not self.conditional:
            raise SynthbenchError("a guidance scale needs a class-conditional model; this one is "
                                  "unconditional (leave guidance out)")
        return {"sampler": sampler, "steps": int(steps), "guidance": float(guidance)}

    @torch.no_grad()
    def sample(self, n: int, labels=None, seed: int = 0, sampler: str | None = None,
               steps: int | None = None, guidance: float | None = None,
               batch_size: int = 64) -> np.ndarray:
        labels = self.check_labels(n, labels)
        options = self.sampling_options(sampler, steps, guidance)
        self.last_sampling = options
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
                x = denoise(unet, make_sampler(options["sampler"], self.scheduler_config), noise,
                            options["steps"], y, len(self.class_names), options["guidance"], gens)
                out.append(to_uint8(self.decode(x)))
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
                **({"autoencoder": self.autoencoder} if self.autoencoder is not None else {})}

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
                raise SynthbenchError(f"{folder}: the {part}/ folder of the saved model is missing")
        unet = UNet2DModel.from_pretrained(folder, subfolder="unet", use_safetensors=True)
        scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", use_safetensors=True) if cls.kind == "ldm" else None
        gen = cls(unet, dict(scheduler.config), meta["class_names"], SamplingConfig(**meta["sampling"]),
                  meta["channels"], meta["resolution"], vae=vae, latent_scale=meta["latent_scale"],
                  autoencoder=meta.get("autoencoder") if isinstance(meta.get("autoencoder"), dict) else None)
        unet.eval()
        return gen


class LatentDiffusionGenerator(DiffusionGenerator):
    """A trained latent diffusion model: ``unet/``, ``scheduler/`` and ``vae/`` sub-folders."""

    kind = "ldm"

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.latent_scale).sample


# ------------------------------------------------------------------------------ VAE helpers
def resolve_vae_folder(path: str | Path) -> tuple[Path, str | None]:
    """Where an AutoencoderKL lives: (folder, subfolder). Accepts a diffusers AutoencoderKL
    folder, a pipeline folder with ``vae/``, or a ``synthbench train vae`` run folder."""
    path = Path(path).expanduser()
    hint = ("give a folder holding a diffusers AutoencoderKL (config.json + "
            "diffusion_pytorch_model.safetensors), e.g. a Stable Diffusion download's vae/ folder, or "
            "a run of 'synthbench train vae'")
    if not path.exists():
        raise SynthbenchError(f"VAE folder {path} does not exist; {hint}")
    for folder, sub in ((path / "model", None), (path, "vae"), (path, None)):
        config = (folder / sub / "config.json") if sub else (folder / "config.json")
        if config.is_file():
            try:
                klass = json.loads(config.read_text()).get("_class_name")
            except ValueError:
                klass = None
            if klass == "AutoencoderKL":
                return folder, sub
    raise SynthbenchError(f"{path} is not an AutoencoderKL in diffusers format; {hint}")


def load_vae(path: str | Path):
    from diffusers import AutoencoderKL

    folder, sub = resolve_vae_folder(path)
    try:
        return AutoencoderKL.from_pretrained(folder, subfolder=sub, use_safetensors=True)
    except (OSError, EnvironmentError, ValueError) as exc:
        raise SynthbenchError(f"cannot load the VAE from {folder}{'/' + sub if sub else ''}: "
                              f"{str(exc).splitlines()[0]} (safetensors weights are required)") from None


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
        self.class_names: list[str] = []
        self._ema_device = None

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def check_data(self, dataset: Dataset) -> None:
        check_unet_size(self.config.model, self.latent_side(dataset), self.size_label())
        if self.config.conditional and (not dataset.labelled or (dataset.labels < 0).any()):
            raise SynthbenchError("a conditional diffusion model needs a labelled Dataset with every image "
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
                                    latent_scale=self.latent_scale, autoencoder=self.autoencoder)

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


class LatentDiffusionTask(DiffusionTask):
    """Latent diffusion: a frozen VAE maps images to latents; the UNet is trained there."""

    kind = "ldm"
    generator_class = LatentDiffusionGenerator

    def __init__(self, config: LDMConfig):
        super().__init__(config)
        if not config.vae:
            raise SynthbenchError("latent diffusion needs a VAE: set vae=PATH (a diffusers AutoencoderKL "
                                  "folder, e.g. a Stable Diffusion vae/ download, or a 'synthbench train vae' run)")
        self._vae_config = load_vae(config.vae).config
        from synthbench.generators import provenance

        # What the autoencoder learnt from, read now (vae=PATH may be relative to this command's
        # folder, and the VAE run may be retrained later): generated Datasets quote it.
        self.autoencoder = provenance.autoencoder(config.vae)

    def _down(self) -> int:
        return 2 ** (len(self._vae_config.block_out_channels) - 1)

    def latent_side(self, dataset: Dataset) -> int:
        side = dataset.resolution
        if side % self._down():
            raise SynthbenchError(f"the VAE downsamples by {self._down()}, which does not divide the "
                                  f"image size {side}; prepare the data at a multiple of {self._down()}")
        return side // self._down()

    def size_label(self) -> str:
        return "the latent size"

    def check_data(self, dataset: Dataset) -> None:
        if self._vae_config.in_channels != dataset.channels:
            raise SynthbenchError(f"the VAE takes {self._vae_config.in_channels}-channel images but the "
                                  f"Dataset has {dataset.channels}; prepare it with --channels "
                                  f"{self._vae_config.in_channels}")
        super().check_data(dataset)

    def unet_channels(self, dataset: Dataset) -> int:
        return self._vae_config.latent_channels

    def prepare_inputs(self, dataset: Dataset, device: torch.device) -> None:
        self.vae = load_vae(self.config.vae).to(device).eval().requires_grad_(False)
        self.latent_scale = self.measure_scale(dataset, device)

    @torch.no_grad()
    def measure_scale(self, dataset: Dataset, device: torch.device) -> float:
        """1 / std of the latents of up to ``scale_samples`` training images (the LDM paper's
        rescaling, measured on the data rather than copied from Stable Diffusion)."""
        n = min(len(dataset), self.config.scale_samples)
        idx = np.random.default_rng(0).choice(len(dataset), n, replace=False)
        chunks = []
        for start in range(0, n, 64):
            images = torch.from_numpy(dataset.take(idx[start:start + 64])).permute(0, 3, 1, 2)
            x = images.float().to(device) / 127.5 - 1
            chunks.append(self.vae.encode(x).latent_dist.mode().float().cpu())
        std = torch.cat(chunks).std().item()
        return 1.0 / max(std, 1e-6)

    @torch.no_grad()
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x.to(self.vae.dtype)).latent_dist.sample().float() * self.latent_scale


# ------------------------------------------------------------------------------ the VAE itself
class VAEModelConfig(StrictModel):
    """A small diffusers ``AutoencoderKL``."""

    block_out_channels: list[int] = Field([32, 64], min_length=1, description="Channels per level; the latent side is the image side / 2^(levels-1).")
    latent_channels: int = Field(4, ge=1, description="Channels of the latent.")
    layers_per_block: int = Field(1, ge=1, description="ResNet blocks per level.")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups; must divide every channel count.")


class VAEConfig(StrictModel):
    """Training an autoencoder for latent diffusion (preset group ``vae``)."""

    model: VAEModelConfig = Field(default_factory=VAEModelConfig, description="The autoencoder.")
    kl_weight: float = Field(1e-6, ge=0, description="Weight of the KL term against the pixel MSE.")
    optim: DiffusionOptimConfig = Field(default_factory=lambda: DiffusionOptimConfig(lr=1e-3), description="The optimizer.")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=20, batch_size=64), description="The training loop.")
    preview_count: int = Field(8, ge=1, le=64, description="Training images shown with their reconstructions after each epoch.")


class _AutoencoderWithKL(torch.nn.Module):
    """Encode, sample, decode in one ``forward`` (so multi-GPU wrappers see the whole pass),
    returning the reconstruction and the mean KL divergence to N(0, I)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        return self.vae.decode(posterior.sample()).sample, posterior.kl().mean()


class VAETask(Task):
    """Autoencoder training: pixel MSE + a small KL term (Kingma & Welling 2014)."""

    kind = "vae"

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def check_data(self, dataset: Dataset) -> None:
        factor = 2 ** (len(self.config.model.block_out_channels) - 1)
        if dataset.resolution % factor:
            raise SynthbenchError(f"the image size {dataset.resolution} is not a multiple of {factor}, the "
                                  "VAE's downsampling; change model.block_out_channels or the image size")

    def build(self, dataset: Dataset, device: torch.device) -> None:
        from diffusers import AutoencoderKL

        m = self.config.model
        bad = [ch for ch in m.block_out_channels if ch % m.norm_num_groups]
        if bad:
            raise SynthbenchError(f"model.norm_num_groups {m.norm_num_groups} does not divide channels {bad}")
        levels = len(m.block_out_channels)
        vae = AutoencoderKL(in_channels=dataset.channels, out_channels=dataset.channels,
                            down_block_types=("DownEncoderBlock2D",) * levels,
                            up_block_types=("UpDecoderBlock2D",) * levels,
                            block_out_channels=tuple(m.block_out_channels), layers_per_block=m.layers_per_block,
                            latent_channels=m.latent_channels, norm_num_groups=m.norm_num_groups,
                            sample_size=dataset.resolution)
        o = self.config.optim
        self.modules = {"vae": _AutoencoderWithKL(vae)}
        self.optimizers = {"opt": torch.optim.AdamW(vae.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                                    weight_decay=o.weight_decay)}
        self.preview = dataset.take(np.arange(min(len(dataset), self.config.preview_count)))

    def step(self, batch, ctx: StepContext) -> dict[str, float]:
        images, _ = batch
        acc = ctx.accelerator
        vae, opt = self.modules["vae"], self.optimizers["opt"]
        x = images.float().div_(127.5).sub_(1.0)
        recon, kl = vae(x)
        mse = F.mse_loss(recon.float(), x)
        loss = mse + self.config.kl_weight * kl
        acc.backward(loss)
        if acc.sync_gradients and self.config.optim.grad_clip:
            acc.clip_grad_norm_(vae.parameters(), self.config.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": loss.item(), "mse": mse.item(), "kl": kl.item()}

    @torch.no_grad()
    def on_epoch_end(self, ctx: StepContext, epoch_means: dict[str, float]) -> None:
        if not ctx.accelerator.is_main_process:
            return
        vae = ctx.accelerator.unwrap_model(self.modules["vae"]).vae
        x = torch.from_numpy(self.preview).permute(0, 3, 1, 2).float().to(ctx.accelerator.device) / 127.5 - 1
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample
        pair = np.concatenate([to_uint8(x), to_uint8(recon)])
        save_grid(pair, ctx.run.samples / f"epoch-{ctx.epoch + 1:03d}.png", nrow=len(x),
                  scale=max(1, 64 // x.shape[-1]))
        if not self.plots_due(ctx):
            return
        rows = ctx.run.read_metrics()
        plot_curves(rows, ["mse"], ctx.run.plots / "loss_per_iteration.png",
                    title="VAE reconstruction loss per iteration", ylabel="pixel MSE", smooth=25)
        plot_curves(rows, ["mse"], ctx.run.plots / "loss_per_epoch.png",
                    title="VAE mean reconstruction loss per epoch", ylabel="pixel MSE", per_epoch=True)

    def export(self, folder: Path, accelerator) -> None:
        vae = accelerator.unwrap_model(self.modules["vae"]).vae
        with atomic_folder(folder, kind="vae", replace=True) as tmp:
            vae.save_pretrained(tmp, safe_serialization=True)
