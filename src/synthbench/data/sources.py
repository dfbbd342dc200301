"""Where real images come from: each source lists its images, labels and splits.

A source does not decode anything; it returns a :class:`Listing` (what to decode, with which
label and split) that :mod:`synthbench.data.prepare` decodes in parallel. Layouts follow the
downloads as they ship:

- ``folder``: ``ROOT/<class>/**/<image>``, or ``ROOT/<split>/<class>/**/<image>`` when every
  top-level folder is a split name (train, valid/val/validation, test); a ROOT holding only
  images (no sub-folders) is an unlabelled Dataset;
- ``animals10``: Kaggle Animals-10, ``raw-img/<italian class>/...`` (the root or ``raw-img``);
- ``fruits``: Kaggle Fruits Classification, ``Fruits Classification/{train,valid,test}/<Class>/``;
- ``celeba``: Kaggle CelebA, ``img_align_celeba/img_align_celeba/*.jpg`` + ``list_eval_partition.csv``
  (+ ``list_attr_celeba.csv`` to label by an attribute);
- ``digits``: scikit-learn's bundled handwritten digits (8x8, 1,797 images);
- ``lfw``: scikit-image's bundled ``lfw_subset`` (25x25 grayscale, 100 faces + 100 non-faces).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthbench.errors import DataError

IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico",
}
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx", ".git", "@eadir"}
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                 "validation": "valid", "test": "test", "testing": "test"}

ANIMALS10_CLASSES = {
    "cane": "dog", "cavallo": "horse", "elefante": "elephant", "farfalla": "butterfly",
    "gallina": "chicken", "gatto": "cat", "mucca": "cow", "pecora": "sheep", "ragno": "spider",
    "scoiattolo": "squirrel",
}
CELEBA_PARTITIONS = {"0": "train", "1": "valid", "2": "test"}


@dataclass
class Listing:
    """What a source found: one entry per candidate image, plus files it refused up front.

    ``refs`` are file paths (str) or, for bundled sources, integer rows of ``arrays``.
    ``labels`` index ``class_names`` (-1: unlabelled). ``splits`` are split names or ``None``
    where the source has no split of its own.
    """

    refs: list
    labels: list[int]
    splits: list[str | None]
    class_names: list[str]
    root: Path | None = None
    arrays: np.ndarray | None = None  # bundled pixels, (N, H, W) float
    value_range: tuple[float, float] = (0.0, 255.0)
    default_channels: int = 3
    skipped: list[dict[str, str]] = field(default_factory=list)
    signature: str = ""  # changes whenever the source's files change

    def relative(self, ref) -> str:
        if isinstance(ref, str) and self.root is not None:
            return os.path.relpath(ref, self.root)
        return str(ref)


# -------------------------------------------------------------------- helpers
def is_junk(name: str) -> bool:
    """Files and folders that never hold data: hidden ones, OS litter, macOS zip leftovers."""
    return name.startswith(".") or name.startswith("._") or name.lower() in JUNK_NAMES


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise DataError(f"{what} {path} is not a folder")
    return path


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not is_junk(p.name))


def _walk_files(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    """All image files below ``folder`` (sorted), and non-image files that were passed over."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
        for name in sorted(filenames):
            if is_junk(name):
                continue
            full = os.path.join(dirpath, name)
            (images if is_image_name(name) else others).append(full)
    return images, [{"file": f, "reason": "not an image file extension"} for f in others]


def signature_of_files(files: list[str], extra: str = "") -> str:
    """A cheap hash of the source's listing: paths, sizes and modification times."""
    h = hashlib.blake2b(digest_size=16)
    h.update(extra.encode())
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}\0missing\n".encode())
    return h.hexdigest()


def _class_folders(root: Path, where: str) -> dict[str, Path]:
    classes = {p.name: p for p in _subdirs(root)}
    if not classes:
        raise DataError(f"{where} {root} has no class sub-folders; expected {root}/<class>/<images>")
    return classes


