"""``synthworth metrics --features dinov2`` given a model that is not one: a folder of another
model, pickled weights only, a hub id while offline, a truncated weights file, another model's
weights under a DINOv2 config. Each is one line (exit 2) that says what to do, nothing written."""

from __future__ import annotations

import socket

import pytest
import torch
from adversarial_helpers import snapshot

pytestmark = pytest.mark.usefixtures("single_thread")

DOWNLOAD = "hf download facebook/dinov2-large config.json model.safetensors --local-dir DIR"


def save_tiny_dinov2(folder):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             patch_size=14, image_size=28)).save_pretrained(folder)
    return folder


def save_tiny_bert(folder):
    """A BERT model's folder (its config and safetensors weights), without building the model."""
    from safetensors.torch import save_file
    from transformers import BertConfig

    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
               vocab_size=50).save_pretrained(folder)
    save_file({"embeddings.word_embeddings.weight": torch.zeros(50, 16),
               "encoder.layer.0.attention.self.query.weight": torch.zeros(16, 16)}, folder / "model.safetensors")
    return folder


@pytest.fixture
def metrics(tmp_path, digits_small, refused):
    """``metrics(weights, match)``: the CLI refuses --dinov2-weights ``weights`` with one line,
    writes no --out file and changes nothing under tmp_path."""

    def run(weights, match):
        before = snapshot(tmp_path)
        line = refused("metrics", "--real", digits_small.path, "--fake", digits_small.path, "--features", "dinov2",
                       "--dinov2-weights", weights, "--out", tmp_path / "m.json", "-q", match=match)
        assert snapshot(tmp_path) == before
        return line

    return run


@pytest.mark.parametrize("kind", ["bert", "empty"])
def test_a_folder_that_is_not_a_dinov2_model(tmp_path, metrics, kind):
    folder = tmp_path / kind
    if kind == "bert":
        save_tiny_bert(folder)
        metrics(folder, match=("holds a bert model, not DINOv2", DOWNLOAD))
    else:
        folder.mkdir()
        metrics(folder, match=("is not a Hugging Face model folder (no config.json)", DOWNLOAD))


def test_pickled_weights_only_are_not_read(tmp_path, metrics):
    folder = save_tiny_dinov2(tmp_path / "pickled")
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    metrics(folder, match=("has no model.safetensors (it has pytorch_model.bin: pickled weights are not read)",
                           DOWNLOAD))


def test_a_hub_id_while_offline_fails_at_once_with_the_download_command(tmp_path, metrics, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("went to the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    metrics("facebook/dinov2-large", match=("facebook/dinov2-large is neither a folder here nor in the local "
                                            "Hugging Face cache", "HF_HUB_OFFLINE is set", DOWNLOAD,
                                            "--dinov2-weights DIR"))


def test_a_truncated_weights_file(tmp_path, metrics):
    folder = save_tiny_dinov2(tmp_path / "truncated")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    metrics(folder, match=("cannot read the DINOv2 model in", "the download may be incomplete", DOWNLOAD))


def test_another_models_weights_under_a_dinov2_config(tmp_path, metrics):
    """Loaded as is, every layer would be random: features of noise, numbers that look fine."""
    folder = save_tiny_dinov2(tmp_path / "mixed")
    bert = save_tiny_bert(tmp_path / "bert-weights")
    (folder / "model.safetensors").write_bytes((bert / "model.safetensors").read_bytes())
    metrics(folder, match=("lacks weights the DINOv2 model needs", DOWNLOAD))


@pytest.mark.parametrize("setting, match", [
    ({"num_channels": 1}, "a DINOv2 model for 1-channel images"),
    ({"patch_size": 300}, "patch_size 300"),
])
def test_a_dinov2_whose_input_the_images_cannot_be(tmp_path, metrics, setting, match):
    """1 channel or a patch larger than the 224 px images: refused, not a traceback in the forward pass."""
    from transformers import Dinov2Config, Dinov2Model

    folder = tmp_path / "odd"
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             image_size=28, **setting)).save_pretrained(folder)
    metrics(folder, match=(match, DOWNLOAD))
