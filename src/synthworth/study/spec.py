"""The study spec: which Datasets, compositions, sizes, seeds and classifier (a YAML file).

Example (the bundled digits, scarce real data, two generators)::

    name: digits-scarce
    real: data/digits                  # its train split is the real pool, its test split the test set
    synthetic:
      dcgan: data/digits-dcgan
      ddpm: {path: data/digits-ddpm}   # or with class_map: {their_name: real_name}
    compositions: [real, artificial, mixed, subset_real]
    sizes: [50, 100, 200]              # training-set size of real / artificial / mixed
    seeds: [0, 1, 2]
    replicates: per_seed               # a Dataset from K generator replicates: seed i draws from replicate i mod K
    classifier_preset: small
    classifier: {train: {epochs: 20}} # any ClassifierConfig key over the preset
    metrics: {enabled: true}
    filters: [none, confidence, clip]  # also train on each synthetic Dataset filtered (see below)
    filter_keep: 0.5                   # each filter keeps this share of each class
    clip_model: models/clip-vit-b32    # the clip filter's CLIP (a save_pretrained folder or a hub id)
    clip_theme: digits-theme.yaml      # its prompts where a Dataset records no theme

Filters: ``confidence`` keeps, per class, the ``filter_keep`` share of a synthetic Dataset's
images that a classifier labels as their intended class with the highest probability. That
classifier (the study's classifier config) is trained only on the real data the generator itself
was trained on (its ``provenance``), so filtering adds no real information the generator did not
have; a generator whose real data is unknown or unavailable (a pretrained pipeline) is refused.
``clip`` keeps the share whose CLIP image embedding is closest to their class's prompts (those of
the theme a text-to-image Dataset records, else of ``clip_theme``; see study/clip_filter.py).
Every composition that draws synthetic images then runs once per filter (``none``: unfiltered).

Relative paths are relative to the spec file's folder.

Every list that forms an axis of the grid (sizes, per_class, compositions, seeds, ratios,
augment_factors, comparisons) and the generator names must be free of repeats: a repeated seed
would be one training counted twice in every mean, interval and test, so a repeat is refused
(naming the key and the value), never merged silently. A key given twice in the YAML file
(where the last one would silently win) is refused too.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from synthworth.config import StrictModel, read_yaml, resolve_config
from synthworth.errors import ConfigError
from synthworth.metrics.compute import MetricsConfig
from synthworth.metrics.features import FEATURES, check_features

COMPOSITIONS = ("real", "artificial", "mixed", "subset_real", "augmented", "ratio_sweep")
# Compositions whose training set holds no synthetic image: trained once, not once per generator.
REAL_ONLY = ("real", "subset_real")
Composition = Literal["real", "artificial", "mixed", "subset_real", "augmented", "ratio_sweep"]
FILTERS = ("none", "confidence", "clip")
Filter = Literal["none", "confidence", "clip"]
PRECISIONS = ("fp32", "bf16")
Precision = Literal["fp32", "bf16"]
# The classifier's train.mixed_precision of each study precision.
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16"}
BUDGETS = ("epochs", "steps", "converge")
Budget = Literal["epochs", "steps", "converge"]
# Seeds reach numpy's legacy seeding (< 2**32) and a cell's second draw uses seed + 1: keep
# them in a range every library takes.
MAX_SEED = 2**31 - 1


class SyntheticSpec(StrictModel):
    """One generator's synthetic Dataset."""

    path: str = Field(description="Folder of the synthetic Dataset.")
    class_map: dict[str, str | None] = Field({}, description="Synthetic class name -> real class name (null drops the class).")
    test_split: str = Field("test", description="Split held out for testing; without it, a share of the images is held out.")
    draw: Literal["balanced", "as_generated"] = Field("balanced", description="How cells draw this Dataset's images: balanced (every composition holds real's per-class counts) or as_generated (the synthetic part keeps the Dataset's own class proportions, e.g. a 'synthworth plan'; the real part stays balanced; its synthetic test set may then lack a class it holds too few images of).")


