"""The plan file of ``synthworth plan`` as ``synthworth generate --plan`` reads it.

``synthworth plan`` (:mod:`synthworth.study.planner`) writes a JSON object; generation needs only
its ``class_counts`` (class name -> images to generate, in the generator's class names), the
rest records how they were chosen::

    {"kind": "synthworth plan", "format": 1, "generator": NAME, "class_counts": {"0": 12, ...},
     "real_to_label": {...}, "classes": [...], "inputs": {...}, "method": "...", "expected": {...}}

The file may come from someone else: everything read is checked, and a problem is one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from synthworth.errors import ConfigError

KIND = "synthworth plan"
FORMAT = 1
MAX_IMAGES = 10_000_000   # as a generation folder's own limit (generate/plan.py)


def check_plan(data: Any, where: str) -> dict[str, int]:
    """The class counts of a plan object read from ``where``; ConfigError saying what is wrong."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ConfigError(f"{where} is not a plan written by 'synthworth plan' (no \"kind\": \"{KIND}\")")
    if data.get("format") != FORMAT:
        raise ConfigError(f"{where} has plan format {data.get('format')!r}; this synthworth reads format {FORMAT}: "
                          "make the plan again with this version's 'synthworth plan'")
    counts = data.get("class_counts")
    if not (isinstance(counts, dict) and counts and all(isinstance(k, str) for k in counts)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values())):
        raise ConfigError(f"{where}: class_counts must map each class name to a whole number of images >= 0")
    total = sum(counts.values())
    if not 1 <= total <= MAX_IMAGES:
        raise ConfigError(f"{where}: the plan asks for {total} images in all; a generation makes 1 to {MAX_IMAGES}")
    return dict(counts)


def read_plan(path: str | os.PathLike) -> dict[str, int]:
    """The class counts of the plan file at ``path`` (see the module docstring)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--plan {path}: no such file (write one with 'synthworth plan RESULTS --generator NAME "
                          "--images N --out PLAN.json')") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"--plan {path} is not a readable JSON file ({' '.join(str(exc).split())[:80]})") from None
    return check_plan(data, f"--plan {path}")


__all__ = ["KIND", "FORMAT", "check_plan", "read_plan"]
