"""A folder per training run: resolved config, text log, metrics.jsonl, checkpoints, samples."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from synthbench.errors import SynthbenchError


class RunFolder:
    """Paths and small writers of one run folder::

        RUN/config.yaml      the resolved configuration
        RUN/log.txt          human-readable log
        RUN/metrics.jsonl    one JSON row per logged iteration and per epoch ("kind": "epoch")
        RUN/checkpoints/     full training state, step-<N>/ (see engine.checkpoint)
        RUN/samples/         sample grids per epoch
        RUN/plots/           loss curves
        RUN/model/           the exported model, loadable without the engine
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_file = self.path / "config.yaml"
        self.log_file = self.path / "log.txt"
        self.metrics_file = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.plots = self.path / "plots"
        self.model = self.path / "model"

    def create(self, kind: str, config: dict[str, Any], *, resume: bool) -> None:
        """Make the folder for a new run, or check it for a resumed one."""
        if resume:
            if not self.config_file.is_file():
                raise SynthbenchError(f"--resume: {self.path} is not a run folder (no config.yaml)")
            return
        if self.path.exists() and any(self.path.iterdir()):
            raise SynthbenchError(f"run folder {self.path} already exists; pass --resume to continue it "
                                  "or choose another --out")
        for folder in (self.path, self.checkpoints, self.samples, self.plots):
            folder.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump({"kind": kind, **config}, sort_keys=False))

    def saved_config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_file.read_text()) or {}

    def log(self, message: str) -> None:
        with open(self.log_file, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with open(self.metrics_file, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.is_file():
            return []
        with open(self.metrics_file, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def truncate_metrics(self, last_step: int) -> None:
        """Drop rows logged after ``last_step`` (by a run killed after its last checkpoint)."""
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        tmp = self.metrics_file.with_suffix(".jsonl.part")
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        tmp.replace(self.metrics_file)
