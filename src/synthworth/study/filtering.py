"""Filtering a synthetic pool before cells draw from it (``filters: [none, confidence, clip]``).

Every filter scores each image of a generator's pool and keeps, per class, the ``filter_keep``
share with the highest scores (at least one image per class; :func:`choose`).

``confidence`` keeps, per class, the ``filter_keep`` share of a generator's pool (at least one
image per class) that a classifier labels as their intended class with the highest softmax
probability. The classifier (the study's classifier config) is trained only on the real data the
generator itself was trained on, read from the synthetic Dataset's provenance: that Dataset is
opened at its recorded path and must still have the recorded fingerprint. Filtering therefore
adds no real information the generator did not have. A generator whose real data is unknown
(a pretrained pipeline, a Dataset from before provenance, a real Dataset moved or changed) is
refused with one line saying why, never filtered with the study's own real data instead.

``clip`` scores each image by how well its CLIP embedding agrees with its class's prompts (see
:mod:`synthworth.study.clip_filter`); it sees no real image of the study, so it needs no real
data and filters a pretrained pipeline's images too.

The filtered pool is a Dataset of its own, cached in the results folder::

    RESULTS/filtered/<key>/     a packed Dataset (images, labels, items.jsonl with each kept
                                image's pool index and confidence, manifest.json), marker kind
                                "filtered-synthetic"; classifier/ holds the filter's classifier

``<key>`` hashes the parent pool's fingerprint, the method, the keep share and what scores it (the
classifier config and the fingerprint of the real training set; the CLIP model's fingerprint and
the prompts), so a rerun reuses it and any change makes a new one. The clip filter also writes
``clip_scores.npy`` (every pool image's score) and caches the pool's embeddings beside the folders.
It is written into a temporary folder and renamed into place once complete, under a lock per key:
shards of one study sharing the results folder wait for the one building it, then reuse it.
The manifest's provenance is ``{"kind": "filtered", "parent": <the parent's provenance>,
"trained_on": <the parent's>, "filter": {...}}``; a clip filter's ``filter`` records the model's
identity, the prompts of each class and, per class, how many were kept and the lowest kept score.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from synthworth.config import dump_config
from synthworth.data.dataset import Dataset, atomic_folder, clean_stale_temps, write_packed
from synthworth.engine.precision import PrecisionWarning
from synthworth.errors import ConfigError, DataError
from synthworth.study.inputs import StudyInputs, SyntheticInput, align_classes, conform

KIND = "filtered-synthetic"
FOLDER = "filtered"
METHODS = ("confidence", "clip")


def _refuse(name: str, syn: SyntheticInput, why: str) -> ConfigError:
    return ConfigError(f"filters: confidence cannot filter generator {name!r} ({syn.path}): {why}; the filter's "
                       "classifier may only see the real images the generator saw, so give that Dataset back, or "
                       "leave this study unfiltered (filters: [none])")


def generator_real_data(name: str, syn: SyntheticInput, real: Dataset, class_map: dict[str, str | None]) -> tuple[Dataset, dict[str, Any]]:
    """(the real training images generator ``name`` saw, aligned to the study's classes and shape;
    its provenance's ``trained_on``). Refuses (ConfigError) when they cannot be found and matched."""
    prov = syn.provenance
    if prov is None:
        raise _refuse(name, syn, "its manifest records no provenance (made before synthworth recorded it, or not "
                                 "by synthworth generate), so the real data its generator saw is unknown")
    if prov["kind"] == "pretrained":
        raise _refuse(name, syn, f"its generator is a pretrained pipeline ({prov.get('note', 'external data')}), "
                                 "whose training data synthworth cannot read")
    on = prov.get("trained_on")
    if not on or not on.get("path") or not on.get("split"):
        raise _refuse(name, syn, f"its provenance names no real Dataset ({prov.get('note') or 'trained_on is null'})")
    try:
        seen = Dataset.open(on["path"])
    except DataError as exc:
        raise _refuse(name, syn, f"its generator was trained on {on['path']}, which cannot be opened ({exc})") from None
    if seen.fingerprint != on["fingerprint"]:
        raise _refuse(name, syn, f"its generator was trained on {on['path']} with fingerprint {on['fingerprint']}, but "
                                 f"that folder now holds fingerprint {seen.fingerprint} (other images)")
    if on["split"] not in seen.split_names:
        raise _refuse(name, syn, f"{on['path']} has no {on['split']!r} split, the one its generator trained on")
    train = seen.split(on["split"])
    if not train.labelled or (train.labels < 0).any():
        raise _refuse(name, syn, f"{on['path']} is not labelled, so no classifier can be trained on it")
    try:
        train = align_classes(train, real.class_names, class_map, f"real Dataset {on['path']} of generator {name!r}",
                              f"synthetic.{name}.class_map")
    except DataError as exc:
        raise _refuse(name, syn, str(exc)) from None
    if train.shape != real.shape:
        train = conform(train, real.shape)
    return replace(train, splits=np.full(len(train), "train")), on


def filter_key(parent: Dataset, method: str, keep: float, classifier: dict[str, Any], train_set: Dataset) -> str:
    from synthworth import __version__

    payload = {"parent": parent.fingerprint, "method": method, "keep": keep, "classifier": classifier,
               "train_set": train_set.fingerprint, "synthworth_version": __version__}
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest()


def kept_count(n: int, keep: float) -> int:
    """Images of a class of ``n`` the filter keeps: the share rounded half up, at least one."""
    return min(n, max(1, int(np.floor(keep * n + 0.5))))


def choose(labels: np.ndarray, confidence: np.ndarray, keep: float) -> np.ndarray:
    """Indices (ascending) of the ``keep`` share of each class with the highest confidence (ties:
    the earlier image)."""
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = members[np.argsort(-confidence[members], kind="stable")]
        chosen.append(order[:kept_count(len(members), keep)])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def expected_size(pool: Dataset, keep: float) -> int:
    return int(sum(kept_count(int(n), keep) for n in np.bincount(pool.labels) if n))


def check_filtered_sizes(cells, inputs: StudyInputs, spec) -> None:
    """Before a filter is made: every filtered cell can still draw its synthetic images from what
    the filter will keep (its size is known from the class counts alone)."""
    from synthworth.study.grid import counts

    problems: dict[str, str] = {}
    for cell in cells:
        if cell.filter == "none":
            continue
        _, n_synth = counts(cell, spec.ratio)
        have = expected_size(inputs.synthetic[cell.generator].pool, spec.filter_keep)
        if n_synth > have:
            problems.setdefault(f"{cell.generator}:{n_synth}", f"{cell.label()} needs {n_synth} synthetic "
                                f"({cell.generator}) training images but the {cell.filter} filter keeps only {have} "
                                f"(filter_keep {spec.filter_keep:g})")
    if problems:
        raise DataError("too few images for the asked sizes after filtering: " + "; ".join(problems.values())
                        + "; lower the sizes, raise filter_keep, or generate more images")


def apply_filters(spec, inputs: StudyInputs, classifier, out: Path, *, build: bool = True) -> None:
    """Fill ``inputs.synthetic[g].filtered`` for every filter of the spec, from the cache in
    ``out/filtered`` or made now (``build``). Every refusal comes before anything is written."""
    methods = [f for f in spec.filters if f != "none"]
    if not methods:
        return
    from synthworth.study.grid import KEYED_APART, NOT_RESULT_KEYS

    config = _filter_classifier(classifier)
    dumped = dump_config(config)
    # threads left out too: the filters cached before the engine had that setting stay valid.
    dumped = {**dumped, "train": {k: v for k, v in dumped["train"].items() if k not in NOT_RESULT_KEYS | KEYED_APART}}
    clip_model = None
    if "clip" in methods:
        from synthworth.study.clip_filter import find_model

        clip_model = find_model(spec, download=build)
    todo = []
    for name, syn in inputs.synthetic.items():
        if "confidence" in methods:
            train_set, on = generator_real_data(name, syn, inputs.real, spec.synthetic[name].class_map)
        for method in methods:
            if method == "confidence":
                key = filter_key(syn.pool, method, spec.filter_keep, dumped, train_set)
                todo.append((name, syn, method, key, _confidence_scorer(config, train_set, on)))
            else:
                key, scorer = _clip_scorer(name, syn, spec, clip_model, out)
                todo.append((name, syn, method, key, scorer))
    for name, syn, method, key, scorer in todo:
        final = out / FOLDER / key
        cached = _cached(final, key)
        if cached is None and not build:
            raise ConfigError(f"the {method} filter of generator {name!r} is not made yet; 'synthworth study run' "
                              "makes it (then status can tell)")
        if cached is None:
            cached = _build(final, key, name, syn, method, spec.filter_keep, scorer, out)
        syn.filtered[method] = cached


def _confidence_scorer(config, train_set: Dataset, on: dict[str, Any]):
    """Scores of the confidence filter: the probability of each image's intended class by a
    classifier trained (into ``tmp/classifier``) on the generator's own real data."""

    def score(tmp: Path, pool: Dataset) -> tuple[np.ndarray, dict[str, Any]]:
        from synthworth.classifiers.evaluate import probabilities
        from synthworth.classifiers.task import train_classifier

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrecisionWarning)  # said once for the study (plan_study)
            model, _ = train_classifier(train_set, tmp / "classifier", config)
        shutil.rmtree(tmp / "classifier" / "checkpoints", ignore_errors=True)
        probs = probabilities(model, pool, config.eval_batch_size)
        return probs[np.arange(len(pool)), pool.labels], {
            "classifier": dump_config(config), "real_fingerprint": on["fingerprint"], "real_path": on["path"],
            "real_split": on["split"], "train_set_fingerprint": train_set.fingerprint,
            "train_images": len(train_set)}

    score.item_key = "confidence"
    return score


