"""``synthbench generate``: a labelled synthetic Dataset from a trained generator or a pretrained
text-to-image pipeline.

The output folder OUT is the same currency as a prepared real Dataset::

    OUT/<class>/seed-000042.png     one image per seed, at the training size (--size)
    OUT/metadata.jsonl              Hugging Face imagefolder rows: file_name, label, class_name, split,
                                    generator, seed (+ prompt, negative_prompt, scheduler, steps, guidance)
    OUT/images.npy, labels.npy, splits.npy, items.jsonl, manifest.json (last): the packed form
    OUT/generate.json               the plan: everything that decides the images (checked on resume)
    OUT/generation.jsonl            one line per finished block of images: session, shard, images, seconds
    OUT/.synthbench, .synthbench*.lock   the ownership marker and the writers' locks (synthbench.safety)
    OUT-native/<class>/...png       the same images at the generator's native size, where it differs

Class folders are file-name-safe forms of the class names (:func:`synthbench.safety.safe_names`);
the real names are in the metadata. ``--overwrite`` replaces only a generation folder synthbench
wrote (its ``.synthbench`` marker lists everything in it), never an input or a foreign folder.

Reproducible and resumable:

- image ``i`` has seed ``seed + i`` (in its file name); its class and prompt follow from ``i`` and
  that seed alone;
- images are made in fixed blocks of ``batch_size`` consecutive indices, and a block with a
  missing file is made again whole: every image is computed in the same batch as in an
  uninterrupted run (batched floating point depends on the batch), so the files come out the same;
- a PNG is written under a temporary name and renamed, with its metadata row in a PNG text chunk:
  the metadata and the packed form are rebuilt from the PNGs alone, once all are there, so a
  killed run never leaves a manifest;
- ``--shard i/n`` and the processes of ``accelerate launch`` each take every n-th block; the
  metadata is written at the end by one process, or by ``synthbench data merge`` for shards;
- each writer holds a lock for its share of the blocks: a second process on an overlapping share
  of the same folder is refused with the holder named; every finished block is logged at once,
  so the images and seconds in the manifest add up over killed, resumed and sharded runs
  (:mod:`synthbench.generation_folder`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from synthbench.config import StrictModel
from synthbench.data.dataset import MANIFEST, Dataset, new_image_array, write_packed
from synthbench.data.export import UNLABELLED_FOLDER
from synthbench.data.imageio import ImageSpec, _fit
from synthbench.errors import ConfigError, DataError, SynthbenchError
from synthbench.generation_folder import (OWNED, OWNED_NATIVE, TIMING_FILE, Session, Shard, alone,
                                          locks_in, read_timings, row_key, totals, writing)
from synthbench.generators.base import MODEL_CONFIG
from synthbench.safety import (LOCK, MARKER, OwnershipError, check_apart, check_replaceable, mark_owned,
                               owned_kind, read_marker, safe_names, suggest_new)

__all__ = ["GenerateConfig", "GenerateReport", "SamplingOptions", "Shard", "generate", "merge",
           "finalize", "native_folder"]

PLAN_FILE = "generate.json"
PNG_KEY = "synthbench"          # PNG text chunk holding the image's metadata row
PIPELINE_SIZE = 256             # the source study's training size for text-to-image images
PLAN_FORMAT = 1
MAX_SEED = 2**32                # seed + count stays below this, so retry seeds never collide
MAX_COUNT = 10_000_000          # a typo'd count fails at once, not after filling memory with its plan


class GenerateConfig(StrictModel):
    """Options of ``synthbench generate``."""

    from_run: str | None = Field(None, description="A trained generator: a run folder (its model/) or a saved generator folder.")
    pipeline: str | None = Field(None, description="A text-to-image pipeline: a known name (sd21, realistic-vision-14, openjourney-v4, kandinsky-22, sdxl), a hub id or a local diffusers folder.")
    prior: str | None = Field(None, description="Kandinsky only: the prior pipeline (hub id or folder); default: the one its decoder names.")
    theme: str | None = Field(None, description="Text-to-image: a shipped theme (animals, fruits) or a theme YAML file.")
    subjects_from: str | None = Field(None, description="Text-to-image: take the theme's subjects from this prepared Dataset's class names.")
    count: int | None = Field(None, ge=1, description="Number of images; the classes take turns, so the counts are balanced.")
    per_class: int | None = Field(None, ge=1, description="Images per class (instead of count).")
    classes: list[str] | None = Field(None, description="Only these classes, in this order (default: all of the generator's or theme's).")
    seed: int = Field(0, ge=0, description="Seed of image 0; image i has seed + i.")
    batch_size: int = Field(8, ge=1, description="Images per sampling call (kept in the plan: batching changes floating-point results).")
    size: int | None = Field(None, ge=8, le=4096, description="Side of the saved training images; default 256 for pipelines (the source study's), the generator's own otherwise.")
    native_size: int | None = Field(None, ge=8, le=4096, description="Pipelines: side of the images they render (default: the pipeline's own, e.g. 768 for SD 2.1).")
    keep_native: bool = Field(True, description="Also keep every image at the generator's native size (in OUT-native) when --size differs from it.")
    resample: Literal["lanczos", "bicubic", "bilinear", "box"] = Field("bicubic", description="Filter used to resize to --size (centre crop first if not square).")
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of each class marked as the test split (default: all train).")
    sampler: str | None = Field(None, description="Pipelines: the scheduler (dpm++ by default, ddim, euler, euler-a, pndm, unipc, dpm++-karras, default); trained diffusion generators: passed to sample().")
    steps: int | None = Field(None, ge=1, description="Sampling steps (default: the pipeline's or generator's own).")
    guidance: float | None = Field(None, ge=0.0, description="Classifier-free guidance scale (default: the pipeline's own).")
    negative_prompt: str | None = Field(None, description="Negative prompt of every image (default: the theme's).")
    max_retries: int = Field(3, ge=0, description="Times an image blanked by the safety filter is rendered again with a new seed.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field("auto", description="Pipeline precision: auto = float16 on a GPU, float32 on a CPU.")
    cpu: bool = Field(False, description="Generate on the CPU even where a GPU is available.")
    variant: str | None = Field(None, description="Weight variant to load from the hub, e.g. fp16 (a smaller download).")
    allow_pickle: bool = Field(False, description="Allow pickled .bin weights (unpickling can run code: only for trusted sources).")
    name: str | None = Field(None, description="Generator name recorded in the metadata (default: the pipeline name or the run folder's).")

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if (self.from_run is None) == (self.pipeline is None):
            raise ValueError("give either --from (a trained generator) or --pipeline (text-to-image)")
        if (self.count is None) == (self.per_class is None):
            raise ValueError("give either --count or --per-class")
        if self.pipeline is not None and self.theme is None:
            raise ValueError("--pipeline needs --theme (animals, fruits or a theme YAML file)")
        if self.from_run is not None:
            only = {"theme": self.theme, "subjects_from": self.subjects_from, "prior": self.prior,
                    "negative_prompt": self.negative_prompt, "variant": self.variant,
                    "native_size": self.native_size}
            given = [k for k, v in only.items() if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: only for --pipeline (text-to-image), not for --from")
        if self.classes is not None and (not self.classes or len(set(self.classes)) != len(self.classes)):
            raise ValueError("classes must be a non-empty list of distinct names")
        return self


class SamplingOptions(TypedDict, total=False):
    """Extra options forwarded to a trained generator's ``sample()``, each only when given and
    only to a generator whose ``sample()`` has a keyword argument of that name."""

    sampler: str
    steps: int
    guidance: float


@dataclass
class GenerateReport:
    """What one call of :func:`generate` did."""

    out: Path
    generated: int            # images made by this call (this process)
    skipped: int              # images of this call's share that were already there
    seconds: float
    dataset: Dataset | None   # the finished Dataset; None while other shards still have to run


# ------------------------------------------------------------------------------ sources
class _Trained:
    """A trained Generator (DCGAN, diffusion, ...) opened with ``load_generator``."""

    def __init__(self, config: GenerateConfig):
        from synthbench.generators.base import load_generator

        path = Path(config.from_run)
        self.generator = load_generator(path)
        # The folder load_generator opened: a run's exported model/, or the generator folder itself.
        self.folder = path / "model" if (path / "model" / MODEL_CONFIG).is_file() else path
        self.name = config.name or path.resolve().name
        self.channels = self.generator.channels
        self.native_size = self.generator.resolution
        self.order = self._order(config)
        self.options = self._options(config)

    def _order(self, config: GenerateConfig) -> list[str]:
        gen = self.generator
        if not gen.conditional:
            if config.classes or config.per_class:
                raise SynthbenchError(f"{self.folder} is an unconditional {gen.kind} generator: it cannot "
                                      "make chosen classes; use --count without --classes/--per-class")
            return []
        return _choose(config.classes, gen.class_names, "the generator's classes")

    def _options(self, config: GenerateConfig) -> SamplingOptions:
        given: SamplingOptions = {}
        if config.sampler is not None:
            given["sampler"] = config.sampler
        if config.steps is not None:
            given["steps"] = config.steps
        if config.guidance is not None:
            given["guidance"] = config.guidance
        params = inspect.signature(self.generator.sample).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        refused = [k for k in given if k not in params and not takes_any]
        if refused:
            raise SynthbenchError(f"this {self.generator.kind} generator's sampling takes no "
                                  f"{', '.join('--' + k for k in refused)} option")
        return given

    def describe(self) -> dict[str, Any]:
        return {"source": "trained", "kind": self.generator.kind, "weights": _folder_digest(self.folder),
                "sampling": dict(self.options)}

    def details(self, subject: str | None, seed: int) -> dict[str, Any]:
        return {}

    def render(self, subjects: list[str | None], seeds: list[int]) -> list[tuple[np.ndarray, dict]]:
        gen = self.generator
        labels = [gen.class_names.index(s) for s in subjects] if gen.conditional else None
        # Blocks are runs of consecutive seeds, and sample() gives image k the seed seeds[0] + k.
        images = gen.sample(len(seeds), labels, seed=seeds[0], **self.options)
        # The settings as the generator resolved them (its defaults filled in), where it tells.
        used = dict(getattr(gen, "last_sampling", None) or self.options)
        return [(image, used) for image in images]

    def load(self, device) -> None:
        if hasattr(self.generator, "to"):
            self.generator.to(device)

    def runtime(self) -> dict[str, Any]:
        return {"device": str(getattr(self.generator, "device", "cpu"))}


class _Pipeline:
    """A pretrained text-to-image pipeline with a prompt theme; loaded only when images are due."""

    def __init__(self, config: GenerateConfig, device):
        from synthbench.generators.text2image import DEFAULT_SCHEDULER, SCHEDULERS, resolve_dtype, resolve_pipeline
        from synthbench.themes import load_theme

        sampler = config.sampler or DEFAULT_SCHEDULER
        if sampler not in SCHEDULERS:
            raise SynthbenchError(f"unknown sampler {sampler!r} for a pipeline; known: {', '.join(SCHEDULERS)}")
        theme = load_theme(config.theme, config.subjects_from)
        self.order = _choose(config.classes, theme.subjects, "the theme's subjects")
        self.theme = theme.with_subjects(self.order)
        self.source = resolve_pipeline(config.pipeline, prior=config.prior, allow_pickle=config.allow_pickle)
        self.config, self.sampler = config, sampler
        # What it reads from disk (--out may not overlap any of it): the theme, its Dataset, local weights.
        weights = [src.location for src in (self.source, self.source.prior) if src is not None and src.local]
        self.inputs = [*theme.inputs, *weights]
        self.dtype = str(resolve_dtype(config.dtype, device)).replace("torch.", "")
        self.name = config.name or self.source.name
        self.channels = 3
        self.generator = None

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"source": "text2image", "pipeline": self.source.describe(), "theme": self.theme.model_dump(),
                "sampling": {"scheduler": self.sampler, "steps": c.steps, "guidance": c.guidance,
                             "negative_prompt": c.negative_prompt, "max_retries": c.max_retries},
                "native_size": c.native_size, "dtype": self.dtype, "variant": c.variant}

    def load(self, device) -> None:
        from synthbench.generators.text2image import TextToImage

        c = self.config
        self.generator = TextToImage.open(
            self.source, self.theme, device=device, dtype=c.dtype, scheduler=self.sampler, steps=c.steps,
            guidance=c.guidance, negative_prompt=c.negative_prompt, max_retries=c.max_retries,
            allow_pickle=c.allow_pickle, variant=c.variant, size=c.native_size)

    @property
    def native_size(self) -> int:
        return self.generator.resolution

    def details(self, subject: str | None, seed: int) -> dict[str, Any]:
        # Settings as the loaded pipeline resolves them (its own defaults where none was given).
        return {"prompt": self.theme.prompt(subject, seed), **self.generator.settings()}

    def render(self, subjects: list[str | None], seeds: list[int]) -> list[tuple[np.ndarray, dict]]:
        prompts = [self.theme.prompt(s, seed) for s, seed in zip(subjects, seeds)]
        return [(r.image, {"sample_seed": r.sample_seed, "blank_retries": r.retries, "blank": r.blank})
                for r in self.generator.render(prompts, seeds)]

    def runtime(self) -> dict[str, Any]:
        pipe = self.generator.pipe
        return {"device": str(pipe.device), "dtype": str(pipe.dtype).replace("torch.", ""),
                "pipeline_class": type(pipe).__name__}


def _choose(wanted: list[str] | None, available: list[str], what: str) -> list[str]:
    if wanted is None:
        return list(available)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise SynthbenchError(f"unknown class(es) {', '.join(unknown)}; {what}: {', '.join(available)}")
    return list(wanted)


def _folder_digest(folder: Path) -> str:
    """Content hash of a saved model folder: the same weights give the same plan on any machine."""
    h = hashlib.blake2b(digest_size=12)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------ the plan
@dataclass
class _Layout:
    """Where each image goes, derived from the plan alone (so merge needs no model)."""

    subjects: list[str | None]
    labels: np.ndarray
    seeds: np.ndarray
    files: list[str]

    @classmethod
    def of(cls, plan: dict[str, Any]) -> _Layout:
        order, names = plan["classes"], plan["class_names"]
        n, first = plan["count"], plan["seed"]
        subjects = [order[i % len(order)] if order else None for i in range(n)]
        index = {name: i for i, name in enumerate(names)}
        labels = np.array([index[s] if s is not None else -1 for s in subjects], dtype=np.int64)
        seeds = first + np.arange(n, dtype=np.int64)
        # Class names may come from someone else's files: folders get safe names, the metadata the real ones.
        folder = dict(zip(names, safe_names(names)))
        files = [f"{folder[s] if s is not None else UNLABELLED_FOLDER}/seed-{int(seed):06d}.png"
                 for s, seed in zip(subjects, seeds)]
        return cls(subjects, labels, seeds, files)

    def folders(self) -> list[str]:
        return sorted({f.split("/", 1)[0] for f in self.files})

    def blocks(self, batch_size: int) -> list[range]:
        return [range(start, min(start + batch_size, len(self.files)))
                for start in range(0, len(self.files), batch_size)]


def _plan(config: GenerateConfig, source) -> dict[str, Any]:
    order = source.order
    count = config.count if config.count is not None else config.per_class * len(order)
    if count > MAX_COUNT:
        raise ConfigError(f"{count} images is more than one generation folder holds (at most {MAX_COUNT}); "
                          "lower --count or --per-class")
    if config.seed + count > MAX_SEED:
        # Image i has seed + i, and a retry adds multiples of 2**32: all must stay in torch's seed range.
        raise ConfigError(f"--seed {config.seed} is too large for {count} images: every image seed (seed + i) "
                          f"must stay below 2**32; use a seed of at most {max(0, MAX_SEED - count)}")
    size = config.size or (PIPELINE_SIZE if isinstance(source, _Pipeline) else source.native_size)
    plan = {"format": PLAN_FORMAT, "name": source.name, "generator": source.describe(),
            "classes": order, "class_names": sorted(order), "count": count, "seed": config.seed,
            "batch_size": config.batch_size, "size": size, "channels": source.channels,
            "resample": config.resample, "keep_native": config.keep_native,
            "test_fraction": config.test_fraction}
    plan = json.loads(json.dumps(plan))  # as it reads back from generate.json
    _check_test_split(plan)
    return plan


def _check_test_split(plan: dict[str, Any]) -> None:
    """Before any image is made: a test fraction must leave every class at least one test and one
    training image (a study needs both), or the user learns it only after the whole generation."""
    fraction = plan["test_fraction"]
    if fraction <= 0:
        return
    counts = Counter(_Layout.of(plan).subjects)
    counts.update({c: 0 for c in plan["classes"] if c not in counts})
    bad = {c: n for c, n in counts.items() if not 1 <= round(fraction * n) <= n - 1}
    if not bad:
        return
    subject, n = min(bad.items(), key=lambda kv: kv[1])
    need = _smallest_split_count(fraction)
    what = f"class {subject!r}" if subject is not None else "the images"
    raise ConfigError(f"--test-fraction {fraction} of {n} image(s) of {what} leaves {round(fraction * n)} for "
                      f"testing and {n - round(fraction * n)} for training; each class needs at least one of each: "
                      f"generate at least {need} images per class (e.g. --per-class {need}), or change --test-fraction")


def _smallest_split_count(fraction: float) -> int:
    """The fewest images a class needs so that ``round(fraction * n)`` is at least 1 and at most n - 1
    (both grow with n, so the first n that works, and every larger one, does)."""
    n = max(1, math.floor(0.5 / fraction) - 2)
    while not 1 <= round(fraction * n) <= n - 1:
        n += 1
    return n


def native_folder(out: str | os.PathLike) -> Path:
    """Where the native-size copies of ``out``'s images go."""
    out = Path(out)
    return out.with_name(out.name + "-native")


