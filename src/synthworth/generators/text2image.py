"""Pretrained text-to-image pipelines (``diffusers``) as a Generator.

Where a pipeline comes from (:func:`resolve_pipeline`, which loads no weights):

1. a short name of a model of the source study (:data:`KNOWN_PIPELINES`) -> its hub id;
2. a local folder in ``diffusers`` format (``model_index.json``; ``save_pretrained`` or
   ``hf download ID --local-dir DIR``, formerly ``huggingface-cli download``, write one);
3. any other hub id ``owner/name``. A hub id found in the local Hugging Face cache is loaded from
   there; offline (``HF_HUB_OFFLINE=1``) a hub id that is not cached is an immediate error that
   says how to download it or point at a folder, instead of a wait for network timeouts.

Every pipeline is then loaded by ``AutoPipelineForText2Image`` (Kandinsky: its decoder and its
prior, combined), never with ``trust_remote_code``, and with safetensors weights only unless the
caller allows pickled ``.bin`` files (unpickling an untrusted file can run arbitrary code).

:class:`TextToImage` renders prompts with one seed per image; an image the safety filter
blanked (all black, or flagged) is rendered again with a new seed, a bounded number of times.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthworth.errors import SynthworthError
from synthworth.generators.base import Generator
from synthworth.themes import Theme

__all__ = ["KNOWN_PIPELINES", "SCHEDULERS", "PipelineError", "PipelineSource", "Rendered",
           "TextToImage", "resolve_pipeline", "retry_seed"]


@dataclass(frozen=True)
class KnownPipeline:
    hub_id: str
    title: str
    prior: str | None = None  # hub id of the prior pipeline a decoder needs


# The source study's generators (and SDXL base, which its code also wired in).
KNOWN_PIPELINES: dict[str, KnownPipeline] = {
    "sd21": KnownPipeline("stabilityai/stable-diffusion-2-1", "Stable Diffusion v2.1"),
    "realistic-vision-14": KnownPipeline("SG161222/Realistic_Vision_V1.4", "Realistic Vision v1.4"),
    "openjourney-v4": KnownPipeline("prompthero/openjourney-v4", "Openjourney v4"),
    "kandinsky-22": KnownPipeline("kandinsky-community/kandinsky-2-2-decoder", "Kandinsky v2.2",
                                  prior="kandinsky-community/kandinsky-2-2-prior"),
    "sdxl": KnownPipeline("stabilityai/stable-diffusion-xl-base-1.0", "SDXL base 1.0"),
}

# Scheduler names -> (diffusers class, options). "default" keeps the pipeline's own scheduler.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "default": None,
}
DEFAULT_SCHEDULER = "dpm++"

PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Decoders that draw from image embeddings made by a separate prior pipeline.
NEEDS_PRIOR = frozenset({"KandinskyPipeline", "KandinskyV22Pipeline"})
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# A retried image's seed moves by this much per attempt: far beyond any image index, so a retry
# never reuses the seed of another image of the same run.
RETRY_STRIDE = 2**32


class PipelineError(SynthworthError):
    """A text-to-image pipeline cannot be found, checked or loaded."""


def retry_seed(seed: int, attempt: int) -> int:
    """Seed of the ``attempt``-th retry of the image with ``seed`` (attempt 0 is the seed itself)."""
    return int(seed) + attempt * RETRY_STRIDE


# ------------------------------------------------------------------------------ where it comes from
@dataclass(frozen=True)
class PipelineSource:
    """A checked pipeline location; nothing is loaded yet."""

    spec: str                    # as the user gave it
    name: str                    # recorded as the images' generator
    location: str                # what diffusers loads: a local folder, or a hub id to download
    hub_id: str | None
    local: bool
    class_name: str              # model_index.json's pipeline class
    fingerprint: str             # hash of model_index.json and the component configs (local only)
    prior: PipelineSource | None = None

    def describe(self) -> dict[str, Any]:
        """What identifies the weights, without machine-specific paths (compared on resume/merge)."""
        out: dict[str, Any] = {"name": self.name, "hub_id": self.hub_id, "class": self.class_name}
        if self.hub_id is None:
            out["configs"] = self.fingerprint
        if self.prior is not None:
            out["prior"] = self.prior.describe()
        return out


def known_names() -> str:
    return ", ".join(KNOWN_PIPELINES)


def resolve_pipeline(spec: str, *, prior: str | None = None, allow_pickle: bool = False) -> PipelineSource:
    """Check a pipeline name, folder or hub id (and its prior) before anything heavy is loaded."""
    spec = str(spec)
    known = KNOWN_PIPELINES.get(spec)
    path = Path(spec).expanduser()
    if known is not None:
        source = _from_hub(known.hub_id, name=spec, spec=spec)
    elif path.is_dir():
        source = _from_folder(path, name=path.resolve().name, spec=spec, hub_id=None)
    elif path.exists() or spec.startswith((".", "/", "~")) or path.parent.is_dir() and path.parent.name:
        # (pipelines/sd21 with a local pipelines/ folder is a missing folder, not a hub id)
        raise PipelineError(f"pipeline folder {spec} does not exist (or is not a folder)")
    elif _HUB_ID.match(spec):
        source = _from_hub(spec, name=spec, spec=spec)
    else:
        raise PipelineError(f"unknown pipeline {spec!r}: use a known name ({known_names()}), a hub id "
                            "such as stabilityai/stable-diffusion-2-1, or a local folder in diffusers format")
    if source.local:
        _check_weights(Path(source.location), allow_pickle)
    needs_prior = source.class_name in NEEDS_PRIOR
    if prior is not None and not needs_prior:
        raise PipelineError(f"--prior only applies to decoders that need one (Kandinsky); "
                            f"{spec} is a {source.class_name}")
    if not needs_prior:
        return source
    prior_spec = prior or (known.prior if known else None) or _readme_prior(source)
    if not prior_spec:
        raise PipelineError(f"{spec} is a {source.class_name} decoder and needs its prior pipeline: "
                            "pass --prior with a hub id (e.g. kandinsky-community/kandinsky-2-2-prior) "
                            "or a local folder")
    prior_source = resolve_pipeline(prior_spec, allow_pickle=allow_pickle)
    return replace(source, prior=prior_source)


def _offline() -> bool:
    from huggingface_hub import constants

    # Read the variable now as well: the library reads it once, when it is imported.
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """The Hub's host name when a connection to it fails at once, else None.

    huggingface_hub retries a failed request five times with back-off (about 25 s) before it
    gives up; one plain connection attempt tells an offline machine in a moment. Behind a proxy
    only the library can tell, so it is left to try.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    try:
        with socket.create_connection((host, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout):
            return None
    except OSError:
        return host


def _cached_snapshot(hub_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "model_index.json")
    return Path(found).parent if isinstance(found, str) else None


def _from_hub(hub_id: str, *, name: str, spec: str) -> PipelineSource:
    snapshot = _cached_snapshot(hub_id)
    if snapshot is not None:
        # A cached copy is used as a folder: no network needed, and nothing changes under a run.
        return _from_folder(snapshot, name=name, spec=spec, hub_id=hub_id)
    get_it = (f"on a machine with network run 'hf download {hub_id} --local-dir DIR' "
              "and pass --pipeline DIR")
    if _offline():
        raise PipelineError(f"pipeline {hub_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                            f"is set: {get_it} (or unset HF_HUB_OFFLINE to download it now)")
    host = _hub_unreachable()
    if host:
        raise PipelineError(f"pipeline {hub_id} is not in the local Hugging Face cache and {host} cannot "
                            f"be reached: {get_it}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError)

    try:
        index = Path(hf_hub_download(hub_id, "model_index.json"))
    except GatedRepoError as exc:
        raise PipelineError(f"{hub_id} is gated: accept its licence on huggingface.co and log in "
                            "('hf auth login'), or download it and pass --pipeline DIR") from exc
    except RepositoryNotFoundError as exc:
        raise PipelineError(f"no pipeline {hub_id} on the Hugging Face Hub (check the name; known "
                            f"names: {known_names()})") from exc
    except LocalEntryNotFoundError as exc:  # (a subclass of EntryNotFoundError: test it first)
        raise PipelineError(f"cannot fetch {hub_id} from the Hugging Face Hub: {get_it}") from exc
    except EntryNotFoundError as exc:
        raise PipelineError(f"{hub_id} is not a diffusers pipeline (it has no model_index.json)") from exc
    except OSError as exc:
        raise PipelineError(f"cannot fetch {hub_id} from the Hugging Face Hub ({_first_line(exc)}): "
                            f"{get_it}") from exc
    class_name = _class_name(index)
    return PipelineSource(spec=spec, name=name, location=hub_id, hub_id=hub_id, local=False,
                          class_name=class_name, fingerprint="")


def _from_folder(folder: Path, *, name: str, spec: str, hub_id: str | None) -> PipelineSource:
    index = folder / "model_index.json"
    if not index.is_file():
        hint = " (it holds a single model, not a whole pipeline)" if (folder / "config.json").is_file() else ""
        raise PipelineError(f"{folder} is not a diffusers pipeline folder: no model_index.json{hint}; "
                            "save one with save_pretrained or download one with "
                            "'hf download ID --local-dir DIR'")
    return PipelineSource(spec=spec, name=name, location=str(folder), hub_id=hub_id, local=True,
                          class_name=_class_name(index), fingerprint=_config_fingerprint(folder))


def _class_name(index: Path) -> str:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        name = data["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{index} is not a valid diffusers model_index.json ({_first_line(exc)})") from None
    if not isinstance(name, str):
        raise PipelineError(f"{index}: _class_name is not a pipeline class name")
    return name


def _components(folder: Path) -> list[str]:
    """Sub-folders model_index.json lists as loadable components."""
    data = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    return sorted(k for k, v in data.items()
                  if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] and v[1])


def _config_fingerprint(folder: Path) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update((folder / "model_index.json").read_bytes())
    for component in _components(folder):
        for config in sorted((folder / component).glob("*config.json")):
            h.update(component.encode() + config.name.encode() + config.read_bytes())
    return h.hexdigest()


def _check_weights(folder: Path, allow_pickle: bool) -> None:
    """Refuse components whose only weights are pickles, unless explicitly allowed."""
    if allow_pickle:
        return
    pickled = []
    for component in _components(folder):
        files = [p for p in (folder / component).glob("*") if p.is_file()]
        if not any(p.suffix == ".safetensors" for p in files):
            pickled += [f"{component}/{p.name}" for p in files if p.suffix in PICKLED_SUFFIXES]
    if pickled:
        raise PipelineError(f"{folder} has pickled weights only ({', '.join(pickled[:4])}); loading a pickle "
                            "can run code hidden in it: convert the weights to safetensors, or pass "
                            "--allow-pickle if you trust where they came from")


def _readme_prior(source: PipelineSource) -> str | None:
    """The prior a decoder's model card names (the ``prior:`` key diffusers itself reads)."""
    readme = Path(source.location) / "README.md" if source.local else None
    if readme is None or not readme.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        priors = getattr(ModelCard.load(readme).data, "prior", None)
    except (OSError, ValueError):
        return None
    return priors[0] if isinstance(priors, list) and priors else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------ loading
def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # Half precision is the usual way to run these models on a GPU; CPUs want float32.
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def _load(source: PipelineSource, *, dtype: torch.dtype, allow_pickle: bool, variant: str | None):
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    def options(src: PipelineSource) -> dict[str, Any]:
        opts: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": src.local,
                                "use_safetensors": None if allow_pickle else True,
                                "trust_remote_code": False}
        if variant:
            opts["variant"] = variant
        return opts

    try:
        with warnings.catch_warnings():
            # Newer diffusers prefer `dtype=`; `torch_dtype=` works across all supported versions.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            if source.prior is None:
                return AutoPipelineForText2Image.from_pretrained(source.location, **options(source))
            decoder = DiffusionPipeline.from_pretrained(source.location, **options(source))
            prior = DiffusionPipeline.from_pretrained(source.prior.location, **options(source.prior))
            return AutoPipelineForText2Image.from_pipe(
                decoder, **{f"prior_{k}": v for k, v in prior.components.items()})
    except (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError) as exc:
        message = _first_line(exc)
        hint = ""
        if not allow_pickle and "safetensors" in str(exc).lower():
            hint = "; it seems to have no safetensors weights: pass --allow-pickle if you trust its .bin files"
        elif source.local and source.hub_id:
            hint = f"; the cached copy may be incomplete: run 'hf download {source.hub_id}'"
        raise PipelineError(f"cannot load pipeline {source.name} from {source.location}: {message}{hint}") from exc


def _set_scheduler(pipe, name: str) -> None:
    entry = SCHEDULERS[name]
    if entry is None:
        return
    import diffusers

    cls_name, extra = entry
    scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)
    pipe.scheduler = scheduler
    # Combined pipelines (Kandinsky) run a decoder sub-pipeline that holds its own reference.
    decoder = getattr(pipe, "decoder_pipe", None)
    if decoder is not None:
        decoder.scheduler = scheduler


