"""Decoding one image file into a fixed-size uint8 array, whatever state it arrives in.

Real downloads hold CMYK JPEGs, palette PNGs with transparency, 16-bit grayscale, EXIF-rotated
phone photos, truncated files and the odd decompression bomb. :func:`load_image` turns each of
them into an ``(size, size, channels)`` uint8 array or raises :class:`ImageSkipped` with a
reason that ends up in the Dataset's manifest.

Resize policies (``fit``):

- ``crop`` (default): centre-crop the largest square, then resize to ``size`` (the usual
  CelebA 64x64 recipe: same as resizing the short side then centre-cropping);
- ``pad``: resize the long side to ``size`` and pad the short side with the background colour;
- ``stretch``: resize to ``size`` x ``size`` ignoring the aspect ratio.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

FITS = ("crop", "pad", "stretch")
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
}


class ImageSkipped(Exception):
    """This file cannot be used as an image; the message says why."""


@dataclass(frozen=True)
class ImageSpec:
    """How every image of a Dataset is normalised."""

    size: int
    channels: int = 3  # 3 = RGB, 1 = grayscale
    fit: str = "crop"
    resample: str = "bicubic"
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = 89_478_485  # Pillow's default bomb limit; files larger are refused


def load_image(path: str, spec: ImageSpec) -> np.ndarray:
    """Decode, fix orientation and colour mode, resize: ``(size, size, channels)`` uint8."""
    # Pillow's bomb limit is a module global: set it for this file only, so a small test limit
    # does not leak into the rest of the process (or into a worker's next job).
    previous_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; we refuse anything above 1x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = spec.max_pixels
            with Image.open(path) as img:
                if img.width * img.height == 0:
                    raise ImageSkipped("image has zero width or height")
                if img.format == "JPEG" and spec.fit != "pad":
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the result still covers
                    # the target size: the same pixels after resizing, several times faster.
                    img.draft(img.mode, (spec.size, spec.size))
                img.load()
                img = ImageOps.exif_transpose(img)
                array = _to_uint8(img, spec)
    except ImageSkipped:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageSkipped(f"decompression bomb: {exc}") from None
    except FileNotFoundError:
        raise ImageSkipped("file disappeared while preparing") from None
    except Image.UnidentifiedImageError:
        raise ImageSkipped("not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError/ValueError.
        raise ImageSkipped(f"corrupt or truncated image: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit
    return array


def array_to_uint8(values: np.ndarray, spec: ImageSpec, value_range: tuple[float, float]) -> np.ndarray:
    """Normalise a bundled numeric image (e.g. digits in [0, 16]) to the Dataset's spec."""
    lo, hi = value_range
    scaled = np.clip((np.asarray(values, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    img = Image.fromarray(np.round(scaled * 255).astype(np.uint8))
    return _to_uint8(img, spec)


def _to_uint8(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    img = _normalise_mode(img, spec)
    img = _fit(img, spec)
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def _normalise_mode(img: Image.Image, spec: ImageSpec) -> Image.Image:
    """Convert any Pillow mode to 'RGB' or 'L' (transparency composited on the background)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _high_depth_to_l(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, tuple(spec.background) + (255,))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    target = "RGB" if spec.channels == 3 else "L"
    if img.mode != target:
        # CMYK, YCbCr, LAB, HSV, 1, L, RGB: Pillow's converters handle each of them.
        img = img.convert(target)
    return img


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale to 8-bit, scaling by the type's range.

    Pillow's own ``convert("L")`` clips 16-bit values at 255 instead of scaling them.
    """
    values = np.asarray(img)
    if img.mode == "F":
        hi = 1.0 if values.size and float(np.nanmax(values)) <= 1.0 else 255.0
        scaled = np.clip(np.nan_to_num(values) / hi, 0, 1) * 255
    else:
        hi = 65535.0 if img.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        scaled = np.clip(values.astype(np.float64) / hi, 0, 1) * 255
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def _fit(img: Image.Image, spec: ImageSpec) -> Image.Image:
    size = spec.size
    resample = RESAMPLE[spec.resample]
    w, h = img.size
    if spec.fit == "stretch":
        return img.resize((size, size), resample) if (w, h) != (size, size) else img
    if spec.fit == "crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        box = (left, top, left + side, top + side)
        if side == size:
            return img.crop(box)
        return img.resize((size, size), resample, box=box)
    if spec.fit == "pad":
        scale = size / max(w, h)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        resized = img.resize(new, resample) if new != (w, h) else img
        fill = tuple(spec.background) if img.mode == "RGB" else int(np.mean(spec.background))
        canvas = Image.new(img.mode, (size, size), fill)
        canvas.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
        return canvas
    raise ValueError(f"unknown fit {spec.fit!r}; expected one of {FITS}")