def _collect(class_dirs: dict[str, Path], names: dict[str, str], split: str | None,
             listing: Listing, where: str) -> None:
    index = {name: i for i, name in enumerate(listing.class_names)}
    for folder_name, folder in class_dirs.items():
        images, others = _walk_files(folder)
        listing.skipped.extend(others)
        if not images:
            raise DataError(f"class folder {folder} in {where} holds no image files; remove it or "
                            "add images (expected files such as .jpg or .png)")
        listing.refs.extend(images)
        listing.labels.extend([index[names[folder_name]]] * len(images))
        listing.splits.extend([split] * len(images))


def _finish(listing: Listing, extra: str = "") -> Listing:
    files = [r for r in listing.refs if isinstance(r, str)]
    listing.signature = signature_of_files(files, extra)
    return listing


# -------------------------------------------------------------------- sources
def folder_source(path: Path, **_: object) -> Listing:
    root = _require_dir(Path(path), "image folder")
    top = _subdirs(root)
    loose = sorted(str(p) for p in root.iterdir() if p.is_file() and not is_junk(p.name))
    if top and all(p.name.lower() in SPLIT_ALIASES for p in top):
        splits = {SPLIT_ALIASES[p.name.lower()]: p for p in top}
        per_split = {s: _class_folders(p, f"split folder") for s, p in splits.items()}
        class_names = sorted({c for classes in per_split.values() for c in classes})
        listing = Listing([], [], [], class_names, root=root)
        for split, classes in per_split.items():
            _collect(classes, {c: c for c in classes}, split, listing, f"split {split!r}")
    elif top:
        classes = _class_folders(root, "image folder")
        listing = Listing([], [], [], sorted(classes), root=root)
        _collect(classes, {c: c for c in classes}, None, listing, str(root))
    else:
        images = [f for f in loose if is_image_name(f)]
        if not images:
            raise DataError(f"image folder {root} holds no images; expected {root}/<class>/<images> "
                            f"(or, for an unlabelled Dataset, image files directly in {root})")
        listing = Listing(images, [-1] * len(images), [None] * len(images), [], root=root)
        loose = []
    for f in loose:
        reason = "outside any class folder" if is_image_name(f) else "not an image file extension"
        listing.skipped.append({"file": f, "reason": reason})
    return _finish(listing)


def animals10_source(path: Path, **_: object) -> Listing:
    root = _require_dir(Path(path), "Animals-10 folder")
    raw = root / "raw-img" if (root / "raw-img").is_dir() else root
    found = {p.name: p for p in _subdirs(raw)}
    known = {name: p for name, p in found.items() if name in ANIMALS10_CLASSES}
    if not known:
        raise DataError(
            f"{root} is not the Animals-10 download: expected {root}/raw-img/<class>/ with the "
            f"Italian class folders ({', '.join(sorted(ANIMALS10_CLASSES))})")
    listing = Listing([], [], [], sorted(ANIMALS10_CLASSES[n] for n in known), root=raw)
    _collect(known, ANIMALS10_CLASSES, None, listing, f"Animals-10 {raw}")
    for name in sorted(set(found) - set(known)):
        listing.skipped.append({"file": str(found[name]), "reason": "not an Animals-10 class folder"})
    return _finish(listing)


def fruits_source(path: Path, **_: object) -> Listing:
    root = _require_dir(Path(path), "Fruits Classification folder")
    base = root / "Fruits Classification" if (root / "Fruits Classification").is_dir() else root
    splits = {p.name.lower(): p for p in _subdirs(base)}
    missing = [s for s in ("train", "valid", "test") if s not in splits]
    if missing:
        raise DataError(
            f"{base} is not the Fruits Classification download: expected split folders "
            f"train/, valid/ and test/ with one folder per fruit inside (missing: {', '.join(missing)})")
    per_split = {s: _class_folders(splits[s], f"Fruits split folder") for s in ("train", "valid", "test")}
    names = {c: c.lower() for classes in per_split.values() for c in classes}
    listing = Listing([], [], [], sorted(set(names.values())), root=base)
    for split, classes in per_split.items():
        _collect(classes, names, split, listing, f"Fruits split {split!r}")
    return _finish(listing)


