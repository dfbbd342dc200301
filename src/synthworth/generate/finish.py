"""Finishing a generation folder: its metadata and packed form, and merging shard folders into one."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from synthworth.data import timing
from synthworth.data.dataset import MANIFEST, Dataset, new_image_array, write_packed
from synthworth.data.hf import write_generated
from synthworth.errors import DataError
from synthworth.generate.folder import (TIMING_FILE, _claim, _entries, _mark_native, _write_text, alone,
                                        read_timings, row_key, totals)
from synthworth.generate.plan import (OLD_PNG_KEY, PLAN_FILE, PNG_KEY, DamagedPlan, _differences, _Layout, _read_plan,
                                     native_folder, same_plan)
from synthworth.safety import (GENERATION, GENERATION_NATIVE, OwnershipError, check_apart, check_replaceable,
                               mark_owned, owned_kind, read_marker, suggest_new)


def finalize(out: str | os.PathLike, *, progress: bool = True) -> Dataset:
    """Write ``metadata.jsonl`` and the packed form of a generation folder whose images are all
    there (read back from the PNGs), then open it as a Dataset."""
    out = Path(out)
    plan = _read_plan(out)
    if plan is None:
        raise DataError(f"{out} is not a generation folder (no {PLAN_FILE})")
    layout = _Layout.of(plan)
    missing = [f for f in layout.files if not (out / f).is_file()]
    if missing:
        raise DataError(f"{out}: {len(missing)} of {len(layout.files)} images are still missing (e.g. "
                        f"{missing[0]}); run the remaining shards, or the same generate command again")
    # OUT-native is this folder's only when the plan keeps native copies and the marker says so.
    native = native_folder(out)
    ours = plan["keep_native"] and owned_kind(native) == GENERATION_NATIVE
    for folder in (out, native) if ours else (out,):
        for stale in folder.glob("*/.*.tmp"):  # left by killed runs; no writer is active any more
            stale.unlink(missing_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    n, size, channels = len(layout.files), plan["size"], plan["channels"]
    images = new_image_array(out / "images.npy", (n, size, size, channels))
    records = []
    for i, file in enumerate(tqdm(layout.files, desc="packing", unit="img", disable=not progress,
                                  file=sys.stderr, mininterval=0.5)):
        pixels, record = _read_png(out / file)
        if pixels.shape != (size, size, channels) or record.get("seed") != int(layout.seeds[i]):
            raise DataError(f"{out / file} was not made by this folder's plan (size or seed differ); "
                            "remove it and generate again")
        images[i] = pixels
        # Where the image is and what it shows follow from the plan, never from the file's own record.
        records.append({**record, "file_name": file,
                        "label": int(layout.labels[i]) if layout.labels[i] >= 0 else None,
                        "class_name": layout.subjects[i], "generator": plan["name"], "seed": int(layout.seeds[i])})
    splits = _test_split(layout.labels, plan["test_fraction"], plan["seed"])
    rows = [{**r, "split": str(s)} for r, s in zip(records, splits)]
    _write_metadata(out, rows)
    if ours:
        _write_metadata(native, [r for r in rows if (native / r["file_name"]).is_file()])
    images.flush()
    write_packed(out, images, layout.labels, splits, plan["class_names"], rows, {
        "kind": "synthetic",
        "source": {"kind": plan["generator"]["source"], "generator": plan["name"], "path": str(out.resolve())},
        "plan": plan,
        **({"provenance": plan["provenance"]} if isinstance(plan.get("provenance"), dict) else {}),
        "generation": {
            **totals(read_timings(out), len(layout.blocks(plan["batch_size"]))),
            "sampling": timing.summarise(read_timings(out)),   # seconds per image and the device(s)
            "blank_retries": sum(r.get("blank_retries", 0) for r in records),
            "blank_kept": sum(bool(r.get("blank")) for r in records),
            "native_folder": str(native.resolve()) if ours else None,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, before_manifest=lambda full: write_generated(out, rows, full))  # split folders + card, before the manifest
    del images
    kept = sum(bool(r.get("blank")) for r in records)
    if kept and progress:
        print(f"synthworth: warning: {kept} image(s) stayed blank after every retry (\"blank\": true in "
              f"{out / 'metadata.jsonl'}); drop them or raise --max-retries", file=sys.stderr)
    return Dataset.open(out)


def _read_png(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with Image.open(path) as img:
            text = getattr(img, "text", {}).get(PNG_KEY) or getattr(img, "text", {}).get(OLD_PNG_KEY)
            pixels = np.asarray(img)
        record = json.loads(text) if text is not None else None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path} is damaged ({exc}); remove it and run the same generate command again") from None
    if not isinstance(record, dict):
        raise DataError(f"{path} has no synthworth record; it was not written by synthworth generate")
    return (pixels[:, :, None] if pixels.ndim == 2 else pixels), record


def _write_metadata(folder: Path, rows: list[dict[str, Any]]) -> None:
    _write_text(folder / "metadata.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _test_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """All "train", or a seeded share of each class marked "test"."""
    splits = np.full(len(labels), "train", dtype=object)
    if fraction > 0:
        rng = np.random.default_rng(seed)
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            splits[rng.permutation(members)[:int(round(fraction * len(members)))]] = "test"
    return splits.astype(str)


def merge(out: str | os.PathLike, shards: list[str | os.PathLike] = (), *, progress: bool = True) -> Dataset:
    """Gather shard folders of one plan into ``out`` (or finish ``out`` in place when the shards
    wrote there) and write its metadata and packed form. The shards are only read."""
    out = Path(out)
    folders: list[Path] = []
    for folder in map(Path, shards):
        if folder.resolve() != out.resolve() and all(folder.resolve() != f.resolve() for f in folders):
            folders.append(folder)
    plan = _read_plan(out) if out.is_dir() else None
    for folder in folders:
        theirs = _read_plan(folder) if folder.is_dir() else None
        if theirs is None:
            raise DataError(f"{folder} is not a generation folder (no {PLAN_FILE}); name the folders "
                            "'synthworth generate --shard' wrote")
        if plan is not None and not same_plan(theirs, plan):
            raise DataError(f"{folder} was generated with other options than {out} "
                            f"({_differences(plan, theirs)}); only shards of one plan can be merged")
        plan = theirs
    if plan is None:
        raise DataError(f"{out} is not a generation folder (no {PLAN_FILE}); name the shard folders to merge")
    natives = [native_folder(f) for f in folders if native_folder(f).is_dir()]
    check_apart(out, [*folders, *natives])
    if out.is_dir() and (out / PLAN_FILE).is_file() and read_marker(out) is None:
        # Advice that works: such a folder can still be read as a shard.
        raise OwnershipError(f"--out {out} is a generation folder of an older synthworth (no .synthworth marker); "
                             f"merge it into a new folder instead: synthworth data merge --out {suggest_new(out)} "
                             f"{out} ...")
    check_replaceable(out, GENERATION, what="--out")
    if natives and plan["keep_native"]:
        try:
            check_apart(native_folder(out), [*folders, *natives], what="the native-size folder")
            check_replaceable(native_folder(out), GENERATION_NATIVE, what="the native-size folder")
        except OwnershipError:
            raise OwnershipError(f"the native-size copies of --out {out} go to {native_folder(out)}, which holds "
                                 "something else; choose another --out") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        mark_owned(out, GENERATION, _entries(plan))
        with alone(out):
            _claim(out, plan)
            _gather(out, plan, folders)
            return finalize(out, progress=progress)
    except OSError as exc:
        raise DataError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from exc


def _gather(out: Path, plan: dict[str, Any], folders: list[Path]) -> None:
    """Copy the shards' images (and native copies) that ``out`` lacks, and their timing rows once."""
    files = _Layout.of(plan).files
    for folder in folders:
        pairs = [(folder, out)]
        if plan["keep_native"] and native_folder(folder).is_dir():
            pairs.append((native_folder(folder), native_folder(out)))
        for src_root, dst_root in pairs:
            for file in files:
                src, dst = src_root / file, dst_root / file
                if src.is_file() and not src.is_symlink() and not dst.is_file():
                    if dst_root != out and not dst_root.is_dir():
                        _mark_native(out, plan)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, dst)
        known = {row_key(r) for r in read_timings(out)}
        new = [r for r in read_timings(folder) if row_key(r) not in known]
        if new:
            with open(out / TIMING_FILE, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in new))


