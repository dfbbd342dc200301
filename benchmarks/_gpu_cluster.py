"""Launcher rows of ``gpu_check.py``: a tiny training through ``accelerate launch`` with one
process, and a study whose cells ask Ray for a share of a GPU each, on a local Ray cluster.

Not a benchmark itself (the leading underscore keeps it apart from the scripts).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"


def accelerate_launch(dataset: Path, out: Path, timeout: float) -> tuple[float, str]:
    """``accelerate launch --num_processes 1 -m synthworth train ddpm`` (preset tiny, 4 steps) in a
    fresh process: (seconds, the device the run's log names). Raises RuntimeError on failure."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "synthworth", "train", "ddpm", "--data", str(dataset), "--out", str(out), "--preset", "tiny",
               "train.epochs=1", "train.max_steps=4", "train.progress=false"]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"accelerate launch did not finish within {timeout:.0f} s") from None
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"accelerate launch exited {done.returncode}: {_first_line(done.stderr or done.stdout)}")
    if not (out / "model").is_dir():
        raise RuntimeError(f"accelerate launch exited 0 but {out}/model was not written")
    found = re.search(r"device (\S+), (\d+) process", (out / "log.txt").read_text())
    return seconds, (f"device {found.group(1)}, {found.group(2)} process(es)" if found else "device not logged")


@contextlib.contextmanager
def logical_gpu_cluster():
    """A local Ray cluster of 2 CPUs that declares one GPU: Ray schedules by these numbers, so
    cells asking for a share of a GPU are placed as on a GPU machine (they then train on the CPU).
    ``run_study`` uses a session already started in this process."""
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def ray_study(real: Path, folder: Path, *, tiny: bool, gpu_share: float, cluster=None) -> dict:
    """A study of ``real``-only cells, each a Ray task asking for ``gpu_share`` of a GPU and one
    CPU, run through ``run_study(..., executor="ray")``, in ``cluster`` (a context manager; None:
    the local cluster synthworth starts itself, GPUs detected by Ray). Returns seconds, cells, the
    devices the cells recorded, the Ray workers that trained them and how many ran at once."""
    import pandas as pd

    from synthworth.study import run_study

    seeds = [0, 1] if tiny else [0, 1, 2, 3]
    classifier = ({"train": {"batch_size": 16}} if tiny else
                  {"model": {"resolution": 64}, "train": {"batch_size": 32}})
    spec = {"name": "gpu-check", "real": str(real), "compositions": ["real"], "sizes": [40 if tiny else 400],
            "seeds": seeds, "classifier_preset": "tiny" if tiny else "thesis", "classifier": classifier,
            "budget": "steps", "budget_steps": 4 if tiny else 60,
            "resources": {"gpus": gpu_share, "cpus": 1, "max_retries": 0}}
    path = folder / "gpu-check.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    t0 = time.perf_counter()
    with cluster if cluster is not None else contextlib.nullcontext():
        report = run_study(path, progress=False, executor="ray", workers=None)
    seconds = time.perf_counter() - t0
    out = folder / "gpu-check-results"
    table = pd.read_csv(out / "results.csv")
    return {"seconds": seconds, "cells": len(report.trained), "planned": len(seeds),
            "devices": sorted(set(table["device"].astype(str))), "at_once": _peak(out / "log.txt"),
            "workers": len(set(re.findall(r"\[(\d+)\] done ", (out / "log.txt").read_text())))}


def _peak(log: Path) -> int:
    """Most cells training at the same time, from log.txt's start/done lines: for each cell, 1 +
    the cells that started no later and were not done yet when it started (1-second stamps: a
    cell starting in the second another ends does not count as overlapping it)."""
    spans: dict[str, list[datetime]] = {}
    for line in log.read_text().splitlines():
        found = re.match(r"(\S+ \S+) \[\d+\] (start|done) (\S+)", line)
        if found:
            spans.setdefault(found.group(3), []).append(datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S"))
    intervals = [(times[0], times[-1]) for times in spans.values() if len(times) >= 2]
    return max((1 + sum(1 for j, (a, b) in enumerate(intervals) if j != i and a <= t < b)
                for i, (t, _) in enumerate(intervals)), default=0)
