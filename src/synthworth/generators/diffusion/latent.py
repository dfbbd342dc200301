"""Latent diffusion (Rombach et al. 2022): the pixel DDPM's UNet on the latents of a frozen
``AutoencoderKL``, scaled to unit variance by a factor measured on the training data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from synthworth.data.dataset import Dataset
from synthworth.engine.task import StepContext
from synthworth.errors import SynthworthError
from synthworth.generators.diffusion.autoencoder import load_vae
from synthworth.generators.diffusion.ddpm import DiffusionConfig, DiffusionGenerator, DiffusionTask


MIN_STD = 1e-6  # latents spread less than this do not vary: no factor is measured from them


# ------------------------------------------------------------------------------ config
class LDMConfig(DiffusionConfig):
    """A latent diffusion training run (preset group ``ldm``): the UNet works on VAE latents."""

    vae: str | None = Field(None, description="A diffusers AutoencoderKL folder, a pipeline folder with vae/, or a 'synthworth train vae' run.")
    scale_samples: int = Field(512, ge=8, description="Training images encoded to measure the latent scaling factor.")
    scale_factor: float | None = Field(None, gt=0, description="Multiply the VAE latents by this (none: measure 1/std of the latents of scale_samples training images).")

    @field_validator("vae")
    @classmethod
    def _local_vae_absolute(cls, value: str | None) -> str | None:
        # A local folder typed relative to where 'train' ran is kept absolute in the run's config:
        # resuming, sampling or reporting from another working folder must find the same VAE.
        # A hub id (no such local path) stays as typed.
        return str(Path(value).absolute()) if value and Path(value).exists() else value


def describe_scale(record: dict[str, Any]) -> str:
    """How a latent model's scale factor came about, in words (its ``latent_scale_record``)."""
    per = ", ".join(f"{v:.3g}" for v in record.get("latent_std_per_channel") or [])
    spread = (f"the latents of {record.get('images')} training images have std {record.get('latent_std', 0):.4g} "
              f"(per channel {per}), so the UNet sees std {record.get('scaled_std', 0):.3g}")
    if record.get("how") == "given":
        measured = record.get("measured_factor")
        return (f"given as scale_factor; 1/std would be {measured:.4g}; {spread}" if measured else
                f"given as scale_factor; the latents do not vary; {spread}")
    return f"measured: 1/std; {spread}"


# ------------------------------------------------------------------------------ generator
class LatentDiffusionGenerator(DiffusionGenerator):
    """A trained latent diffusion model: ``unet/``, ``scheduler/`` and ``vae/`` sub-folders."""

    kind = "ldm"

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.latent_scale).sample