class DamagedPlan(DataError):
    """A generation folder's plan file cannot be read or is not a plan."""


def _read_plan(out: Path) -> dict[str, Any] | None:
    """The plan of a generation folder (None when it has none), checked: it may come from someone else."""
    file = out / PLAN_FILE
    if not file.is_file():
        return None
    try:
        plan = json.loads(file.read_text(encoding="utf-8"))
        problem = _plan_problem(plan)
    except (OSError, ValueError) as exc:
        problem = str(exc)
    if problem:
        raise DamagedPlan(f"{file} is damaged ({problem}); its folder cannot be resumed or merged: generate "
                          "into a new --out (or pass --overwrite to generate this one again)")
    return plan


def _plan_problem(plan: Any) -> str | None:
    """What is wrong with a plan read from disk, or None."""
    def whole(v: Any, low: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    if not isinstance(plan, dict):
        return "not a JSON object"
    if plan.get("format") != PLAN_FORMAT:
        return f"format {plan.get('format')!r}, expected {PLAN_FORMAT}"
    classes, names = plan.get("classes"), plan.get("class_names")
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)
            and isinstance(names, list) and names == sorted(set(classes)) and len(names) == len(classes)):
        return "classes and class_names are not one list of distinct names"
    if not (whole(plan.get("count"), 1) and whole(plan.get("seed"), 0) and whole(plan.get("batch_size"), 1)
            and whole(plan.get("size"), 1) and plan.get("channels") in (1, 3, 4)
            and plan["seed"] + plan["count"] <= MAX_SEED):
        return "count, seed, batch_size, size or channels out of range"
    fraction = plan.get("test_fraction")
    if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1 and isinstance(plan.get("keep_native"), bool)
            and isinstance(plan.get("name"), str) and isinstance(plan.get("generator"), dict)
            and isinstance(plan["generator"].get("source"), str)
            and plan.get("resample") in ("lanczos", "bicubic", "bilinear", "box")):
        return "test_fraction, keep_native, name, generator or resample malformed"
    return None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    parts = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        small = all(not isinstance(v, (dict, list)) for v in (a, b))
        parts.append(f"{k} ({a!r} -> {b!r})" if small else k)
    return ", ".join(parts)


