"""Shared helpers of the benchmarks: a folder of CelebA-sized JPEGs and small timing utilities.

Not a benchmark itself (the leading underscore keeps it apart from ``bench_*.py``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 178, 218  # CelebA's aligned-and-cropped images
CLASSES = ("class_a", "class_b", "class_c", "class_d")


def _one_image(rng: np.random.Generator) -> Image.Image:
    """A 178x218 RGB picture with photo-like statistics: smooth colour fields, soft shapes,
    fine texture and sensor-like noise (so JPEG sizes land near CelebA's ~8-15 KB)."""
    # Smooth background: a coarse random colour grid upsampled bicubically.
    coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    # A large central "face" ellipse and a few smaller shapes.
    cx, cy = WIDTH // 2 + int(rng.integers(-15, 16)), HEIGHT // 2 + int(rng.integers(-15, 16))
    rx, ry = int(rng.integers(45, 65)), int(rng.integers(60, 85))
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=tuple(int(v) for v in rng.integers(60, 240, 3)))
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        w, h = int(rng.integers(6, 50)), int(rng.integers(6, 50))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
    for _ in range(int(rng.integers(2, 5))):
        pts = [(int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))) for _ in range(2)]
        draw.line(pts, fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=int(rng.integers(1, 4)))
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.8, 1.6))))
    pixels = np.asarray(img, dtype=np.float32)
    # Mid-frequency texture (hair, skin, fabric) plus fine per-pixel noise.
    texture = rng.normal(0.0, 1.0, size=(HEIGHT // 3 + 1, WIDTH // 3 + 1)).astype(np.float32)
    texture = np.kron(texture, np.ones((3, 3), np.float32))[:HEIGHT, :WIDTH, None]
    pixels += texture * float(rng.uniform(4.0, 8.0))
    pixels += rng.normal(0.0, float(rng.uniform(2.5, 5.0)), size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)


def make_jpeg_folder(root: Path, n: int, *, seed: int = 0, quality: int = 90) -> list[Path]:
    """Write ``n`` JPEGs into ``root/<class>/NNNNNN.jpg`` across four class folders."""
    rng = np.random.default_rng(seed)
    files = []
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = root / CLASSES[i % len(CLASSES)] / f"{i:06d}.jpg"
        _one_image(rng).save(path, "JPEG", quality=quality)
        files.append(path)
    return files


@contextlib.contextmanager
def jpeg_folder(n: int, cache: str | None, *, seed: int = 0) -> Iterator[Path]:
    """A folder of ``n`` JPEGs: reused from ``cache`` when given (made there once), otherwise
    made in a temporary directory that is removed afterwards."""
    if cache:
        base = Path(cache)
        base.mkdir(parents=True, exist_ok=True)
        root = base / f"jpegs-n{n}-s{seed}"
        done = base / f"jpegs-n{n}-s{seed}.done"  # marker outside the folder (no loose files in it)
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)
            _made(root, n, seed)
            done.write_text("ok\n")
        else:
            print(f"reusing {n} JPEGs in {root}")
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="synthworth-bench-") as tmp:
        root = Path(tmp) / "jpegs"
        _made(root, n, seed)
        yield root


def _made(root: Path, n: int, seed: int) -> None:
    t0 = time.perf_counter()
    files = make_jpeg_folder(root, n, seed=seed)
    sizes = np.array([f.stat().st_size for f in files]) / 1024
    print(f"made {n} JPEGs ({WIDTH}x{HEIGHT}, quality 90, {len(CLASSES)} class folders) in "
          f"{time.perf_counter() - t0:.1f}s: size median {np.median(sizes):.1f} KB "
          f"(p5 {np.percentile(sizes, 5):.1f}, p95 {np.percentile(sizes, 95):.1f})")


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def warm_files(paths: list[Path] | list[str]) -> int:
    """Read every file once so that all measurements start from a warm page cache."""
    total = 0
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    return total


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    """Run ``fn`` (which returns the number of images it handled); (seconds, images)."""
    t0 = time.perf_counter()
    count = fn()
    return time.perf_counter() - t0, count


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished (reaped) children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_note() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:  # pragma: no cover
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def summarise(rates: list[float]) -> tuple[float, float]:
    """(best, median) of a list of images/s figures."""
    return max(rates), statistics.median(rates)


def cpu_note() -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    return f"{usable} usable CPU core(s)"


def torch_note() -> str:
    """Torch's thread count and OpenMP's wait policy. On a CPU shared with other busy processes,
    OpenMP threads that spin while waiting (the default) can make multi-threaded torch many times
    slower; ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts) avoids that."""
    import torch

    return (f"{torch.get_num_threads()} torch thread(s), "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")


def verdict(label: str, value: float, target: float) -> str:
    ok = value >= target
    return f"{label}: {value:.2f}x (target >= {target:g}x): {'OK' if ok else 'FAIL'}"
