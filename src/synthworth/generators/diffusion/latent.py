"""Latent diffusion (Rombach et al. 2022): the pixel DDPM's UNet on the latents of a frozen
``AutoencoderKL``, scaled to unit variance by a factor measured on the training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field, field_validator

from synthworth.data.dataset import Dataset
from synthworth.errors import SynthworthError
from synthworth.generators.diffusion.autoencoder import load_vae
from synthworth.generators.diffusion.ddpm import DiffusionConfig, DiffusionGenerator, DiffusionTask


# ------------------------------------------------------------------------------ config
class LDMConfig(DiffusionConfig):
    """A latent diffusion training run (preset group ``ldm``): the UNet works on VAE latents."""

    vae: str | None = Field(None, description="A diffusers AutoencoderKL folder, a pipeline folder with vae/, or a 'synthworth train vae' run.")
    scale_samples: int = Field(512, ge=8, description="Training images encoded to measure the latent scaling factor.")

    @field_validator("vae")
    @classmethod
    def _local_vae_absolute(cls, value: str | None) -> str | None:
        # A local folder typed relative to where 'train' ran is kept absolute in the run's config:
        # resuming, sampling or reporting from another working folder must find the same VAE.
        # A hub id (no such local path) stays as typed.
        return str(Path(value).absolute()) if value and Path(value).exists() else value


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
