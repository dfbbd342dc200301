"""What synthworth may do to the user's files: the one place that decides.

* **Ownership.** Every folder synthworth creates as an output carries a small marker file,
  ``.synthworth``, naming what kind of output it is and every top-level entry synthworth wrote
  into it. Only such a folder, holding nothing but those entries, may be replaced or deleted
  (``--overwrite``); anything else is foreign and is never touched. :func:`check_replaceable`
  is the check, :func:`mark_owned` writes the marker.
* **Inputs and outputs are apart.** An output may not be, contain, or lie inside an input
  (:func:`check_apart`): ``--out photos`` for ``--path photos`` is refused before anything
  is written.
* **One writer per output.** :func:`output_lock` takes an exclusive ``flock`` on a lock file
  inside the output; a second process is refused with the holder named. The kernel drops the
  lock when its holder dies, so a killed run never leaves a stale lock behind.
* **Names from disk are data.** Class and generator names may come from someone else's files:
  :func:`safe_name` turns one into a file name that stays inside its folder (the real name is
  kept in the metadata), and :func:`safe_names` keeps a whole list distinct, also on disks that
  ignore case.

Written by hand: no maintained library covers "delete only what we wrote" or name-to-file-name
mapping with case-insensitive collision handling; ``fcntl`` is the standard library's.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthworth.errors import SynthworthError

MARKER = ".synthworth"
LOCK = ".synthworth.lock"
# What this project wrote under its first name (synthbench): recognised, never written.
OLD_MARKER, OLD_LOCK = ".synthbench", ".synthbench.lock"
LOCKS = {LOCK, OLD_LOCK}
MARKERS = {MARKER, OLD_MARKER}
# Marker kinds written by more than one room (every other kind is named where its output is made).
GENERATION = "generation"                # a generation folder, OUT (generate; its HF layout: data.hf)
GENERATION_NATIVE = "generation-native"  # and its native-size images, OUT-native

# Folders synthworth 0.1.0 wrote before markers existed: recognised as its own when they hold only
# these entries and the first one listed (their signature file) is there.
LEGACY_ENTRIES: dict[str, tuple[str, ...]] = {
    "dataset": ("manifest.json", "images.npy", "labels.npy", "splits.npy", "items.jsonl"),
    "generator": ("synthbench.json", "generator.safetensors", "model_index.json", "unet", "scheduler", "vae"),
}


class OwnershipError(SynthworthError):
    """An output path holds something synthworth did not write, or overlaps an input."""


class LockedError(SynthworthError):
    """Another process is writing the same output."""


# ------------------------------------------------------------------------------------ ownership
def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a synthworth output folder, or None when there is none (or it is unreadable)."""
    path = Path(folder) / MARKER
    if not path.exists() and (Path(folder) / OLD_MARKER).exists():
        path = Path(folder) / OLD_MARKER  # written before the rename
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def mark_owned(folder: str | os.PathLike, kind: str, entries: Iterable[str] | None = None) -> None:
    """Write (or extend) ``folder``'s marker: it is a synthworth output of ``kind`` whose top-level
    entries are ``entries`` (default: whatever the folder holds now). Written atomically."""
    from synthworth import __version__

    folder = Path(folder)
    # Several processes (or threads) may extend one marker at once (the processes of one
    # generation): a lock on the folder itself serialises the read-modify-write.
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        previous = read_marker(folder) or {}
        names = set(previous.get("entries", [])) if previous.get("kind") == kind else set()
        names |= set(entries) if entries is not None else {p.name for p in folder.iterdir()}
        names -= MARKERS | LOCKS
        data = {"kind": kind, "entries": sorted(names), "synthworth_version": __version__,
                "created": previous.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = folder / f"{MARKER}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part"
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, folder / MARKER)
    finally:
        os.close(dir_fd)  # drops the lock