def _clip_scorer(name: str, syn: SyntheticInput, spec, model, out: Path):
    """(key, scores) of the clip filter (see synthworth.study.clip_filter): its prompts are found
    now, so a generator without any is refused before anything is written."""
    from synthworth.study.clip_filter import EMBEDDINGS, SCORE, SCORES_FILE, class_prompts, clip_key, clip_scores

    prompts, source = class_prompts(name, syn, spec.clip_theme, spec.synthetic[name].class_map)
    key = clip_key(syn.pool, spec.filter_keep, model.identity, prompts)

    def score(tmp: Path, pool: Dataset) -> tuple[np.ndarray, dict[str, Any]]:
        scores = clip_scores(model, pool, prompts, out / FOLDER / EMBEDDINGS)
        np.save(tmp / SCORES_FILE, scores.astype(np.float32))
        embedder = model.embedder()  # loaded by now: its identity also names the architecture
        return scores, {"model": embedder.identity, "device": str(embedder.device), "prompts": prompts,
                        "prompt_source": source, "score": SCORE, "scores_file": SCORES_FILE,
                        "note": "CLIP was trained on external data, none of this study's real images"}

    score.item_key = "clip_score"
    return key, score


def _filter_classifier(classifier):
    """The study's classifier config, quiet (the filter trains once, before the cells)."""
    return classifier.model_copy(update={"train": classifier.train.model_copy(update={"progress": False})})