def _call_default(pipe, parameter: str):
    param = inspect.signature(pipe.__call__).parameters.get(parameter)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _native_size(pipe) -> int:
    height = _call_default(pipe, "height")
    if isinstance(height, int):
        return height
    unet = getattr(pipe, "unet", None)
    sample = getattr(getattr(unet, "config", None), "sample_size", None)
    scale = getattr(pipe, "vae_scale_factor", None)
    if isinstance(sample, int) and isinstance(scale, int):
        return sample * scale
    raise PipelineError(f"cannot tell the image size of a {type(pipe).__name__}")


# ------------------------------------------------------------------------------ the generator
@dataclass
class Rendered:
    """One finished image and how it was obtained."""

    image: np.ndarray            # uint8 (H, W, 3) at the pipeline's native size
    sample_seed: int             # the seed that produced it (differs from the image's after a retry)
    retries: int                 # how many blank results were thrown away
    blank: bool                  # still blank after the last allowed retry


class TextToImage(Generator):
    """A pretrained text-to-image pipeline and a prompt theme: labels are the theme's subjects."""

    kind = "text2image"

    def __init__(self, pipe, source: PipelineSource, theme: Theme, *, scheduler: str,
                 steps: int | None = None, guidance: float | None = None,
                 negative_prompt: str | None = None, max_retries: int = 3, size: int | None = None):
        self.pipe, self.source, self.theme = pipe, source, theme
        self.class_names = list(theme.subjects)
        self.channels = 3
        accepted = inspect.signature(pipe.__call__).parameters
        if size is not None and not {"height", "width"} <= set(accepted):
            raise PipelineError(f"{source.name} ({type(pipe).__name__}) takes no image size")
        self.size = size  # None: the pipeline's own
        self.resolution = size or _native_size(pipe)
        self.scheduler = scheduler
        self.steps = int(steps if steps is not None else _call_default(pipe, "num_inference_steps"))
        chosen = guidance if guidance is not None else _call_default(pipe, "guidance_scale")
        self.guidance = None if chosen is None else float(chosen)
        self.negative_prompt = theme.negative_prompt if negative_prompt is None else negative_prompt
        if self.negative_prompt and "negative_prompt" not in accepted:
            raise PipelineError(f"{source.name} ({type(pipe).__name__}) takes no negative prompt")
        if guidance is not None and "guidance_scale" not in accepted:
            raise PipelineError(f"{source.name} ({type(pipe).__name__}) takes no guidance scale")
        self.max_retries = max_retries

    @classmethod
    def open(cls, source: PipelineSource, theme: Theme, *, device: torch.device | str,
             dtype: str = "auto", scheduler: str = DEFAULT_SCHEDULER, steps: int | None = None,
             guidance: float | None = None, negative_prompt: str | None = None,
             max_retries: int = 3, allow_pickle: bool = False, variant: str | None = None,
             size: int | None = None) -> TextToImage:
        """Load ``source`` onto ``device`` (fp16 on a GPU, fp32 on a CPU unless ``dtype`` says);
        ``size`` renders at that side instead of the pipeline's own."""
        if scheduler not in SCHEDULERS:
            raise PipelineError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
        device = torch.device(device)
        torch_dtype = resolve_dtype(dtype, device)
        pipe = _load(source, dtype=torch_dtype, allow_pickle=allow_pickle, variant=variant)
        _set_scheduler(pipe, scheduler)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        return cls(pipe, source, theme, scheduler=scheduler, steps=steps, guidance=guidance,
                   negative_prompt=negative_prompt, max_retries=max_retries, size=size)

    def settings(self) -> dict[str, Any]:
        """The per-image sampling settings recorded in the metadata."""
        return {"negative_prompt": self.negative_prompt, "scheduler": self.scheduler,
                "steps": self.steps, "guidance": self.guidance}

    def prompt(self, label: int, seed: int) -> str:
        return self.theme.prompt(self.class_names[label], seed)

    def _run(self, prompts: list[str], seeds: list[int]) -> tuple[list[np.ndarray], list[bool]]:
        kwargs: dict[str, Any] = {"num_inference_steps": self.steps, "output_type": "pil"}
        if self.size is not None:
            kwargs["height"] = kwargs["width"] = self.size
        if self.guidance is not None:
            kwargs["guidance_scale"] = self.guidance
        if self.negative_prompt:
            # Left out when empty: SDXL treats a missing negative prompt (zeros) differently from "".
            kwargs["negative_prompt"] = [self.negative_prompt] * len(prompts)
        # CPU generators: the same seed gives the same starting noise on any device.
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        with torch.inference_mode():
            out = self.pipe(prompt=list(prompts), generator=generators, **kwargs)
        images = [np.asarray(im.convert("RGB")) for im in out.images]
        flagged = getattr(out, "nsfw_content_detected", None) or [False] * len(images)
        # The safety filter replaces an image by an all-black one (and flags it, where it can).
        return images, [bool(f) or int(im.max()) == 0 for im, f in zip(images, flagged)]

    def render(self, prompts: list[str], seeds: list[int]) -> list[Rendered]:
        """One image per prompt, the image with seed ``s`` starting from noise seeded ``s``;
        blank results are rendered again alone with :func:`retry_seed` seeds."""
        images, blank = self._run(prompts, seeds)
        results = []
        for prompt, seed, image, is_blank in zip(prompts, seeds, images, blank):
            attempt, used = 0, int(seed)
            while is_blank and attempt < self.max_retries:
                attempt += 1
                used = retry_seed(seed, attempt)
                (image,), (is_blank,) = self._run([prompt], [used])
            results.append(Rendered(image=image, sample_seed=used, retries=attempt, blank=is_blank))
        return results

    def sample(self, n: int, labels=None, seed: int = 0) -> np.ndarray:
        labels = self.check_labels(n, labels)
        seeds = [seed + i for i in range(n)]
        prompts = [self.prompt(int(l), s) for l, s in zip(labels, seeds)]
        return np.stack([r.image for r in self.render(prompts, seeds)]) if n else \
            np.zeros((0, self.resolution, self.resolution, 3), np.uint8)

    def save(self, folder: str | Path) -> None:
        raise SynthworthError("a text-to-image pipeline is kept as its diffusers folder; use "
                              "pipe.save_pretrained, and --pipeline FOLDER to generate from it")

    @classmethod
    def load(cls, folder: str | Path) -> TextToImage:
        raise SynthworthError(f"{folder}: open text-to-image pipelines with --pipeline, not --from")
