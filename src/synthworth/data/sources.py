"""Where real images come from: each source lists its images, labels and splits.

A source does not decode anything; it returns a :class:`Listing` (what to decode, with which
label and split) that :mod:`synthworth.data.prepare` decodes in parallel. Layouts follow the
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

A layout the source does not expect is refused, never guessed into labels: split folders
where classes belong (or next to other folders), a class folder holding split folders (one
level off), a single wrapper folder around the class folders, and class folders that reach
the same images twice through symbolic links. A symbolic link to a class folder outside the
source is followed; links to folders below a class folder are not (reported as skipped).
Only regular files are opened: FIFOs, sockets, devices and broken links are skipped and listed.
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthworth.errors import DataError

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


def _kind(path: str) -> tuple[str, str]:
    """("dir" | "file" | "skip", reason) for one entry, following symbolic links.

    Only regular files are ever opened: a FIFO blocks its reader forever and a device or
    socket is no image, so they are reported instead. ``os.stat`` fails on broken links and
    on link loops, which are reported too (never followed round and round).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            return "skip", f"broken or looping symbolic link ({exc.strerror})"
        return "skip", f"unreadable ({exc.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "dir", ""
    if stat.S_ISREG(st.st_mode):
        return "file", ""
    what = ("FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
            else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "special file")
    return "skip", f"not a regular file ({what}); not opened"


def _scan(path: Path) -> tuple[list[Path], list[Path], list[dict[str, str]]]:
    """The non-junk sub-folders and regular files directly in ``path`` (sorted), and the
    entries that are neither (FIFOs, sockets, devices, broken links), with the reason."""
    dirs, files, skipped = [], [], []
    for name in sorted(os.listdir(path)):
        if is_junk(name):
            continue
        full = path / name
        kind, reason = _kind(str(full))
        if kind == "dir":
            dirs.append(full)
        elif kind == "file":
            files.append(full)
        else:
            skipped.append({"file": str(full), "reason": reason})
    return dirs, files, skipped


def _subdirs(path: Path) -> list[Path]:
    return _scan(path)[0]


