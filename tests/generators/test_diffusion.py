"""Diffusion generators: contract suite, training with falling loss, diffusers-format storage,
samplers, resume through the engine, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from contract import GeneratorContract
from synthworth.errors import ConfigError, SynthworthError
from synthworth.generators.base import load_generator
from synthworth.generators.diffusion import (DiffusionGenerator, LatentDiffusionGenerator,
                                             SamplingConfig, UNetConfig, make_noise_scheduler,
                                             make_unet, NoiseConfig)
from synthworth.train import train, train_ddpm, train_ldm, train_vae

TINY_UNET = UNetConfig(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4)
FAST = SamplingConfig(sampler="ddim", steps=3)


def tiny_generator(conditional: bool, channels: int = 1, vae=None):
    torch.manual_seed(0)
    classes = [str(i) for i in range(3)] if conditional else []
    side = 16 if vae is None else 8
    unet = make_unet(TINY_UNET, side, channels if vae is None else vae.config.latent_channels, len(classes))
    sched = make_noise_scheduler(NoiseConfig(num_train_timesteps=50), clip_sample=vae is None)
    cls = DiffusionGenerator if vae is None else LatentDiffusionGenerator
    return cls(unet, dict(sched.config), classes, FAST.model_copy(update={"guidance": 2.0} if conditional else {}),
               channels, 16, vae=vae, latent_scale=0.8)


class TestConditionalDDPMContract(GeneratorContract):
    @pytest.fixture
    def generator(self):
        return tiny_generator(True)


class TestUnconditionalDDPMContract(GeneratorContract):
    @pytest.fixture
    def generator(self):
        return tiny_generator(False, channels=3)


class TestLatentDiffusionContract(GeneratorContract):
    @pytest.fixture
    def generator(self):
        from diffusers import AutoencoderKL

        torch.manual_seed(0)
        vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(4, 8),
                            latent_channels=2, norm_num_groups=4, layers_per_block=1)
        return tiny_generator(False, vae=vae)


@pytest.fixture(scope="module")
def ddpm_run(digits_small, tmp_path_factory):
    """A tiny conditional pixel DDPM trained for 30 steps."""
    run = tmp_path_factory.mktemp("ddpm") / "run"
    gen = train_ddpm(digits_small.path, run, preset="tiny",
                     overrides=["conditional=true", "sampling.guidance=2.0", "train.max_steps=30",
                                "train.epochs=3", "optim.lr=3e-3"])
    return run, gen


def test_tiny_ddpm_trains_with_falling_loss_and_writes_samples(ddpm_run):
    run, gen = ddpm_run
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r.get("kind") != "epoch"]
    assert len(losses) == 30
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:4])
    assert (run / "samples" / "epoch-001.png").is_file() and (run / "samples" / "grid-epoch-001.png").is_file()
    assert (run / "plots" / "loss_per_iteration.png").is_file()
    assert gen.class_names == [str(i) for i in range(10)]


def test_pixel_model_is_a_diffusers_pipeline_folder(ddpm_run, tmp_path):
    from diffusers import DDIMPipeline, DDPMPipeline, UNet2DModel

    run, gen = ddpm_run
    pipe = DDPMPipeline.from_pretrained(run / "model")
    assert pipe.unet.config.num_class_embeds == 11  # ten digits + the null class
    assert DDIMPipeline.from_pretrained(run / "model").unet.config.sample_size == 16
    # An unconditional model samples through diffusers' own pipelines as is.
    uncond = tiny_generator(False)
    uncond.save(tmp_path / "uncond")
    for klass, steps in ((DDPMPipeline, 4), (DDIMPipeline, 4)):
        images = klass.from_pretrained(tmp_path / "uncond")(batch_size=2, num_inference_steps=steps,
                                                            output_type="np").images
        assert images.shape == (2, 16, 16, 1) and 0 <= images.min() and images.max() <= 1
    unet = UNet2DModel.from_pretrained(tmp_path / "uncond", subfolder="unet")
    assert torch.equal(unet.conv_in.weight, uncond.unet.conv_in.weight)


def test_each_sampler_runs_and_is_recorded(ddpm_run):
    _, gen = ddpm_run
    for sampler, steps, expected in (("ddpm", None, 100), ("ddim", 4, 4), ("dpmsolver++", 5, 5)):
        images = gen.sample(3, labels=[0, 1, 2], seed=5, sampler=sampler, steps=steps)
        assert images.shape == (3, 16, 16, 1) and images.dtype == np.uint8
        assert gen.last_sampling == {"sampler": sampler, "steps": expected, "guidance": 2.0}
    again = load_generator(ddpm_run[0])
    assert np.array_equal(again.sample(2, seed=1), gen.sample(2, seed=1))


def test_resume_through_the_engine_restores_weights_and_ema(digits_small, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from synthworth.generators.diffusion import DiffusionTask

    args = ["train.epochs=2", "train.checkpoint_every=3"]
    train("ddpm", digits_small.path, tmp_path / "a", preset="tiny", overrides=args)
    real = DiffusionTask.step

    def dying(self, batch, ctx):
        if ctx.global_step == 14:
            raise KeyboardInterrupt
        return real(self, batch, ctx)

    monkeypatch.setattr(DiffusionTask, "step", dying)
    with pytest.raises(KeyboardInterrupt):
        train("ddpm", digits_small.path, tmp_path / "b", preset="tiny", overrides=args)
    monkeypatch.setattr(DiffusionTask, "step", real)
    train("ddpm", digits_small.path, tmp_path / "b", resume=True)
    a = load_file(str(tmp_path / "a/model/unet/diffusion_pytorch_model.safetensors"))  # EMA weights
    b = load_file(str(tmp_path / "b/model/unet/diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_vae_then_latent_diffusion(digits_small, tmp_path):
    from diffusers import AutoencoderKL, UNet2DModel

    vae_folder = train_vae(digits_small.path, tmp_path / "vae", preset="tiny")
    assert AutoencoderKL.from_pretrained(vae_folder).config.latent_channels == 2
    gen = train_ldm(digits_small.path, tmp_path / "ldm", preset="tiny",
                    overrides=[f"vae={tmp_path / 'vae'}", "train.max_steps=6"])
    assert gen.latent_scale > 0 and gen.unet.config.sample_size == 8
    model = tmp_path / "ldm" / "model"
    assert UNet2DModel.from_pretrained(model, subfolder="unet").config.in_channels == 2
    assert AutoencoderKL.from_pretrained(model, subfolder="vae").config.latent_channels == 2
    assert json.loads((model / "synthworth.json").read_text())["latent_scale"] == pytest.approx(gen.latent_scale)
    assert gen.sample(2, seed=0).shape == (2, 16, 16, 1)


def test_bad_input_is_refused_before_training_or_sampling(digits_small, tmp_path):
    with pytest.raises(SynthworthError, match="needs a VAE"):
        train("ldm", digits_small.path, tmp_path / "r0", preset="tiny")
    with pytest.raises(SynthworthError, match="does not exist"):
        train("ldm", digits_small.path, tmp_path / "r1", preset="tiny", overrides=[f"vae={tmp_path / 'nope'}"])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(SynthworthError, match="not an AutoencoderKL in diffusers format"):
        train("ldm", digits_small.path, tmp_path / "r2", preset="tiny", overrides=[f"vae={tmp_path / 'junk'}"])
    with pytest.raises(SynthworthError, match="multiple of 32"):  # 16 px cannot go through 6 levels
        train("ddpm", digits_small.path, tmp_path / "r3", preset="tiny",
              overrides=["model.block_out_channels=[4, 8, 8, 8, 8, 8]"])
    with pytest.raises(ConfigError, match="guidance applies to conditional models"):
        train("ddpm", digits_small.path, tmp_path / "r4", preset="tiny", overrides=["sampling.guidance=3"])
    with pytest.raises(ConfigError, match="sampling.sampler"):
        train("ddpm", digits_small.path, tmp_path / "r5", preset="tiny", overrides=["sampling.sampler=euler"])
    for run in ("r0", "r1", "r2", "r3", "r4", "r5"):
        assert not (tmp_path / run).exists()
    gen = tiny_generator(False)
    with pytest.raises(SynthworthError, match="needs a class-conditional model"):
        gen.sample(1, guidance=3.0)
    with pytest.raises(SynthworthError, match="unknown sampler 'euler'"):
        gen.sample(1, sampler="euler")
