"""Text-to-image rows of ``gpu_check.py``: images/s of synthworth's ``TextToImage`` vs a plain
diffusers ``StableDiffusionPipeline`` call, on a randomly initialised pipeline with Stable
Diffusion 1.5's sizes (or tiny ones for ``--tiny``) saved with ``save_pretrained`` into a local
folder, which both load the way a user's downloaded model folder is loaded.

Not a benchmark itself (the leading underscore keeps it apart from the scripts).

  synthworth  ``resolve_pipeline(FOLDER)`` + ``TextToImage.open(..., dtype, steps=20, size)``
              (``AutoPipelineForText2Image``, safetensors only, its default DPM-Solver++ scheduler),
              then ``sample(n)``: n prompts of the ``fruits`` theme with its negative prompt, one
              seeded CPU generator per image, in one pipeline call, images back as uint8 arrays.
  plain       ``StableDiffusionPipeline.from_pretrained(FOLDER, torch_dtype=...)`` with the same
              scheduler (DPM-Solver++), called with the same prompts, negative prompt, steps,
              guidance (the pipeline's default 7.5), size and seeds.

Weights are random (no download): the arithmetic, and so the speed, is that of the real model.
"""

from __future__ import annotations

import json
import string
import time
from pathlib import Path

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=512,
                scaling_factor=0.18215)
SD15_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
TINY_UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16, attention_head_dim=4,
                 norm_num_groups=4)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=4,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
TINY_TEXT = dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=77, projection_dim=16)
THEME = "fruits"


def _write_vocab(folder: Path) -> None:
    """A CLIP byte-level BPE vocabulary of single characters (a word's end marked </w>), no merges:
    enough for the tokenizer to run offline; token ids stay far below the text encoder's vocab."""
    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in string.ascii_lowercase + string.digits + ",.-'":
            vocab[c + suffix] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def build_pipeline(folder: Path, *, tiny: bool, device, dtype) -> dict[str, float]:
    """Save a randomly initialised SD 1.5-sized (or tiny) pipeline into ``folder``; returns its
    components' parameter counts in millions."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    # Built on the device: initialising ~1.1 G parameters there takes seconds, on a CPU minutes.
    with torch.device(device):
        unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD15_UNET))
        vae = AutoencoderKL(**(TINY_VAE if tiny else SD15_VAE))
        text = CLIPTextModel(CLIPTextConfig(**(TINY_TEXT if tiny else SD15_TEXT), bos_token_id=0, eos_token_id=1,
                                            pad_token_id=1))
    _write_vocab(folder.parent / "vocab")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder.parent / "vocab"), model_max_length=77)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(dtype=dtype)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    counts = {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in
              (("unet", unet), ("vae", vae), ("text_encoder", text))}
    del pipe, unet, vae, text
    return counts


def open_synthworth(folder: Path, device, dtype_name: str, steps: int, size: int):
    from synthworth.generators.text2image import TextToImage, resolve_pipeline
    from synthworth.themes import load_theme

    return TextToImage.open(resolve_pipeline(str(folder)), load_theme(THEME), device=device, dtype=dtype_name,
                            steps=steps, size=size)


def open_plain(folder: Path, device, dtype):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True,
                                                   use_safetensors=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def measure(gen, pipe, batch: int, calls: int, device, seed: int = 0) -> tuple[float, float, int]:
    """(synthworth images/s, plain images/s, images synthworth rendered again) over ``calls`` timed
    calls of ``batch`` images each, after one untimed call of each; the two ways alternate call by
    call. synthworth renders an all-black (safety-filtered) image again with a new seed: that
    extra work would be counted, so how often it happened is returned too."""
    import numpy as np
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    labels = np.arange(batch) % len(gen.class_names)

    retries = [0]

    def ours(start: int) -> None:
        # What TextToImage.sample does, keeping the retry counts it drops.
        seeds = [start + i for i in range(batch)]
        rendered = gen.render([gen.prompt(int(label), s) for label, s in zip(labels, seeds)], seeds)
        np.stack([r.image for r in rendered])
        retries[0] += sum(r.retries for r in rendered)

    def plain(start: int) -> None:
        seeds = [start + i for i in range(batch)]
        prompts = [gen.prompt(int(label), s) for label, s in zip(labels, seeds)]
        with torch.inference_mode():
            out = pipe(prompt=prompts, negative_prompt=[gen.negative_prompt] * batch if gen.negative_prompt else None,
                       num_inference_steps=gen.steps, height=gen.resolution, width=gen.resolution,
                       generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="pil")
        [np.asarray(im.convert("RGB")) for im in out.images]

    seconds = {"ours": 0.0, "plain": 0.0}
    ways = {"ours": ours, "plain": plain}
    for call in range(calls + 1):
        order = ("ours", "plain") if call % 2 == 0 else ("plain", "ours")
        for name in order:
            sync()
            t0 = time.perf_counter()
            ways[name](seed + call * batch)
            sync()
            if call > 0:  # call 0 warms up (kernels chosen, memory allocated)
                seconds[name] += time.perf_counter() - t0
    return calls * batch / seconds["ours"], calls * batch / seconds["plain"], retries[0]
