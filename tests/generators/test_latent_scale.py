"""The latent model's scale factor: measured as 1 / std of the training latents (a tiny
autoencoder whose latents are scaled by a known factor through its weights), or given by the
user and then kept, and recorded either way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthworth.data.dataset import Dataset
from synthworth.generators.diffusion import LatentDiffusionTask, LDMConfig


def tiny_vae(folder, k: float = 1.0):
    """A random 16 px -> 8x8x2 AutoencoderKL whose posterior noise is switched off (log-variance
    -60) and whose posterior means are multiplied by ``k`` (the mean rows of quant_conv)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(4, 8), latent_channels=2,
                        norm_num_groups=4, sample_size=16)
    with torch.no_grad():
        conv = vae.quant_conv
        conv.weight[:2] *= k
        conv.bias[:2] *= k
        conv.weight[2:] = 0
        conv.bias[2:] = -60.0
    vae.save_pretrained(folder, safe_serialization=True)
    return vae


def images(n: int = 40) -> Dataset:
    rng = np.random.default_rng(3)
    return Dataset.from_arrays(rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8), np.zeros(n, np.int64), ["x"])


def test_the_measured_factor_is_one_over_the_latents_std(tmp_path):
    data = images()
    vae = tiny_vae(tmp_path / "a")
    tiny_vae(tmp_path / "b", k=4.0)
    x = torch.from_numpy(data.take(np.arange(len(data)))).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        std = vae.encode(x).latent_dist.mode().double().std(correction=0).item()  # every image: scale_samples >= 40
    factors = {}
    for name in ("a", "b"):
        task = LatentDiffusionTask(LDMConfig(vae=str(tmp_path / name), scale_samples=64))
        task.prepare_inputs(data, torch.device("cpu"))
        factors[name] = task.latent_scale
        record = task.scale_record
        assert record["how"] == "measured" and record["images"] == 40
        assert record["factor"] == task.latent_scale == pytest.approx(1 / record["latent_std"])
        assert record["scaled_std"] == pytest.approx(1.0)
        assert len(record["latent_std_per_channel"]) == 2
    assert factors["a"] == pytest.approx(1 / std, rel=1e-5)
    assert factors["b"] == pytest.approx(1 / (4 * std), rel=1e-5)  # latents 4x wider: a factor 4x smaller


def test_a_given_factor_is_kept_and_recorded_as_given(tmp_path, capsys):
    data = images()
    tiny_vae(tmp_path / "a")
    measured = LatentDiffusionTask(LDMConfig(vae=str(tmp_path / "a")))
    measured.prepare_inputs(data, torch.device("cpu"))
    given = 4 * measured.latent_scale  # the UNet would see latents of std 4: said aloud
    capsys.readouterr()
    task = LatentDiffusionTask(LDMConfig(vae=str(tmp_path / "a"), scale_factor=given))
    task.prepare_inputs(data, torch.device("cpu"))
    assert task.latent_scale == given
    record = task.scale_record
    assert record["how"] == "given" and record["factor"] == given
    assert record["measured_factor"] == pytest.approx(measured.latent_scale)
    assert record["scaled_std"] == pytest.approx(4.0)
    assert "far from 1" in capsys.readouterr().err


def test_latents_that_do_not_vary_are_refused_unless_a_factor_is_given(tmp_path):
    from synthworth.errors import SynthworthError

    data = images(16)
    tiny_vae(tmp_path / "flat", k=0.0)  # every posterior mean 0, posterior std clamped to 3e-7: no spread
    with pytest.raises(SynthworthError, match="do not vary.*give scale_factor=VALUE"):
        LatentDiffusionTask(LDMConfig(vae=str(tmp_path / "flat"))).prepare_inputs(data, torch.device("cpu"))
    task = LatentDiffusionTask(LDMConfig(vae=str(tmp_path / "flat"), scale_factor=0.2))
    task.prepare_inputs(data, torch.device("cpu"))  # the advice works
    assert task.latent_scale == 0.2 and task.scale_record["measured_factor"] is None
