"""Exchange rates per class: which classes a generator's images stand in for, and which they do not.

The method is the overall rate's (:mod:`synthworth.study.exchange`), applied to one class at a
time; nothing is fitted or bootstrapped here that is not fitted or bootstrapped there:

- **A cell's score on a class** is its recall on that class: the share of the class's real test
  images its classifier labels correctly, from the cell's per-image predictions
  (:func:`synthworth.study.predictions.read_predictions`). A cell finished before synthworth kept
  predictions falls back to results.csv's ``per_class_accuracy`` (the same recall, from the
  cell's confusion matrix); then, as for the overall rate, the intervals of that class cover the
  seeds only (``interval_covers`` says which).
- **The curve and the reading** are :func:`exchange.exchange_rates` run on the table of those
  recalls: each class gets its own real learning curve (recall against the real training-set
  size, weighted power law, lack-of-fit test, interpolation check), its own statuses ("does not
  rise beyond seed noise", "below range", ...) and its own bounds. ``n_eff`` of a class counts
  real training images of the whole training set (all classes), as the overall ``n_eff`` does:
  "these synthetic images give class 3 the recall that 150 real training images give it".
- **The intervals** are the same two-way bootstrap over seeds and test images, with the test
  images resampled within the class (the predictions handed to it are the class's images only),
  so a class with few test images gets the wide interval it deserves.
- **Chance** for a class's recall is 1 / classes (a classifier guessing uniformly): a class curve
  whose best mean recall is not clearly above it is refused, as the overall curve is.

Only the real test set is read per class (the synthetic test sets keep their overall rates).
The table (:data:`COLUMNS`) is ``exchange_rates_by_class.csv`` of the results folder:
``class``, ``class_name``, ``class_images`` (real test images of the class), then the columns of
``exchange_rates.csv``; every row's ``statement`` starts with the class it is about.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthworth.safety import one_line
from synthworth.study.exchange import COLUMNS as RATE_COLUMNS
from synthworth.study.exchange import RESAMPLES, SYNTHETIC_COMPOSITIONS, Curve, exchange_rates
from synthworth.study.predictions import REAL

CLASS_COLUMNS = ["class", "class_name", "class_images"]
COLUMNS = [*CLASS_COLUMNS, *RATE_COLUMNS]


def _listed(value: Any) -> list[float] | None:
    """results.csv's ``per_class_accuracy`` of one row (a JSON map or list, or already parsed) as a
    list in class order; None when it is missing or unreadable."""
    try:
        data = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if isinstance(data, dict):
        data = list(data.values())   # written in class order (classifiers/evaluate.py)
    if not isinstance(data, (list, tuple)):
        return None
    try:
        return [math.nan if v is None else float(v) for v in data]
    except (TypeError, ValueError):
        return None


def class_recalls(results: pd.DataFrame, predictions: pd.DataFrame | None
                  ) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame | None]:
    """(recall of each row of ``results`` on each class: rows x classes, NaN where unknown;
    real test images per class; the real-test predictions, one set per cell).

    A row's recalls come from its cell's predictions (joined by ``key``) where it has them, else
    from its ``per_class_accuracy``."""
    p = None
    if predictions is not None and len(predictions) and "key" in results.columns:
        p = predictions[(predictions["test_set"].astype(str) == REAL)
                        & (predictions["test_generator"].fillna("").astype(str) == "")]
        p = p.drop_duplicates(["key", "index"]) if len(p) else None
    listed = (results["per_class_accuracy"].map(_listed) if "per_class_accuracy" in results.columns
              else pd.Series([None] * len(results), index=results.index))
    width = max([len(v) for v in listed if v is not None], default=0)
    if p is not None:
        width = max(width, int(p["label"].max()) + 1)
    table = pd.DataFrame(math.nan, index=results.index, columns=range(width))
    for i, values in listed.items():
        if values is not None:
            table.loc[i, list(range(len(values)))] = values
    counts = pd.Series(0, index=range(width), dtype="int64")
    if p is not None:
        by_key = ((p["label"] == p["predicted"]).astype(float)
                  .groupby([p["key"].astype(str), p["label"].astype(int)]).mean().unstack())
        keys = results["key"].astype(str)
        known = keys.isin(by_key.index)
        if known.any():
            table.loc[known, :] = by_key.reindex(index=keys[known], columns=range(width)).to_numpy(float)
        first = p[p["key"] == p["key"].iloc[0]]   # every cell scored the same test images
        counts = first["label"].astype(int).value_counts().reindex(range(width), fill_value=0).astype("int64")
    elif "confusion_matrix" in results.columns:
        for text in results["confusion_matrix"].dropna():
            try:
                rows = np.asarray(json.loads(text) if isinstance(text, str) else text, float).sum(axis=1)
            except (ValueError, TypeError):
                continue
            if len(rows) == width:
                counts = pd.Series(rows.astype("int64"), index=range(width))
                break
    return table, counts, p


def exchange_rates_by_class(results: pd.DataFrame, *, predictions: pd.DataFrame | None = None,
                            class_names: Sequence[str] | None = None, provenance: dict[str, Any] | None = None,
                            grid: str = "", resamples: int = RESAMPLES
                            ) -> tuple[pd.DataFrame, dict[int, Curve]]:
    """(the per-class exchange-rate table, {class: its real learning curve}) of a tidy results
    table (one row per cell, as :func:`exchange.exchange_rates` takes it, with ``key`` and
    ``per_class_accuracy`` where known) and the study's per-image ``predictions``.

    A class whose rows have no recall (no test image of it, no record) gets no row."""
    results = results[results["composition"].isin(["real", *SYNTHETIC_COMPOSITIONS])]
    if "test_set" in results.columns:
        results = results[results["test_set"].fillna(REAL).astype(str) == REAL]
    results = results.drop(columns=[c for c in ("test_set", "confusion_matrix") if c in results.columns])
    recalls, counts, p = class_recalls(results, predictions)
    names = list(class_names or [])
    frames, curves = [], {}
    for c in recalls.columns:
        column = recalls[c]
        if not np.isfinite(column.to_numpy(float)).any():
            continue
        # Every row's recalls, for chance (1 / classes): exchange.chance_of reads the list's length.
        part = results.assign(accuracy=column,
                              per_class_accuracy=[json.dumps([None if math.isnan(v) else v for v in row])
                                                  for row in recalls.to_numpy(float)])
        preds = p[p["label"].astype(int) == c] if p is not None else None
        table, found = exchange_rates(part.assign(test_set=REAL), provenance=provenance, grid=grid,
                                      resamples=resamples, predictions=preds)
        curves[int(c)] = found[0] if found else None
        name = one_line(names[c]) if c < len(names) else str(c)
        images = int(counts.get(c, 0))
        table.insert(0, "class_images", images)
        table.insert(0, "class_name", name)
        table.insert(0, "class", int(c))
        table["statement"] = [f"Class {name} ({images} real test images): {s}" for s in table["statement"]]
        frames.append(table)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    if "filter" not in out.columns:
        return out[[c for c in COLUMNS if c != "filter"]], curves
    return out[COLUMNS], curves


__all__ = ["exchange_rates_by_class", "class_recalls", "COLUMNS"]