def celeba_source(path: Path, label_attr: str | None = None, **_: object) -> Listing:
    root = _require_dir(Path(path), "CelebA folder")
    image_dir = root / "img_align_celeba"
    if (image_dir / "img_align_celeba").is_dir():
        image_dir = image_dir / "img_align_celeba"  # the Kaggle zip nests it twice
    partition_csv = root / "list_eval_partition.csv"
    attr_csv = root / "list_attr_celeba.csv"
    expected = (f"expected {root}/img_align_celeba/img_align_celeba/*.jpg with "
                "list_eval_partition.csv (and list_attr_celeba.csv to label by an attribute) beside it, "
                "as in the Kaggle download jessicali9530/celeba-dataset")
    if not image_dir.is_dir():
        raise DataError(f"{root} has no img_align_celeba folder; {expected}")
    if not partition_csv.is_file():
        raise DataError(f"{root} has no list_eval_partition.csv; {expected}")
    partitions = {}
    with open(partition_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            partitions[row["image_id"]] = CELEBA_PARTITIONS.get(str(row["partition"]).strip())
    labels_of: dict[str, int] | None = None
    class_names: list[str] = []
    if label_attr:
        if not attr_csv.is_file():
            raise DataError(f"--label-attr {label_attr} needs {attr_csv}; {expected}")
        with open(attr_csv, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            attrs = [c for c in (reader.fieldnames or []) if c != "image_id"]
            if label_attr not in attrs:
                raise DataError(f"unknown CelebA attribute {label_attr!r}; known: {', '.join(attrs)}")
            labels_of = {row["image_id"]: int(int(row[label_attr]) > 0) for row in reader}
        class_names = [f"not_{label_attr.lower()}", label_attr.lower()]
    listing = Listing([], [], [], class_names, root=image_dir)
    for name in sorted(os.listdir(image_dir)):
        full = str(image_dir / name)
        if is_junk(name):
            continue
        if not is_image_name(name):
            listing.skipped.append({"file": full, "reason": "not an image file extension"})
            continue
        split = partitions.get(name)
        if split is None:
            listing.skipped.append({"file": full, "reason": "not listed in list_eval_partition.csv"})
            continue
        if labels_of is not None and name not in labels_of:
            listing.skipped.append({"file": full, "reason": f"not listed in {attr_csv.name}"})
            continue
        listing.refs.append(full)
        listing.labels.append(labels_of[name] if labels_of is not None else -1)
        listing.splits.append(split)
    if not listing.refs:
        raise DataError(f"no CelebA images found in {image_dir}; {expected}")
    attr_stamp = attr_csv.stat().st_mtime_ns if label_attr else ""  # labels come from it
    return _finish(listing, extra=f"{partition_csv.stat().st_mtime_ns}:{attr_stamp}:{label_attr}")


def digits_source(path: Path | None = None, **_: object) -> Listing:
    from sklearn import __version__ as sklearn_version
    from sklearn.datasets import load_digits

    digits = load_digits()
    n = len(digits.target)
    return Listing(list(range(n)), [int(t) for t in digits.target], [None] * n,
                   [str(c) for c in range(10)], arrays=digits.images, value_range=(0.0, 16.0),
                   default_channels=1, signature=f"sklearn-{sklearn_version}-digits")


def lfw_source(path: Path | None = None, **_: object) -> Listing:
    from skimage import __version__ as skimage_version
    from skimage.data import lfw_subset

    faces = lfw_subset()  # (200, 25, 25) floats in [0, 1]: 100 faces then 100 non-faces
    n = len(faces)
    labels = [0] * (n // 2) + [1] * (n - n // 2)
    return Listing(list(range(n)), labels, [None] * n, ["face", "non_face"], arrays=faces,
                   value_range=(0.0, 1.0), default_channels=1,
                   signature=f"skimage-{skimage_version}-lfw_subset")


SOURCES: dict[str, Callable[..., Listing]] = {
    "folder": folder_source,
    "animals10": animals10_source,
    "fruits": fruits_source,
    "celeba": celeba_source,
    "digits": digits_source,
    "lfw": lfw_source,
}
BUNDLED = {"digits", "lfw"}
