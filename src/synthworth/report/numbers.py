"""The one rule every number on the report's page (and in its figures) is written by.

- a count (seeds, images, classifiers, a training-set size): a whole number with thousands
  separators, ``1,437``;
- any other number (accuracy, FID, KID, p-value, a difference): 3 significant digits, trailing
  zeros kept so that equal precision looks equal (``0.900``, ``0.0322``, ``1.76``); from 1,000 on
  the whole number (``1,018``), and below 0.0001 in scientific notation (``1.61e-14``);
- ``signed``: with its sign, for differences (``+0.0670``, ``−0.0190``, a real minus sign);
- missing, NaN or infinite: "—"; something that is not a number: its text.
"""

from __future__ import annotations

import html
import math
from typing import Any

MISSING = "—"
SIGNIFICANT = 3


def fmt(value: Any, kind: str = "value") -> str:
    """``value`` written by the page's rule; ``kind`` is "value", "signed" or "count"."""
    if value is None:
        return MISSING
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return MISSING
    if kind == "count":
        return f"{round(x):,}"
    sign = "+" if kind == "signed" and x > 0 else ""
    magnitude = abs(x)
    if magnitude == 0:
        text = "0"
    elif magnitude >= 10 ** SIGNIFICANT:
        text = f"{round(magnitude):,}"
    elif magnitude < 1e-4:
        text = f"{magnitude:.{SIGNIFICANT - 1}e}"
    else:
        text = format(magnitude, f"#.{SIGNIFICANT}g").rstrip(".")
    return ("−" if x < 0 else sign) + text


def esc(value: Any) -> str:
    """Every value printed goes through here: names, paths and numbers read back from CSV alike."""
    return html.escape(str(value), quote=True)


def num(value: Any, kind: str = "value") -> str:
    """A number written by :func:`fmt` and escaped, for the page."""
    return esc(fmt(value, kind))