# ------------------------------------------------------------------------------ the output folder
PACKED = ("metadata.jsonl", "images.npy", "labels.npy", "splits.npy", "items.jsonl", MANIFEST)


def _entries(plan: dict[str, Any]) -> list[str]:
    """Every top-level name synthbench may write into a generation folder of this plan."""
    return [PLAN_FILE, TIMING_FILE, LOCK, *PACKED, *_Layout.of(plan).folders()]


def _inputs(config: GenerateConfig, source) -> list[Path]:
    """Everything a generation reads: --out may not be, contain or lie inside any of it."""
    paths = [config.from_run, getattr(source, "folder", None), config.subjects_from, *getattr(source, "inputs", [])]
    return [Path(p) for p in paths if p is not None and Path(p).exists()]


def _check_output(out: Path, plan: dict[str, Any], inputs: list[Path], overwrite: bool) -> None:
    """Read-only checks of ``out`` and ``OUT-native`` before anything is loaded or written."""
    check_apart(out, inputs)
    check_replaceable_generation(out, what="--out")
    try:
        saved = _read_plan(out) if out.is_dir() else None
    except DamagedPlan:
        if not overwrite:
            raise
        saved = None  # --overwrite: the folder is synthbench's, and is about to be emptied
    if saved is not None and saved != plan and not overwrite:
        raise DataError(f"{out} was started with other options ({_differences(saved, plan)}); run the same "
                        "command as before to finish it, or choose another --out (or pass --overwrite)")
    native = native_folder(out)
    if not plan["keep_native"]:
        return  # never written, never removed: whatever is there is left alone
    try:
        check_apart(native, inputs, what="the native-size folder")
        check_replaceable(native, OWNED_NATIVE, what="the native-size folder")
    except OwnershipError:
        raise OwnershipError(f"the native-size copies of --out {out} go to {native}, which holds something "
                             f"else; choose another --out, or pass --no-native") from None
    if saved is None and not overwrite and native.is_dir() and any(native.iterdir()):
        raise DataError(f"{native} is left from an earlier generation into {out}; pass --overwrite to "
                        f"replace both, or choose another --out")


