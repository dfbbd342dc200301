"""The output folder of ``synthworth generate``: who may write it, and what its runs did.

* **Shares and locks.** ``--shard i/n`` and the processes of ``accelerate launch`` each take every
  n-th block of images. Each writer holds a lock for its share (:func:`writing`); a second process
  on an overlapping share of the same folder is refused with the holder named, while shards of
  one plan may share a folder. Replacing or finishing a folder takes every lock (:func:`alone`).
* **Timing that adds up.** Every finished block is logged at once in ``generation.jsonl``
  (:class:`Session`), so a killed run keeps what it finished and the block a kill interrupted is
  logged whole by the run that finishes it; :func:`totals` sums the rows into the manifest's
  ``generation`` entry, each block once, with every run's own share.
* **The output and its checks.** Before anything is loaded or written, ``--out`` and
  ``OUT-native`` must lie apart from the inputs and be replaceable (:func:`_check_output`);
  ``--overwrite`` empties only what synthworth wrote (:func:`_clear`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthworth.data.dataset import MANIFEST
from synthworth.data.hf import generated_entries
from synthworth.errors import DataError, SynthworthError
from synthworth.generate.config import GenerateConfig
from synthworth.generate.plan import (PLAN_FILE, DamagedPlan, _differences, _Layout, _read_plan, native_folder,
                                     same_plan)
from synthworth.safety import (GENERATION, GENERATION_NATIVE, LOCK, MARKER, OwnershipError, check_apart,
                               check_replaceable, mark_owned, output_lock, owned_kind, read_marker, suggest_new)

TIMING_FILE = "generation.jsonl"
_SHARD_LOCK = re.compile(r"\.synth(?:worth|bench)-shard-(\d+)-of-(\d+)\.lock")  # bench: before the rename


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count``: every ``count``-th block of images, starting at ``index``."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise SynthworthError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise SynthworthError(f"--shard {text!r}: need 0 <= i < n")
        return cls(index, count)

    def within(self, process: int, processes: int) -> Shard:
        """The part of this shard one of ``processes`` processes takes (blocks i + n*p mod n*P)."""
        return Shard(self.index + self.count * process, self.count * processes)

    def blocks(self, total: int) -> range:
        return range(self.index, total, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"



def _lock_name(part: Shard) -> str:
    return LOCK if part.count == 1 else f".synthworth-shard-{part.index}-of-{part.count}.lock"


def locks_in(out: Path) -> dict[str, Shard]:
    """The lock files in ``out`` and the share of the blocks each one guards."""
    found = {}
    for path in out.iterdir() if out.is_dir() else ():
        match = _SHARD_LOCK.fullmatch(path.name)
        if path.name == LOCK:
            found[path.name] = Shard()
        elif match and 0 <= int(match[1]) < int(match[2]):
            found[path.name] = Shard(int(match[1]), int(match[2]))
    return found


def _overlap(a: Shard, b: Shard) -> bool:
    """Whether two shares have a block in common (block b is in i/n when b = i mod n)."""
    return (a.index - b.index) % math.gcd(a.count, b.count) == 0


@contextmanager
def writing(out: Path, part: Shard, entries: list[str]) -> Iterator[None]:
    """Hold the lock of this share of ``out``'s blocks; refuse when another process holds a share
    that overlaps it (shards of one plan may share a folder, two writers of one block may not)."""
    out.mkdir(parents=True, exist_ok=True)
    name = _lock_name(part)
    mark_owned(out, GENERATION, [*entries, name])  # before the lock file appears in it
    with output_lock(out, name=name, what="these images"):
        for other, share in locks_in(out).items():
            if other != name and _overlap(part, share):
                with output_lock(out, name=other, what="these images"):
                    pass  # free: its holder has finished (or died)
        yield


@contextmanager
def alone(out: Path) -> Iterator[None]:
    """Hold every lock of ``out``: no other synthworth process is writing it (to replace or finish it)."""
    with ExitStack() as stack:
        for name in sorted({LOCK, *locks_in(out)}):
            stack.enter_context(output_lock(out, name=name, what="this generation"))
        yield


class Session:
    """This run's part of ``generation.jsonl``: one line per finished block, appended at once, so a
    killed run keeps what it finished, and the block a kill interrupted is logged (whole) by the run
    that finishes it: the images logged add up to the plan's count over resumed runs and shards."""

    def __init__(self, out: Path, name: str, source, shard: Shard, process: int):
        self.file, self.source = out / TIMING_FILE, source
        self.base = {"session": uuid.uuid4().hex[:12], "name": name, "shard": str(shard),
                     "process": process}
        self.images = self.written = 0
        self.seconds = self.sampled = 0.0
        self.native_marked = False

    def log(self, block: int, images: int, written: int, seconds: float, sampled: float) -> None:
        """``seconds``: the block's whole time (sampling and writing); ``sampled``: its sampling call's."""
        self.images, self.written, self.seconds = self.images + images, self.written + written, self.seconds + seconds
        self.sampled += sampled
        row = {**self.base, "block": block, "images": images, "written": written, "seconds": round(seconds, 4),
               "sample_seconds": round(sampled, 6), **self.source.runtime(),
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        # One short line per append: concurrent processes do not interleave within it.
        with open(self.file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def report(self, skipped: int, progress: bool) -> None:
        if progress:
            rate = self.sampled / max(1, self.images)
            runtime = self.source.runtime()
            print(f"{self.base['name']!r}: generated {self.written} images in {self.seconds:.1f}s "
                  f"({rate:.3g} s/image sampling) on {runtime.get('device_name') or runtime.get('device')}"
                  + (f"; {skipped} were already there" if skipped else ""), file=sys.stderr)



def read_timings(out: Path) -> list[dict[str, Any]]:
    """The rows of ``generation.jsonl``, each (session, block) once; a line cut short by a kill or a
    full disk is skipped (it is the one row a crash can lose)."""
    file = out / TIMING_FILE
    if not file.is_file():
        return []
    rows, seen = [], set()
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        key = row_key(row)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def row_key(row: dict[str, Any]) -> str:
    """What makes a timing row one: its session and block (rows of 0.1.0 have neither: the whole row)."""
    if "session" in row:
        return json.dumps([row.get("session"), row.get("block")])
    return json.dumps(row, sort_keys=True)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def totals(rows: list[dict[str, Any]], blocks: int) -> dict[str, Any]:
    """The generation's images and seconds over all its runs (sessions), shards and processes.

    ``images_generated`` counts each block once (the run that finished it); ``seconds`` is all the
    time spent, blocks made again included; ``sessions`` lists every run's own share, and the
    shares' images and seconds sum to the totals."""
    sessions: dict[str, dict[str, Any]] = {}
    done: set[int] = set()
    images = 0
    for row in rows:
        block = row.get("block")
        count = int(_number(row.get("images", row.get("generated"))))  # "generated": rows of 0.1.0
        key = str(row.get("session", f"run-{len(sessions)}"))
        s = sessions.setdefault(key, {"session": key, "shard": row.get("shard"), "process": row.get("process"),
                                      "device": row.get("device"), "images": 0, "seconds": 0.0})
        if isinstance(block, int) and block in done:
            count = 0  # two overlapping writers: the block counts once
        elif isinstance(block, int):
            done.add(block)
        s["images"] += count
        s["seconds"] += _number(row.get("seconds"))
        images += count
    for s in sessions.values():
        s["seconds"] = round(s["seconds"], 4)
    return {"seconds": round(sum(s["seconds"] for s in sessions.values()), 4), "images_generated": images,
            "blocks": blocks, "blocks_logged": len(done), "runs": len(sessions),
            "sessions": list(sessions.values())}


# ------------------------------------------------------------------------------ the output folder
PACKED = ("metadata.jsonl", "images.npy", "labels.npy", "splits.npy", "items.jsonl", MANIFEST)


def _entries(plan: dict[str, Any]) -> list[str]:
    """Every top-level name synthworth may write into a generation folder of this plan."""
    return [PLAN_FILE, TIMING_FILE, LOCK, *PACKED, *generated_entries(), *_Layout.of(plan).folders()]


def _inputs(config: GenerateConfig, source) -> list[Path]:
    """Everything a generation reads: --out may not be, contain or lie inside any of it."""
    paths = [config.from_run, getattr(source, "folder", None), config.subjects_from, *getattr(source, "inputs", [])]
    return [Path(p) for p in paths if p is not None and Path(p).exists()]


def _check_output(out: Path, plan: dict[str, Any], inputs: list[Path], overwrite: bool) -> None:
    """Read-only checks of ``out`` and ``OUT-native`` before anything is loaded or written."""
    check_apart(out, inputs)
    check_replaceable_generation(out, what="--out")
    try:
        saved = _read_plan(out) if out.is_dir() else None
    except DamagedPlan:
        if not overwrite:
            raise
        saved = None  # --overwrite: the folder is synthworth's, and is about to be emptied
    if saved is not None and not same_plan(saved, plan) and not overwrite:
        raise DataError(f"{out} was started with other options ({_differences(saved, plan)}); run the same "
                        "command as before to finish it, or choose another --out (or pass --overwrite)")
    native = native_folder(out)
    if not plan["keep_native"]:
        return  # never written, never removed: whatever is there is left alone
    try:
        check_apart(native, inputs, what="the native-size folder")
        check_replaceable(native, GENERATION_NATIVE, what="the native-size folder")
    except OwnershipError:
        raise OwnershipError(f"the native-size copies of --out {out} go to {native}, which holds something "
                             f"else; choose another --out, or pass --no-native") from None
    if saved is None and not overwrite and native.is_dir() and any(native.iterdir()):
        raise DataError(f"{native} is left from an earlier generation into {out}; pass --overwrite to "
                        f"replace both, or choose another --out")


def check_replaceable_generation(out: Path, *, what: str) -> None:
    """:func:`check_replaceable` for generation folders, with a clear word for those of synthworth
    0.1.0 (a plan file but no marker): they cannot be told apart from a folder holding more."""
    if out.is_dir() and (out / PLAN_FILE).is_file() and read_marker(out) is None:
        raise OwnershipError(f"{what} {out} is a generation folder of an older synthworth (no .synthworth "
                             f"marker), so it is neither resumed nor replaced: choose a new folder, e.g. "
                             f"{suggest_new(out)}")
    check_replaceable(out, GENERATION, what=what)


def _clear(out: Path, plan: dict[str, Any]) -> None:
    """--overwrite: empty ``out`` (a generation folder of synthworth's, checked again under its locks)
    and remove ``OUT-native`` where it is synthworth's too. Lock files and the marker stay."""
    native = native_folder(out)
    if out.is_dir() and read_marker(out) is not None:  # (an empty folder has nothing to clear)
        with alone(out):
            check_replaceable_generation(out, what="--out")
            for path in out.iterdir():
                if path.name in locks_in(out) or path.name == MARKER:
                    continue
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if (native.exists() or native.is_symlink()) and owned_kind(native) == GENERATION_NATIVE:
        shutil.rmtree(native)


def _claim(out: Path, plan: dict[str, Any]) -> None:
    """Make ``out`` this plan's folder, or check that it already is (under this writer's lock)."""
    if _read_plan(out) is None:
        # Created only where absent (a hard link never replaces): two first writers cannot both win.
        tmp = out / f".{PLAN_FILE}.{os.getpid()}.{uuid.uuid4().hex[:6]}.part"
        tmp.write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        try:
            os.link(tmp, out / PLAN_FILE)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: the lock above is the only guard there
            if not (out / PLAN_FILE).exists():
                os.replace(tmp, out / PLAN_FILE)
        finally:
            tmp.unlink(missing_ok=True)
    saved = _read_plan(out)
    if not same_plan(saved, plan):
        raise DataError(f"{out} was started with other options ({_differences(saved, plan)}); run the same "
                        "command as before to finish it, or choose another --out (or pass --overwrite)")


def _mark_native(out: Path, plan: dict[str, Any]) -> None:
    native = native_folder(out)
    native.mkdir(parents=True, exist_ok=True)
    mark_owned(native, GENERATION_NATIVE, ["metadata.jsonl", *_Layout.of(plan).folders()])


def _write_text(path: Path, text: str) -> None:
    # A name ending in .part: synthworth.safety counts a file left by a kill here as its own.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
