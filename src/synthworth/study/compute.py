"""Worth per compute: real-image equivalents per hour of generation, for each generator.

"Which generator is worth most for my compute?" One row per generator (unfiltered pool), read
off its largest ``artificial`` row of ``exchange_rates.csv`` on the real test images: ``m``
synthetic images (``n_synthetic``) worth ``n_eff`` real ones, and

- ``generation_seconds = m * seconds_per_image``: the sampling time the generated Dataset
  recorded (:mod:`synthworth.data.timing`: sampling calls only, on the device named in
  ``device``), scaled to the m images the cells drew;
- ``n_eff_per_generation_hour = n_eff * 3600 / generation_seconds``;
- ``n_eff_per_hour_amortised``: the same with the generator's training time added, amortised
  over the images of its generated Dataset (``train_seconds * m / dataset_images``). The training
  time is ``train_s`` of the run the Dataset's provenance names (:mod:`synthworth.metrics.cost`;
  a latent model's autoencoder added where synthworth trained it); ``training`` says which. A
  pretrained text-to-image pipeline has no known training cost: generation time only.

Intervals: n_eff's own 95 % interval (the exchange rates' bootstrap, ``interval_covers``)
divided by the time; the time is measured once and taken as fixed, so its own variation is not
in them. An interval end that is open for n_eff stays open here, and an n_eff that is only a
bound gives no number (``exchange_status`` and ``bound`` say why). A generator whose Dataset
records no timing, or whose training run is not known, gets a row that says so in ``timing`` or
``training``.

The costs are recorded per generator in the study's ``inputs.json`` (:func:`record`, under
``synthetic.NAME.compute``) when the study opens its inputs, and the table is computed from that
and the exchange rates (:func:`worth_per_compute`) wherever ``exchange_rates.csv`` is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthworth.data import timing
from synthworth.safety import one_line

HOUR = 3600.0
INTERVAL = "n_eff's interval divided by the time; the time is measured once and taken as fixed"
COLUMNS = ["generator", "size", "n_synthetic", "n_eff", "n_eff_ci_low", "n_eff_ci_high", "exchange_status", "bound",
           "interval_covers", "device", "seconds_per_image", "generation_seconds", "n_eff_per_generation_hour",
           "n_eff_per_generation_hour_ci_low", "n_eff_per_generation_hour_ci_high", "train_seconds", "dataset_images",
           "train_seconds_share", "n_eff_per_hour_amortised", "n_eff_per_hour_amortised_ci_low",
           "n_eff_per_hour_amortised_ci_high", "timing", "training", "interval", "grid"]


# ------------------------------------------------------------------------------ what each generator cost
def record(manifest: dict[str, Any], provenance: dict[str, Any] | None) -> dict[str, Any]:
    """What a synthetic Dataset says about its compute, for ``inputs.json``: its sampling time
    (None when not recorded, with the reason in ``timing``) and its generator's training time."""
    sampling = timing.read(manifest)
    seconds, training, run = _training(provenance)
    images = manifest.get("num_images") if isinstance(manifest, dict) else None
    return {"sampling": sampling, "timing": timing.describe(manifest),
            "dataset_images": images if isinstance(images, int) and not isinstance(images, bool) else None,
            "run": run, "train_seconds": seconds, "training": training}


def _training(prov: dict[str, Any] | None) -> tuple[float | None, str, str | None]:
    """(training seconds or None, what they are or why unknown, the run folder or None)."""
    from synthworth.metrics.cost import training_cost

    if not isinstance(prov, dict):
        return None, "training time unknown (the Dataset records no provenance)", None
    if prov.get("kind") == "pretrained":
        return None, "a pretrained pipeline: no training cost is known (generation time only)", None
    run = prov.get("run")
    if not isinstance(run, str) and isinstance(prov.get("parent"), dict):
        run = prov["parent"].get("run")   # a filtered Dataset: its generator's run
    if not isinstance(run, str) or not run:
        return None, ("training time unknown (the Dataset does not name its training run: generated before "
                      "synthworth recorded it, or from a model folder without its run)"), None
    if not Path(run).is_dir():
        return None, f"training time unknown (its run {run} is no longer there)", run
    cost = training_cost(run)
    seconds = cost.get("total_seconds")
    if seconds is None:
        return None, f"training time unknown (its run {run} logged none in metrics.jsonl)", run
    extra = f"; {cost['extra_note']}" if cost.get("extra_note") else ""
    return float(seconds), f"{seconds:.1f} s training ({cost.get('source')} in {run}/metrics.jsonl{extra})", run


