"""Training cost of a generator run: seconds spent training, from its ``metrics.jsonl``.

``train_s`` (training alone, cumulative over resumes) when the run logged it, else the older
``elapsed_s`` summed over the run's sessions; a latent model adds its autoencoder's when a
``synthworth train vae`` run made it. Read by :mod:`synthworth.metrics.findings`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def run_folder(path: str | Path) -> Path:
    """The training run folder of a run or of its ``model/`` folder."""
    path = Path(path)
    if path.name == "model" and (path.parent / "metrics.jsonl").is_file():
        return path.parent
    return path


def read_rows(run: Path) -> list[dict[str, Any]]:
    """The JSON objects of ``run/metrics.jsonl``; unreadable lines are skipped."""
    from synthworth.engine.run import parse_rows

    try:
        return parse_rows((run / "metrics.jsonl").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []


def _seconds(rows: list[dict[str, Any]]) -> tuple[float | None, str | None]:
    """Training seconds from the epoch rows: the last ``train_s`` (cumulative over resumes), else
    ``elapsed_s`` summed over the sessions of a resumed run (it restarts at each start)."""
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    timed = [r for r in epochs if "train_s" in r]
    if timed:  # the last one holds the total; a damaged one (NaN, text) is not replaced by an older, smaller one
        seconds = _seconds_value(timed[-1]["train_s"])
        return (seconds, "train_s") if seconds is not None else (None, None)
    elapsed = [v for v in (_seconds_value(r.get("elapsed_s")) for r in epochs) if v is not None]
    if not elapsed:
        return None, None
    total = sum(a for a, b in zip(elapsed, elapsed[1:]) if b < a) + elapsed[-1]  # a drop: a new session
    return total, "elapsed_s"


def _seconds_value(value: Any) -> float | None:
    """A logged number of seconds, or None for anything else (NaN, infinity, negative, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def training_cost(run: str | Path) -> dict[str, Any]:
    """Seconds spent training ``run`` (and, for a latent model, its VAE when synthworth trained
    it), epochs and steps, from ``metrics.jsonl`` and ``config.yaml``. ``ratio`` is left for
    :func:`compare_generators` to fill (the total over the cheapest model's)."""
    import yaml

    run = run_folder(run)
    rows = read_rows(run)
    seconds, source = _seconds(rows)
    epoch_rows = [r for r in rows if r.get("kind") == "epoch"]
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    out: dict[str, Any] = {"train_seconds": seconds, "extra_seconds": None, "extra_note": None,
                           "total_seconds": seconds, "ratio": None, "source": source,
                           "epochs": epoch_rows[-1].get("epoch") if epoch_rows else None,
                           "steps": max(steps) if steps else None}
    try:
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        config = {}
    if not isinstance(config, dict) or config.get("kind") != "ldm":
        return out
    from synthworth.generators.provenance import vae_run

    vae = config.get("vae")
    found = vae_run(vae) if isinstance(vae, str) and vae else None
    if not isinstance(vae, str) or not vae:
        out["extra_note"] = "its config names no VAE: the autoencoder's training cost is not counted"
    elif found is None and not Path(vae).expanduser().exists():
        out["extra_note"] = (f"its VAE ({vae}) is no longer there: the autoencoder's training cost is not "
                             "counted")
    elif found is None:
        out["extra_note"] = "a pretrained autoencoder: its training cost is not counted"
    else:
        extra, _ = _seconds(read_rows(found))
        out["extra_seconds"] = extra
        from synthworth.metrics.findings_text import seconds as said

        out["extra_note"] = (f"its VAE ({found}) trained in {said(extra)}" if extra is not None else
                             f"its VAE ({found}) has no timing rows in metrics.jsonl: its cost is not counted")
        if extra is not None and seconds is not None:
            out["total_seconds"] = seconds + extra
    return out