def check_replaceable_generation(out: Path, *, what: str) -> None:
    """:func:`check_replaceable` for generation folders, with a clear word for those of synthbench
    0.1.0 (a plan file but no marker): they cannot be told apart from a folder holding more."""
    if out.is_dir() and (out / PLAN_FILE).is_file() and read_marker(out) is None:
        raise OwnershipError(f"{what} {out} is a generation folder of an older synthbench (no .synthbench "
                             f"marker), so it is neither resumed nor replaced: choose a new folder, e.g. "
                             f"{suggest_new(out)}")
    check_replaceable(out, OWNED, what=what)


def _clear(out: Path, plan: dict[str, Any]) -> None:
    """--overwrite: empty ``out`` (a generation folder of synthbench's, checked again under its locks)
    and remove ``OUT-native`` where it is synthbench's too. Lock files and the marker stay."""
    native = native_folder(out)
    if out.is_dir() and read_marker(out) is not None:  # (an empty folder has nothing to clear)
        with alone(out):
            check_replaceable_generation(out, what="--out")
            for path in out.iterdir():
                if path.name in locks_in(out) or path.name == MARKER:
                    continue
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if (native.exists() or native.is_symlink()) and owned_kind(native) == OWNED_NATIVE:
        shutil.rmtree(native)


