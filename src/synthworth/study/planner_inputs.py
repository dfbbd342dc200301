"""What ``synthworth plan`` reads of a study's results folder, checked (it may come from anyone),
and the per-class models it plans with: each class's real learning curve and the worth of one of
the generator's images of that class, with their bootstrap replicates (:mod:`synthworth.study.planner`
explains the model)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from synthworth.errors import SynthworthError
from synthworth.study.by_class import class_recalls, exchange_rates_by_class
from synthworth.study.cache import read_json
from synthworth.study.exchange import OK, SYNTHETIC_COMPOSITIONS, group_rng, invert, keyed_rng, with_counts
from synthworth.study.predictions import REAL, read_predictions
from synthworth.study.resample import BOTH, Sampler, correctness, n_eff_many

NEEDED = ("composition", "generator", "size", "seed", "accuracy", "ratio")
# A mixture says most about adding images to real ones; artificial cells are the fallback.
PREFERENCE = ("mixed", "augmented", "ratio_sweep", "artificial")


class PlanError(SynthworthError):
    """A plan cannot be made from these results (or with these options)."""


@dataclass
class StudyFolder:
    """A study's results folder as the planner reads it."""

    path: Path
    results: pd.DataFrame           # results.csv
    predictions: pd.DataFrame | None
    class_names: list[str]          # the real Dataset's (inputs.json)
    spec: dict[str, Any]            # study.yaml's spec section ({} when unreadable)
    inputs: dict[str, Any]          # inputs.json
    fingerprint: str                # of results.csv's bytes: which results a plan was made from

    @property
    def name(self) -> str:
        names = self.results["study"].dropna().astype(str).unique() if "study" in self.results.columns else []
        return str(names[0]) if len(names) else self.path.name

    def synthetic(self, generator: str) -> dict[str, Any]:
        """What the spec says of ``generator`` (path, class_map, draw), or {}."""
        entry = (self.spec.get("synthetic") or {}).get(generator)
        return entry if isinstance(entry, dict) else {}


