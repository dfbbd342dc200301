"""``synthworth metrics``: image-quality metrics of a generated Dataset against a real one.

Every result carries the real-vs-real floor next to it: the same metric between two disjoint
halves of the real images, so a FID of 12 can be read (is the floor 1 or 10?). FID falls as the
sample grows, so ``fid_half_n`` also gives the generated set's FID against one real half with as
many generated images: the number to hold against ``fid_real_floor``.

The classification accuracy score (CAS: train on generated images, test on real ones) is the
study's ``artificial`` composition; a study that asks for these metrics writes the matching
CAS next to them (see :mod:`synthworth.study`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from synthworth.config import StrictModel
from synthworth.data.dataset import Dataset
from synthworth.errors import SynthworthError
from synthworth.metrics.features import FeatureExtractor, extract_features, get_extractor
from synthworth.metrics.scores import fid, score_features

METRIC_NAMES = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")


class MetricsConfig(StrictModel):
    """Options of the image-quality metrics (CLI ``synthworth metrics`` and a study's ``metrics``)."""

    features: str = Field("auto", description="auto (Inception if its weights are found, else domain), inception, dinov2, domain, or a saved classifier folder.")
    inception_weights: str | None = Field(None, description="Local pt_inception-2015-12-05 weights file (else $SYNTHWORTH_INCEPTION_WEIGHTS or torch.hub's folder).")
    dinov2_weights: str | None = Field(None, description="DINOv2 model for features dinov2: a hub id or a local folder (else $SYNTHWORTH_DINOV2_WEIGHTS, else facebook/dinov2-large, the ViT-L/14 of Stein et al. 2023).")
    domain_preset: str = Field("small", description="Classifier preset of the domain feature extractor.")
    domain_epochs: int | None = Field(10, ge=1, description="Epochs of the domain extractor (null: the preset's).")
    real_split: str | None = Field("train", description="Split of the real Dataset to compare with (null: every image).")
    fake_split: str | None = Field(None, description="Split of the generated Dataset to score (null: every image).")
    max_images: int | None = Field(10_000, ge=4, description="At most this many images per side (a seeded, class-stratified draw).")
    kid_subset_size: int = Field(1000, ge=2, description="KID subset size (clipped to the smaller set).")
    kid_subsets: int = Field(100, ge=1, description="Number of KID subsets.")
    pr_k: int = Field(3, ge=1, description="k of the precision/recall manifolds (Kynkäänniemi et al. use 3).")
    dc_k: int = Field(5, ge=1, description="k of the density/coverage balls (Naeem et al. use 5).")
    floor: bool = Field(True, description="Also score two disjoint halves of the real images (the real-vs-real floor).")
    batch_size: int = Field(256, ge=1, description="Images per batch when extracting features.")
    seed: int = Field(0, description="Seed of the image caps, the real halves and the KID subsets.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where features are computed (auto: a GPU when there is one).")


def _open(dataset: Dataset | str | os.PathLike) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)


def _pick(dataset: Dataset, split: str | None, cap: int | None, seed: int) -> Dataset:
    from synthworth.data.compose import subset

    view = dataset.split(split) if split else dataset
    if cap is not None and len(view) > cap:
        view = subset(view, count=cap, seed=seed)
    return view


def _describe(dataset: Dataset, view: Dataset, split: str | None) -> dict[str, Any]:
    return {"path": str(dataset.path) if dataset.path else None, "fingerprint": dataset.fingerprint,
            "split": split, "images": len(view)}


def make_extractor(config: MetricsConfig, real: Dataset, cache_dir: str | os.PathLike | None = None) -> FeatureExtractor:
    """The feature extractor ``config`` asks for (a domain one is trained on ``real``'s train split)."""
    import torch

    from synthworth.classifiers.task import ClassifierConfig
    from synthworth.config import resolve_config

    device = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    overrides = [f"train.epochs={config.domain_epochs}"] if config.domain_epochs else []
    classifier = resolve_config(ClassifierConfig, preset=("classifier", config.domain_preset),
                                overrides=overrides + ["train.progress=false"])
    real_train = real.split("train") if "train" in real.split_names else real
    return get_extractor(config.features, real_train=real_train, classifier_config=classifier,
                         inception_weights=config.inception_weights, dinov2_weights=config.dinov2_weights,
                         cache_dir=cache_dir, device=device)