def _claim(out: Path, plan: dict[str, Any]) -> None:
    """Make ``out`` this plan's folder, or check that it already is (under this writer's lock)."""
    if _read_plan(out) is None:
        # Created only where absent (a hard link never replaces): two first writers cannot both win.
        tmp = out / f".{PLAN_FILE}.{os.getpid()}.{uuid.uuid4().hex[:6]}.part"
        tmp.write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        try:
            os.link(tmp, out / PLAN_FILE)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: the lock above is the only guard there
            if not (out / PLAN_FILE).exists():
                os.replace(tmp, out / PLAN_FILE)
        finally:
            tmp.unlink(missing_ok=True)
    saved = _read_plan(out)
    if saved != plan:
        raise DataError(f"{out} was started with other options ({_differences(saved, plan)}); run the same "
                        "command as before to finish it, or choose another --out (or pass --overwrite)")


def _mark_native(out: Path, plan: dict[str, Any]) -> None:
    native = native_folder(out)
    native.mkdir(parents=True, exist_ok=True)
    mark_owned(native, OWNED_NATIVE, ["metadata.jsonl", *_Layout.of(plan).folders()])


def _write_text(path: Path, text: str) -> None:
    # A name ending in .part: synthbench.safety counts a file left by a kill here as its own.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ generating