def _walk_files(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    """All image files below ``folder`` (sorted), and the entries that were passed over.

    Symbolic links to folders are not followed (``os.walk``'s default: a link back up the
    tree would otherwise loop); they are reported, like non-image and non-regular files.
    """
    images, skipped = [], []

    def unreadable(exc: OSError) -> None:
        skipped.append({"file": str(exc.filename), "reason": f"unreadable folder ({exc.strerror})"})

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        kept = []
        for d in sorted(dirnames):
            if is_junk(d):
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                skipped.append({"file": os.path.join(dirpath, d),
                                "reason": "symbolic link to a folder inside a class folder; not followed"})
            else:
                kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if is_junk(name):
                continue
            full = os.path.join(dirpath, name)
            kind, reason = _kind(full)
            if kind != "file":
                skipped.append({"file": full, "reason": reason or "not a regular file; not opened"})
            elif is_image_name(name):
                images.append(full)
            else:
                skipped.append({"file": full, "reason": "not an image file extension"})
    return images, skipped


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


def _names(paths, limit: int = 6) -> str:
    names = [Path(p).name + "/" for p in paths]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _check_classes(root: Path, classes: dict[str, Path], expected: str, *, wrapper: bool) -> None:
    """Refuse class folders that are really split folders or one level off, so that a layout
    the source does not expect never turns splits or wrappers into classes silently."""
    found = f"found {root}/{{{_names(classes.values()).replace('/', '')}}}"
    as_splits = [p for name, p in classes.items() if name.lower() in SPLIT_ALIASES]
    if as_splits:
        raise DataError(f"{_names(as_splits)} in {root} look like split folders where class folders "
                        f"belong; {found}; expected {expected}")
    for name, folder in classes.items():
        inner = _subdirs(folder)
        splits = [p for p in inner if p.name.lower() in SPLIT_ALIASES]
        if splits:
            raise DataError(f"class folder {folder} holds split folders ({_names(splits)}): the layout "
                            f"is one level off; expected {expected}; if {folder} is the dataset, "
                            f"use --path {folder}")
    if wrapper and len(classes) == 1:
        (folder,) = classes.values()
        inner, files, _ = _scan(folder)
        if len(inner) >= 2 and not any(is_image_name(f.name) for f in files):
            raise DataError(f"{root} holds a single folder {folder.name}/ around the folders "
                            f"{_names(inner)}, which would all become one class; expected {expected}; "
                            f"if those are the classes, use --path {folder}")


def _check_links(root: Path, folders: list[Path]) -> None:
    """Class folders reached through symbolic links must be distinct real folders that do not
    hold one another nor the source itself: otherwise images get two labels (or two splits)."""
    top = Path(os.path.realpath(root)).parts
    real = sorted((Path(os.path.realpath(f)).parts, f) for f in folders)
    for parts, folder in real:
        if top[:len(parts)] == parts:
            raise DataError(f"class folder {folder} is a symbolic link to {Path(*parts)}, which holds "
                            f"the whole source {root}: its images would be labelled twice; remove the link")
    for (a, fa), (b, fb) in zip(real, real[1:]):
        if b[:len(a)] == a:
            link = fb if os.path.islink(fb) else fa
            raise DataError(f"class folders {fa} and {fb} are the same folder or hold one another "
                            f"({link} is a symbolic link to {os.path.realpath(link)}): their images "
                            f"would be labelled twice; remove the link")


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
    top, files, specials = _scan(root)
    expected = (f"{root}/<class>/<images>, or {root}/<split>/<class>/<images> with split folders "
                "named train, valid (or val, validation) and test")
    split_like = [p for p in top if p.name.lower() in SPLIT_ALIASES]
    if split_like and len(split_like) < len(top):
        others = [p for p in top if p not in split_like]
        raise DataError(f"{root} mixes split folders ({_names(split_like)}) with other folders "
                        f"({_names(others)}); expected {expected}; move or rename the other folders")
    loose = [str(f) for f in files]
    if split_like:
        aliases: dict[str, Path] = {}
        for p in split_like:
            split = SPLIT_ALIASES[p.name.lower()]
            if split in aliases:
                raise DataError(f"{root} has two folders for the {split!r} split ({aliases[split].name}/ "
                                f"and {p.name}/); expected {expected}; merge or remove one")
            aliases[split] = p
        per_split = {}
        for s, p in aliases.items():
            per_split[s] = _class_folders(p, "split folder")
            _check_classes(p, per_split[s], expected, wrapper=True)
        _check_links(root, [f for classes in per_split.values() for f in classes.values()])
        class_names = sorted({c for classes in per_split.values() for c in classes})
        listing = Listing([], [], [], class_names, root=root)
        for split, classes in per_split.items():
            _collect(classes, {c: c for c in classes}, split, listing, f"split {split!r}")
    elif top:
        classes = _class_folders(root, "image folder")
        _check_classes(root, classes, expected, wrapper=True)
        _check_links(root, list(classes.values()))
        listing = Listing([], [], [], sorted(classes), root=root)
        _collect(classes, {c: c for c in classes}, None, listing, str(root))
    else:
        images = [f for f in loose if is_image_name(f)]
        if not images:
            raise DataError(f"image folder {root} holds no images; expected {root}/<class>/<images> "
                            f"(or, for an unlabelled Dataset, image files directly in {root})")
        listing = Listing(images, [-1] * len(images), [None] * len(images), [], root=root)
        loose = []
    listing.skipped.extend(specials)
    for f in loose:
        reason = "outside any class folder" if is_image_name(f) else "not an image file extension"
        listing.skipped.append({"file": f, "reason": reason})
    return _finish(listing)


def animals10_source(path: Path, **_: object) -> Listing:
    root = _require_dir(Path(path), "Animals-10 folder")
    raw = root / "raw-img" if (root / "raw-img").is_dir() else root
    dirs, _, specials = _scan(raw)
    found = {p.name: p for p in dirs}
    known = {name: p for name, p in found.items() if name in ANIMALS10_CLASSES}
    expected = (f"{root}/raw-img/<class>/ with the Italian class folders "
                f"({', '.join(sorted(ANIMALS10_CLASSES))})")
    if not known:
        raise DataError(f"{root} is not the Animals-10 download: expected {expected}")
    _check_classes(raw, known, expected, wrapper=False)
    _check_links(raw, list(known.values()))
    listing = Listing([], [], [], sorted(ANIMALS10_CLASSES[n] for n in known), root=raw)
    _collect(known, ANIMALS10_CLASSES, None, listing, f"Animals-10 {raw}")
    listing.skipped.extend(specials)
    for name in sorted(set(found) - set(known)):
        listing.skipped.append({"file": str(found[name]), "reason": "not an Animals-10 class folder"})
    return _finish(listing)


def fruits_source(path: Path, **_: object) -> Listing:
    root = _require_dir(Path(path), "Fruits Classification folder")
    base = root / "Fruits Classification" if (root / "Fruits Classification").is_dir() else root
    dirs, _, specials = _scan(base)
    splits = {p.name.lower(): p for p in dirs}
    expected = (f"{base}/{{train,valid,test}}/<fruit>/<images> as in the Kaggle Fruits "
                "Classification download")
    missing = [s for s in ("train", "valid", "test") if s not in splits]
    if missing:
        raise DataError(
            f"{base} is not the Fruits Classification download: expected split folders "
            f"train/, valid/ and test/ with one folder per fruit inside (missing: {', '.join(missing)})")
    unknown = [p for name, p in splits.items() if name not in ("train", "valid", "test")]
    if unknown:
        raise DataError(f"{base} holds folders other than train/, valid/ and test/ ({_names(unknown)}); "
                        f"expected {expected}; move them out of {base}")
    per_split = {}
    for s in ("train", "valid", "test"):
        per_split[s] = _class_folders(splits[s], "Fruits split folder")
        _check_classes(splits[s], per_split[s], expected, wrapper=False)
    _check_links(base, [f for classes in per_split.values() for f in classes.values()])
    names = {c: c.lower() for classes in per_split.values() for c in classes}
    listing = Listing([], [], [], sorted(set(names.values())), root=base)
    for split, classes in per_split.items():
        _collect(classes, names, split, listing, f"Fruits split {split!r}")
    listing.skipped.extend(specials)
    return _finish(listing)


def _read_csv(path: Path, columns: tuple[str, ...], expected: str) -> tuple[list[str], list[dict]]:
    """Rows of a CelebA csv file; a file without the needed columns is a DataError."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(f"{path} has no column {', '.join(missing)} (its header: "
                                f"{', '.join(header)[:200] or 'empty'}); {expected}")
            return header, list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} cannot be read as csv ({exc}); {expected}") from None


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
    if _kind(str(partition_csv))[0] != "file":
        raise DataError(f"{root} has no list_eval_partition.csv (or it is not a regular file); {expected}")
    _, rows = _read_csv(partition_csv, ("image_id", "partition"), expected)
    partitions = {row["image_id"]: CELEBA_PARTITIONS.get(str(row["partition"]).strip()) for row in rows}
    labels_of: dict[str, int] | None = None
    class_names: list[str] = []
    if label_attr:
        if _kind(str(attr_csv))[0] != "file":
            raise DataError(f"--label-attr {label_attr} needs {attr_csv}; {expected}")
        header, rows = _read_csv(attr_csv, ("image_id",), expected)
        attrs = [c for c in header if c != "image_id"]
        if label_attr not in attrs:
            raise DataError(f"unknown CelebA attribute {label_attr!r}; known: {', '.join(attrs)}")
        # Class names are sorted in every Dataset (label i is the i-th name, as torchvision's
        # ImageFolder numbers sorted folders): "male" sorts before "not_male", "not_smiling"
        # before "smiling", so the positive class's index depends on the attribute's name.
        positive, negative = label_attr.lower(), f"not_{label_attr.lower()}"
        class_names = sorted([positive, negative])
        try:
            labels_of = {row["image_id"]: class_names.index(positive if int(row[label_attr]) > 0
                                                            else negative) for row in rows}
        except (TypeError, ValueError) as exc:
            raise DataError(f"{attr_csv}: column {label_attr} must hold 1 or -1 ({exc}); {expected}") from None
    listing = Listing([], [], [], class_names, root=image_dir)
    for name in sorted(os.listdir(image_dir)):
        full = str(image_dir / name)
        if is_junk(name):
            continue
        kind, reason = _kind(full)
        if kind != "file":
            if kind == "skip":
                listing.skipped.append({"file": full, "reason": reason})
            elif kind == "dir":
                listing.skipped.append({"file": full, "reason": "a folder inside the image folder"})
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
