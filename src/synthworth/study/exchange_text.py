"""The quotable sentences of the exchange-rate table (``statement``): one per cell group, naming
the generator's images with their filter (:func:`series_name`). The numbers are decided in
:mod:`synthworth.study.exchange`; this module only says them, of a cell group (:class:`Group`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthworth.safety import one_line


def series_name(generator: str, filt: Any = "") -> str:
    """How a sentence, a table and a figure name a generator's images: with the filter that chose
    them ("ddpm (confidence-filtered)"), so filtered and unfiltered results never read alike."""
    filt = "" if filt is None or (isinstance(filt, float) and math.isnan(filt)) else str(filt)
    return generator if filt in ("", "none") else f"{generator} ({filt}-filtered)"


@dataclass
class Group:
    generator: str
    composition: str
    size: int
    ratio: float
    augment_factor: float | None
    n_real: int
    n_synthetic: int
    values: np.ndarray
    filter: str = ""
    real_accuracy: float | None = None   # the measured mean of the real cells at n_real, if any

    @property
    def label(self) -> str:
        return one_line(series_name(self.generator, self.filter))  # a name in a sentence: one line


def _fmt(x: float) -> str:
    """A count or rate for a sentence: 2 significant figures below 10, whole numbers above."""
    if not math.isfinite(x):
        return "—"
    return f"{x:.2g}" if abs(x) < 10 else f"{x:.0f}"


def _interval(low: float, high: float, low_text: str, high_text: str) -> str:
    lo = _fmt(low) if math.isfinite(low) else low_text
    hi = _fmt(high) if math.isfinite(high) else high_text
    return f"{lo}–{hi}"


def _lead(g: Group) -> str:
    """The sentence's subject: the training set of the cell group, its images named with their filter."""
    if g.composition == "artificial":
        return f"At {g.size} training images, {g.n_synthetic} {g.label} images alone"
    k = f" (k = {g.augment_factor:g})" if g.composition == "augmented" else ""
    # n_real + m: an augmented cell of size n trains on n real + k·n synthetic images
    return f"At {g.n_real + g.n_synthetic} training images{k}, adding {g.n_synthetic} {g.label} images to {g.n_real} real ones"


WORSE = "worse than its real part"
BEYOND = "beyond the largest real size"


def beyond(g: Group, row: dict[str, Any], hi_n: int, diff: tuple[float, float] | None = None) -> tuple[str, str]:
    """(status, sentence) of a mixture placed above the curve's end whose real part is already at
    (or past) the largest real size measured: no gain in real images can be read off the curve
    there, so it is set against its real part's measured accuracy instead. ``diff``: the 95 %
    interval of the accuracy difference (mixture minus real part) from the same paired resampling
    as the rates; worse (or better) is said from it, never from the two means alone."""
    acc, real = row["accuracy_mean"], g.real_accuracy
    if real is not None and diff is not None:
        d = f"difference {acc - real:+.3f}, 95 % CI {diff[0]:+.3f} to {diff[1]:+.3f}"
        if diff[1] < 0:
            return WORSE, (f"{_lead(g)} is worth less than its own real part: the accuracy ({acc:.3f}) is below the "
                           f"{real:.3f} its {g.n_real} real images reach alone ({d}); the synthetic images hurt. "
                           f"{g.n_real} real images are the largest real size measured, so the cost cannot be "
                           "put in real images; no rate is given.")
        said = "above" if diff[0] > 0 else "no different from"
        return BEYOND, (f"{_lead(g)} gives accuracy {acc:.3f}, {said} the {real:.3f} its {g.n_real} real images "
                        f"reach alone ({d}): {g.n_real} real images are the largest real size measured ({hi_n}), so "
                        "the curve cannot say how many real images the synthetic ones are worth; no rate is given.")
    against = f"; its {g.n_real} real images alone reach {real:.3f}" if real is not None else ""
    where = "the largest" if g.n_real == hi_n else "beyond the largest"
    return BEYOND, (f"{_lead(g)} gives accuracy {acc:.3f}{against}: {g.n_real} real images are {where} real size "
                    f"measured ({hi_n}), so the curve cannot say how many real images the synthetic ones are worth; "
                    "no rate is given.")