def owned_kind(folder: str | os.PathLike) -> str | None:
    """The kind of synthworth output ``folder`` is, when it holds nothing synthworth did not
    write; None otherwise (foreign, mixed, or not a folder)."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return None
    present = {p.name for p in folder.iterdir()} - LOCKS
    marker = read_marker(folder)
    if marker is not None:
        allowed = set(marker.get("entries", [])) | MARKERS
        return marker["kind"] if present <= allowed | _partial_files(present) else None
    for kind, names in LEGACY_ENTRIES.items():
        if names[0] in present and present <= set(names) and _legacy_signature(folder / names[0]):
            return kind
    return None


def _partial_files(names: set[str]) -> set[str]:
    """Half-written files synthworth itself leaves while writing (``*.part``, ``.NAME.<pid>.part``,
    and the ``.NAME.tmp-<pid>-<id>`` folders of :func:`synthworth.data.dataset.atomic_folder`)."""
    return {n for n in names if n.endswith(".part") or ".part." in n or (n.startswith(".") and ".tmp-" in n)}


def _legacy_signature(path: Path) -> bool:
    """A JSON file of synthworth's: a manifest (``format_version``) or a model config (``kind``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and ("format_version" in data or "kind" in data)


def foreign_entries(folder: Path, limit: int = 3) -> list[str]:
    """Up to ``limit`` top-level names in ``folder`` that its marker does not list (for messages)."""
    marker = read_marker(folder) or {}
    allowed = set(marker.get("entries", [])) | MARKERS | LOCKS
    names = sorted(p.name for p in folder.iterdir() if p.name not in allowed)
    return names[:limit]


def suggest_new(path: Path) -> Path:
    """A sibling name that does not exist yet: ``NAME-2``, ``NAME-3``, ..."""
    if not path.name:  # "." or "/": name the folder itself
        path = path.resolve()
        if not path.name:
            return Path("/synthworth-out")
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.name}-{i}")
        if not candidate.exists():
            return candidate
    return path.with_name(f"{path.name}-new")


def check_replaceable(out: str | os.PathLike, kinds: str | Iterable[str], *, what: str = "--out") -> None:
    """Raise :class:`OwnershipError` unless ``out`` is absent, an empty folder, or a synthworth
    output of one of ``kinds`` holding nothing else, i.e. unless synthworth may replace it."""
    out = Path(out)
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink():
        raise OwnershipError(f"{what} {out} is a symbolic link; synthworth never replaces one: "
                             f"choose a new folder, e.g. {suggest_new(out)}")
    if not out.is_dir():
        raise OwnershipError(f"{what} {out} is a file, not a folder; choose a new folder, e.g. {suggest_new(out)}")
    if not {p.name for p in out.iterdir()} - LOCKS:
        return  # empty, or only the lock of a synthworth run that stopped before writing anything
    kind = owned_kind(out)
    if kind in kinds:
        return
    wanted = " or ".join(sorted(kinds))
    marker = read_marker(out)
    if kind is not None or (marker is not None and marker["kind"] not in kinds):
        found = kind or marker["kind"]
        raise OwnershipError(f"{what} {out} holds a synthworth {found}, not a {wanted}; synthworth will not "
                             f"replace it: choose a new folder, e.g. {suggest_new(out)}")
    if marker is not None:
        extra = ", ".join(foreign_entries(out))
        raise OwnershipError(f"{what} {out} holds files synthworth did not write ({extra}); it will not be "
                             f"replaced: move them away or choose a new folder, e.g. {suggest_new(out)}")
    raise OwnershipError(f"{what} {out} already exists and was not written by synthworth (no {MARKER} "
                         f"marker); it will not be replaced: choose a new folder, e.g. {suggest_new(out)}")


def check_apart(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *,
                what: str = "--out") -> None:
    """Raise :class:`OwnershipError` when ``out`` is, contains, or lies inside one of ``inputs``
    (symbolic links resolved): an output never overlaps what is being read."""
    target = Path(out).resolve()
    for source in inputs:
        if source is None:
            continue
        src = Path(source).resolve()
        if target == src:
            raise OwnershipError(f"{what} {out} is the input {source} itself; choose a new folder "
                                 f"outside it, e.g. {suggest_new(Path(out))}")
        if src.is_relative_to(target):
            raise OwnershipError(f"{what} {out} contains the input {source}; choose a new folder "
                                 f"outside it, e.g. {suggest_new(Path(out))}")
        if target.is_relative_to(src) and src.is_dir():
            raise OwnershipError(f"{what} {out} lies inside the input {source}; choose a folder outside "
                                 f"it, e.g. {Path(source).parent / (Path(source).name + '-out')}")


