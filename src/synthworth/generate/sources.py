"""Where the images come from: a trained generator or a pretrained text-to-image pipeline."""

from __future__ import annotations

import functools
import hashlib
import inspect
import platform
from pathlib import Path
from typing import Any

import numpy as np

from synthworth.errors import SynthworthError
from synthworth.generate.config import GenerateConfig, SamplingOptions
from synthworth.generators.base import model_config_file


class _Trained:
    """A trained Generator (DCGAN, diffusion, ...) opened with ``load_generator``."""

    def __init__(self, config: GenerateConfig):
        from synthworth.generators.base import load_generator

        path = Path(config.from_run)
        self.generator = load_generator(path)
        # The folder load_generator opened: a run's exported model/, or the generator folder itself.
        self.folder = path / "model" if model_config_file(path / "model").is_file() else path
        self.name = config.name or path.resolve().name
        self.channels = self.generator.channels
        self.native_size = self.generator.resolution
        self.order = self._order(config)
        self.options = self._options(config)

    def _order(self, config: GenerateConfig) -> list[str]:
        gen = self.generator
        if not gen.conditional:
            if config.classes or config.per_class or config.class_counts:
                raise SynthworthError(f"{self.folder} is an unconditional {gen.kind} generator: it cannot "
                                      "make chosen classes; use --count without --classes/--per-class/--plan")
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
        if config.dtype in ("bfloat16", "float16"):  # auto and float32: as trained (fp32), as before
            given["dtype"] = config.dtype
        params = inspect.signature(self.generator.sample).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        refused = [k for k in given if k not in params and not takes_any]
        if refused:
            raise SynthworthError(f"this {self.generator.kind} generator's sampling takes no "
                                  f"{', '.join('--' + k for k in refused)} option")
        check = getattr(self.generator, "sampling_options", None)
        if check is not None:
            # An unknown sampler or too many steps, refused now: before the plan is written (which
            # would then refuse the corrected command as "other options") and before any worker starts.
            check(given.get("sampler"), given.get("steps"), given.get("guidance"))
        return given

    def describe(self) -> dict[str, Any]:
        return {"source": "trained", "kind": self.generator.kind, "weights": _folder_digest(self.folder),
                "sampling": dict(self.options)}

    def details(self, subject: str | None, seed: int) -> dict[str, Any]:
        return {}

    def provenance(self) -> dict[str, Any]:
        """What the generator saw: the real Dataset its run recorded (run.json beside model/)."""
        from synthworth.data import provenance
        from synthworth.engine.run import RunFolder

        run = self.folder.parent if self.folder.name == "model" else self.folder
        info = RunFolder(run).info() if (run / "run.json").is_file() else None
        # A latent model also learnt from its autoencoder's data: recorded in the model when trained.
        prov = provenance.of_generator(info, where=str(self.folder), kind=self.generator.kind,
                                       autoencoder=getattr(self.generator, "autoencoder", None))
        if (run / "metrics.jsonl").is_file():  # the training run: its cost is read from there (metrics.cost)
            prov["run"] = str(run.resolve())
        return prov

    def render(self, subjects: list[str | None], seeds: list[int]) -> list[tuple[np.ndarray, dict]]:
        gen = self.generator
        labels = [gen.class_names.index(s) for s in subjects] if gen.conditional else None
        # Blocks are runs of consecutive seeds, and sample() gives image k the seed seeds[0] + k.
        images = gen.sample(len(seeds), labels, seed=seeds[0], **self.options)
        # The settings as the generator resolved them (its defaults filled in), where it tells.
        used = dict(getattr(gen, "last_sampling", None) or self.options)
        return [(image, used) for image in images]

    def load(self, device) -> None:
        from synthworth.engine.precision import warn_if_emulated

        if hasattr(self.generator, "to"):
            self.generator.to(device)
        warn_if_emulated(self.options.get("dtype") == "bfloat16", device, "--dtype bfloat16")

    def runtime(self) -> dict[str, Any]:
        from synthworth.engine.precision import native_bf16

        device = getattr(self.generator, "device", "cpu")
        extra = {"native_bf16": native_bf16(device)} if self.options.get("dtype") == "bfloat16" else {}
        return {"device": str(device), "device_name": device_name(device), **extra}