def statement(g: Group, row: dict[str, Any], lo_n: int, hi_n: int) -> str:
    """The quotable sentence of a row."""
    gen, m, n_real = g.label, g.n_synthetic, g.n_real
    mixture = g.composition != "artificial"
    lead = _lead(g)
    reach = ""
    if math.isfinite(row["n_eff_ci_low"]) and row["bound"]:
        reach = f"; its 95 % CI reaches down to {_fmt(row['n_eff_ci_low'] - (n_real if mixture else 0))}"
    elif math.isfinite(row["n_eff_ci_high"]) and row["bound"]:
        reach = f"; its 95 % CI reaches up to {_fmt(row['n_eff_ci_high'] - (n_real if mixture else 0))}"
    elif "reaches into" in row["status"]:
        reach = "; its 95 % CI spans the whole measured range"
    if row["bound"] == "worth nothing measurable":
        return (f"{lead} {'is' if mixture else 'are'} worth nothing measurable: the accuracy "
                f"({row['accuracy_mean']:.3f}) is no higher than the real learning curve gives its {n_real} real "
                f"images{reach}.")
    if row["bound"]:
        return (f"{lead} {'is' if mixture else 'are'} {row['bound']} (accuracy {row['accuracy_mean']:.3f}, outside the "
                f"real sizes measured, {lo_n}–{hi_n}{reach}); no rate is given beyond them.")
    worth = row["n_eff"] - n_real if mixture else row["n_eff"]
    lo_w = row["n_eff_ci_low"] - n_real if mixture else row["n_eff_ci_low"]
    hi_w = row["n_eff_ci_high"] - n_real if mixture else row["n_eff_ci_high"]
    below = "0" if mixture and n_real >= lo_n else f"under {lo_n - (n_real if mixture else 0)}"
    above = f"over {hi_n - (n_real if mixture else 0)}"
    rate_ci = _interval(row["rate_ci_low"], row["rate_ci_high"], "under " + _fmt(m / max(hi_n - n_real, 1))
                        if mixture else f"under {_fmt(m / hi_n)}", "unbounded" if mixture else f"over {_fmt(m / lo_n)}")
    return (f"{lead} {'is' if mixture else 'are'} worth {_fmt(worth)} real images "
            f"(95 % CI {_interval(lo_w, hi_w, below, above)}): one real image is worth {_fmt(row['rate'])} {gen} "
            f"images (CI {rate_ci}).")


def harm_statement(g: Group, row: dict[str, Any], lo_n: int, hi_n: int) -> str:
    """The sentence of a mixture below its own real part where the curve can say by how much: a
    cost in real images with its interval. Whether the synthetic images hurt is said from the
    interval (its upper end below the real part), never from the point alone."""
    lead, n_real, acc = _lead(g), g.n_real, row["accuracy_mean"]
    high, low = row["n_eff_ci_high"], row["n_eff_ci_low"]
    most = _fmt(n_real - low) if math.isfinite(low) else f"over {_fmt(n_real - lo_n)}"   # the interval's worst
    if row["status"].startswith(WORSE) and row["bound"]:   # below the measured range
        return (f"{lead} {row['bound']} (95 % interval; its accuracy, {acc:.3f}, lies below the real sizes measured, "
                f"{lo_n}–{hi_n}): the synthetic images hurt.")
    cost = n_real - row["n_eff"]
    if row["status"].startswith(WORSE):
        least = _fmt(n_real - high)
        return (f"{lead} cost the equivalent of {_fmt(cost)} real images (95 % CI {least}–{most}): its accuracy "
                f"({acc:.3f}) is what {_fmt(row['n_eff'])} real images reach on the real learning curve, fewer than "
                f"its own {n_real}; the synthetic images hurt.")
    gain = _fmt(high - n_real) if math.isfinite(high) else f"over {_fmt(hi_n - n_real)}"
    return (f"{lead} is worth nothing measurable: its accuracy ({acc:.3f}) is what {_fmt(row['n_eff'])} real images "
            f"reach on the real learning curve, {_fmt(cost)} fewer than its own {n_real} (95 % CI from a cost of "
            f"{most} to a gain of {gain} real images).")
