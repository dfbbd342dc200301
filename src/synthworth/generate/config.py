"""The options of ``synthworth generate`` and their validation."""

from __future__ import annotations

from typing import Literal, TypedDict

from pydantic import Field, model_validator

from synthworth.config import StrictModel


class GenerateConfig(StrictModel):
    """Options of ``synthworth generate``."""

    from_run: str | None = Field(None, description="A trained generator: a run folder (its model/), a saved generator folder, or a folder of replicates (an equal share of the images from each).")
    pipeline: str | None = Field(None, description="A text-to-image pipeline: a known name (sd21, realistic-vision-14, openjourney-v4, kandinsky-22, sdxl), a hub id or a local diffusers folder.")
    prior: str | None = Field(None, description="Kandinsky only: the prior pipeline (hub id or folder); default: the one its decoder names.")
    theme: str | None = Field(None, description="Text-to-image: a shipped theme (animals, fruits) or a theme YAML file.")
    subjects_from: str | None = Field(None, description="Text-to-image: take the theme's subjects from this prepared Dataset's class names.")
    count: int | None = Field(None, ge=1, description="Number of images; the classes take turns, so the counts are balanced.")
    per_class: int | None = Field(None, ge=1, description="Images per class (instead of count).")
    class_counts: dict[str, int] | None = Field(None, description="Images of each class by name, e.g. a 'synthworth plan' file's (instead of count / per_class); every class of the generator named once, 0 allowed.")
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
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field("auto", description="Precision: pipelines load in it (auto = float16 on a GPU, float32 on a CPU); trained generators sample under autocast in bfloat16 or float16 (auto, float32: fp32, as trained).")
    cpu: bool = Field(False, description="Generate on the CPU even where a GPU is available.")
    variant: str | None = Field(None, description="Weight variant to load from the hub, e.g. fp16 (a smaller download).")
    allow_pickle: bool = Field(False, description="Allow pickled .bin weights (unpickling can run code: only for trusted sources).")
    name: str | None = Field(None, description="Generator name recorded in the metadata (default: the pipeline name or the run folder's).")

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if (self.from_run is None) == (self.pipeline is None):
            raise ValueError("give either --from (a trained generator) or --pipeline (text-to-image)")
        if sum(v is not None for v in (self.count, self.per_class, self.class_counts)) != 1:
            raise ValueError("give one of --count, --per-class or --plan (class_counts)")
        if self.class_counts is not None:
            bad = {k: v for k, v in self.class_counts.items() if v < 0}
            if bad or sum(self.class_counts.values()) < 1:
                raise ValueError(f"class_counts must be whole numbers >= 0 adding up to at least 1, got "
                                 f"{bad or self.class_counts}")
            if self.classes is not None:
                raise ValueError("class_counts (--plan) names the classes itself; drop --classes")
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
