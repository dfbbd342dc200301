"""The plan of a generation (everything that decides the images) and the layout that follows from it."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthworth.data.hf import UNLABELLED_FOLDER, class_folders
from synthworth.errors import ConfigError, DataError
from synthworth.generate.config import GenerateConfig
from synthworth.generate.sources import _Pipeline, total_count

PLAN_FILE = "generate.json"
OLD_PNG_KEY = "synthbench"     # the same chunk, written before the rename
PNG_KEY = "synthworth"          # PNG text chunk holding the image's metadata row
PIPELINE_SIZE = 256             # the source study's training size for text-to-image images
PLAN_FORMAT = 1
MAX_SEED = 2**32                # seed + count stays below this, so retry seeds never collide
MAX_COUNT = 10_000_000          # a typo'd count fails at once, not after filling memory with its plan


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
        subjects = ([order[i % len(order)] if order else None for i in range(n)] if plan.get("class_counts") is None
                    else _turns(order, plan["class_counts"]))
        index = {name: i for i, name in enumerate(names)}
        labels = np.array([index[s] if s is not None else -1 for s in subjects], dtype=np.int64)
        seeds = first + np.arange(n, dtype=np.int64)
        # Class names may come from someone else's files: folders get safe names, the metadata the real ones;
        # a split word in a name is shielded (`datasets` would take the folder for a split, see data.hf).
        folder = dict(zip(names, class_folders(names, ordered=False)))
        files = [f"{folder[s] if s is not None else UNLABELLED_FOLDER}/seed-{int(seed):06d}.png"
                 for s, seed in zip(subjects, seeds)]
        return cls(subjects, labels, seeds, files)

    def folders(self) -> list[str]:
        return sorted({f.split("/", 1)[0] for f in self.files})

    def blocks(self, batch_size: int) -> list[range]:
        return [range(start, min(start + batch_size, len(self.files)))
                for start in range(0, len(self.files), batch_size)]


def _turns(order: list[str], counts: dict[str, int]) -> list[str]:
    """Classes take turns, each until its count is made: round r holds, in ``order``, every class
    with more than r images (so any prefix of the images is as even as the counts allow)."""
    rounds = max(counts.values(), default=0)
    return [c for r in range(rounds) for c in order if counts[c] > r]


def _check_counts(counts: dict[str, int], order: list[str]) -> dict[str, int]:
    """A plan's class counts in the generator's class order; a plan naming other classes is refused."""
    missing = [c for c in order if c not in counts]
    extra = sorted(c for c in counts if c not in order)
    if missing or extra:
        parts = ([f"lacks the generator's class(es) {missing}"] if missing else []) + \
            ([f"names class(es) the generator does not have: {extra}"] if extra else [])
        raise ConfigError(f"the plan's classes do not match the generator's ({'; '.join(parts)}): make the plan "
                          f"from a study of this generator's images ('synthworth plan RESULTS --generator NAME')")
    return {c: int(counts[c]) for c in order}


def _plan(config: GenerateConfig, source) -> dict[str, Any]:
    order = source.order
    count = total_count(config, order)
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
            "test_fraction": config.test_fraction,
            # What the generator saw (recorded in the manifest); it follows from the weights, so it is
            # not compared on resume or merge (see same_plan): folders begun before it existed still finish.
            "provenance": source.provenance()}
    if config.class_counts is not None:   # only then: plans without it stay as they were (resume, merge)
        plan["class_counts"] = _check_counts(config.class_counts, order)
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
    if plan.get("class_counts") is not None:
        raise ConfigError(f"--test-fraction {fraction} of the plan's {n} image(s) of {what} leaves "
                          f"{round(fraction * n)} for testing and {n - round(fraction * n)} for training; each class "
                          f"needs at least one of each ({need} images): generate the plan with --test-fraction 0 "
                          "(a study then holds out its own share)")
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
    counts = plan.get("class_counts")
    if counts is not None and not (isinstance(counts, dict) and list(counts) == classes
                                   and all(whole(v, 0) for v in counts.values())
                                   and sum(counts.values()) == plan.get("count")):
        return "class_counts is not one whole count per class adding up to count"
    fraction = plan.get("test_fraction")
    if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1 and isinstance(plan.get("keep_native"), bool)
            and isinstance(plan.get("name"), str) and isinstance(plan.get("generator"), dict)
            and isinstance(plan["generator"].get("source"), str)
            and plan.get("resample") in ("lanczos", "bicubic", "bilinear", "box")):
        return "test_fraction, keep_native, name, generator or resample malformed"
    return None


def same_plan(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two plans make the same images (``provenance`` is a record, not a setting)."""
    if a is None or b is None:
        return a is b
    return {k: v for k, v in a.items() if k != "provenance"} == {k: v for k, v in b.items() if k != "provenance"}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    parts = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        small = all(not isinstance(v, (dict, list)) for v in (a, b))
        parts.append(f"{k} ({a!r} -> {b!r})" if small else k)
    return ", ".join(parts)
