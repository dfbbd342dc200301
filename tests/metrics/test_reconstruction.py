"""An autoencoder's reconstruction quality while it trains (metrics.reconstruction), the latent
model's recorded scale factor, the diagnosis of its blobs (metrics.ldm_diagnosis) and the
comparison page's autoencoder section, on LFW faces at 16 px with a tiny classifier's features."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from synthworth.engine.run import RunFolder
from synthworth.metrics.ldm_diagnosis import diagnose, ema_at
from synthworth.metrics.reconstruction import latent_spread, psnr
from synthworth.train import train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """70 training / 30 held-out faces, a tiny face-vs-non-face classifier (the features), a
    2-epoch tiny autoencoder evaluated after each epoch, and a 1-epoch (4 steps) tiny latent model on it."""
    from synthworth.classifiers.task import ClassifierConfig, train_classifier
    from synthworth.config import resolve_config
    from synthworth.data.prepare import PrepareConfig, prepare

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("recon")
    faces = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", classes=["face"], test_fraction=0.3,
                                  workers=0), root / "faces", progress=False)
    both = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", workers=0), root / "lfw", progress=False)
    train_classifier(both, root / "clf", resolve_config(ClassifierConfig, preset=("classifier", "tiny")))
    train("vae", faces.path, root / "vae", preset="tiny",
          overrides=["train.epochs=2", "eval.every=1", f"eval.features={root / 'clf' / 'model'}"])
    train("ldm", faces.path, root / "ldm", preset="tiny", overrides=[f"vae={root / 'vae'}"])  # 1 epoch, 4 steps
    return root, faces


def test_psnr_and_latent_spread_are_the_textbook_numbers():
    a = np.full((2, 4, 4, 1), 100, np.uint8)
    b = a.copy()
    b[0] += 1                      # MSE 1: 10 log10(255^2)
    b[1, :2] += 10                 # MSE 50
    assert psnr(a, b) == pytest.approx([10 * np.log10(255 ** 2), 10 * np.log10(255 ** 2 / 50)])
    assert psnr(a, a)[0] == 100.0  # an exact copy is capped
    z = np.zeros((10, 2, 3, 3))
    z[:, 0] = np.random.default_rng(0).normal(0, 2.0, (10, 3, 3))
    spread = latent_spread(z)
    assert spread["latent_std_per_channel"] == pytest.approx([z[:, 0].std(), 0.0])
    assert spread["latent_scale_suggested"] == pytest.approx(1 / z.std())


def test_an_autoencoder_run_logs_psnr_recon_fid_and_latent_std(world):
    from skimage.metrics import peak_signal_noise_ratio

    from synthworth.data.dataset import Dataset
    from synthworth.generators.diffusion import load_vae
    from synthworth.metrics.compute import MetricsConfig, compute_metrics

    root, faces = world
    rows = [r for r in RunFolder(root / "vae").read_metrics() if r.get("kind") == "recon"]
    assert [r["epoch"] for r in rows] == [1, 2]
    last = rows[-1]
    assert last["real_split"] == "test" and last["images"] == 30 and last["features"] == "file"
    assert len(last["latent_std_per_channel"]) == 2  # the tiny preset's 2 latent channels
    assert last["latent_scale_suggested"] == pytest.approx(1 / last["latent_std"])
    # The same numbers again, independently, from the exported autoencoder (the last epoch's weights).
    test = faces.split("test")
    originals = test.take(np.arange(len(test)))
    vae = load_vae(root / "vae").eval()
    with torch.no_grad():
        x = torch.from_numpy(originals).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = vae.encode(x).latent_dist.mode()
        recon = ((vae.decode(z).sample.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    expected = np.mean([peak_signal_noise_ratio(o, r, data_range=255) for o, r in zip(originals, recon)])
    assert last["psnr"] == pytest.approx(expected, rel=1e-6)
    assert last["latent_std"] == pytest.approx(z.double().std(correction=0).item(), rel=1e-5)
    fake = Dataset.from_arrays(recon, np.zeros(len(recon), np.int64), ["reconstruction"])
    separate = compute_metrics(faces, fake, MetricsConfig(features=str(root / "clf" / "model"), real_split="test",
                                                          floor=False, kid_subsets=2))
    assert last["recon_fid"] == pytest.approx(separate["fid"], rel=1e-6)
    assert rows[0]["psnr"] != last["psnr"]  # two epochs, two sets of weights: the row is no constant
    grid = root / "vae" / "samples" / "heldout-recon-epoch-002.png"
    assert grid.is_file()
    log = (root / "vae" / "log.txt").read_text()
    assert "reconstruction after epoch 2: PSNR" in log and "reconstruction FID" in log


def test_without_usable_features_the_fid_is_left_out_with_its_reason(world, tmp_path):
    root, faces = world
    # auto features, no Inception weights, one class: no domain features; PSNR and latents still logged
    train("vae", faces.path, tmp_path / "vae", preset="tiny",
          overrides=["eval.features=auto", "eval.inception_weights=null"])
    (row,) = [r for r in RunFolder(tmp_path / "vae").read_metrics() if r.get("kind") == "recon"]
    assert "recon_fid" not in row and "2 or more classes" in row["recon_fid_skipped"]
    assert row["psnr"] > 0 and row["latent_std"] > 0


def test_the_latent_model_records_its_measured_scale_factor(world):
    root, _ = world
    meta = json.loads((root / "ldm" / "model" / "synthworth.json").read_text())
    record = meta["latent_scale_record"]
    assert record["how"] == "measured" and meta["latent_scale"] == record["factor"]
    assert record["factor"] == pytest.approx(1 / record["latent_std"])
    (row,) = [r for r in RunFolder(root / "ldm").read_metrics() if r.get("kind") == "latent_scale"]
    assert row["factor"] == record["factor"]


def test_a_given_scale_factor_is_kept_through_training(world, tmp_path):
    from synthworth.generators import load_generator

    root, faces = world
    train("ldm", faces.path, tmp_path / "ldm", preset="tiny",
          overrides=[f"vae={root / 'vae'}", "train.max_steps=2", "scale_factor=0.3"])
    gen = load_generator(tmp_path / "ldm")
    assert gen.latent_scale == 0.3 and gen.scale_record["how"] == "given"
    measured = json.loads((root / "ldm" / "model" / "synthworth.json").read_text())["latent_scale"]
    assert gen.scale_record["measured_factor"] == pytest.approx(measured, rel=0.05)  # other posterior draws


def test_the_diagnosis_reads_both_runs(world):
    root, _ = world
    found = diagnose(root / "ldm", sample_fid=1e6, sample_features=None)
    rec = [r for r in RunFolder(root / "vae").read_metrics() if r.get("kind") == "recon"][-1]
    assert found["reconstruction"]["psnr"] == rec["psnr"] and found["vae_run"] == str(root / "vae")
    assert found["ema"]["steps"] == 4 and found["scale"]["how"] == "measured"
    # samples far worse than reconstructions on the same features: the UNet has not learnt
    label = rec["features_label"]
    assert "unet" in diagnose(root / "ldm", 100 * rec["recon_fid"] + 1, label)["causes"]
    assert "autoencoder" in diagnose(root / "ldm", rec["recon_fid"], label)["causes"]
    # samples 'closer' than the decoder's own reconstructions: the features cannot be trusted, no cause named
    fooled = diagnose(root / "ldm", rec["recon_fid"] / 3, label)
    assert not {"unet", "autoencoder"} & set(fooled["causes"])
    assert any("the FID cannot tell here" in s for s in fooled["statements"])
    # on other features the two FIDs are not held against each other
    assert not {"unet", "autoencoder"} & set(diagnose(root / "ldm", 1e6, "other features")["causes"])
    assert diagnose(root / "vae") is None


def test_ema_decay_follows_diffusers_warmup():
    from diffusers.training_utils import EMAModel

    ema = EMAModel([torch.nn.Parameter(torch.zeros(1))], decay=0.999, use_ema_warmup=True, power=0.75)
    ema.optimization_step = 280
    assert ema_at(280, 0.999, 0.75)["decay_at_end"] == pytest.approx(ema.get_decay(ema.optimization_step))
    assert ema_at(280, 0.999, 0.75)["share"] == pytest.approx(280 ** 0.75 / 280)  # ~a quarter of the run
    assert ema_at(50, 0.9999, 1.0)["share"] > 0.5  # power 1: a plain mean of every step's weights


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def test_the_compare_page_shows_the_reconstructions_beside_the_samples(world, tmp_path):
    from synthworth.report.compare import build_compare_report

    root, _ = world
    page = build_compare_report(None, {"latent": root / "ldm"}, tmp_path / "page" / "index.html", title="t")
    text = page.read_text()
    parser = _Images()
    parser.feed(text)
    recon = [i for i in parser.images if "held-out images above their reconstructions" in i.get("alt", "")]
    assert len(recon) == 1
    shown = page.parent / recon[0]["src"]
    assert shown.read_bytes() == (root / "vae" / "samples" / "heldout-recon-epoch-002.png").read_bytes()
    assert any(i.get("alt") == "latent samples" for i in parser.images)
    rec = [r for r in RunFolder(root / "vae").read_metrics() if r.get("kind") == "recon"][-1]
    from synthworth.report.numbers import num

    assert "The latent models' autoencoders" in text and num(rec["psnr"]) in text
    assert num(rec["recon_fid"]) in text


def test_a_resumed_latent_model_keeps_its_scale_record_and_logs_it_once(world, tmp_path, monkeypatch):
    from synthworth.generators.diffusion import LatentDiffusionTask

    root, faces = world
    args = [f"vae={root / 'vae'}", "train.checkpoint_every=2"]
    real = LatentDiffusionTask.step

    def dying(self, batch, ctx):
        if ctx.global_step == 3:
            raise KeyboardInterrupt
        return real(self, batch, ctx)

    monkeypatch.setattr(LatentDiffusionTask, "step", dying)
    with pytest.raises(KeyboardInterrupt):
        train("ldm", faces.path, tmp_path / "ldm", preset="tiny", overrides=args)
    monkeypatch.setattr(LatentDiffusionTask, "step", real)
    train("ldm", faces.path, tmp_path / "ldm", resume=True)
    rows = [r for r in RunFolder(tmp_path / "ldm").read_metrics() if r.get("kind") == "latent_scale"]
    meta = json.loads((tmp_path / "ldm" / "model" / "synthworth.json").read_text())
    assert len(rows) == 1 and meta["latent_scale_record"] == {k: v for k, v in rows[0].items()
                                                               if k not in ("step", "epoch", "kind")}
    assert meta["latent_scale"] == rows[0]["factor"]
