"""Generation time: what a generated Dataset records about the compute its images took.

``synthworth generate`` times each block's sampling call (the generator or pipeline rendering
the block's images, blank-image retries included; loading the model and writing the PNGs are not
counted) and names the device it ran on, in one row per block of ``generation.jsonl``
(``sample_seconds``, ``device_name``). The manifest's ``generation`` entry sums those rows under
``sampling``::

    {"seconds": S, "images": N, "seconds_per_image": S / N, "images_per_second": N / S,
     "devices": [{"device": "cpu: AMD EPYC 7B13 (2 threads)", "images": n, "seconds": s}, ...],
     "blocks_timed": k, "blocks_untimed": j, "counts": "sampling calls only ..."}

S and N add up every block that was sampled and logged, over every run that wrote the folder (a
run resumed after a kill, shards merged): ``seconds_per_image`` is the sampling rate of the
device(s) named. ``blocks_untimed`` counts rows written by a synthworth that did not time
sampling (their images are left out of S and N). A Dataset generated before this was recorded,
or not generated at all, has no ``sampling``: :func:`read` returns None and :func:`lacking` says
why; it loads and is used as before.
"""

from __future__ import annotations

import math
from typing import Any

COUNTS = "sampling calls only (loading the generator and writing the PNGs are not counted)"


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``sampling`` entry of a generation's timing rows (one per logged block), or None when
    no row was timed (every row from a synthworth that did not time sampling)."""
    devices: dict[str, dict[str, Any]] = {}
    untimed = 0
    for row in rows:
        seconds, images = _seconds(row.get("sample_seconds")), _count(row.get("images"))
        if seconds is None or not images:
            untimed += 1
            continue
        name = str(row.get("device_name") or row.get("device") or "unknown device")
        d = devices.setdefault(name, {"device": name, "images": 0, "seconds": 0.0, "blocks": 0})
        d["images"] += images
        d["seconds"] += seconds
        d["blocks"] += 1
    if not devices:
        return None
    seconds = sum(d["seconds"] for d in devices.values())
    images = sum(d["images"] for d in devices.values())
    for d in devices.values():
        d["seconds"] = round(d["seconds"], 4)
    return {"seconds": round(seconds, 4), "images": images, "seconds_per_image": seconds / images,
            "images_per_second": images / seconds if seconds > 0 else None,
            "devices": list(devices.values()), "blocks_timed": sum(d["blocks"] for d in devices.values()),
            "blocks_untimed": untimed, "counts": COUNTS}


def _problem(sampling: Any) -> str | None:
    if not isinstance(sampling, dict):
        return "not a JSON object"
    if _seconds(sampling.get("seconds")) is None or not _count(sampling.get("images")):
        return "its seconds or images are not numbers"
    devices = sampling.get("devices")
    if not isinstance(devices, list) or not devices or not all(
            isinstance(d, dict) and isinstance(d.get("device"), str) for d in devices):
        return "it names no device"
    return None


def read(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The sampling time a Dataset's manifest records (seconds, images, seconds_per_image,
    images_per_second, devices), checked; None when it records none (see :func:`lacking`)."""
    generation = manifest.get("generation") if isinstance(manifest, dict) else None
    sampling = generation.get("sampling") if isinstance(generation, dict) else None
    if sampling is None or _problem(sampling):
        return None
    seconds, images = float(sampling["seconds"]), int(sampling["images"])
    # Recomputed from the totals: a hand-edited rate cannot disagree with them.
    return {**sampling, "seconds": seconds, "images": images, "seconds_per_image": seconds / images,
            "images_per_second": images / seconds if seconds > 0 else None}


def lacking(manifest: dict[str, Any]) -> str:
    """Why a Dataset records no sampling time ("" when it does)."""
    generation = manifest.get("generation") if isinstance(manifest, dict) else None
    if not isinstance(generation, dict):
        return "generation time not recorded (not made by synthworth generate)"
    sampling = generation.get("sampling")
    if sampling is None:
        return ("generation time not recorded (generated before synthworth timed sampling, or no block "
                "was timed)")
    problem = _problem(sampling)
    return f"generation time unreadable (the manifest's generation.sampling: {problem})" if problem else ""


def device_text(timing: dict[str, Any]) -> str:
    """The device(s) the images were sampled on, most images first."""
    devices = sorted(timing.get("devices", []), key=lambda d: -(_count(d.get("images")) or 0))
    return "; ".join(str(d["device"]) for d in devices)


def describe(manifest: dict[str, Any]) -> str:
    """One line for people: the sampling rate and the device(s), or why it is not known."""
    timing = read(manifest)
    if timing is None:
        return lacking(manifest)
    rate = timing["images_per_second"]
    return (f"{timing['seconds_per_image']:.3g} s per image ({rate:.3g} images/s) sampling {timing['images']} "
            f"images on {device_text(timing)}" if rate is not None else
            f"{timing['images']} images sampled in 0 s (below the clock's resolution) on {device_text(timing)}")