def read_study(path: str | Path) -> StudyFolder:
    """The results folder at ``path`` (PlanError naming what is missing or malformed)."""
    path = Path(path)
    file = path / "results.csv"
    if not file.is_file():
        raise PlanError(f"{path} holds no results.csv: give a study's results folder (what 'synthworth study run "
                        "SPEC' writes)")
    try:
        data = file.read_bytes()
        results = pd.read_csv(file, keep_default_na=False, na_values=[""])
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise PlanError(f"{file} is not a readable CSV table ({' '.join(str(exc).split())[:80]})") from None
    missing = [c for c in NEEDED if c not in results.columns]
    if missing:
        raise PlanError(f"{file} lacks the column(s) {', '.join(missing)}; 'synthworth study run SPEC' rewrites it")
    for col in ("size", "seed", "accuracy", "ratio"):
        values = pd.to_numeric(results[col], errors="coerce")
        if values.isna().any() and col != "accuracy":
            raise PlanError(f"{file}: column {col!r} must hold numbers, row {int(values.isna().idxmax()) + 2} does not")
        results[col] = values
    inputs = read_json(path / "inputs.json")
    inputs = inputs if isinstance(inputs, dict) else {}
    names = (inputs.get("real") or {}).get("classes") if isinstance(inputs.get("real"), dict) else None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise PlanError(f"{path / 'inputs.json'} is missing or names no real classes; re-run 'synthworth study run "
                        "SPEC' on the study's spec to write it")
    try:
        saved = yaml.safe_load((path / "study.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        saved = None
    spec = saved.get("spec") if isinstance(saved, dict) and isinstance(saved.get("spec"), dict) else {}
    predictions = None
    if (path / "evaluations.csv").is_file() or (path / "evaluations.parquet").is_file():
        predictions = read_predictions(path, warn=False)
    return StudyFolder(path, results, predictions, list(names), spec, inputs,
                       hashlib.blake2b(data, digest_size=12).hexdigest())


@dataclass
class Group:
    """The generator's cells the worth per image is read from (one composition, size, ratio)."""

    composition: str
    size: int
    ratio: float
    augment_factor: float | None
    n_real: int
    n_synthetic: int
    filter: str                     # as the exchange table keys it ("none", or "" without a filter column)
    index: pd.Index                 # its rows of the results

    def describe(self) -> dict[str, Any]:
        return {"composition": self.composition, "size": self.size, "ratio": self.ratio,
                "augment_factor": self.augment_factor, "n_real": self.n_real, "n_synthetic": self.n_synthetic}


@dataclass
class ClassModel:
    """One class: its real curve and what one synthetic image of it is worth, with replicates."""

    index: int
    name: str                       # the real class name
    source: str | None              # the generator's name for it (None: the generator makes none)
    readable: bool = False
    why: str = ""                   # why not readable
    params: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    boots: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    worth: float = math.nan         # real images of the class one synthetic image of it is worth
    worth_reps: np.ndarray = field(default_factory=lambda: np.empty(0))
    reading: str = ""               # the group's status for this class (exchange_rates_by_class.csv)
    sizes: tuple[int, int] = (0, 0)  # the real curve's measured range (images of the whole set)


def class_sources(study: StudyFolder, generator: str) -> tuple[list[str | None], list[str] | None]:
    """(the generator's class name for each real class, None where it makes none; the generator's
    own class names from its Dataset's manifest, None where that Dataset cannot be read)."""
    from synthworth.data.dataset import Dataset
    from synthworth.errors import DataError

    entry = study.synthetic(generator)
    class_map = entry.get("class_map") if isinstance(entry.get("class_map"), dict) else {}
    back = {str(real): str(theirs) for theirs, real in class_map.items() if real is not None}
    dropped = {str(theirs) for theirs, real in class_map.items() if real is None}
    own = None
    where = (study.inputs.get("synthetic") or {}).get(generator, {}).get("path") or entry.get("path")
    if isinstance(where, str):
        try:
            own = list(Dataset.open(where).class_names)
        except (DataError, OSError):
            own = None
    sources = []
    for name in study.class_names:
        theirs = back.get(name, name if name not in class_map and name not in dropped else None)
        sources.append(theirs if own is None or theirs in own else None)
    return sources, own


def pick_group(results: pd.DataFrame, generator: str, real_images: int) -> Group:
    """The generator's cell group whose real part is nearest ``real_images`` (a mixture before
    artificial cells; then the most synthetic images)."""
    df = results[(results["generator"].fillna("").astype(str) == generator)
                 & results["composition"].isin(SYNTHETIC_COMPOSITIONS)]
    has_filter = "filter" in df.columns
    if has_filter:
        df = df[df["filter"].fillna("none").astype(str).isin(["none", ""])]
    if df.empty:
        known = sorted(g for g in results["generator"].dropna().astype(str).unique() if g)
        raise PlanError(f"the study has no unfiltered cells with synthetic images of generator {generator!r} "
                        f"(its generators: {', '.join(known) or 'none'})")
    df = with_counts(df)
    af = df["augment_factor"] if "augment_factor" in df.columns else pd.Series(math.nan, index=df.index)
    groups = []
    for (comp, size, ratio, factor), g in df.assign(augment_factor=af).groupby(
            ["composition", "size", "ratio", "augment_factor"], dropna=False, sort=True):
        n_real, n_synth = int(g["n_real"].iloc[0]), int(g["n_synthetic"].iloc[0])
        if n_synth <= 0:
            continue
        filt = "none" if has_filter else ""
        groups.append(Group(str(comp), int(size), float(ratio), None if pd.isna(factor) else float(factor),
                            n_real, n_synth, filt, g.index))
    if not groups:
        raise PlanError(f"generator {generator!r} has no cells with synthetic images in this study")

    def rank(g: Group):
        mixture = g.n_real > 0
        distance = abs(math.log(max(g.n_real, 1)) - math.log(real_images)) if mixture else 0.0
        return (not mixture, distance, -g.n_synthetic, PREFERENCE.index(g.composition)
                if g.composition in PREFERENCE else 9)
    return min(groups, key=rank)


def class_models(study: StudyFolder, generator: str, group: Group, sources: list[str | None],
                 resamples: int) -> tuple[list[ClassModel], pd.DataFrame]:
    """Every real class's model (readable or not, and why), and the per-class rate table they
    were read with. The replicates repeat exchange_rates_by_class.csv's: the same curves, and the
    group's recall drawn with the same image resample and the same random stream."""
    results = study.results[study.results["composition"].isin(["real", *SYNTHETIC_COMPOSITIONS])]
    table, curves = exchange_rates_by_class(results, predictions=study.predictions, class_names=study.class_names,
                                            resamples=resamples)
    recalls, _, p = class_recalls(results, study.predictions)
    rows = results.loc[group.index]
    models = []
    for c, name in enumerate(study.class_names):
        m = ClassModel(c, name, sources[c])
        models.append(m)
        curve = curves.get(c)
        if sources[c] is None:
            m.why = "the generator makes no images of this class"
            continue
        if curve is None or c not in recalls.columns:
            m.why = "no recall recorded for this class"
            continue
        m.sizes = (curve.sizes[0], curve.sizes[-1]) if curve.sizes else (0, 0)
        if curve.status != OK:
            m.why = curve.status
            continue
        values = recalls.loc[group.index, c]
        finite = values[np.isfinite(values.to_numpy(float))]
        if finite.empty:
            m.why = "the generator's cells have no recall for this class"
            continue
        part = rows.loc[finite.index]
        x = None
        if curve.covers == BOTH and p is not None:
            x = correctness(part, p[p["label"].astype(int) == c], REAL)
        sampler = Sampler(part, x, resamples, keyed_rng("test images", REAL))
        draws = sampler.draws(finite.index, finite.to_numpy(float),
                              group_rng(REAL, group.filter, generator, group.composition, group.size, group.ratio,
                                        group.augment_factor))
        m.params = np.asarray(curve.params, float)
        m.boots = curve.boots[BOTH]
        # Never read beyond the measured sizes (as the rate tables): a group above the curve's
        # largest size is worth at least that much, and the plan takes that lower bound.
        top = float(curve.sizes[-1])
        point = invert(curve.params, float(finite.mean()))
        m.worth = (min(point, top) - group.n_real) / group.n_synthetic
        m.worth_reps = (np.minimum(n_eff_many(m.boots, draws[BOTH]), top) - group.n_real) / group.n_synthetic
        m.readable = True
        m.reading = _reading(table, c, generator, group) + (
            f"; above the measured sizes: worth taken as its lower bound (n_eff {top:.0f})" if point > top else "")
    return models, table


def _reading(table: pd.DataFrame, c: int, generator: str, group: Group) -> str:
    """The status exchange_rates_by_class.csv gives the group for class ``c``."""
    if table.empty:
        return ""
    hit = table[(table["class"] == c) & (table["generator"].astype(str) == generator)
                & (table["composition"] == group.composition) & (table["size"] == group.size)
                & np.isclose(table["ratio"].astype(float), group.ratio)]
    if "filter" in hit.columns:
        hit = hit[hit["filter"].fillna("none").astype(str).isin(["none", ""])]
    return str(hit["status"].iloc[0]) if len(hit) else ""


def seconds_per_image(study: StudyFolder, generator: str) -> tuple[float | None, str]:
    """(the sampling seconds per image the generator's Dataset records, where that is read), or
    (None, why not). The record is the manifest's ``generation.sampling`` (seconds and images
    summed over every timed block; written by ``synthworth generate`` where it times sampling)."""
    from synthworth.data.dataset import Dataset
    from synthworth.errors import DataError

    where = (study.inputs.get("synthetic") or {}).get(generator, {}).get("path") or study.synthetic(generator).get("path")
    if not isinstance(where, str):
        return None, f"the study records no Dataset path for generator {generator!r}"
    try:
        manifest = Dataset.open(where).manifest or {}
    except (DataError, OSError):
        return None, f"its Dataset {where} cannot be opened"
    generation = manifest.get("generation")
    sampling = generation.get("sampling") if isinstance(generation, dict) else None
    if not isinstance(sampling, dict):
        return None, (f"its Dataset {where} records no generation time per image (generated before synthworth "
                      "timed sampling, or not by 'synthworth generate')")
    seconds, images = sampling.get("seconds"), sampling.get("images")
    ok = (isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
          and seconds > 0 and isinstance(images, int) and not isinstance(images, bool) and images > 0)
    if not ok:
        return None, f"its Dataset {where} records an unreadable generation time (generation.sampling)"
    return float(seconds) / images, where


__all__ = ["StudyFolder", "read_study", "Group", "ClassModel", "pick_group", "class_models", "class_sources",
           "seconds_per_image", "PlanError"]
