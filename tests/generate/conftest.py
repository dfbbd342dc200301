"""Fixtures for generation tests, all built here and offline:

- ``tiny_pipeline``: a Stable Diffusion pipeline of a few thousand parameters (UNet, VAE, CLIP
  text encoder, a CLIP tokenizer from a vocabulary written below, a scheduler, no safety checker)
  saved with ``save_pretrained``; ``synthworth generate --pipeline FOLDER`` loads it through the
  same ``AutoPipelineForText2Image`` call a hub id goes through. It makes 16x16 images.
- ``tiny_kandinsky``: a Kandinsky 2.2 decoder folder and its prior folder, as tiny.
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


def build_tiny_kandinsky(root: Path) -> tuple[Path, Path]:
    """(decoder folder, prior folder); the decoder renders 16x16 images when asked for that size
    (its own default, 512, is far too slow for a test)."""
    import torch
    from diffusers import (DDIMScheduler, KandinskyV22Pipeline, KandinskyV22PriorPipeline, PriorTransformer,
                           UNet2DConditionModel, UnCLIPScheduler, VQModel)
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)

    torch.manual_seed(0)
    dim = 16  # the image embedding the prior makes and the decoder reads
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=8, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", addition_embed_type="image",
        encoder_hid_dim=dim, encoder_hid_dim_type="image_proj", cross_attention_dim=16, attention_head_dim=4,
        resnet_time_scale_shift="scale_shift", norm_num_groups=4)
    # MoVQ's spatial norm has 32 groups built in, hence its 32 channels.
    movq = VQModel(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
        up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=8, norm_type="spatial", num_vq_embeddings=12, vq_embed_dim=4)
    scheduler = DDIMScheduler(beta_schedule="linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq).save_pretrained(str(root / "decoder"))
    _write_clip_vocab(root / "prior-vocab")
    prior = KandinskyV22PriorPipeline(
        prior=PriorTransformer(num_attention_heads=2, attention_head_dim=8, embedding_dim=dim, num_layers=1),
        text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=100, hidden_size=dim, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            projection_dim=dim, bos_token_id=0, eos_token_id=1, pad_token_id=1)),
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=dim, image_size=28, patch_size=14, projection_dim=dim, intermediate_size=32,
            num_attention_heads=2, num_hidden_layers=1)),
        tokenizer=CLIPTokenizer.from_pretrained(str(root / "prior-vocab"), model_max_length=77),
        scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                  clip_sample=True, clip_sample_range=10.0),
        image_processor=CLIPImageProcessor(size=28, crop_size=28))
    prior.save_pretrained(str(root / "prior"))
    return root / "decoder", root / "prior"


@pytest.fixture(scope="session")
def tiny_kandinsky(tmp_path_factory) -> tuple[Path, Path]:
    with one_thread():
        return build_tiny_kandinsky(tmp_path_factory.mktemp("kandinsky"))


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    with one_thread():
        return build_tiny_pipeline(tmp_path_factory.mktemp("pipelines") / "tiny-sd")


@pytest.fixture(scope="session")
def dcgan_run(tmp_path_factory) -> Path:
    from synthworth.data.compose import subset
    from synthworth.data.dataset import atomic_folder, write_packed
    from synthworth.data.prepare import PrepareConfig, prepare
    from synthworth.train import train_dcgan

    root = tmp_path_factory.mktemp("dcgan")
    digits = prepare(PrepareConfig(source="digits", size=16, fit="stretch", workers=0), root / "digits",
                     progress=False)
    part = subset(digits.split("train"), per_class=10, seed=0)
    with atomic_folder(root / "small", kind="dataset") as tmp:
        write_packed(tmp, part.take(range(len(part))), part.labels, part.splits, part.class_names,
                     [{} for _ in range(len(part))], {"kind": "test"})
    with one_thread():
        train_dcgan(root / "small", root / "run", preset="tiny",
                    overrides=["train.epochs=1", "model.conditional=true"])
    return root / "run"