def _cached(final: Path, key: str) -> Dataset | None:
    if not (final / "manifest.json").is_file():
        return None
    try:
        ds = Dataset.open(final)
    except DataError:
        return None  # damaged: made again
    prov = ds.manifest.get("provenance")
    ok = isinstance(prov, dict) and isinstance(prov.get("filter"), dict) and prov["filter"].get("key") == key
    return ds if ok else None


def _build(final: Path, key: str, name: str, syn: SyntheticInput, method: str, keep: float, scorer,
           out: Path) -> Dataset:
    from synthworth.safety import output_lock
    from synthworth.study.cache import claim_results_folder

    claim_results_folder(out)
    (out / FOLDER).mkdir(exist_ok=True)
    # The shards of one study (a SLURM array into one results folder) all need the same filtered
    # pool: the first builds it, the others wait for it and then reuse it (a refusal here would
    # stop every shard but one). Its folder is keyed by its inputs and renamed into place whole.
    with output_lock(out / FOLDER, name=f".{key}.lock", what="this filtered Dataset", wait=True):
        cached = _cached(final, key)  # made by another process meanwhile
        if cached is not None:
            return cached
        clean_stale_temps(final)
        with atomic_folder(final, kind=KIND, replace=True) as tmp:
            pool = syn.pool
            scores, details = scorer(tmp, pool)
            kept = choose(pool.labels, scores, keep)
            items = [{"pool_index": int(i), scorer.item_key: float(scores[i])} for i in kept]
            parent = syn.provenance
            filt = {"method": method, "keep": keep, "key": key, **details,
                    "parent_fingerprint": pool.fingerprint, "parent_path": syn.path,
                    "kept": int(len(kept)), "of": int(len(pool))}
            if method != "confidence":  # per class: how many were kept and the lowest kept score
                filt["per_class"] = per_class(pool, scores, kept)
            write_packed(tmp, pool.take(kept), pool.labels[kept], np.full(len(kept), "train"), pool.class_names,
                         items, {"kind": "filtered", "source": {"kind": "filter", "generator": name, "path": syn.path},
                                 "provenance": {"kind": "filtered", "trained_on": (parent or {}).get("trained_on"),
                                                "parent": parent, "filter": filt,
                                                "note": f"{method} filter (keep {keep:g}) of {name!r}: "
                                                        f"{len(kept)} of {len(pool)} images"}})
    return Dataset.open(final)


def per_class(pool: Dataset, scores: np.ndarray, kept: np.ndarray) -> dict[str, dict[str, Any]]:
    """{class: {"kept", "of", "threshold": the lowest score kept}} for the classes the pool has."""
    out = {}
    for label, name in enumerate(pool.class_names):
        members = pool.labels == label
        mine = kept[pool.labels[kept] == label]
        if members.any():
            out[name] = {"kept": int(len(mine)), "of": int(members.sum()),
                         "threshold": float(scores[mine].min()) if len(mine) else None}
    return out