def costs_of(inputs: Any) -> dict[str, dict[str, Any]]:
    """{generator: its compute record} from a study's ``inputs.json`` content (a generator of a
    study written before they were recorded gets none)."""
    synthetic = inputs.get("synthetic") if isinstance(inputs, dict) else None
    if not isinstance(synthetic, dict):
        return {}
    return {str(k): v["compute"] for k, v in synthetic.items() if isinstance(v, dict) and isinstance(v.get("compute"), dict)}


# ------------------------------------------------------------------------------ the table
def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def headline_rows(rates: pd.DataFrame) -> pd.DataFrame:
    """Each generator's largest ``artificial`` row on the real test images (unfiltered pool)."""
    if rates is None or rates.empty or not {"composition", "generator", "size", "n_synthetic"} <= set(rates.columns):
        return pd.DataFrame()
    keep = rates["composition"] == "artificial"
    if "test_set" in rates.columns:
        keep &= rates["test_set"].fillna("real_test") == "real_test"
    if "filter" in rates.columns:
        keep &= rates["filter"].fillna("").astype(str).isin(["", "none"])
    part = rates[keep].assign(_m=pd.to_numeric(rates["n_synthetic"], errors="coerce"))
    part = part[np.isfinite(part["_m"].to_numpy(float)) & (part["_m"] > 0)]
    if part.empty:
        return part
    part = part.sort_values(["generator", "_m", "size"]).groupby("generator", sort=True).tail(1)
    return part.drop(columns="_m").reset_index(drop=True)


def _per_hour(n_eff: float, seconds: float) -> float:
    return n_eff * HOUR / seconds if seconds > 0 and math.isfinite(n_eff) else math.nan


def worth_per_compute(rates: pd.DataFrame, inputs: Any) -> pd.DataFrame:
    """The per-compute table (:data:`COLUMNS`) of an exchange-rate table and the study's
    ``inputs.json`` content (the generators' compute records)."""
    costs = costs_of(inputs)
    rows = []
    for _, r in headline_rows(rates).iterrows():
        gen = str(r["generator"])
        cost = costs.get(gen)
        m = int(_number(r["n_synthetic"]))
        n_eff, low, high = (_number(r.get(k)) for k in ("n_eff", "n_eff_ci_low", "n_eff_ci_high"))
        row: dict[str, Any] = {
            "generator": gen, "size": int(_number(r["size"])), "n_synthetic": m, "n_eff": n_eff,
            "n_eff_ci_low": low, "n_eff_ci_high": high, "exchange_status": r.get("status", ""),
            "bound": r.get("bound", "") if isinstance(r.get("bound"), str) else "",
            "interval_covers": r.get("interval_covers", "") if isinstance(r.get("interval_covers"), str) else "",
            "interval": INTERVAL, "grid": r.get("grid", "") if isinstance(r.get("grid"), str) else ""}
        row.update({k: math.nan for k in COLUMNS if k not in row})
        row.update(device="", timing="", training="")
        if cost is None:
            row["timing"] = ("generation time not recorded for this study (its inputs.json is from a synthworth "
                             "before it was; run the study again to record it)")
            row["training"] = "training time not recorded for this study"
            rows.append(row)
            continue
        row["training"] = one_line(str(cost.get("training") or ""))
        row["train_seconds"] = _number(cost.get("train_seconds"))
        row["dataset_images"] = _number(cost.get("dataset_images"))
        sampling = cost.get("sampling")
        spi = _number(sampling.get("seconds_per_image")) if isinstance(sampling, dict) else math.nan
        if not math.isfinite(spi):
            row["timing"] = one_line(str(cost.get("timing") or "generation time not recorded"))
            rows.append(row)
            continue
        seconds = m * spi
        several = len(sampling.get("devices") or []) > 1
        row.update(device=one_line(timing.device_text(sampling)), seconds_per_image=spi, generation_seconds=seconds,
                   timing=one_line(f"sampling time of {m} images at {spi:.3g} s per image, measured over "
                                   f"{sampling.get('images')} images" + (" on several devices (their mean rate)"
                                                                         if several else "")))
        row.update({f"n_eff_per_generation_hour{s}": _per_hour(v, seconds)
                    for s, v in (("", n_eff), ("_ci_low", low), ("_ci_high", high))})
        train, images = row["train_seconds"], row["dataset_images"]
        if math.isfinite(train) and math.isfinite(images) and images > 0:
            share = train * m / images
            row["train_seconds_share"] = share
            row["training"] = one_line(f"{row['training']}; amortised over the {int(images)} images of its generated "
                                       f"Dataset: {share:.1f} s for these {m}")
            row.update({f"n_eff_per_hour_amortised{s}": _per_hour(v, seconds + share)
                        for s, v in (("", n_eff), ("_ci_low", low), ("_ci_high", high))})
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