# ------------------------------------------------------------------------------ training
class LatentDiffusionTask(DiffusionTask):
    """Latent diffusion: a frozen VAE maps images to latents; the UNet is trained there."""

    kind = "ldm"
    generator_class = LatentDiffusionGenerator

    def __init__(self, config: LDMConfig):
        super().__init__(config)
        if not config.vae:
            raise SynthworthError("latent diffusion needs a VAE: set vae=PATH (a diffusers AutoencoderKL "
                                  "folder, e.g. a Stable Diffusion vae/ download, or a 'synthworth train vae' run)")
        self._vae_config = load_vae(config.vae).config
        from synthworth.generators import provenance

        # What the autoencoder learnt from, read now (vae=PATH may be relative to this command's
        # folder, and the VAE run may be retrained later): generated Datasets quote it.
        self.autoencoder = provenance.autoencoder(config.vae)
        self.scale_logged = False

    def _down(self) -> int:
        return 2 ** (len(self._vae_config.block_out_channels) - 1)

    def latent_side(self, dataset: Dataset) -> int:
        side = dataset.resolution
        if side % self._down():
            raise SynthworthError(f"the VAE downsamples by {self._down()}, which does not divide the "
                                  f"image size {side}; prepare the data at a multiple of {self._down()}")
        return side // self._down()

    def size_label(self) -> str:
        return "the latent size"

    def check_data(self, dataset: Dataset) -> None:
        if self._vae_config.in_channels != dataset.channels:
            raise SynthworthError(f"the VAE takes {self._vae_config.in_channels}-channel images but the "
                                  f"Dataset has {dataset.channels}; prepare it with --channels "
                                  f"{self._vae_config.in_channels}")
        super().check_data(dataset)

    def unet_channels(self, dataset: Dataset) -> int:
        return self._vae_config.latent_channels

    def prepare_inputs(self, dataset: Dataset, device: torch.device) -> None:
        self.vae = load_vae(self.config.vae).to(device).eval().requires_grad_(False)
        measured = self.measure_scale(dataset, device)
        given = self.config.scale_factor
        if given is None and measured["measured_factor"] is None:
            raise SynthworthError(f"the VAE's latents of {measured['images']} training images do not vary "
                                  f"(std {measured['latent_std']:.3g}): no scale factor can be measured; train the VAE "
                                  "again, or give scale_factor=VALUE")
        self.latent_scale = given if given is not None else measured["measured_factor"]
        # Recorded with the model (synthworth.json) and in the run's metrics.jsonl: how the factor
        # came about, and what it does to the training latents' spread (about 1 when measured).
        self.scale_record = {"how": "given" if given is not None else "measured", "factor": self.latent_scale,
                             **measured, "scaled_std": measured["latent_std"] * self.latent_scale}
        if not 0.5 <= self.scale_record["scaled_std"] <= 2:  # only a given factor can land here
            measured_text = (f"the measured factor is {measured['measured_factor']:.4g} (leave scale_factor out to use "
                             "it)" if measured["measured_factor"] else "the latents do not vary at all")
            print(f"synthworth: warning: scale_factor={given:g} gives the training latents a standard deviation of "
                  f"{self.scale_record['scaled_std']:.3g}, far from 1 (the noise schedule assumes about 1); "
                  f"{measured_text}", file=sys.stderr, flush=True)

    def step(self, batch, ctx: StepContext) -> dict[str, float]:
        if not self.scale_logged:
            # Once per run, at its first step (a resumed run restores the flag): the factor and the
            # spread it was taken from, in metrics.jsonl and the log.
            if ctx.accelerator.is_main_process:
                ctx.run.append_metrics([{"step": 0, "epoch": 0, "kind": "latent_scale", **self.scale_record}])
                ctx.run.log(f"latent scale factor {self.scale_record['factor']:.4g} "
                            f"({describe_scale(self.scale_record)})")
            self.scale_logged = True
        return super().step(batch, ctx)

    def extra_state(self) -> Any:
        return {**super().extra_state(), "scale_record": self.scale_record, "scale_logged": self.scale_logged}

    def load_extra_state(self, state: Any) -> None:
        super().load_extra_state(state)
        # A checkpoint of an earlier synthworth keeps only its factor (measured then on posterior means).
        self.scale_record = state.get("scale_record") or {"how": "measured by an earlier synthworth",
                                                          "factor": self.latent_scale}
        self.scale_logged = bool(state.get("scale_logged", self.scale_logged))

    @torch.no_grad()
    def measure_scale(self, dataset: Dataset, device: torch.device) -> dict:
        """The spread of the latents of up to ``scale_samples`` training images, drawn from the
        posterior as training draws them (a seeded draw of images and of posterior noise), and
        the factor 1 / std that scales them to unit variance: the LDM paper's rescaling,
        measured on the data rather than copied from Stable Diffusion."""
        n = min(len(dataset), self.config.scale_samples)
        idx = np.random.default_rng(0).choice(len(dataset), n, replace=False)
        noise = torch.Generator(device).manual_seed(0)
        chunks = []
        for start in range(0, n, 64):
            images = torch.from_numpy(dataset.take(idx[start:start + 64])).permute(0, 3, 1, 2)
            x = images.float().to(device) / 127.5 - 1
            chunks.append(self.vae.encode(x.to(self.vae.dtype)).latent_dist.sample(noise).float().cpu())
        z = torch.cat(chunks).double()
        std = z.std(correction=0).item()
        return {"images": n, "latent_std": std, "latent_mean": z.mean().item(),
                "latent_std_per_channel": z.transpose(0, 1).reshape(z.shape[1], -1).std(dim=1, correction=0).tolist(),
                "measured_factor": 1.0 / std if std > MIN_STD else None}

    @torch.no_grad()
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x.to(self.vae.dtype)).latent_dist.sample().float() * self.latent_scale