def _process_state():
    from accelerate import PartialState

    return PartialState()


def generate(config: GenerateConfig, out: str | os.PathLike, *, shard: Shard = Shard(),
             overwrite: bool = False, progress: bool = True) -> GenerateReport:
    """Generate ``config``'s images into ``out`` (this shard's and this process's share).

    Every check of the input and of ``out`` happens before anything is generated. When the whole
    plan is there (no shards, or the last images were made here) the metadata and the packed form
    are written and the finished Dataset is in the report; a finished folder is reused as it is.
    """
    out = Path(out)
    state = _process_state()
    device = torch.device("cpu") if config.cpu else state.device
    source = _Pipeline(config, device) if config.pipeline is not None else _Trained(config)
    plan = _plan(config, source)
    _check_output(out, plan, _inputs(config, source), overwrite)
    try:
        return _generate(config, out, plan, source, device, state, shard, overwrite, progress)
    except OSError as exc:  # a read-only or full disk, a folder that vanished: one line, not a traceback
        raise DataError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from exc


def _generate(config: GenerateConfig, out: Path, plan: dict[str, Any], source, device, state, shard: Shard,
              overwrite: bool, progress: bool) -> GenerateReport:
    if overwrite and state.is_main_process:
        _clear(out, plan)
    state.wait_for_everyone()
    layout = _Layout.of(plan)
    blocks = layout.blocks(plan["batch_size"])
    part = shard.within(state.process_index, state.num_processes)
    started = time.perf_counter()
    with writing(out, part, _entries(plan)):
        _claim(out, plan)
        mine = [(b, blocks[b]) for b in part.blocks(len(blocks))]
        # A finished folder (all images and the manifest there before this run) is reused as it is.
        finished = (out / MANIFEST).is_file() and all((out / f).is_file() for f in layout.files)
        present = {i for _, block in mine for i in block if (out / layout.files[i]).is_file()}
        todo = [(b, block) for b, block in mine if any(i not in present for i in block)]
        generated = 0
        if todo:
            source.load(device)
            session = Session(out, plan["name"], source, shard, state.process_index)
            generated = _make(out, plan, layout, source, todo, session,
                              progress and state.is_local_main_process)
            session.report(len(present), progress)
    seconds = time.perf_counter() - started
    state.wait_for_everyone()
    dataset = None
    if shard.count == 1:
        if state.is_main_process:
            dataset = Dataset.open(out) if finished else finalize(out, progress=progress)
        state.wait_for_everyone()
        if not state.is_main_process:
            dataset = Dataset.open(out)
    elif progress and state.is_main_process:
        print(f"shard {shard} of {out} is done; when every shard is, run 'synthbench data merge --out {out}'",
              file=sys.stderr)
    return GenerateReport(out=out, generated=generated, skipped=len(present), seconds=seconds, dataset=dataset)


