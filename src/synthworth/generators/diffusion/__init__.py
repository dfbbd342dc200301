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

Modules: :mod:`.shared` (UNet, noise schedule, sampler, loss), :mod:`.ddpm` (pixel DDPM),
:mod:`.autoencoder` (the VAE) and :mod:`.latent` (latent diffusion); their public names are
re-exported here.
"""

from synthworth.generators.diffusion.autoencoder import (VAEConfig, VAEModelConfig, VAETask, load_vae,
                                                         resolve_vae_folder)
from synthworth.generators.diffusion.ddpm import DiffusionConfig, DiffusionGenerator, DiffusionTask
from synthworth.generators.diffusion.latent import LatentDiffusionGenerator, LatentDiffusionTask, LDMConfig
from synthworth.generators.diffusion.shared import (BETA_SCHEDULES, DEFAULT_STEPS, SAMPLERS, DiffusionOptimConfig,
                                                    EMAConfig, NoiseConfig, SamplingConfig, UNetConfig,
                                                    check_unet_size, denoise, diffusion_loss, make_noise_scheduler,
                                                    make_sampler, make_unet)

__all__ = ["BETA_SCHEDULES", "DEFAULT_STEPS", "SAMPLERS", "DiffusionConfig", "DiffusionGenerator",
           "DiffusionOptimConfig", "DiffusionTask", "EMAConfig", "LDMConfig", "LatentDiffusionGenerator",
           "LatentDiffusionTask", "NoiseConfig", "SamplingConfig", "UNetConfig", "VAEConfig", "VAEModelConfig",
           "VAETask", "check_unet_size", "denoise", "diffusion_loss", "load_vae", "make_noise_scheduler",
           "make_sampler", "make_unet", "resolve_vae_folder"]
