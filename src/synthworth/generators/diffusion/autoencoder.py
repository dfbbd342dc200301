"""The autoencoder of latent diffusion: finding and loading a diffusers ``AutoencoderKL``, and
training one (``synthworth train vae``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from synthworth.config import StrictModel
from synthworth.data.dataset import Dataset, atomic_folder
from synthworth.engine.config import TrainConfig
from synthworth.engine.plots import plot_curves, save_grid
from synthworth.engine.task import StepContext, Task
from synthworth.errors import SynthworthError
from synthworth.generators.base import to_uint8
from synthworth.generators.diffusion.shared import DiffusionOptimConfig


# ------------------------------------------------------------------------------ VAE helpers
def resolve_vae_folder(path: str | Path) -> tuple[Path, str | None]:
    """Where an AutoencoderKL lives: (folder, subfolder). Accepts a diffusers AutoencoderKL
    folder, a pipeline folder with ``vae/``, or a ``synthworth train vae`` run folder."""
    path = Path(path).expanduser()
    hint = ("give a folder holding a diffusers AutoencoderKL (config.json + "
            "diffusion_pytorch_model.safetensors), e.g. a Stable Diffusion download's vae/ folder, or "
            "a run of 'synthworth train vae'")
    if not path.exists():
        raise SynthworthError(f"VAE folder {path} does not exist; {hint}")
    for folder, sub in ((path / "model", None), (path, "vae"), (path, None)):
        config = (folder / sub / "config.json") if sub else (folder / "config.json")
        if config.is_file():
            try:
                klass = json.loads(config.read_text()).get("_class_name")
            except ValueError:
                klass = None
            if klass == "AutoencoderKL":
                return folder, sub
    raise SynthworthError(f"{path} is not an AutoencoderKL in diffusers format; {hint}")


def load_vae(path: str | Path):
    from diffusers import AutoencoderKL

    folder, sub = resolve_vae_folder(path)
    try:
        return AutoencoderKL.from_pretrained(folder, subfolder=sub, use_safetensors=True)
    except (OSError, EnvironmentError, ValueError) as exc:
        raise SynthworthError(f"cannot load the VAE from {folder}{'/' + sub if sub else ''}: "
                              f"{str(exc).splitlines()[0]} (safetensors weights are required)") from None


# ------------------------------------------------------------------------------ the VAE itself
class VAEModelConfig(StrictModel):
    """A small diffusers ``AutoencoderKL``."""

    block_out_channels: list[int] = Field([32, 64], min_length=1, description="Channels per level; the latent side is the image side / 2^(levels-1).")
    latent_channels: int = Field(4, ge=1, description="Channels of the latent.")
    layers_per_block: int = Field(1, ge=1, description="ResNet blocks per level.")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups; must divide every channel count.")


class AutoencoderEvalConfig(StrictModel):
    """Reconstruction quality measured while the autoencoder trains, on held-out images."""

    enabled: bool = Field(True, description="Measure PSNR, reconstruction FID and the latents' spread after the last epoch (and every `every` epochs).")
    every: int = Field(0, ge=0, description="Also after every N epochs (0: after the last epoch only).")
    real_split: str | None = Field(None, description="Held-out split to reconstruct (default: test, else valid, else the training images with a warning).")
    max_images: int = Field(1000, ge=12, description="At most this many held-out images (a seeded draw).")
    features: str = Field("auto", description="Features of the reconstruction FID, as for 'synthworth metrics' (auto, inception, dinov2, domain, a saved classifier folder), or none (PSNR and latents only).")
    inception_weights: str | None = Field(None, description="Local Inception-v3 FID weights file (as for 'synthworth metrics').")
    dinov2_weights: str | None = Field(None, description="DINOv2 model: a hub id or a local folder (as for 'synthworth metrics').")
    batch_size: int = Field(64, ge=1, description="Images per encoding batch.")
    grid_count: int = Field(8, ge=1, le=64, description="Held-out images shown above their reconstructions in the saved grid.")


class VAEConfig(StrictModel):
    """Training an autoencoder for latent diffusion (preset group ``vae``)."""

    model: VAEModelConfig = Field(default_factory=VAEModelConfig, description="The autoencoder.")
    kl_weight: float = Field(1e-6, ge=0, description="Weight of the KL term against the pixel MSE.")
    optim: DiffusionOptimConfig = Field(default_factory=lambda: DiffusionOptimConfig(lr=1e-3), description="The optimizer.")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=20, batch_size=64), description="The training loop.")
    preview_count: int = Field(8, ge=1, le=64, description="Training images shown with their reconstructions after each epoch.")
    eval: AutoencoderEvalConfig = Field(default_factory=AutoencoderEvalConfig, description="Reconstruction quality on held-out images.")


class _AutoencoderWithKL(torch.nn.Module):
    """Encode, sample, decode in one ``forward`` (so multi-GPU wrappers see the whole pass),
    returning the reconstruction and the mean KL divergence to N(0, I)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        # The KL from fp32 parameters: under bf16 autocast the encoder's output is bf16, and the
        # sum over the latent would lose digits (in fp32 runs this is the same distribution).
        kl = type(posterior)(posterior.parameters.float()).kl().mean()
        return self.vae.decode(posterior.sample()).sample, kl


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
            raise SynthworthError(f"the image size {dataset.resolution} is not a multiple of {factor}, the "
                                  "VAE's downsampling; change model.block_out_channels or the image size")

    def build(self, dataset: Dataset, device: torch.device) -> None:
        from diffusers import AutoencoderKL

        m = self.config.model
        bad = [ch for ch in m.block_out_channels if ch % m.norm_num_groups]
        if bad:
            raise SynthworthError(f"model.norm_num_groups {m.norm_num_groups} does not divide channels {bad}")
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

    @torch.no_grad()
    def reconstruct(self, accelerator, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``images`` (n, H, W, C) uint8 through the current autoencoder: their reconstructions
        (uint8, decoded from the posterior mean) and those latents, (n, C_latent, h, w) float32."""
        vae = accelerator.unwrap_model(self.modules["vae"]).vae
        was_training = vae.training
        vae.eval()
        out, latents = [], []
        try:
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2)
                x = x.float().to(accelerator.device) / 127.5 - 1
                z = vae.encode(x).latent_dist.mode()
                out.append(to_uint8(vae.decode(z).sample))
                latents.append(z.float().cpu().numpy())
        finally:
            vae.train(was_training)
        return np.concatenate(out), np.concatenate(latents)

    def export(self, folder: Path, accelerator) -> None:
        vae = accelerator.unwrap_model(self.modules["vae"]).vae
        with atomic_folder(folder, kind="vae", replace=True) as tmp:
            vae.save_pretrained(tmp, safe_serialization=True)