def compute_metrics(real: Dataset | str | os.PathLike, fake: Dataset | str | os.PathLike,
                    config: MetricsConfig | None = None, *, cache_dir: str | os.PathLike | None = None,
                    extractor: FeatureExtractor | None = None, progress: bool = False) -> dict[str, Any]:
    """FID, KID, precision/recall and density/coverage of ``fake`` against ``real``, each with its
    real-vs-real floor, and which features they were computed on (a JSON-ready dict)."""
    config = config or MetricsConfig()
    real_ds, fake_ds = _open(real), _open(fake)
    real_view = _pick(real_ds, config.real_split, config.max_images, config.seed)
    fake_view = _pick(fake_ds, config.fake_split, config.max_images, config.seed)
    extractor = extractor or make_extractor(config, real_ds, cache_dir)
    fr = extract_features(extractor, real_view, config.batch_size, progress)
    ff = extract_features(extractor, fake_view, config.batch_size, progress)
    options = metric_options(config)
    out: dict[str, Any] = {"features": extractor.kind, "features_label": extractor.label,
                           "feature_dim": int(fr.shape[1]),
                           **({"features_source": extractor.source} if extractor.source else {}),
                           "real": _describe(real_ds, real_view, config.real_split),
                           "fake": _describe(fake_ds, fake_view, config.fake_split),
                           **score_features(fr, ff, **options)}
    if config.floor:
        out.update(real_floor(fr, ff, options))
    return out


def metric_options(config: MetricsConfig) -> dict[str, Any]:
    """The scoring options of :func:`synthworth.metrics.scores.score_features` in ``config``."""
    return {"kid_subset_size": config.kid_subset_size, "kid_subsets": config.kid_subsets,
            "pr_k": config.pr_k, "dc_k": config.dc_k, "seed": config.seed}


def real_floor(fr: np.ndarray, ff: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
    """The metrics between two disjoint random halves of the real features, and the FID of an
    equally small generated sample against the first half."""
    rng = np.random.default_rng(options["seed"])
    half = len(fr) // 2
    order = rng.permutation(len(fr))
    a, b = fr[order[:half]], fr[order[half:2 * half]]
    floor = score_features(a, b, **options)
    out: dict[str, Any] = {f"{k}_real_floor": v for k, v in floor.items()}
    out["n_half"] = half
    out["fid_half_n"] = fid(a, ff[rng.choice(len(ff), half, replace=False)]) if len(ff) >= half else None
    return out


def format_metrics(result: dict[str, Any]) -> str:
    """A small text table of a :func:`compute_metrics` result."""
    real, fake = result["real"], result["fake"]
    lines = [f"features   {result['features_label']}",
             f"images     {real['images']} real ({real['split'] or 'all'}), {fake['images']} generated "
             f"({fake['split'] or 'all'})",
             f"{'metric':10s} {'generated':>12s} {'real floor':>12s}"]
    # On DINOv2 features the Fréchet distance is called FD_DINOv2 (Stein et al.); the key stays "fid".
    fd, title = ("fd_dinov2", "FD_DINOv2") if result.get("features") == "dinov2" else ("fid", "FID")
    for name in METRIC_NAMES:
        floor = result.get(f"{name}_real_floor")
        shown = fd if name == "fid" else name
        lines.append(f"{shown:10s} {result[name]:12.5g} " + (f"{floor:12.5g}" if floor is not None else f"{'':>12s}"))
    if result.get("fid_half_n") is not None:
        lines.append(f"{title} with {result['n_half']} images per side: generated {result['fid_half_n']:.5g}, "
                     f"real floor {result['fid_real_floor']:.5g}")
    lines.append("CAS (train on generated, test on real): the 'artificial' composition of 'synthworth study run'")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``result`` to ``path`` (atomically). An existing file is replaced only when it is an
    earlier result of ``synthworth metrics`` (a JSON object with its ``fid`` and ``features``)."""
    path = check_json_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)
    return path


def check_json_out(path: str | os.PathLike) -> Path:
    """Refuse (before any work) an ``--out`` file that exists and is not a metrics result."""
    path = Path(path)
    if path.is_symlink() or path.is_dir() or (path.exists() and not _is_metrics_file(path)):
        raise SynthworthError(f"--out {path} exists and is not a synthworth metrics file; it will not be "
                              f"replaced: choose a new file name, e.g. {path.with_name(path.stem + '-2.json')}")
    return path


def _is_metrics_file(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "fid" in data and "features" in data
