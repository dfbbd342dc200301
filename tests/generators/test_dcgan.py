"""DCGAN: the generator contract, both presets' shapes, bad input, a short real run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from contract import GeneratorContract
from synthworth.config import preset_path, read_yaml, validate
from synthworth.data.prepare import PrepareConfig, prepare
from synthworth.errors import SynthworthError
from synthworth.generators.base import load_generator
from synthworth.generators.dcgan import (DCGAN, DCGANConfig, DCGANDiscriminatorNet,
                                         DCGANGeneratorNet, DCGANModelConfig)
from synthworth.train import train_dcgan


class TestConditionalDCGANContract(GeneratorContract):
    @pytest.fixture
    def generator(self):
        torch.manual_seed(0)
        cfg = DCGANModelConfig(latent_dim=8, base_channels=4, conditional=True, embed_dim=4)
        return DCGAN(cfg, 16, 1, [str(i) for i in range(10)])


class TestUnconditionalDCGANContract(GeneratorContract):
    @pytest.fixture
    def generator(self):
        torch.manual_seed(0)
        return DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4), 32, 3, [])


def _preset(name: str) -> DCGANConfig:
    return validate(DCGANConfig, read_yaml(preset_path("dcgan", name)))


def test_celeba_preset_is_the_source_projects_settings_and_shapes():
    cfg = _preset("celeba-dcgan")
    assert (cfg.model.resolution, cfg.train.batch_size, cfg.train.epochs) == (64, 128, 50)
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (1e-4, 0.5, 0.9999)
    gen = DCGANGeneratorNet(64, 3, cfg.model.latent_dim, cfg.model.base_channels)
    disc = DCGANDiscriminatorNet(64, 3, cfg.model.base_channels)
    convs = lambda m: [l for l in m.modules() if isinstance(l, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs(gen)) == 5 and len(convs(disc)) == 5
    z = torch.randn(2, 100)
    out = gen(z)
    assert out.shape == (2, 3, 64, 64) and out.min() >= -1 and out.max() <= 1
    assert disc(out).shape == (2,)
    assert isinstance(disc.net[1], torch.nn.LeakyReLU) and disc.net[1].negative_slope == 0.2


def test_dcgan_and_tiny_presets():
    cfg = _preset("dcgan")
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2, cfg.train.batch_size) == (2e-4, 0.5, 0.999, 128)
    tiny = _preset("tiny")
    gen = DCGANGeneratorNet(16, 1, tiny.model.latent_dim, tiny.model.base_channels, 10, tiny.model.embed_dim)
    disc = DCGANDiscriminatorNet(16, 1, tiny.model.base_channels, 10)
    n_params = sum(p.numel() for m in (gen, disc) for p in m.parameters())
    assert 1_000 < n_params < 10_000
    for res, layers in [(16, 3), (32, 4), (128, 6)]:
        net = DCGANGeneratorNet(res, 3, 8, 4)
        assert net(torch.randn(1, 8)).shape == (1, 3, res, res)
        assert len([l for l in net.modules() if isinstance(l, torch.nn.ConvTranspose2d)]) == layers


def test_weights_start_from_n_0_002():
    net = DCGANGeneratorNet(64, 3, 100, 64)
    w = net.net[0].weight
    assert abs(w.mean().item()) < 0.002 and abs(w.std().item() - 0.02) < 0.002


def test_short_real_run_moves_losses_and_writes_grid_and_plots(digits16, tmp_path):
    run = tmp_path / "run"
    gen = train_dcgan(digits16.path, run, preset="tiny",
                      overrides=["model.conditional=true", "train.max_steps=60", "train.batch_size=32"])
    import json
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("kind") != "epoch"]
    assert len(steps) == 60
    for key in ("loss_d", "loss_g"):
        values = np.array([r[key] for r in steps])
        assert np.isfinite(values).all() and values.std() > 1e-3  # the losses move
    # The discriminator learns to tell real from fake at the start (its loss falls from ~1.39).
    assert np.mean([r["loss_d"] for r in steps[-10:]]) < steps[0]["loss_d"]
    grid = Image.open(run / "samples" / "epoch-001.png")
    assert grid.size[0] > 64 and grid.mode == "RGB"
    for name in ("loss_per_iteration.png", "loss_per_epoch.png", "discriminator_outputs.png"):
        assert Image.open(run / "plots" / name).size[0] > 100
    again = load_generator(run)  # the run folder loads as a generator
    assert np.array_equal(again.sample(4, seed=0), gen.sample(4, seed=0))
    assert again.class_names == [str(i) for i in range(10)]


def test_bad_input_is_refused_before_training(tmp_path, digits16):
    odd = prepare(PrepareConfig(source="digits", size=24, workers=0), tmp_path / "d24", progress=False)
    with pytest.raises(SynthworthError, match="power of two"):
        train_dcgan(odd.path, tmp_path / "r1", preset="tiny", overrides=["model.resolution=null"])
    with pytest.raises(SynthworthError, match="expects 64x64"):
        train_dcgan(digits16.path, tmp_path / "r2", preset="celeba-dcgan")
    faces = prepare(PrepareConfig(source="lfw", size=16, workers=0, test_fraction=0.0),
                    tmp_path / "faces", progress=False)
    # lfw is labelled; make an unlabelled Dataset by preparing a folder of loose images.
    loose = tmp_path / "loose"
    loose.mkdir()
    for i, img in enumerate(faces.take(range(20))):
        Image.fromarray(img[:, :, 0]).save(loose / f"{i}.png")
    unlabelled = prepare(PrepareConfig(source="folder", path=str(loose), size=16, workers=0,
                                       test_fraction=0.0), tmp_path / "unl", progress=False)
    with pytest.raises(SynthworthError, match="needs a labelled Dataset"):
        train_dcgan(unlabelled.path, tmp_path / "r3", preset="tiny", overrides=["model.conditional=true"])
    for bad in (tmp_path / "r1", tmp_path / "r2", tmp_path / "r3"):
        assert not (bad / "checkpoints").exists()
