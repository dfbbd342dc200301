"""Text-to-image pipelines: where they come from, what is refused, how they are loaded and run."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from synthworth.generators.text2image import (KNOWN_PIPELINES, PipelineError, TextToImage,
                                              resolve_pipeline, retry_seed)
from synthworth.themes import load_theme


def test_known_names_are_the_source_studys_models():
    assert {k: v.hub_id for k, v in KNOWN_PIPELINES.items()} == {
        "sd21": "stabilityai/stable-diffusion-2-1",
        "realistic-vision-14": "SG161222/Realistic_Vision_V1.4",
        "openjourney-v4": "prompthero/openjourney-v4",
        "kandinsky-22": "kandinsky-community/kandinsky-2-2-decoder",
        "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    }
    assert KNOWN_PIPELINES["kandinsky-22"].prior == "kandinsky-community/kandinsky-2-2-prior"


def test_a_local_folder_resolves_without_loading(tiny_pipeline):
    source = resolve_pipeline(str(tiny_pipeline))
    assert source.local and source.location == str(tiny_pipeline)
    assert source.class_name == "StableDiffusionPipeline" and source.name == "tiny-sd"
    assert source.hub_id is None and source.prior is None
    assert source.describe()["configs"] == resolve_pipeline(str(tiny_pipeline)).fingerprint


def test_unknown_names_and_folders_that_are_not_pipelines(tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match="unknown pipeline 'sd15'.*sd21, realistic-vision-14"):
        resolve_pipeline("sd15")
    with pytest.raises(PipelineError, match="does not exist"):
        resolve_pipeline(str(tmp_path / "nothing-here"))
    (tmp_path / "pipelines").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="pipeline folder pipelines/sd21 does not exist"):
        resolve_pipeline("pipelines/sd21")  # a relative path, not a hub id
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    with pytest.raises(PipelineError, match="not a diffusers pipeline folder: no model_index.json"):
        resolve_pipeline(str(tmp_path / "unet"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(PipelineError, match="not a valid diffusers model_index.json"):
        resolve_pipeline(str(bad))


def test_offline_a_hub_id_missing_from_the_cache_fails_fast(offline_hub):
    started = time.perf_counter()
    with pytest.raises(PipelineError) as info:
        resolve_pipeline("sd21")
    message = str(info.value)
    assert time.perf_counter() - started < 2
    assert "stabilityai/stable-diffusion-2-1 is not in the local Hugging Face cache" in message
    assert "hf download stabilityai/stable-diffusion-2-1 --local-dir DIR" in message
    assert "--pipeline DIR" in message


def test_without_network_a_hub_id_missing_from_the_cache_fails_fast(offline_hub, monkeypatch):
    import socket

    import huggingface_hub
    from huggingface_hub import constants

    # Not declared offline, but nothing answers: no 25-second round of retries.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def refused(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("went to the network"))
    started = time.perf_counter()
    with pytest.raises(PipelineError, match="not in the local Hugging Face cache and huggingface.co cannot be "
                                             "reached.*hf download someone/pipe --local-dir DIR"):
        resolve_pipeline("someone/pipe")
    assert time.perf_counter() - started < 2


def _cache(cache, hub_id: str, folder) -> None:
    """Lay ``folder`` out in the Hugging Face cache as the snapshot of ``hub_id``."""
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")


def test_offline_a_cached_hub_id_loads_from_the_cache(offline_hub, tiny_pipeline):
    _cache(offline_hub, "someone/tiny-sd", tiny_pipeline)
    source = resolve_pipeline("someone/tiny-sd")
    assert source.local and source.hub_id == "someone/tiny-sd" and source.name == "someone/tiny-sd"
    assert source.location.endswith("0123abcd")
    assert source.describe() == {"name": "someone/tiny-sd", "hub_id": "someone/tiny-sd",
                                 "class": "StableDiffusionPipeline"}
    gen = TextToImage.open(source, load_theme("fruits"), device="cpu", steps=2)
    assert gen.sample(2, [0, 4], seed=5).shape == (2, 16, 16, 3)


def test_pickled_weights_are_refused_unless_allowed(tmp_path, tiny_pipeline):
    folder = shutil.copytree(tiny_pipeline, tmp_path / "pickled")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(PipelineError, match=r"pickled weights only \(unet/diffusion_pytorch_model.bin\).*--allow-pickle"):
        resolve_pipeline(str(folder))
    assert resolve_pipeline(str(folder), allow_pickle=True).local


def test_loading_never_trusts_remote_code_and_wants_safetensors(tiny_pipeline, monkeypatch):
    from diffusers import AutoPipelineForText2Image

    seen = {}
    original = AutoPipelineForText2Image.from_pretrained.__func__

    def spy(cls, location, **kwargs):
        seen.update(kwargs)
        return original(cls, location, **kwargs)

    monkeypatch.setattr(AutoPipelineForText2Image, "from_pretrained", classmethod(spy))
    gen = TextToImage.open(resolve_pipeline(str(tiny_pipeline)), load_theme("fruits"), device="cpu")
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True
    assert seen["local_files_only"] is True
    import torch

    assert gen.pipe.dtype == torch.float32  # CPU: float32
    # DPM-Solver++ by default; steps and guidance are the pipeline's own unless given.
    assert type(gen.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert gen.pipe.scheduler.config.algorithm_type == "dpmsolver++"
    assert (gen.steps, gen.guidance) == (50, 7.5)
    assert gen.settings() == {"negative_prompt": "", "scheduler": "dpm++", "steps": 50, "guidance": 7.5}


def test_a_folder_with_a_custom_component_is_not_loaded(tmp_path, tiny_pipeline):
    folder = shutil.copytree(tiny_pipeline, tmp_path / "custom")
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = ["my_unet", "MyUNet"]  # code that would come with the folder
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "my_unet.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(PipelineError, match="cannot load pipeline custom.*custom code in my_unet.py"):
        TextToImage.open(resolve_pipeline(str(folder)), load_theme("fruits"), device="cpu")


@pytest.fixture
def fruits_t2i(tiny_pipeline):
    return TextToImage.open(resolve_pipeline(str(tiny_pipeline)), load_theme("fruits"), device="cpu",
                            steps=2, max_retries=2)


def _blank_first_calls(monkeypatch, pipe, calls: int):
    """Make the pipeline's first ``calls`` calls return an all-black first image."""
    cls = type(pipe)
    original = cls.__call__
    state = {"calls": 0, "seeds": []}

    def patched(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        state["seeds"].append([g.initial_seed() for g in kwargs["generator"]])
        state["calls"] += 1
        if state["calls"] <= calls:
            from PIL import Image

            out.images[0] = Image.new("RGB", out.images[0].size)
        return out

    monkeypatch.setattr(cls, "__call__", patched)
    return state


def test_a_blank_image_is_made_again_with_a_new_seed(fruits_t2i, monkeypatch):
    state = _blank_first_calls(monkeypatch, fruits_t2i.pipe, calls=1)
    results = fruits_t2i.render(["A close-up picture of a mango"] * 3, [7, 8, 9])
    assert state["seeds"] == [[7, 8, 9], [retry_seed(7, 1)]]
    assert [(r.sample_seed, r.retries, r.blank) for r in results] == [
        (retry_seed(7, 1), 1, False), (8, 0, False), (9, 0, False)]
    assert results[0].image.max() > 0
    assert retry_seed(7, 1) == 7 + 2**32


def test_blank_retries_are_bounded(fruits_t2i, monkeypatch):
    state = _blank_first_calls(monkeypatch, fruits_t2i.pipe, calls=10)
    (result,) = fruits_t2i.render(["A close-up picture of a mango"], [3])
    assert state["calls"] == 3  # the first try and max_retries=2 more
    assert (result.retries, result.blank, result.sample_seed) == (2, True, retry_seed(3, 2))
    assert not np.any(result.image)


def test_sample_follows_the_generator_protocol(fruits_t2i):
    a = fruits_t2i.sample(3, [0, 1, 2], seed=10)
    b = fruits_t2i.sample(2, [1, 2], seed=11)  # image i depends on seed + i only
    assert a.dtype == np.uint8 and a.shape == (3, 16, 16, 3)
    np.testing.assert_allclose(a[1:].astype(int), b.astype(int), atol=1)
    assert fruits_t2i.class_names == ["apple", "banana", "grape", "mango", "strawberry"]


def test_kandinsky_decoder_and_prior_are_combined(tiny_kandinsky, tmp_path):
    from synthworth.cli import main

    decoder, prior = tiny_kandinsky
    out = tmp_path / "kandinsky"
    assert main(["generate", "--pipeline", str(decoder), "--prior", str(prior), "--theme", "fruits",
                 "--count", "3", "--steps", "2", "--native-size", "16", "--size", "8", "--out", str(out),
                 "-q"]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [(r["class_name"], r["scheduler"], r["steps"], r["guidance"]) for r in rows] == [
        ("apple", "dpm++", 2, 4.0), ("banana", "dpm++", 2, 4.0), ("grape", "dpm++", 2, 4.0)]
    timings = [json.loads(line) for line in (out / "generation.jsonl").read_text().splitlines()]
    assert {t["pipeline_class"] for t in timings} == {"KandinskyV22CombinedPipeline"}
    plan = json.loads((out / "generate.json").read_text())
    assert plan["generator"]["pipeline"]["prior"]["class"] == "KandinskyV22PriorPipeline"


def test_kandinsky_prior_from_the_model_card_or_refused(tiny_kandinsky, tmp_path):
    decoder, prior = tiny_kandinsky
    copy = shutil.copytree(decoder, tmp_path / "decoder")
    with pytest.raises(PipelineError, match="KandinskyV22Pipeline decoder and needs its prior pipeline: pass --prior"):
        resolve_pipeline(str(copy))
    # The key diffusers itself reads from the decoder's model card.
    (copy / "README.md").write_text(f"---\nprior:\n- {prior}\n---\n# a decoder\n")
    assert resolve_pipeline(str(copy)).prior.location == str(prior)
    with pytest.raises(PipelineError, match="--prior only applies to decoders that need one"):
        resolve_pipeline(str(prior), prior=str(prior))


def test_kandinsky_22_by_name_offline_from_the_cache(offline_hub, tiny_kandinsky):
    decoder, prior = tiny_kandinsky
    _cache(offline_hub, "kandinsky-community/kandinsky-2-2-decoder", decoder)
    with pytest.raises(PipelineError, match="kandinsky-community/kandinsky-2-2-prior is not in the local"):
        resolve_pipeline("kandinsky-22")
    _cache(offline_hub, "kandinsky-community/kandinsky-2-2-prior", prior)
    source = resolve_pipeline("kandinsky-22")
    assert source.name == "kandinsky-22" and source.local and source.prior.local
    assert source.prior.hub_id == "kandinsky-community/kandinsky-2-2-prior"