def _make(out: Path, plan: dict[str, Any], layout: _Layout, source, todo: list[tuple[int, range]],
          session: Session, progress: bool) -> int:
    size, channels = plan["size"], plan["channels"]
    spec = ImageSpec(size=size, channels=channels, fit="crop", resample=plan["resample"])
    native = native_folder(out)
    made = 0
    bar = tqdm(total=sum(len(b) for _, b in todo), desc=f"generating {plan['name']!r}", unit="img",
               disable=not progress, file=sys.stderr, mininterval=0.5)
    for number, block in todo:
        started = time.perf_counter()
        subjects = [layout.subjects[i] for i in block]
        seeds = [int(layout.seeds[i]) for i in block]
        written = 0
        for i, (image, extra) in zip(block, source.render(subjects, seeds)):
            target = out / layout.files[i]
            if target.is_file():  # made by an earlier run, from the same batch: identical
                continue
            record = {"file_name": layout.files[i],
                      "label": int(layout.labels[i]) if layout.labels[i] >= 0 else None,
                      "class_name": layout.subjects[i], "generator": plan["name"],
                      "seed": int(layout.seeds[i]), **source.details(layout.subjects[i], int(layout.seeds[i])),
                      **extra}
            pixels = np.asarray(image, dtype=np.uint8)
            if pixels.ndim == 2:
                pixels = pixels[:, :, None]
            if pixels.shape[:2] != (size, size):
                if plan["keep_native"]:
                    if not session.native_marked:
                        _mark_native(out, plan)
                        session.native_marked = True
                    _write_png(native / layout.files[i], pixels, record)
                pixels = _resize(pixels, spec)
            # The training-size file is written last: its presence marks the image as done.
            _write_png(target, pixels, record)
            written += 1
        session.log(number, len(block), written, time.perf_counter() - started)
        made += written
        bar.update(len(block))
    bar.close()
    return made


