"""Pieces shared by the diffusion models: the UNet, the noise schedule, the optimizer, EMA and
sampler settings, the loss (:func:`diffusion_loss`) and the sampler loop (:func:`denoise`)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from synthworth.config import StrictModel
from synthworth.errors import SynthworthError

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
        raise SynthworthError(f"{what} {side}x{side} cannot go through a UNet with "
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
    raise SynthworthError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


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
        # The sampler's arithmetic in fp32 whatever the network computed in: diffusers' multistep
        # solvers cast their result to the model output's dtype, which under bf16 autocast would
        # carry x in bf16 from step to step.
        x = sampler.step(out.float(), t, x, generator=generators).prev_sample
    return x
