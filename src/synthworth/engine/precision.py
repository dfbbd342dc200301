"""Reduced precision: whether the hardware computes bfloat16 natively, the record of a run's
precision, the warning when bf16 would only be emulated, and autocast for sampling.

``train.mixed_precision=bf16`` is Hugging Face ``accelerate``'s mixed precision: it wraps the
``forward`` of every prepared network in ``torch.autocast`` (bfloat16 on a CPU too), so matrix
products and convolutions run in bf16 while the weights, the gradients, the optimizer state, the
losses (computed on outputs cast back to fp32) and every checkpoint and exported model stay fp32.

A CPU computes bf16 natively with AMX (``amx_bf16``, Intel Sapphire Rapids and later) or
AVX-512 BF16 (``avx512_bf16``, Intel Cooper Lake, AMD Zen 4 and later); aarch64 CPUs list
``bf16`` among their features (Armv8.6). Without them bf16 kernels convert to and from fp32 as
they go, usually slower than plain fp32: bf16 is then still allowed, with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Any

import torch

from synthworth.errors import SynthworthError

CPUINFO = Path("/proc/cpuinfo")
# Flags of /proc/cpuinfo that mean native bf16 arithmetic (x86: "flags" lines; aarch64: "Features").
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
# Names a sampling ``dtype`` may take (as ``synthworth generate --dtype``) and their torch types.
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class PrecisionWarning(UserWarning):
    """Reduced precision was asked for where the hardware only emulates it."""


def native_bf16_from_cpuinfo(text: str) -> bool | None:
    """Whether the CPU described by ``text`` (the content of /proc/cpuinfo) has native bf16;
    None when the text lists no flags at all (another system's format)."""
    flags: set[str] = set()
    found = False
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in ("flags", "features"):
            found = True
            flags.update(value.split())
    return any(flag in flags for flag in NATIVE_BF16_FLAGS) if found else None


@functools.lru_cache(maxsize=1)
def cpu_native_bf16() -> bool | None:
    """Whether this machine's CPU computes bf16 natively: from /proc/cpuinfo, else from torch's
    own CPU feature probe (``torch.cpu.get_capabilities``, where it exists); None if unknown."""
    try:
        answer = native_bf16_from_cpuinfo(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        answer = None
    if answer is not None:
        return answer
    probe = getattr(torch.cpu, "get_capabilities", None)
    if probe is None:
        return None
    try:
        caps = probe()
    except Exception:  # noqa: BLE001 - a probe that fails says nothing either way
        return None
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16")) if isinstance(caps, dict) else None


def native_bf16(device: torch.device | str) -> bool | None:
    """Whether ``device`` computes bf16 natively (a CUDA GPU: compute capability 8.0 or more,
    emulation not counted); None for other devices."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_native_bf16()
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # an older torch without the keyword
            return bool(torch.cuda.is_bf16_supported())
    return None


def precision_record(mixed_precision: str, device: torch.device | str) -> dict[str, Any]:
    """What a run records of its precision (run.json, a study's results rows): the engine's
    ``mixed_precision`` setting, the device and whether it has native bf16."""
    return {"mixed_precision": mixed_precision, "device": str(device), "native_bf16": native_bf16(device)}


def warn_if_emulated(wanted: bool, device: torch.device | str, what: str) -> None:
    """One warning line when ``wanted`` (bf16 was asked for ``what``) on a CPU without native bf16."""
    device = torch.device(device)
    if wanted and device.type == "cpu" and cpu_native_bf16() is False:
        warnings.warn(f"{what}: this CPU has no native bf16 (neither AMX nor AVX-512 BF16), so bf16 is "
                      "emulated and usually slower than fp32; leave it out to compute in fp32",
                      PrecisionWarning, stacklevel=3)


def autocast(device: torch.device | str, dtype: str | None):
    """``torch.autocast`` on ``device`` in ``dtype`` ("bfloat16" or "float16"); no autocast for
    None or "float32". Sampling under it computes in reduced precision; images come out as before
    (``to_uint8`` casts to fp32 first)."""
    if dtype in (None, "float32"):
        return contextlib.nullcontext()
    if dtype not in AUTOCAST_DTYPES:
        raise SynthworthError(f"unknown sampling dtype {dtype!r}; choose float32, bfloat16 or float16")
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[dtype])


def use_precision(mixed_precision: str) -> None:
    """Let this process's next ``Accelerator`` take ``mixed_precision`` even when an earlier one
    (an fp32 run before a bf16 one: a study, a benchmark, a test session) set another.
    ``accelerate`` keeps one precision per process in a shared state and refuses a change; in a
    single process nothing else depends on it, so that state is cleared (the process and device
    state stay). A launched multi-process run keeps accelerate's refusal."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != mixed_precision and state.get("distributed_type") == DistributedType.NO:
        AcceleratorState._reset_state()


def drop_autocast(accelerator, modules: dict[str, torch.nn.Module]) -> None:
    """Give the networks ``accelerate`` prepared their own fp32 ``forward`` back: once training
    ends, a model a caller evaluates must score what the exported model scores when loaded."""
    for module in modules.values():
        accelerator.unwrap_model(module, keep_fp32_wrapper=False)
