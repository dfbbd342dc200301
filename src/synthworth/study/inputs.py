"""The study's input Datasets, opened and checked before any cell runs.

- The real Dataset: its train split is the real pool, its test split the real test set.
- Each synthetic Dataset: its classes are matched to the real ones by name or through the
  spec's ``class_map`` (any other difference is an error that lists it); its ``test`` split, or
  else a seeded, class-stratified share of it, is held out for testing; and when its images
  have another size or channel count than the real ones, they are resized (bilinear,
  antialiased) to the real shape in memory, with a warning, and the row records it.

Every derived view has a fingerprint derived from its input's, so the cell cache follows
content, not file names.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset, derive_fingerprint
from synthworth.errors import DataError, SynthworthError
from synthworth.study.spec import StudySpec, SyntheticSpec


class StudyWarning(UserWarning):
    """Something the study adjusted on its own (e.g. a resize); recorded in the results too."""


@dataclass
class SyntheticInput:
    """One generator's Dataset as the study uses it."""

    name: str
    path: str
    fingerprint: str            # of the Dataset on disk
    pool: Dataset               # images cells may train on (labels in the real class order)
    test: Dataset               # held-out images for testing
    resized_from: str | None    # "HxWxC" of the Dataset when it was resized to the real shape
    held_out: str = ""          # where the test images come from (for messages)
    provenance: dict | None = None                          # what its generator saw (None: not recorded)
    filtered: dict[str, Dataset] = field(default_factory=dict)  # filter name -> the filtered pool
    # Generated from a folder of replicates: the replicate that made each image of ``pool`` (view
    # order), from the Dataset's per-image records; None otherwise.
    pool_replicate: np.ndarray | None = None
    draw: str = "balanced"      # the spec's draw: balanced, or as_generated (the pool's own class proportions)
    by_replicate: dict[tuple, Dataset] = field(default_factory=dict)  # (filter, replicate, pool fp) -> its share

    @property
    def replicate_names(self) -> list[str]:
        """The replicates whose images the pool holds, in the order the provenance lists them
        ([] when the Dataset was not generated from replicates)."""
        if self.pool_replicate is None:
            return []
        listed = [str(r.get("name")) for r in (self.provenance or {}).get("replicates") or [] if isinstance(r, dict)]
        present = {str(r) for r in self.pool_replicate}
        return [n for n in listed if n in present] + sorted(present - set(listed))


@dataclass
class StudyInputs:
    real: Dataset
    pool: Dataset
    test: Dataset
    synthetic: dict[str, SyntheticInput]
    notes: list[str] = field(default_factory=list)
    leaks: dict[str, dict] = field(default_factory=dict)  # generator -> the real test images it saw (leakage.py)

    @property
    def num_classes(self) -> int:
        return self.real.num_classes

    def synthetic_pool(self, generator: str, filter: str = "none", replicate: str = "") -> Dataset:
        """The images a cell of ``generator`` draws from: its pool, or that pool filtered; with
        ``replicate``, only the images that replicate made (see synthworth.study.replicates)."""
        synthetic = self.synthetic[generator]
        if filter == "none":
            pool = synthetic.pool
        elif filter not in synthetic.filtered:
            raise SynthworthError(f"the {filter} filter of generator {generator!r} has not been applied yet")
        else:
            pool = synthetic.filtered[filter]
        if not replicate:
            return pool
        key = (filter, replicate, pool.fingerprint)
        if key not in synthetic.by_replicate:
            mine = np.flatnonzero(replicate_of(pool, synthetic) == replicate)
            synthetic.by_replicate[key] = pool.select(mine, fingerprint=derive_fingerprint(
                "replicate", {"name": replicate}, [pool.fingerprint]))
        return synthetic.by_replicate[key]


def as_train(view: Dataset) -> Dataset:
    """The same images and fingerprint with every split named ``train`` (what the engine trains on)."""
    return replace(view, splits=np.full(len(view), "train"))


def shape_text(shape: tuple[int, int, int]) -> str:
    return "x".join(str(v) for v in shape)


def open_inputs(spec: StudySpec) -> StudyInputs:
    """Open and check every Dataset of ``spec``; a problem is a SynthworthError naming it."""
    real = _open(spec.real, "real Dataset")
    if not real.labelled:
        raise DataError(f"the real Dataset {spec.real} has no classes; the study needs labelled images")
    pool = _split(real, spec.real_train_split, "real Dataset", spec.real)
    test = _split(real, spec.real_test_split, "real Dataset", spec.real)
    notes: list[str] = []
    synthetic = {name: _synthetic(name, s, real, spec.synthetic_holdout, notes) for name, s in spec.synthetic.items()}
    return StudyInputs(real=real, pool=pool, test=test, synthetic=synthetic, notes=notes)


