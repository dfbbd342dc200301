"""Fixtures for generation tests, all built here and offline:

- ``tiny_pipeline``: a Stable Diffusion pipeline of a few thousand parameters (UNet, VAE, CLIP
  text encoder, a CLIP tokenizer from a vocabulary written below, a scheduler, no safety checker)
  saved with ``save_pretrained``; ``synthbench generate --pipeline FOLDER`` loads it through the
  same ``AutoPipelineForText2Image`` call a hub id goes through. It makes 16x16 images.
- ``dcgan_run``: a class-conditional DCGAN trained for one epoch on 10 digits per class (16x16).
"""

from __future__ import annotations

import json
import string
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def one_thread():
    """Run torch on one thread: these tiny models gain nothing from more, and on a busy machine
    the hand-offs between threads cost more than the arithmetic (10x slower tests)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_thread():
        yield


def _write_clip_vocab(folder: Path) -> None:
    """A byte-level BPE vocabulary of single characters (CLIP marks a word's end with </w>), no merges."""
    folder.mkdir(parents=True)
    chars = string.ascii_lowercase + string.digits + ",.-'"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def build_tiny_pipeline(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    _write_clip_vocab(folder.parent / "vocab")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder.parent / "vocab"), model_max_length=77)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    with one_thread():
        return build_tiny_pipeline(tmp_path_factory.mktemp("pipelines") / "tiny-sd")


@pytest.fixture(scope="session")
def dcgan_run(tmp_path_factory) -> Path:
    from synthbench.data.compose import subset
    from synthbench.data.dataset import atomic_folder, write_packed
    from synthbench.data.prepare import PrepareConfig, prepare
    from synthbench.train import train_dcgan

    root = tmp_path_factory.mktemp("dcgan")
    digits = prepare(PrepareConfig(source="digits", size=16, fit="stretch", workers=0), root / "digits",
                     progress=False)
    part = subset(digits.split("train"), per_class=10, seed=0)
    with atomic_folder(root / "small") as tmp:
        write_packed(tmp, part.take(range(len(part))), part.labels, part.splits, part.class_names,
                     [{} for _ in range(len(part))], {"kind": "test"})
    with one_thread():
        train_dcgan(root / "small", root / "run", preset="tiny",
                    overrides=["train.epochs=1", "model.conditional=true"])
    return root / "run"


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty Hugging Face cache under tmp_path (never the user's)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    # The library reads these once, at import: set its copies for this test too.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache
