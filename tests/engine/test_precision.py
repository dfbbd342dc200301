"""bf16 mixed precision on a CPU: the native-bf16 probe, the warning where bf16 is emulated, and a
classifier trained through the engine whose forward runs in bf16 while its losses, optimizer
state, checkpoints and exported model stay fp32 (and a resume goes on from them)."""

from __future__ import annotations

import contextlib
import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synthworth.classifiers import ClassifierConfig, load_classifier, train_classifier
from synthworth.classifiers.evaluate import probabilities
from synthworth.config import resolve_config
from synthworth.data.compose import subset
from synthworth.engine import precision
from synthworth.engine.precision import PrecisionWarning, native_bf16_from_cpuinfo
from synthworth.errors import SynthworthError

pytestmark = pytest.mark.usefixtures("single_thread")

X86 = ("processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: Some CPU\n"
       "flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw {extra}\n\n"
       "processor\t: 1\nflags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw {extra}\n")


@pytest.mark.parametrize("text,expected", [
    (X86.format(vendor="AuthenticAMD", extra="avx512_bf16 avx512_vnni"), True),       # Zen 4
    (X86.format(vendor="GenuineIntel", extra="amx_bf16 amx_tile amx_int8"), True),    # Sapphire Rapids
    (X86.format(vendor="GenuineIntel", extra="avx512_vnni"), False),                   # Skylake-SP: emulated
    ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16 i8mm\n", True),  # Armv8.6 aarch64
    ("processor\t: 0\nFeatures\t: fp asimd evtstrm crc32\n", False),
    ("no cpu description here\n", None),
])
def test_native_bf16_is_read_from_the_cpu_flags(text, expected):
    assert native_bf16_from_cpuinfo(text) is expected


def test_a_cpu_without_native_bf16_gets_one_warning_line(monkeypatch):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)
    with pytest.warns(PrecisionWarning) as caught:
        precision.warn_if_emulated(True, "cpu", "train.mixed_precision=bf16")
    (warning,) = caught
    text = str(warning.message)
    assert "\n" not in text and text.startswith("train.mixed_precision=bf16: this CPU has no native bf16")
    for native, wanted in ((True, True), (None, True), (False, False)):  # native, unknown, not asked: quiet
        monkeypatch.setattr(precision, "cpu_native_bf16", lambda native=native: native)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PrecisionWarning)
            precision.warn_if_emulated(wanted, "cpu", "x")


def _tiny(*overrides: str) -> ClassifierConfig:
    return resolve_config(ClassifierConfig, preset=("classifier", "tiny"),
                          overrides=["train.batch_size=16", "train.checkpoint_every=2", *overrides])


def floats(state: dict[str, torch.Tensor]) -> set[torch.dtype]:
    """The dtypes of a state dict's floating-point tensors (batch norm also counts its batches)."""
    return {t.dtype for t in state.values() if t.is_floating_point()}


@contextlib.contextmanager
def output_dtypes():
    """The output dtypes of every Conv2d and Linear called inside the block."""
    seen: list[torch.dtype] = []

    def hook(module, args, output):
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            seen.append(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def test_a_bf16_classifier_computes_in_bf16_and_keeps_fp32_state_and_resumes(digits16, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)  # the warning, whatever this CPU has
    train = subset(digits16.split("train"), count=48, seed=0)
    run = tmp_path / "run"
    with output_dtypes() as seen, pytest.warns(PrecisionWarning, match="no native bf16"):
        model, _ = train_classifier(train, run, _tiny("train.mixed_precision=bf16", "train.max_steps=2"))
    assert seen and set(seen) == {torch.bfloat16}  # every convolution and linear layer ran in bf16
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    # The checkpoint: fp32 weights and fp32 Adam moments; the exported model: fp32.
    checkpoint = run / "checkpoints" / "step-00000002"
    assert floats(load_file(str(checkpoint / "model.safetensors"))) == {torch.float32}
    adam = torch.load(checkpoint / "optimizer.bin", weights_only=True)["state"]
    assert {t.dtype for s in adam.values() for k, t in s.items() if k != "step"} == {torch.float32}
    assert floats(load_file(str(run / "model" / "model.safetensors"))) == {torch.float32}
    # run.json records the precision and what the CPU can do.
    start = json.loads((run / "run.json").read_text())["history"][0]
    assert start["precision"] == {"mixed_precision": "bf16", "device": "cpu", "native_bf16": False}
    # After training the model computes in fp32 and scores exactly what its exported copy scores.
    with output_dtypes() as after:
        probs = probabilities(model, digits16.split("test"), 256)
    assert set(after) == {torch.float32}
    np.testing.assert_array_equal(probs, probabilities(load_classifier(run / "model")[0], digits16.split("test"), 256))
    # A resume continues from the fp32 checkpoint, in bf16 again, and records it.
    with output_dtypes() as resumed, pytest.warns(PrecisionWarning):
        train_classifier(train, run, _tiny("train.mixed_precision=bf16", "train.max_steps=4"), resume=True)
    assert set(resumed) >= {torch.bfloat16}
    history = json.loads((run / "run.json").read_text())["history"]
    assert history[-1]["event"] == "resume" and history[-1]["precision"]["mixed_precision"] == "bf16"
    assert "finished after 4 steps" in (run / "log.txt").read_text()


def test_fp32_after_bf16_in_one_process_and_fp16_on_a_cpu_is_one_line(digits16, tmp_path):
    train = subset(digits16.split("train"), count=32, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        train_classifier(train, tmp_path / "bf16", _tiny("train.mixed_precision=bf16", "train.max_steps=1"))
    # accelerate keeps one precision per process; the engine lets the next run choose its own.
    with output_dtypes() as seen:
        train_classifier(train, tmp_path / "fp32", _tiny("train.max_steps=1"))
    assert set(seen) == {torch.float32}
    with pytest.raises(SynthworthError, match=r"^train.mixed_precision=fp16: not available on cpu \(fp16 needs a GPU; use train.mixed_precision=bf16 or no\)$"):
        train_classifier(train, tmp_path / "fp16", _tiny("train.mixed_precision=fp16", "train.max_steps=1"))