def _open(path: str, what: str) -> Dataset:
    try:
        return Dataset.open(path)
    except DataError as exc:
        # the spec's relative paths were made absolute against the spec file's folder, not the
        # folder the command ran in: the path printed is already the one read, and this says why
        hint = ("; a relative path in a spec is read from the spec file's folder, not from where the command "
                "runs") if not Path(path).exists() else ""
        raise DataError(f"{what}: {exc}{hint}") from None


def _split(ds: Dataset, name: str, what: str, path: str) -> Dataset:
    if name not in ds.split_names:
        raise DataError(f"the {what} {path} has no {name!r} split (it has: {', '.join(ds.split_names)})")
    return ds.split(name)


def _refuse_trained(name: str, path: str) -> None:
    """A training run, a saved generator or a folder of replicates named where a synthetic Dataset
    belongs: say what it is and the command that makes a Dataset from it."""
    from pathlib import Path

    from synthworth.engine.replicates import is_replicates
    from synthworth.generators.base import model_config_file
    from synthworth.safety import read_marker

    folder = Path(path)
    if not folder.is_dir() or (folder / "manifest.json").is_file():
        return
    if is_replicates(folder):
        what = "a folder of trained replicates"
    elif (read_marker(folder) or {}).get("kind") == "run" or (folder / "run.json").is_file():
        what = "a training run"
    elif model_config_file(folder).is_file():
        what = "a saved generator"
    else:
        return
    raise DataError(f"synthetic.{name}: {path} is {what}, not a Dataset of images: make one with 'synthworth "
                    f"generate --from {path} --per-class N --out OUT' (from replicates, an equal share of the "
                    f"images from each, every image's record naming its replicate) and give OUT as its path")


def replicate_of(view: Dataset, synthetic: SyntheticInput) -> np.ndarray:
    """The replicate that made each image of ``view`` (a view of the real pool and of
    ``synthetic``'s pool or one of its filtered pools): "" for an image of neither, and for every
    image when the synthetic Dataset was not generated from replicates."""
    from synthworth.data.dataset import read_items

    out = np.full(len(view), "", dtype=object)
    if synthetic.pool_replicate is None:
        return out
    for k, array in enumerate(view.arrays):
        mine = view.part == k
        rows = view.row[mine]
        if array is synthetic.pool.arrays[0]:
            by_row = np.full(len(array), "", dtype=object)
            by_row[synthetic.pool.row] = synthetic.pool_replicate
            out[mine] = by_row[rows]
        for filtered in synthetic.filtered.values():  # a filtered pool: its records name the pool image
            if array is filtered.arrays[0] and filtered.path is not None:
                index = np.array([r["pool_index"] for r in read_items(filtered.path)], dtype=np.int64)
                out[mine] = synthetic.pool_replicate[index[rows]]
    return out


def replicate_counts(view: Dataset, synthetic: SyntheticInput) -> dict[str, int] | None:
    """How many images of ``view`` (a cell's training set, drawn from the real pool and from
    ``synthetic``'s pool or one of its filtered pools) each replicate made; None when the
    synthetic Dataset was not generated from replicates."""
    from collections import Counter

    if synthetic.pool_replicate is None:
        return None
    counts = Counter(str(r) for r in replicate_of(view, synthetic) if r)
    return {str(k): int(v) for k, v in sorted(counts.items())}


def _synthetic(name: str, spec: SyntheticSpec, real: Dataset, holdout: float, notes: list[str]) -> SyntheticInput:
    from synthworth.data import provenance

    _refuse_trained(name, spec.path)
    ds = _open(spec.path, f"synthetic Dataset {name!r}")
    try:
        prov = provenance.read(ds.manifest)
    except DataError as exc:
        raise DataError(f"synthetic Dataset {name!r} ({spec.path}): {exc}") from None
    if not ds.labelled or (ds.labels < 0).any():
        raise DataError(f"synthetic Dataset {name!r} ({spec.path}) is not fully labelled; the study needs "
                        "class-conditional samples (generate with labels)")
    aligned = align_classes(ds, real.class_names, spec.class_map, f"synthetic Dataset {name!r} ({spec.path})",
                            f"synthetic.{name}.class_map")
    resized_from, mapped_rows = None, aligned.row  # rows of ds behind each image, before any resize
    if aligned.shape != real.shape:
        resized_from = shape_text(aligned.shape)
        message = (f"synthetic Dataset {name!r} has {resized_from} images, the real ones are "
                   f"{shape_text(real.shape)}: resized to {shape_text(real.shape)} (recorded in the results)")
        notes.append(message)
        warnings.warn(message, StudyWarning, stacklevel=3)
        aligned = conform(aligned, real.shape)
    if spec.test_split in aligned.split_names:
        test = aligned.split(spec.test_split)
        rest = np.flatnonzero(aligned.splits != spec.test_split)
        if len(rest) == 0:
            raise DataError(f"synthetic Dataset {name!r} ({spec.path}) has only its {spec.test_split!r} split; "
                            "nothing is left to train on")
        pool = aligned.select(rest, fingerprint=derive_fingerprint("not-split", {"name": spec.test_split},
                                                                   [aligned.fingerprint]))
    else:
        # A fixed draw (seed 0), the same for every cell, so every classifier sees the same test images.
        test = subset(aligned, fraction=holdout, seed=0)
        chosen = np.isin(_row_ids(aligned), _row_ids(test))
        pool = aligned.select(np.flatnonzero(~chosen), fingerprint=derive_fingerprint(
            "holdout-rest", {"fraction": holdout, "seed": 0}, [aligned.fingerprint]))
    held_out = (f"its {spec.test_split!r} split" if spec.test_split in aligned.split_names
                else f"a {holdout:g} share of its images")
    return SyntheticInput(name=name, path=spec.path, fingerprint=ds.fingerprint, pool=pool, test=test,
                          resized_from=resized_from, held_out=held_out, provenance=prov,
                          pool_replicate=_pool_replicate(ds, mapped_rows, resized_from is not None, pool, prov),
                          draw=spec.draw)