def _resize(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    img = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    resized = np.asarray(_fit(img, spec))
    return resized[:, :, None] if resized.ndim == 2 else resized


def _write_png(path: Path, pixels: np.ndarray, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, json.dumps(record, ensure_ascii=True))
    # A hidden name ending in .tmp: image readers skip it, and only a finished file gets the real name.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ finishing
def finalize(out: str | os.PathLike, *, progress: bool = True) -> Dataset:
    """Write ``metadata.jsonl`` and the packed form of a generation folder whose images are all
    there (read back from the PNGs), then open it as a Dataset."""
    out = Path(out)
    plan = _read_plan(out)
    if plan is None:
        raise DataError(f"{out} is not a generation folder (no {PLAN_FILE})")
    layout = _Layout.of(plan)
    missing = [f for f in layout.files if not (out / f).is_file()]
    if missing:
        raise DataError(f"{out}: {len(missing)} of {len(layout.files)} images are still missing (e.g. "
                        f"{missing[0]}); run the remaining shards, or the same generate command again")
    # OUT-native is this folder's only when the plan keeps native copies and the marker says so.
    native = native_folder(out)
    ours = plan["keep_native"] and owned_kind(native) == OWNED_NATIVE
    for folder in (out, native) if ours else (out,):
        for stale in folder.glob("*/.*.tmp"):  # left by killed runs; no writer is active any more
            stale.unlink(missing_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    n, size, channels = len(layout.files), plan["size"], plan["channels"]
    images = new_image_array(out / "images.npy", (n, size, size, channels))
    records = []
    for i, file in enumerate(tqdm(layout.files, desc="packing", unit="img", disable=not progress,
                                  file=sys.stderr, mininterval=0.5)):
        pixels, record = _read_png(out / file)
        if pixels.shape != (size, size, channels) or record.get("seed") != int(layout.seeds[i]):
            raise DataError(f"{out / file} was not made by this folder's plan (size or seed differ); "
                            "remove it and generate again")
        images[i] = pixels
        # Where the image is and what it shows follow from the plan, never from the file's own record.
        records.append({**record, "file_name": file,
                        "label": int(layout.labels[i]) if layout.labels[i] >= 0 else None,
                        "class_name": layout.subjects[i], "generator": plan["name"], "seed": int(layout.seeds[i])})
    splits = _test_split(layout.labels, plan["test_fraction"], plan["seed"])
    rows = [{**r, "split": str(s)} for r, s in zip(records, splits)]
    _write_metadata(out, rows)
    if ours:
        _write_metadata(native, [r for r in rows if (native / r["file_name"]).is_file()])
    images.flush()
    write_packed(out, images, layout.labels, splits, plan["class_names"], rows, {
        "kind": "synthetic",
        "source": {"kind": plan["generator"]["source"], "generator": plan["name"], "path": str(out.resolve())},
        "plan": plan,
        "generation": {
            **totals(read_timings(out), len(layout.blocks(plan["batch_size"]))),
            "blank_retries": sum(r.get("blank_retries", 0) for r in records),
            "blank_kept": sum(bool(r.get("blank")) for r in records),
            "native_folder": str(native.resolve()) if ours else None,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    del images
    kept = sum(bool(r.get("blank")) for r in records)
    if kept and progress:
        print(f"warning: {kept} image(s) stayed blank after every retry (\"blank\": true in "
              f"{out / 'metadata.jsonl'}); drop them or raise --max-retries", file=sys.stderr)
    return Dataset.open(out)


def _read_png(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with Image.open(path) as img:
            text = getattr(img, "text", {}).get(PNG_KEY)
            pixels = np.asarray(img)
        record = json.loads(text) if text is not None else None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path} is damaged ({exc}); remove it and run the same generate command again") from None
    if not isinstance(record, dict):
        raise DataError(f"{path} has no synthbench record; it was not written by synthbench generate")
    return (pixels[:, :, None] if pixels.ndim == 2 else pixels), record


def _write_metadata(folder: Path, rows: list[dict[str, Any]]) -> None:
    _write_text(folder / "metadata.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _test_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """All "train", or a seeded share of each class marked "test"."""
    splits = np.full(len(labels), "train", dtype=object)
    if fraction > 0:
        rng = np.random.default_rng(seed)
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            splits[rng.permutation(members)[:int(round(fraction * len(members)))]] = "test"
    return splits.astype(str)


def merge(out: str | os.PathLike, shards: list[str | os.PathLike] = (), *, progress: bool = True) -> Dataset:
    """Gather shard folders of one plan into ``out`` (or finish ``out`` in place when the shards
    wrote there) and write its metadata and packed form. The shards are only read."""
    out = Path(out)
    folders: list[Path] = []
    for folder in map(Path, shards):
        if folder.resolve() != out.resolve() and all(folder.resolve() != f.resolve() for f in folders):
            folders.append(folder)
    plan = _read_plan(out) if out.is_dir() else None
    for folder in folders:
        theirs = _read_plan(folder) if folder.is_dir() else None
        if theirs is None:
            raise DataError(f"{folder} is not a generation folder (no {PLAN_FILE}); name the folders "
                            "'synthbench generate --shard' wrote")
        if plan is not None and theirs != plan:
            raise DataError(f"{folder} was generated with other options than {out} "
                            f"({_differences(plan, theirs)}); only shards of one plan can be merged")
        plan = theirs
    if plan is None:
        raise DataError(f"{out} is not a generation folder (no {PLAN_FILE}); name the shard folders to merge")
    natives = [native_folder(f) for f in folders if native_folder(f).is_dir()]
    check_apart(out, [*folders, *natives])
    if out.is_dir() and (out / PLAN_FILE).is_file() and read_marker(out) is None:
        # Advice that works: such a folder can still be read as a shard.
        raise OwnershipError(f"--out {out} is a generation folder of an older synthbench (no .synthbench marker); "
                             f"merge it into a new folder instead: synthbench data merge --out {suggest_new(out)} "
                             f"{out} ...")
    check_replaceable(out, OWNED, what="--out")
    if natives and plan["keep_native"]:
        try:
            check_apart(native_folder(out), [*folders, *natives], what="the native-size folder")
            check_replaceable(native_folder(out), OWNED_NATIVE, what="the native-size folder")
        except OwnershipError:
            raise OwnershipError(f"the native-size copies of --out {out} go to {native_folder(out)}, which holds "
                                 "something else; choose another --out") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        mark_owned(out, OWNED, _entries(plan))
        with alone(out):
            _claim(out, plan)
            _gather(out, plan, folders)
            return finalize(out, progress=progress)
    except OSError as exc:
        raise DataError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from exc


def _gather(out: Path, plan: dict[str, Any], folders: list[Path]) -> None:
    """Copy the shards' images (and native copies) that ``out`` lacks, and their timing rows once."""
    files = _Layout.of(plan).files
    for folder in folders:
        pairs = [(folder, out)]
        if plan["keep_native"] and native_folder(folder).is_dir():
            pairs.append((native_folder(folder), native_folder(out)))
        for src_root, dst_root in pairs:
            for file in files:
                src, dst = src_root / file, dst_root / file
                if src.is_file() and not src.is_symlink() and not dst.is_file():
                    if dst_root != out and not dst_root.is_dir():
                        _mark_native(out, plan)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, dst)
        known = {row_key(r) for r in read_timings(out)}
        new = [r for r in read_timings(folder) if row_key(r) not in known]
        if new:
            with open(out / TIMING_FILE, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in new))