class StudyMetricsSpec(MetricsConfig):
    """Image-quality metrics per generator, written into the results folder."""

    enabled: bool = Field(False, description="Compute FID / KID / precision / recall / density / coverage per generator.")


class ResourcesSpec(StrictModel):
    """What one cell asks of a Ray cluster (--executor ray): e.g. {gpus: 0.25, cpus: 2} lets four
    small classifiers share a GPU."""

    cpus: float = Field(1.0, gt=0, description="CPU cores one cell reserves.")
    gpus: float = Field(0.0, ge=0, description="GPUs (or a share of one) one cell reserves; 0: CPU only.")
    max_retries: int = Field(3, ge=0, description="Times Ray reruns a cell whose worker or node died.")


class StudySpec(StrictModel):
    """A grid of classifier trainings: composition x generator x size x seed."""

    name: str = Field("study", description="Name of the study (a column of every table).")
    out: str | None = Field(None, description="Results folder (default: <spec file name>-results beside the spec).")
    real: str = Field(description="Folder of the real Dataset.")
    real_train_split: str = Field("train", description="Split of the real Dataset that is the real training pool.")
    real_test_split: str = Field("test", description="Split of the real Dataset every classifier is tested on.")
    synthetic: dict[str, SyntheticSpec] = Field({}, description="Generator name -> its synthetic Dataset (a path or a mapping).")
    synthetic_holdout: float = Field(0.2, gt=0, lt=1, description="Share of a synthetic Dataset held out for testing when it has no test split.")
    compositions: list[Composition] = Field(["real", "artificial", "mixed", "subset_real"], min_length=1, description="Training-set compositions to run.")
    sizes: list[int] | None = Field(None, description="Training-set sizes in images (default [1000], the source study's; subset_real: the real half of mixed).")
    per_class: list[int] | None = Field(None, description="Images per class instead of sizes (size = per_class x classes).")
    ratio: float = Field(0.5, ge=0, le=1, description="Synthetic share of mixed (0.5: the source study's 50/50).")
    ratios: list[float] = Field([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], min_length=1, description="Synthetic shares of ratio_sweep at each size.")
    augment_factors: list[float] = Field([1.0], min_length=1, description="augmented: all real images of the size plus k x as many synthetic ones, for each k.")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Seeds of the data draws and of the classifier.")
    replicates: Literal["per_seed", "pooled"] = Field("per_seed", description=(
        "How cells draw from a synthetic Dataset generated from K >= 2 generator replicates ('generate --from' a "
        "'train --replicates' folder). per_seed: the i-th seed draws from replicate i mod K alone, so the seeds' "
        "spread and every interval hold the generator's retraining. pooled: every cell draws from all of them "
        "(for a Dataset too small to split K ways, or to value the K networks' images together); no interval "
        "then covers retraining. No effect on other Datasets. See study/replicates.py."))
    classifier_preset: str = Field("thesis", description="Classifier preset (thesis: the source study's ResNet-34; small; tiny).")
    classifier: dict[str, Any] = Field({}, description="ClassifierConfig keys over the preset, e.g. {train: {epochs: 10}}.",
                                       json_schema_extra={"config_model": "synthworth.classifiers.task:ClassifierConfig"})
    budget: Budget = Field("steps", description=(
        "Training budget of every cell. steps (the default): every cell runs the same number of optimizer "
        "steps (budget_steps, by default what the largest size trains under epochs), whatever its size, so "
        "a learning curve measures data at fixed compute. epochs (the default of earlier versions; set it "
        "to keep the cells of their results): the classifier's train.epochs (min_steps floors it), so a "
        "larger training set also gets more optimizer steps and the curve measures data and compute "
        "together. converge: a "
        "stratified share (budget_validation) of each cell's own training set is held out and training "
        "stops after budget_patience epochs without a lower validation loss (at most budget_steps steps), "
        "keeping the best epoch's weights; the curve measures data with each set trained to its own best. "
        "Each cell records its budget, epochs and optimizer steps in results.csv. See the README's "
        "'Training budget'."))
    budget_steps: int | None = Field(None, ge=1, description=(
        "Optimizer steps of every cell under budget steps, and the cap under converge. Null: the steps the "
        "largest size's cell trains under budget epochs (train.epochs x batches per epoch of that size, "
        "min_steps applied), so the largest cell trains as before and every smaller one as long."))
    budget_patience: int = Field(10, ge=1, description="converge: epochs without a lower validation loss before a cell stops.")
    budget_validation: float = Field(0.2, gt=0, lt=1, description="converge: share of each class of a cell's training set held out for validation (at least one image of every class with two or more).")
    comparisons: list[tuple[Composition, Composition]] = Field(
        [("real", "artificial"), ("real", "mixed"), ("mixed", "subset_real")],
        description="Pairs of compositions compared on the same seeds (difference, 95% CI, p-value).")
    filters: list[Filter] = Field(["none"], min_length=1, description="Filters applied to each synthetic Dataset before cells draw from it: none (unfiltered), confidence (keep the images a classifier trained on the generator's own real data finds most clearly of their class), clip (keep the images whose CLIP embedding agrees best with their class's prompt).")
    filter_keep: float = Field(0.5, gt=0, le=1, description="Share of each class every filter keeps (0 < keep <= 1).")
    clip_model: str | None = Field(None, description="CLIP model of the clip filter: a folder written by CLIPModel and CLIPProcessor save_pretrained (relative to the spec), or a hub id; null: ${SYNTHWORTH_CLIP_WEIGHTS}, else openai/clip-vit-base-patch32.")
    clip_theme: str | None = Field(None, description="Prompts of the clip filter for a synthetic Dataset that records no theme: a shipped theme (animals, fruits) or a theme YAML file (relative to the spec); a text-to-image Dataset's own theme is used where recorded.")
    allow_test_leakage: bool = Field(False, description="Run even when a generator (or the filter that made its Dataset) was trained on real test images of this study; every affected number is then marked (test_leakage column, report, study exchange).")
    precision: Precision = Field("fp32", description=(
        "Arithmetic of every classifier the study trains: fp32 (the default), or bf16 (bfloat16 autocast "
        "through accelerate: faster where the CPU has AMX or AVX-512 BF16, or on a recent GPU; weights, "
        "optimizer state and evaluation stay fp32). bf16 is part of each cell's key (other cells); fp32 "
        "keeps the keys of earlier results. Set it here, not as classifier.train.mixed_precision."))
    threads: int | None = Field(None, ge=1, description="Torch CPU threads of each cell (null: 1). Fixed, whatever the workers: a cell's numbers depend on it, so it is part of each cell's key (another count trains the cells again).")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="What each cell reserves on a Ray cluster (--executor ray).")
    metrics: StudyMetricsSpec = Field(default_factory=StudyMetricsSpec, description="Image-quality metrics per generator.")

    @model_validator(mode="before")
    @classmethod
    def _fill_in(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("sizes") is None and data.get("per_class") is None:
            data = {**data, "sizes": [1000]}
        if isinstance(data, dict) and isinstance(data.get("synthetic"), dict):
            data = {**data, "synthetic": {k: ({"path": v} if isinstance(v, str) else v)
                                          for k, v in data["synthetic"].items()}}
        return data

    @field_validator("sizes", "per_class", "compositions", "seeds", "ratios", "augment_factors", "comparisons",
                     "filters")
    @classmethod
    def _no_repeats(cls, values: list | None) -> list | None:
        seen: list = []
        for value in values or []:
            if value in seen:
                raise ValueError(f"{value!r} is listed twice; give each value once (a repeat would be counted "
                                 "twice in every mean, interval and test)")
            seen.append(value)
        return values

    @field_validator("seeds")
    @classmethod
    def _seed_range(cls, seeds: list[int]) -> list[int]:
        bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
        if bad:
            raise ValueError(f"seeds must lie between 0 and {MAX_SEED}, got {bad[0]}")
        return seeds

    @field_validator("synthetic")
    @classmethod
    def _distinct_generators(cls, synthetic: dict[str, SyntheticSpec]) -> dict[str, SyntheticSpec]:
        # Generator names become file names (metrics/<name>.json): names that differ only by case
        # would be one file on a case-insensitive disk.
        seen: dict[str, str] = {}
        for name in synthetic:
            other = seen.setdefault(name.casefold(), name)
            if other != name:
                raise ValueError(f"generator names {other!r} and {name!r} differ only by case; give each "
                                 "generator a distinct name")
        return synthetic

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if (self.sizes is None) == (self.per_class is None):
            raise ValueError("give sizes or per_class, not both")
        counts = self.sizes if self.sizes is not None else self.per_class
        if not counts or any(n < 1 for n in counts):
            raise ValueError("sizes / per_class must be a non-empty list of positive integers")
        if any(not 0 <= r <= 1 for r in self.ratios):
            raise ValueError(f"ratios must lie within [0, 1], got {self.ratios}")
        if any(k <= 0 for k in self.augment_factors):
            raise ValueError(f"augment_factors must be positive, got {self.augment_factors}")
        needs_synthetic = [c for c in self.compositions if c not in REAL_ONLY]
        if needs_synthetic and not self.synthetic:
            raise ValueError(f"compositions {needs_synthetic} need at least one synthetic Dataset (key 'synthetic')")
        filters = [f for f in self.filters if f != "none"]
        if filters and not needs_synthetic:
            raise ValueError(f"filters {filters} apply to synthetic images, but the compositions {self.compositions} "
                             "draw none; use filters: [none], or add a composition such as artificial or mixed")
        if filters and "none" not in self.filters:
            # every comparison (composition, generator, filter) is made against unfiltered cells
            raise ValueError(f"filters {self.filters} leave no unfiltered cells, so the study could compare nothing "
                             "(each filter's effect is measured against the unfiltered cells); use "
                             f"filters: [none, {', '.join(filters)}]")
        if self.budget_steps is not None and self.budget == "epochs":
            raise ValueError(f"budget_steps {self.budget_steps} applies to budget: steps or converge, but the "
                             "budget is epochs; set budget: steps (or remove budget_steps)")
        bad = [name for name in self.synthetic if not name or "/" in name or name.startswith(".")]
        if bad:
            raise ValueError(f"generator names must be plain names, got {bad}")
        return self


def load_spec(spec: str | os.PathLike | StudySpec, overrides: tuple[str, ...] | list[str] = ()) -> tuple[StudySpec, Path]:
    """Read and validate a spec file (plus ``key=value`` overrides). Returns the spec with its
    paths made absolute, and the folder relative paths were resolved against."""
    if isinstance(spec, StudySpec):
        base = Path.cwd()
        loaded = spec if not overrides else resolve_config(StudySpec, base=(spec.model_dump(), "the spec"),
                                                           overrides=overrides)
    else:
        path = Path(spec)
        _refuse_saved_copy(path, read_yaml(path))  # a missing file or bad YAML is a ConfigError naming it
        check_unique_keys(path)
        base = path.resolve().parent
        loaded = resolve_config(StudySpec, config_file=path, overrides=overrides)
        if loaded.out is None:
            loaded = loaded.model_copy(update={"out": str(base / f"{path.stem}-results")})
    loaded = _absolute(loaded, base)
    if loaded.metrics.enabled:  # a mistyped name fails now, not after every cell has trained
        check_features(loaded.metrics.features, "metrics.features")
    return loaded, base


def _refuse_saved_copy(path: Path, data: dict[str, Any]) -> None:
    """The ``study.yaml`` a results folder keeps (keys ``spec`` and ``classifier``, see
    study/cache.py) is a record of the last run, not a spec: say so and what to run instead."""
    if {"spec", "classifier"} <= set(data) and "real" not in data:
        folder = path.resolve().parent
        raise ConfigError(f"{path} is the copy of the spec that the study's results folder {folder} keeps (the "
                          "resolved spec and classifier of its last run), not a spec to run: to continue or "
                          "rerun the study, run its original spec file again (this file's 'spec:' section is "
                          f"that spec, resolved); to see these results: synthworth report {shlex.quote(str(folder))}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; this loader refuses them."""

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in keys:
                raise ConfigError(f"key {key!r} is given twice (line {key_node.start_mark.line + 1}); "
                                  "give it once")
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def check_unique_keys(path: Path) -> None:
    """Refuse a spec file that gives one key twice (e.g. two ``seeds:`` lines or two generators
    of one name), naming the file, the key and its line."""
    try:
        yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _absolute(spec: StudySpec, base: Path) -> StudySpec:
    def fix(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    synthetic = {k: v.model_copy(update={"path": fix(v.path)}) for k, v in spec.synthetic.items()}
    update: dict[str, Any] = {"real": fix(spec.real), "synthetic": synthetic}
    if spec.out is not None:
        update["out"] = fix(spec.out)
    metrics: dict[str, Any] = {}
    if spec.metrics.inception_weights:
        metrics["inception_weights"] = fix(spec.metrics.inception_weights)
    # A saved classifier as the features is a folder relative to the spec; a name (or a typo of
    # one, refused by load_spec with a suggestion) stays as given.
    if spec.metrics.features not in FEATURES and (base / Path(spec.metrics.features).expanduser()).exists():
        metrics["features"] = fix(spec.metrics.features)
    # A DINOv2 model is a folder (relative to the spec, like every path) or else a hub id.
    if spec.metrics.dinov2_weights and (base / Path(spec.metrics.dinov2_weights).expanduser()).exists():
        metrics["dinov2_weights"] = fix(spec.metrics.dinov2_weights)
    if metrics:
        update["metrics"] = spec.metrics.model_copy(update=metrics)
    # A CLIP model or a theme file is a path relative to the spec; a hub id or a theme name stays.
    for key in ("clip_model", "clip_theme"):
        value = getattr(spec, key)
        if value and (base / Path(value).expanduser()).exists():
            update[key] = fix(value)
    # Pretrained weights given as a file or folder are relative to the spec too (a named one or a hub id stays).
    model = spec.classifier.get("model") if isinstance(spec.classifier, dict) else None
    weights = model.get("weights") if isinstance(model, dict) else None
    if isinstance(weights, str) and (base / Path(weights).expanduser()).exists():
        update["classifier"] = {**spec.classifier, "model": {**model, "weights": fix(weights)}}
    return spec.model_copy(update=update)


def classifier_config(spec: StudySpec):
    """The resolved ClassifierConfig of every cell (before each cell sets its seed): its
    ``train.threads`` is the spec's ``threads`` (the engine trains with it), in the spec's
    ``precision``; a classifier section that sets other threads or another
    ``train.mixed_precision`` is refused."""
    from synthworth.classifiers.task import ClassifierConfig

    given = (spec.classifier.get("train") or {}).get("threads") if isinstance(spec.classifier, dict) else None
    threads = spec.threads or 1
    if given is not None and given != threads:
        raise ConfigError(f"classifier.train.threads {given!r}: a study sets the threads of its cells with its "
                          f"own 'threads' key (now {threads}); move the value there")
    config = resolve_config(ClassifierConfig, preset=("classifier", spec.classifier_preset),
                            base=(spec.classifier, "the spec's classifier section"), key_prefix="classifier.")
    config = config.model_copy(update={"train": config.train.model_copy(update={"threads": threads})})
    wanted, given = MIXED_PRECISION[spec.precision], config.train.mixed_precision
    if given == wanted:
        return config
    if given != "no":
        raise ConfigError(f"classifier.train.mixed_precision {given} disagrees with precision {spec.precision}: a "
                          "study's classifiers train in fp32 or bf16, set by the spec key precision (e.g. "
                          "precision: bf16); remove classifier.train.mixed_precision")
    return config.model_copy(update={"train": config.train.model_copy(update={"mixed_precision": wanted})})