def shard_folders(out: Path, plan: dict[str, Any]) -> list[Path]:
    """``out`` and every folder beside it that holds a generation of the same plan: the folders
    of shards that each wrote a folder of their own (``--out part-$ID``)."""
    found = [out]
    try:
        beside = sorted(p for p in out.resolve().parent.iterdir() if p.is_dir() and p.resolve() != out.resolve())
    except OSError:
        return found
    for folder in beside:
        try:
            theirs = _read_plan(folder) if (folder / PLAN_FILE).is_file() else None
        except (DamagedPlan, OSError):
            theirs = None
        if theirs is not None and same_plan(theirs, plan):
            found.append(out.parent / folder.name)
    return found


def merge_advice(out: Path, plan: dict[str, Any], shards: int) -> str:
    """The ``synthworth data merge`` command that gathers every shard: naming each shard folder
    found beside ``out`` (a merge of ``out`` alone would miss the other shards' images), or, when
    the shards share ``out``, that folder alone."""
    folders = shard_folders(out, plan)
    recorded = {row.get("shard") for row in read_timings(out)}
    if len(folders) == 1 and len(recorded) >= shards:
        return f"synthworth data merge --out {shlex.quote(str(out))}"
    command = " ".join(["synthworth data merge --out", *(shlex.quote(str(f)) for f in folders)])
    if len(folders) < shards and len(recorded) < shards:
        return (f"{command} OTHER_SHARD_FOLDER... (the folder of each shard not found beside {out}; none if "
                f"they all wrote into {out})")
    return command
