"""The generators' trainers under ``train.mixed_precision=bf16`` on a CPU (2 steps each): the
networks compute in bf16, the saved weights are fp32; sampling a trained generator under bf16
autocast (``dtype``) gives uint8 images as before, and ``synthworth generate --dtype bfloat16``
records it."""

from __future__ import annotations

import contextlib
import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synthworth.cli import main
from synthworth.engine.precision import PrecisionWarning
from synthworth.errors import SynthworthError
from synthworth.generators.base import load_generator
from synthworth.train import train_dcgan, train_ddpm, train_ldm, train_vae

pytestmark = pytest.mark.usefixtures("single_thread")
BF16 = ["train.mixed_precision=bf16", "train.max_steps=2"]
LAYERS = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # this CPU may lack native bf16: tests/engine/test_precision.py covers the warning
        warnings.simplefilter("ignore", PrecisionWarning)
        yield


@contextlib.contextmanager
def output_dtypes():
    seen: list[torch.dtype] = []

    def hook(module, args, output):
        if isinstance(module, LAYERS):
            seen.append(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def floats(path) -> set[torch.dtype]:
    return {t.dtype for t in load_file(str(path)).values() if t.is_floating_point()}


def test_dcgan_trains_in_bf16_saves_fp32_and_samples_under_autocast(digits_small, tmp_path):
    run = tmp_path / "dcgan"
    with output_dtypes() as seen:
        gen = train_dcgan(digits_small.path, run, preset="tiny", overrides=["model.conditional=true", *BF16])
    assert set(seen) == {torch.bfloat16}
    assert json.loads((run / "run.json").read_text())["history"][0]["precision"]["mixed_precision"] == "bf16"
    assert floats(run / "model" / "generator.safetensors") == {torch.float32}
    loaded = load_generator(run)
    with output_dtypes() as plain:
        fp32 = loaded.sample(20, seed=3)
    with output_dtypes() as reduced:
        bf16 = loaded.sample(20, seed=3, dtype="bfloat16")
    assert set(plain) == {torch.float32} and set(reduced) == {torch.bfloat16}
    assert bf16.dtype == np.uint8 and bf16.shape == fp32.shape == (20, 16, 16, 1)
    # bf16 keeps 8 bits of mantissa: the same images to within a few grey levels.
    assert np.abs(bf16.astype(int) - fp32.astype(int)).mean() < 4
    np.testing.assert_array_equal(bf16, loaded.sample(20, seed=3, dtype="bfloat16"))  # seeds still reproduce
    with pytest.raises(SynthworthError, match="unknown sampling dtype 'int8'"):
        loaded.sample(2, dtype="int8")
    assert gen.resolution == 16


def test_ddpm_trains_in_bf16_saves_fp32_and_samples_under_autocast(digits_small, tmp_path):
    run = tmp_path / "ddpm"
    with output_dtypes() as seen:
        train_ddpm(digits_small.path, run, preset="tiny", overrides=BF16)
    assert set(seen) == {torch.bfloat16}
    assert floats(run / "model" / "unet" / "diffusion_pytorch_model.safetensors") == {torch.float32}
    ema = torch.load(run / "checkpoints" / "step-00000002" / "optimizer.bin", weights_only=True)["state"]
    assert {t.dtype for s in ema.values() for k, t in s.items() if k != "step"} == {torch.float32}
    gen = load_generator(run)
    with output_dtypes() as reduced:
        images = gen.sample(3, seed=0, steps=2, dtype="bfloat16")
    assert torch.bfloat16 in set(reduced) and images.dtype == np.uint8 and images.shape == (3, 16, 16, 1)
    assert gen.last_sampling["dtype"] == "bfloat16"
    gen.sample(1, seed=0, steps=2)
    assert "dtype" not in gen.last_sampling  # fp32 sampling records nothing new


def test_vae_and_latent_diffusion_train_in_bf16_and_save_fp32(digits_small, tmp_path):
    with output_dtypes() as seen:
        train_vae(digits_small.path, tmp_path / "vae", preset="tiny", overrides=BF16)
    assert set(seen) == {torch.bfloat16}
    rows = [json.loads(line) for line in (tmp_path / "vae" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["kl"]) and np.isfinite(r["mse"]) for r in rows if "kl" in r)
    assert floats(tmp_path / "vae" / "model" / "diffusion_pytorch_model.safetensors") == {torch.float32}
    with output_dtypes() as seen:
        train_ldm(digits_small.path, tmp_path / "ldm", preset="tiny", overrides=[f"vae={tmp_path / 'vae'}", *BF16])
    assert torch.bfloat16 in set(seen)  # the UNet and the frozen VAE's encoder (the scale is measured in fp32)
    for part in ("unet", "vae"):
        assert floats(tmp_path / "ldm" / "model" / part / "diffusion_pytorch_model.safetensors") == {torch.float32}


def test_generate_dtype_bfloat16_samples_a_trained_generator_under_autocast(fp32_dcgan, tmp_path):
    out = tmp_path / "images"
    assert main(["generate", "--from", str(fp32_dcgan), "--per-class", "2", "--dtype", "bfloat16",
                 "--out", str(out), "-q"]) == 0
    plan = json.loads((out / "generate.json").read_text())
    assert plan["generator"]["sampling"] == {"dtype": "bfloat16"}  # in the plan: a resume samples the same way
    assert len((out / "metadata.jsonl").read_text().splitlines()) == 20
    timings = [json.loads(line) for line in (out / "generation.jsonl").read_text().splitlines()]
    assert timings and all(isinstance(t["native_bf16"], bool) for t in timings)
    # Without --dtype (auto) a trained generator samples in fp32 and its plan is the one of before.
    assert main(["generate", "--from", str(fp32_dcgan), "--per-class", "2", "--out", str(tmp_path / "plain"),
                 "-q"]) == 0
    assert json.loads((tmp_path / "plain" / "generate.json").read_text())["generator"]["sampling"] == {}


@pytest.fixture
def fp32_dcgan(digits_small, tmp_path):
    """A conditional tiny DCGAN trained in fp32 for 2 steps."""
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=["model.conditional=true", "train.max_steps=2"])
    return run
