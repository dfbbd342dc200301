"""DCGAN (Radford, Metz & Chintala 2016, "Unsupervised representation learning with deep
convolutional generative adversarial networks"), trained with the GAN objective of
Goodfellow et al. 2014 in its non-saturating form.

- Generator: noise (``latent_dim``, 100 in the paper) -> a 4x4 transposed convolution, then
  stride-2 transposed convolutions with batch norm and ReLU doubling the side, ending in tanh.
- Discriminator: stride-2 convolutions with LeakyReLU(0.2) (batch norm after the first),
  down to 4x4, then one 4x4 convolution to a single logit.
- The depth follows the resolution: at 64x64 each network has five layers; 16 to 128 px work.
- Weights start from N(0, 0.02) (batch-norm scales from N(1, 0.02)).
- Loss: binary cross-entropy on logits (``BCEWithLogitsLoss``), the numerically stable form
  of a sigmoid output followed by BCE.
- Class-conditional variant: a label embedding is appended to the noise of the generator, and
  the discriminator sees the label as an extra learned input channel, so one model produces a
  labelled synthetic dataset.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator
from safetensors.torch import load_file, save_file
from torch import nn

from synthworth.config import StrictModel
from synthworth.data.dataset import Dataset, atomic_folder
from synthworth.engine.config import EvalConfig, TrainConfig
from synthworth.engine.plots import plot_curves, save_grid
from synthworth.engine.precision import autocast
from synthworth.engine.task import StepContext, Task
from synthworth.errors import SynthworthError
from synthworth.generators.base import MODEL_CONFIG, Generator, read_model_config, seeded_normal, to_uint8

MIN_RESOLUTION, MAX_RESOLUTION = 16, 128


# ------------------------------------------------------------------------------ config
class DCGANModelConfig(StrictModel):
    """Networks of a DCGAN."""

    resolution: int | None = Field(None, description="Expected image side (16-128, a power of two); default: the Dataset's.")
    latent_dim: int = Field(100, ge=1, description="Length of the noise vector z.")
    base_channels: int = Field(64, ge=1, description="Channels of the widest-resolution layer (ngf = ndf).")
    conditional: bool = Field(False, description="Condition both networks on the class label.")
    embed_dim: int = Field(50, ge=1, description="Size of the generator's label embedding (conditional only).")

    @model_validator(mode="after")
    def _check(self) -> DCGANModelConfig:
        if self.resolution is not None:
            check_resolution(self.resolution, "model.resolution")
        return self


class AdamConfig(StrictModel):
    """Adam for both networks."""

    lr: float = Field(2e-4, gt=0, description="Learning rate of both networks.")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2.")


class DCGANConfig(StrictModel):
    """Everything a DCGAN training run needs (preset group ``dcgan``)."""

    model: DCGANModelConfig = Field(default_factory=DCGANModelConfig, description="The networks.")
    optim: AdamConfig = Field(default_factory=AdamConfig, description="The optimizer.")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=25, batch_size=128), description="The training loop.")
    grid_size: int = Field(64, ge=1, le=1024, description="Images in each per-epoch sample grid (same noise every epoch).")
    grid_seed: int = Field(1234, description="Seed of the fixed grid noise.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Image quality measured while training (eval.every epochs).")


def check_resolution(size: int, what: str = "resolution") -> None:
    if size < MIN_RESOLUTION or size > MAX_RESOLUTION or size & (size - 1):
        raise SynthworthError(f"{what} {size} is not supported by DCGAN: use a power of two from "
                              f"{MIN_RESOLUTION} to {MAX_RESOLUTION} (prepare the data with --size 16/32/64/128)")


# ------------------------------------------------------------------------------ networks
def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGeneratorNet(nn.Module):
    def __init__(self, resolution: int, channels: int, latent_dim: int, base: int,
                 num_classes: int = 0, embed_dim: int = 50):
        super().__init__()
        ups = int(math.log2(resolution)) - 2  # stride-2 layers after the 4x4 start
        width = base * 2 ** (ups - 1)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        in_dim = latent_dim + (embed_dim if num_classes else 0)
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_dim, width, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(True)]
        for _ in range(ups - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(z[:, :, None, None])


class DCGANDiscriminatorNet(nn.Module):
    def __init__(self, resolution: int, channels: int, base: int, num_classes: int = 0):
        super().__init__()
        downs = int(math.log2(resolution)) - 2
        self.resolution = resolution
        self.label_map = nn.Embedding(num_classes, resolution * resolution) if num_classes else None
        in_ch = channels + (1 if num_classes else 0)
        layers: list[nn.Module] = [nn.Conv2d(in_ch, base, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        width = base
        for _ in range(downs - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2),
                       nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_map is not None:
            plane = self.label_map(labels).view(-1, 1, self.resolution, self.resolution)
            x = torch.cat([x, plane], dim=1)
        return self.net(x).view(-1)


# ------------------------------------------------------------------------------ generator
class DCGAN(Generator):
    """A trained DCGAN generator (the discriminator is only needed for training)."""

    kind = "dcgan"

    def __init__(self, config: DCGANModelConfig, resolution: int, channels: int,
                 class_names: list[str], net: DCGANGeneratorNet | None = None):
        self.config = config
        self.resolution, self.channels, self.class_names = resolution, channels, list(class_names)
        num_classes = len(self.class_names) if config.conditional else 0
        self.net = net or DCGANGeneratorNet(resolution, channels, config.latent_dim,
                                            config.base_channels, num_classes, config.embed_dim)
        self.device = torch.device("cpu")

    @property
    def conditional(self) -> bool:
        return self.config.conditional

    def to(self, device: torch.device | str) -> DCGAN:
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    @torch.no_grad()
    def sample(self, n: int, labels=None, seed: int = 0, batch_size: int = 256,
               dtype: str | None = None) -> np.ndarray:
        """``dtype``: bfloat16 or float16 samples under autocast (float32 or None: as trained)."""
        labels = self.check_labels(n, labels)
        net = self.net
        was_training = net.training
        net.eval()  # batch norm from running statistics: image i depends on seed + i only
        out = []
        try:
            for start in range(0, n, batch_size):
                count = min(batch_size, n - start)
                z = seeded_normal((self.config.latent_dim,), seed + start, count, self.device)
                y = None if labels is None else torch.as_tensor(labels[start:start + count], device=self.device)
                with autocast(self.device, dtype):
                    images = net(z, y)
                out.append(to_uint8(images))
        finally:
            net.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, self.resolution, self.resolution, self.channels), np.uint8)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        with atomic_folder(folder, kind="generator", replace=True) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
            save_file(state, str(tmp / "generator.safetensors"))
            meta = {"kind": self.kind, "resolution": self.resolution, "channels": self.channels,
                    "class_names": self.class_names, "model": self.config.model_dump(mode="json")}
            (tmp / MODEL_CONFIG).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> DCGAN:
        folder = Path(folder)
        meta = read_model_config(folder)
        weights = folder / "generator.safetensors"
        if not weights.is_file():
            raise SynthworthError(f"{folder}: generator.safetensors is missing")
        gen = cls(DCGANModelConfig(**meta["model"]), meta["resolution"], meta["channels"], meta["class_names"])
        gen.net.load_state_dict(load_file(str(weights)))
        gen.net.eval()
        return gen


# ------------------------------------------------------------------------------ training
class DCGANTask(Task):
    """The DCGAN step for the shared engine: one discriminator and one generator update per batch."""

    kind = "dcgan"

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        self.loss = nn.BCEWithLogitsLoss()
        self.generator: DCGAN | None = None

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def check_data(self, dataset: Dataset) -> None:
        size = dataset.resolution
        check_resolution(size, f"the Dataset's resolution ({size}x{size})")
        want = self.config.model.resolution
        if want is not None and want != size:
            raise SynthworthError(f"this preset expects {want}x{want} images but the Dataset has "
                                  f"{size}x{size}; prepare it with --size {want} or set model.resolution")
        if self.config.model.conditional and not dataset.labelled:
            raise SynthworthError("a conditional DCGAN needs a labelled Dataset; this one has no classes "
                                  "(set model.conditional=false, or prepare labelled data)")
        if self.config.model.conditional and (dataset.labels < 0).any():
            raise SynthworthError("a conditional DCGAN needs every image labelled; some are unlabelled")

    def build(self, dataset: Dataset, device: torch.device) -> None:
        m, o = self.config.model, self.config.optim
        names = dataset.class_names if m.conditional else []
        self.generator = DCGAN(m, dataset.resolution, dataset.channels, names)
        disc = DCGANDiscriminatorNet(dataset.resolution, dataset.channels, m.base_channels,
                                     len(names) if m.conditional else 0)
        self.modules = {"generator": self.generator.net, "discriminator": disc}
        betas = (o.beta1, o.beta2)
        self.optimizers = {
            "opt_g": torch.optim.Adam(self.generator.net.parameters(), lr=o.lr, betas=betas),
            "opt_d": torch.optim.Adam(disc.parameters(), lr=o.lr, betas=betas),
        }

    def step(self, batch, ctx: StepContext) -> dict[str, float]:
        images, labels = batch
        acc = ctx.accelerator
        gen, disc = self.modules["generator"], self.modules["discriminator"]
        opt_g, opt_d = self.optimizers["opt_g"], self.optimizers["opt_d"]
        x = images.float().div_(127.5).sub_(1.0)
        y = labels if self.config.model.conditional else None
        n = x.shape[0]
        ones = torch.ones(n, device=x.device)
        zeros = torch.zeros(n, device=x.device)
        z = torch.randn(n, self.config.model.latent_dim, device=x.device)
        fake = gen(z, y)

        # Discriminator: real -> 1, fake -> 0.
        out_real = disc(x, y)
        out_fake = disc(fake.detach(), y)
        loss_d = self.loss(out_real, ones) + self.loss(out_fake, zeros)
        acc.backward(loss_d)
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)

        # Generator: make the (just updated) discriminator say 1 for fakes. The discriminator's
        # weights are frozen here so no gradient leaks into its next (accumulated) step.
        disc.requires_grad_(False)
        out_gen = disc(fake, y)
        loss_g = self.loss(out_gen, ones)
        acc.backward(loss_g)
        disc.requires_grad_(True)
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        return {
            "loss_d": loss_d.item(),
            "loss_g": loss_g.item(),
            "d_real": torch.sigmoid(out_real).mean().item(),
            "d_fake": torch.sigmoid(out_fake).mean().item(),
            "d_fake_after": torch.sigmoid(out_gen).mean().item(),
        }

    def evaluation_generator(self, accelerator, action):
        return action(self._sampler(accelerator))

    def _sampler(self, accelerator) -> DCGAN:
        gen = self.generator
        gen.net = accelerator.unwrap_model(self.modules["generator"])
        gen.device = accelerator.device
        return gen

    def on_epoch_end(self, ctx: StepContext, epoch_means: dict[str, float]) -> None:
        if not ctx.accelerator.is_main_process:
            return
        epoch = ctx.epoch + 1
        gen = self._sampler(ctx.accelerator)
        n = self.config.grid_size
        labels = None
        nrow = None
        if gen.conditional:
            k = len(gen.class_names)
            per = max(1, n // k)
            labels = np.repeat(np.arange(k), per)  # one row per class
            n, nrow = len(labels), per
        images = gen.sample(n, labels, seed=self.config.grid_seed)
        save_grid(images, ctx.run.samples / f"epoch-{epoch:03d}.png", nrow=nrow,
                  scale=max(1, 64 // gen.resolution))
        keep = set(ctx.config.grid_epochs) | {ctx.config.epochs}
        previous = epoch - 1
        if previous >= 1 and previous not in keep:
            (ctx.run.samples / f"epoch-{previous:03d}.png").unlink(missing_ok=True)
        if self.plots_due(ctx):
            write_gan_plots(ctx.run)

    def export(self, folder: Path, accelerator) -> None:
        self._sampler(accelerator).save(folder)


def write_gan_plots(run) -> None:
    rows = run.read_metrics()
    plot_curves(rows, ["loss_d", "loss_g"], run.plots / "loss_per_iteration.png",
                title="DCGAN losses per iteration", ylabel="BCE loss", smooth=25)
    plot_curves(rows, ["loss_d", "loss_g"], run.plots / "loss_per_epoch.png",
                title="DCGAN mean loss per epoch", ylabel="BCE loss", per_epoch=True)
    plot_curves(rows, ["d_real", "d_fake"], run.plots / "discriminator_outputs.png",
                title="D(x) and D(G(z)) per iteration", ylabel="mean probability 'real'", smooth=25)