def _pool_replicate(ds: Dataset, mapped_rows: np.ndarray, resized: bool, pool: Dataset,
                    prov: dict | None) -> np.ndarray | None:
    """The replicate of each image of ``pool``, or None when ``ds`` was not generated from
    replicates. ``pool``'s rows are rows of ``ds``'s array, or (``resized``) of the resized copy,
    whose row j holds the image of ds row ``mapped_rows[j]``."""
    if not (isinstance(prov, dict) and prov.get("replicates")):
        return None
    names = np.array([str(r.get("replicate")) for r in ds.items()], dtype=object)  # by row of ds
    return (names[mapped_rows] if resized else names)[pool.row]


def _row_ids(view: Dataset) -> np.ndarray:
    """One integer per image naming its backing array and row (comparable across views)."""
    return (view.part.astype(np.int64) << 40) | view.row.astype(np.int64)


def align_classes(ds: Dataset, real_names: list[str], class_map: dict[str, str | None], what: str,
                  where: str) -> Dataset:
    """``ds`` with labels renumbered to ``real_names``' order (through ``class_map``: their name
    -> real name, None drops the class). Any class on one side only is an error listing them."""
    unknown = sorted(k for k in class_map if k not in ds.class_names)
    if unknown:
        raise DataError(f"{where} names classes the {what} does not have: {unknown} "
                        f"(it has: {ds.class_names})")
    targets = {c: class_map.get(c, c) for c in ds.class_names}
    extra = sorted(c for c, t in targets.items() if t is not None and t not in real_names)
    covered = {t for t in targets.values() if t is not None}
    missing = sorted(c for c in real_names if c not in covered)
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"classes the real Dataset lacks: {extra}")
        if missing:
            parts.append(f"no images of the real classes {missing}")
        raise DataError(f"the {what} does not match the real classes: it has {'; and '.join(parts)}. "
                        f"Map them with {where}: {{their name: real name}} (null drops a class)")
    if list(ds.class_names) == list(real_names):
        return ds
    lookup = np.array([real_names.index(targets[c]) if targets[c] is not None else -1 for c in ds.class_names])
    labels = lookup[ds.labels]
    keep = np.flatnonzero(labels >= 0)
    fp = derive_fingerprint("class-map", {"map": targets, "to": list(real_names)}, [ds.fingerprint])
    view = ds.select(keep, fingerprint=fp)
    return replace(view, labels=labels[keep], class_names=list(real_names))


def conform(ds: Dataset, shape: tuple[int, int, int], batch: int = 512) -> Dataset:
    """``ds``'s images resized to ``shape`` (H, W, C) in memory: bilinear with antialiasing;
    1 -> 3 channels by repetition, 3 -> 1 by ITU-R BT.601 luma."""
    import torch
    import torch.nn.functional as F

    h, w, c = shape
    out = np.empty((len(ds), h, w, c), np.uint8)
    for start in range(0, len(ds), batch):
        x = torch.from_numpy(ds.take(np.arange(start, min(start + batch, len(ds))))).permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        if x.shape[1] != c:
            if x.shape[1] == 1:
                x = x.expand(-1, c, -1, -1)
            elif c == 1:
                x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            else:
                raise SynthworthError(f"cannot convert {x.shape[1]}-channel images to {c} channels")
        out[start:start + len(x)] = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    fp = derive_fingerprint("resize", {"shape": list(shape), "mode": "bilinear-antialias"}, [ds.fingerprint])
    return Dataset(arrays=[out], part=np.zeros(len(ds), np.int32), row=np.arange(len(ds), dtype=np.int64),
                   labels=ds.labels.copy(), splits=ds.splits.copy(), class_names=list(ds.class_names),
                   fingerprint=fp, manifest=ds.manifest, path=ds.path)


def image_hashes(view: Dataset, batch: int = 4096) -> list[bytes]:
    """A content hash per image (its pixels and shape): equal hashes are identical images."""
    import hashlib

    out: list[bytes] = []
    for start in range(0, len(view), batch):
        pixels = view.take(np.arange(start, min(start + batch, len(view))))
        out += [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in pixels]
    return out