# ------------------------------------------------------------------------------------ report pages
# A page the report wrote (its own, or a comparison's) is recognised by a generator tag in its head
# (pages of synthworth 0.1.0, which had none, by their exact opening); its figures lie in a folder
# of kind REPORT_FIGURES beside it (see synthworth.report.output).
REPORT_FIGURES = "report-figures"
GENERATOR_TAG = "<meta name='generator' content='synthworth"
OLD_GENERATOR_TAG = "<meta name='generator' content='synthbench"  # pages written before the rename
LEGACY_HEAD = "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>synthworth report: "
LEGACY_HEADS = (LEGACY_HEAD, LEGACY_HEAD.replace("synthworth", "synthbench"))


def figures_dir(page: Path) -> Path:
    return page.with_name(f"{page.stem}-figures")


def is_report_page(path: Path) -> bool:
    """Whether ``path`` is a page the report wrote (checked on its first bytes only)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    head = head.split("</head>")[0]
    return GENERATOR_TAG in head or OLD_GENERATOR_TAG in head or head.startswith(LEGACY_HEADS)


def remove_page(page: Path) -> None:
    """Remove a page the report wrote and its figures folder (only if they are the report's own:
    anything else there is left as it is), e.g. before the data the page showed is replaced."""
    if page.is_file() and not page.is_symlink() and is_report_page(page):
        page.unlink()
    figdir = figures_dir(page)
    if owned_kind(figdir) == REPORT_FIGURES:
        shutil.rmtree(figdir)


# ------------------------------------------------------------------------------------ locks
def _describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {info.get('pid')} on {info.get('host')}, '{info.get('command')}', "
                f"since {info.get('since')}")
    except (OSError, ValueError, UnicodeDecodeError):
        return "another process"


@contextmanager
def output_lock(folder: str | os.PathLike, *, name: str = LOCK, what: str = "this output",
                wait: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs.

    A second holder is refused at once with a :class:`LockedError` naming the first (or, with
    ``wait``, waits for it: for shared caches, where the second process wants the same result).
    The lock is an ``flock`` on ``folder/name``: released by the kernel when the process dies."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockedError(f"{folder} is in use by another synthworth process ({_describe_holder(path)}); "
                              f"wait for it to finish, or write {what} to another folder") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join(["synthworth", *sys.argv[1:]])[:300],
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing drops the flock


# ------------------------------------------------------------------------------------ names
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
MAX_NAME = 80


def safe_name(name: Any, *, fallback: str = "class") -> str:
    """A file name made from ``name`` that stays inside its folder on every common disk: no
    separators, control characters or NUL, no leading dot (no ``..``), no Windows reserved name,
    at most :data:`MAX_NAME` characters. Readable names are kept as they are; an altered one
    gets a short hash of the original so two different names never meet."""
    text = unicodedata.normalize("NFC", str(name))
    clean = _UNSAFE.sub("_", text).strip().strip(".").strip()
    if not clean or clean.lower() in _RESERVED:
        clean = f"{fallback}_{clean}" if clean else fallback
    if clean == text and len(clean) <= MAX_NAME:
        return clean
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=3).hexdigest()
    return f"{clean[:MAX_NAME - 7]}-{digest}"


def one_line(value: Any) -> str:
    """``value`` as text for one line of printed output: each character a terminal would not show
    as itself (line breaks, tabs, escape sequences, bidirectional controls) written as its escape
    (``\\n``, ``\\x1b``, ``\\u202e``), so a name from data can neither end a sentence's line and
    forge the next one nor restyle the terminal. Printable text is returned as it is."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def safe_names(names: Iterable[Any], *, fallback: str = "class") -> list[str]:
    """:func:`safe_name` of each name, made distinct ignoring case (``Cat`` and ``cat`` would be
    one folder on a case-insensitive disk): later duplicates get ``-2``, ``-3``, ..."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        base = candidate = safe_name(name, fallback=fallback)
        i = 2
        while candidate.casefold() in seen:
            candidate, i = f"{base}-{i}", i + 1
        seen.add(candidate.casefold())
        out.append(candidate)
    return out
