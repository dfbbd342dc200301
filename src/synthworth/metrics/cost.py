"""Training cost of a generator run: seconds spent training, from its ``metrics.jsonl``.

Two clocks, both cumulative over resumes and never counting evaluation, grids or checkpoints:
``train_s``, wall-clock seconds (else an older run's ``elapsed_s`` summed over its sessions),
and ``train_cpu_s``, the CPU seconds of the training process over all its threads (the engine's
``time.process_time``). Wall time grows when other processes share the cores: the faces demo's
DCGAN took 12.3 s beside another training lane and 3.5 s alone. CPU time counts only what the
training itself ran, so :func:`cost_ratios` compares models by it when every one of them trained
on the CPU and recorded it, else by wall time, and says which. A latent model adds its
autoencoder's when a ``synthworth train vae`` run made it. A model given as several runs
(replicates) costs the mean of a run, with the lowest and highest beside it
(:func:`cost_of_runs`). Read by :mod:`synthworth.metrics.findings`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def seconds(value: float) -> str:
    """Seconds for a sentence: whole ones from 10 s up, else two significant digits (a run of a
    quarter second is not '0 s' beside a ratio of 6×)."""
    return f"{value:.0f} s" if value >= 10 else f"{value:.2g} s"


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


def _cpu_seconds(rows: list[dict[str, Any]]) -> tuple[float | None, str | None]:
    """The last epoch row's ``train_cpu_s`` (cumulative; None when that row has none: a run
    resumed from a checkpoint older than the CPU clock) and ``device`` (cpu, cuda, ...)."""
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    if not epochs:
        return None, None
    device = epochs[-1].get("device")
    return _seconds_value(epochs[-1].get("train_cpu_s")), device if isinstance(device, str) else None


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
    wall, source = _seconds(rows)
    cpu, device = _cpu_seconds(rows)
    epoch_rows = [r for r in rows if r.get("kind") == "epoch"]
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    out: dict[str, Any] = {"train_seconds": wall, "extra_seconds": None, "extra_note": None,
                           "total_seconds": wall, "ratio": None, "source": source,
                           "cpu_seconds": cpu, "extra_cpu_seconds": None, "total_cpu_seconds": cpu, "device": device,
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
        vae_rows = read_rows(found)
        extra, _ = _seconds(vae_rows)
        extra_cpu, vae_device = _cpu_seconds(vae_rows)
        out["extra_seconds"], out["extra_cpu_seconds"] = extra, extra_cpu
        # the whole model's CPU time is known only when the VAE's is too (and on the same kind of device)
        out["total_cpu_seconds"] = cpu + extra_cpu if cpu is not None and extra_cpu is not None else None
        if vae_device != device:
            out["device"] = None
        cpu_note = f" ({seconds(extra_cpu)} of CPU time)" if extra_cpu is not None else ""
        out["extra_note"] = (f"its VAE ({found}) trained in {seconds(extra)}{cpu_note}" if extra is not None else
                             f"its VAE ({found}) has no timing rows in metrics.jsonl: its cost is not counted")
        if extra is not None and wall is not None:
            out["total_seconds"] = wall + extra
    return out


def cost_of_runs(runs: list[str | Path]) -> dict[str, Any]:
    """:func:`training_cost` of a model given as one run or several runs of one recipe: the
    first run's epochs, steps, notes and source; each seconds field the mean over the runs
    (None when one of them lacks it); ``runs``, and ``per_run`` each run's totals (wall and CPU),
    from which :func:`cost_ratios` reports the lowest and highest."""
    costs = [training_cost(run) for run in runs]
    out = dict(costs[0])
    for key in ("train_seconds", "total_seconds", "cpu_seconds", "total_cpu_seconds"):
        values = [c[key] for c in costs]
        out[key] = sum(values) / len(values) if None not in values else None
    if len({c["device"] for c in costs}) > 1:
        out["device"] = None
    out["runs"] = len(costs)
    out["per_run"] = [{"total_seconds": c["total_seconds"], "total_cpu_seconds": c["total_cpu_seconds"]}
                      for c in costs]
    return out


MEASURES = {"cpu": ("total_cpu_seconds", "CPU time"), "wall": ("total_seconds", "wall-clock time")}


def cost_ratios(costs: dict[str, dict[str, Any]]) -> str:
    """Choose the measure every model is compared by and fill each cost's ``measure``,
    ``seconds`` (the model's total in it), ``seconds_min`` / ``seconds_max`` (over its runs) and
    ``ratio`` (over the cheapest model's ``seconds``) in place; returns the measure.

    CPU time ("cpu") when every model trained on the CPU and recorded it: it is not inflated by
    a neighbour sharing the machine. Wall-clock time ("wall") otherwise: on a GPU the work is
    the device's, and an older run has no CPU clock; then models trained side by side on one
    machine are not comparable, and the sentence says so."""
    measure = "cpu" if costs and all(c.get("device") == "cpu" and c.get("total_cpu_seconds") is not None
                                     for c in costs.values()) else "wall"
    key = MEASURES[measure][0]
    for c in costs.values():
        c["measure"], c["seconds"] = measure, c.get(key)
        each = [r[key] for r in c.get("per_run") or [] if r.get(key) is not None]
        c["seconds_min"], c["seconds_max"] = (min(each), max(each)) if len(each) > 1 else (None, None)
    known = [c["seconds"] for c in costs.values() if c["seconds"]]
    for c in costs.values():
        c["ratio"] = c["seconds"] / min(known) if c["seconds"] and known else None
    return measure


def sentence(model: dict[str, Any], cheapest: str | None) -> str:
    """The cost finding of one model in words: its training time in the measure it is compared
    by (and the other clock beside it), its spread over runs, its VAE, its ratio to the cheapest."""
    c = model["cost"]
    measure = c.get("measure", "wall")
    if c["train_seconds"] is None and c.get("cpu_seconds") is None:
        return f"no training time in {model['run']}/metrics.jsonl: its cost is unknown"
    n = model.get("epochs")
    epochs = "its epochs" if n is None else f"{n} epoch" + ("" if n == 1 else "s")
    runs = c.get("runs") or 1
    if measure == "cpu":
        text = (f"trained {epochs} in {seconds(c['cpu_seconds'])} of CPU time (the training process's CPU seconds "
                f"over all its threads, which other processes sharing the cores do not inflate; wall clock "
                f"{seconds(c['train_seconds'])})" if c["train_seconds"] is not None else
                f"trained {epochs} in {seconds(c['cpu_seconds'])} of CPU time")
    elif c["train_seconds"] is None:
        return f"no wall-clock training time in {model['run']}/metrics.jsonl: its cost is unknown"
    else:
        on = f" on {c['device']}" if c.get("device") not in (None, "cpu") else ""
        text = (f"trained {epochs}{on} in {seconds(c['train_seconds'])} of wall-clock time, which grows when other "
                "processes share the machine (models trained side by side are not comparable by it)")
        if c["source"] == "elapsed_s":
            text += ("; it includes evaluation and checkpoints: the run predates the train_s record of training "
                     "time alone")
    total = c.get("seconds") if "measure" in c else c["total_seconds"]
    extra = c["extra_cpu_seconds"] if measure == "cpu" else c["extra_seconds"]
    # The spread over runs is of each run's total (its VAE's included): said after that total
    spread = (f"from {seconds(c['seconds_min'])} to {seconds(c['seconds_max'])}"
              if runs > 1 and c.get("seconds_min") is not None else None)
    if runs > 1:
        text += f"; the mean of {runs} runs" + (f", {spread}" if spread and not c["extra_note"] else "")
    if c["extra_note"]:
        text += f"; {c['extra_note']}"
    if extra is not None and total is not None:
        text += f", {seconds(total)} in all" + (f" ({spread} over the runs)" if spread else "")
    if c["ratio"] is not None and cheapest is not None:
        what = MEASURES[measure][1]
        text += "; the cheapest model" if c["ratio"] == 1 else f"; {c['ratio']:.1f}× the {what} of {cheapest}"
    return text