class _Replicated:
    """The replicates of one recipe (a folder of ``synthworth train --replicates``) as one source.

    Each replicate makes an equal share of the images: the images are dealt out in whole rounds of
    the classes (image ``i`` is in round ``i // C`` for ``C`` classes, 1 when unconditional) and the
    rounds in contiguous, equal ranges, round ``r`` of ``R`` going to replicate ``r * K // R``. So
    each replicate makes the same number of images of every class (to within one round), image
    ``i`` comes from the same replicate whatever the batches, shards or executor, and the seeds of
    a replicate's images are consecutive (one sampling call per replicate within a block). Each
    image's record names its replicate (``replicate``: its folder, ``replicate_seed``: its training
    seed); the plan and the provenance list them all."""

    def __init__(self, config: GenerateConfig):
        from synthworth.engine.replicates import members

        path = Path(config.from_run)
        self.replicates = members(path)
        self.parts = [_Trained(config.model_copy(update={"from_run": str(r.path), "name": r.name}))
                      for r in self.replicates]
        first = self.parts[0]
        for replicate, part in zip(self.replicates[1:], self.parts[1:]):
            gen, ref = part.generator, first.generator
            if (gen.kind, gen.resolution, gen.channels, gen.class_names) != (ref.kind, ref.resolution, ref.channels,
                                                                             ref.class_names):
                raise SynthworthError(f"{replicate.path} is not a replicate of {self.replicates[0].path} (another "
                                      "kind, size or classes); train the replicates again into a new folder")
        self.generator, self.folder = first.generator, path
        self.name = config.name or path.resolve().name
        self.channels, self.native_size, self.order, self.options = (first.channels, first.native_size, first.order,
                                                                     first.options)
        count = total_count(config, self.order)
        self.first_seed, self.round = config.seed, max(1, len(self.order))
        self.rounds = -(-count // self.round)

    def replicate_of(self, seed: int) -> int:
        """Which replicate makes the image of ``seed`` (see the class docstring)."""
        return (seed - self.first_seed) // self.round * len(self.parts) // self.rounds

    def describe(self) -> dict[str, Any]:
        listed = [{"name": r.name, "seed": r.seed, "weights": p.describe()["weights"]}
                  for r, p in zip(self.replicates, self.parts)]
        weights = hashlib.blake2b(json_key(listed).encode(), digest_size=12).hexdigest()
        return {**self.parts[0].describe(), "weights": weights, "replicates": listed}

    def details(self, subject: str | None, seed: int) -> dict[str, Any]:
        replicate = self.replicates[self.replicate_of(seed)]
        return {"replicate": replicate.name, "replicate_seed": replicate.seed}

    def provenance(self) -> dict[str, Any]:
        """The first replicate's (they trained on one Dataset: refused otherwise), and the list."""
        found = [p.provenance() for p in self.parts]
        seen = {json_key(p.get("trained_on")) for p in found}
        if len(seen) > 1:
            raise SynthworthError(f"the replicates in {self.folder} were trained on different Datasets; train them "
                                  "again into a new folder")
        from synthworth.data import provenance

        prov = {**found[0], "replicates": [{"name": r.name, "seed": r.seed} for r in self.replicates]}
        if prov.get("trained_on"):  # else its note says why the data is unknown; describe() adds the list
            prov["note"] = provenance.describe(prov)
        return prov

    def render(self, subjects: list[str | None], seeds: list[int]) -> list[tuple[np.ndarray, dict]]:
        out: list[tuple[np.ndarray, dict]] = []
        start = 0
        while start < len(seeds):  # runs of consecutive images of one replicate
            which = self.replicate_of(seeds[start])
            stop = start + 1
            while stop < len(seeds) and self.replicate_of(seeds[stop]) == which:
                stop += 1
            out += self.parts[which].render(subjects[start:stop], seeds[start:stop])
            start = stop
        return out

    def load(self, device) -> None:
        for part in self.parts:
            part.load(device)

    def runtime(self) -> dict[str, Any]:
        return self.parts[0].runtime()


def total_count(config: GenerateConfig, order: list[str]) -> int:
    """The number of images ``config`` asks for (its count, per class x classes, or its class counts' sum)."""
    if config.count is not None:
        return config.count
    if config.class_counts is not None:
        return sum(config.class_counts.values())
    return config.per_class * len(order)


def json_key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def trained_source(config: GenerateConfig):
    """The source of ``--from``: a replicates folder, or one trained generator."""
    from synthworth.engine.replicates import is_replicates

    return _Replicated(config) if is_replicates(config.from_run) else _Trained(config)


class _Pipeline:
    """A pretrained text-to-image pipeline with a prompt theme; loaded only when images are due."""

    def __init__(self, config: GenerateConfig, device):
        from synthworth.generators.text2image import DEFAULT_SCHEDULER, SCHEDULERS, resolve_dtype, resolve_pipeline
        from synthworth.themes import load_theme

        sampler = config.sampler or DEFAULT_SCHEDULER
        if sampler not in SCHEDULERS:
            raise SynthworthError(f"unknown sampler {sampler!r} for a pipeline; known: {', '.join(SCHEDULERS)}")
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

    def provenance(self) -> dict[str, Any]:
        from synthworth.data import provenance

        return provenance.pretrained(self.source.hub_id or self.source.spec)

    def load(self, device) -> None:
        from synthworth.generators.text2image import TextToImage

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
        return {"device": str(pipe.device), "device_name": device_name(pipe.device),
                "dtype": str(pipe.dtype).replace("torch.", ""),
                "pipeline_class": type(pipe).__name__}


def device_name(device) -> str:
    """The device images are sampled on, for people: ``cuda: NVIDIA H100 80GB HBM3``, or
    ``cpu: AMD EPYC 7B13 (2 threads)`` (the processor's model and torch's thread count)."""
    import torch

    try:
        device = torch.device(device)
    except (TypeError, RuntimeError):  # a generator's own device attribute that torch cannot read
        return str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu: {_cpu_model()} ({torch.get_num_threads()} threads)"
    return f"{device.type}: {platform.machine() or 'unknown machine'}"


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    """The processor's model name: Linux's /proc/cpuinfo (read by hand: one line of a text file;
    py-cpuinfo is no dependency and takes a second), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown processor"


def _choose(wanted: list[str] | None, available: list[str], what: str) -> list[str]:
    if wanted is None:
        return list(available)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise SynthworthError(f"unknown class(es) {', '.join(unknown)}; {what}: {', '.join(available)}")
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
