"""A folder per training run: resolved config, text log, metrics.jsonl, checkpoints, samples.

A run folder is a synthworth output of kind ``run`` (see :mod:`synthworth.safety`): its marker
lists every top-level entry the engine writes, so a run that never saved a checkpoint can be
started again in place (``RUN_ENTRIES`` are removed, nothing else), while a folder holding
anything else, or another kind of output, is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from synthworth import safety
from synthworth.engine import checkpoint as ckpt
from synthworth.errors import SynthworthError

# Every top-level entry the engine (or a task) writes into a run folder.
RUN_ENTRIES = ("config.yaml", "run.json", "log.txt", "metrics.jsonl", "checkpoints", "samples", "plots",
               "model", "tensorboard")


class RunFolder:
    """Paths and small writers of one run folder::

        RUN/config.yaml      the resolved configuration (updated when a resume changes a setting)
        RUN/run.json         the Dataset trained on (path, fingerprint) and the history of starts
                             and resumes with the settings each changed
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
        self.info_file = self.path / "run.json"
        self.log_file = self.path / "log.txt"
        self.metrics_file = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.plots = self.path / "plots"
        self.model = self.path / "model"
        # For messages that suggest a sibling folder: '.' or '..' has no name to extend.
        self._named = self.path if self.path.name not in ("", "..") else self.path.resolve()

    # ------------------------------------------------------------------ where a run may go
    def check_new(self, inputs: list[Path | None]) -> bool:
        """Refuse (one-line error) an ``--out`` where a new run may not go; True when it holds a
        run of synthworth's that never saved a usable checkpoint and will be started again."""
        safety.check_apart(self._named, inputs)
        if self.path.is_dir() and not self.path.is_symlink():
            if not {p.name for p in self.path.iterdir()} - {safety.LOCK}:
                return False  # empty, or left by a start that stopped before writing anything
            marker = safety.read_marker(self.path)
            newest = self.usable_checkpoint()
            if (marker is None or marker["kind"] == "run") and self.config_file.is_file() and newest:
                raise SynthworthError(
                    f"{self.path} already holds a training run (newest checkpoint {newest.name}); add "
                    f"--resume to continue it, or choose a new --out, e.g. {self.new_sibling()}")
            if safety.owned_kind(self.path) == "run":
                return True
        safety.check_replaceable(self._named, "run")
        return False

    def check_resumable(self, inputs: list[Path | None]) -> None:
        """Refuse (one-line error) an ``--out`` that holds no run to resume."""
        safety.check_apart(self._named, inputs)
        if not self.path.is_dir():
            raise SynthworthError(f"--resume: {self.path} does not exist; start the run without --resume")
        marker = safety.read_marker(self.path)
        if marker is not None and marker["kind"] != "run":
            raise SynthworthError(f"--resume: {self.path} holds a synthworth {marker['kind']}, not a training "
                                  "run; give the run's folder as --out")
        if not self.config_file.is_file():
            advice = ("start a new run: the same command without --resume" if not any(self.path.iterdir())
                      else f"give the run's folder as --out, or start a new run in a new folder, e.g. "
                           f"{self.new_sibling()}")
            raise SynthworthError(f"--resume: {self.path} is not a run folder (no config.yaml); {advice}")
        if marker is None and not ckpt.complete_checkpoints(self.checkpoints):
            # Neither marked as a run nor holding a checkpoint of one (a run from before markers).
            raise SynthworthError(f"--resume: {self.path} was not written by synthworth (no {safety.MARKER} "
                                  f"marker, no checkpoint); give the run's folder as --out, or start a new "
                                  f"run in a new folder, e.g. {self.new_sibling()}")

    def never_checkpointed(self) -> bool:
        """A run folder of synthworth's own (nothing else in it) that holds no checkpoint at all:
        its run stopped before the first one, so there is nothing to resume, nor to lose."""
        return (safety.owned_kind(self.path) == "run" and self.config_file.is_file()
                and not ckpt.complete_checkpoints(self.checkpoints))

    def new_sibling(self) -> Path:
        """A folder name next to this one that does not exist yet (for advice in messages)."""
        return safety.suggest_new(self._named)

    def usable_checkpoint(self) -> Path | None:
        """The newest checkpoint that :func:`ckpt.damage` finds whole."""
        for path in reversed(ckpt.complete_checkpoints(self.checkpoints)):
            if ckpt.damage(path) is None:
                return path
        return None

    def restart_advice(self) -> str:
        """How to start this run again from the beginning (advice that works when followed)."""
        if safety.owned_kind(self.path) == "run":
            return "start it again from the beginning: the same command without --resume"
        return f"start a new run in a new folder, e.g. {self.new_sibling()}"

    # ------------------------------------------------------------------ writing
    def create(self, kind: str, config: dict[str, Any], data: dict[str, Any], *, restart: bool,
               threads: int | None = None, precision: dict[str, Any] | None = None) -> None:
        """Make the folder of a new run (``restart``: first remove what an earlier attempt that
        never checkpointed left; :meth:`check_new` has made sure it holds nothing else).
        ``threads``: torch's CPU threads the run trains with, recorded in its history;
        ``precision``: what it computes in (``engine.precision.precision_record``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if restart:
            for name in RUN_ENTRIES:
                entry = self.path / name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                elif entry.exists() or entry.is_symlink():
                    entry.unlink()
        safety.mark_owned(self.path, "run", RUN_ENTRIES)
        for folder in (self.checkpoints, self.samples, self.plots):
            folder.mkdir(parents=True, exist_ok=True)
        self.write_config(kind, config)
        event = {"event": "restart" if restart else "start", "data": data,
                 **({"threads": threads} if threads is not None else {}),
                 **({"precision": precision} if precision is not None else {})}
        self._write_info({"kind": kind, "data": data, "history": [self._stamped(event)]})

    def record_resume(self, kind: str, config: dict[str, Any], data: dict[str, Any], checkpoint: Path,
                      changes: list[tuple[str, Any, Any]], threads: int | None = None,
                      precision: dict[str, Any] | None = None) -> None:
        """Note a resume in run.json's history (and the current config in config.yaml)."""
        safety.mark_owned(self.path, "run", RUN_ENTRIES)  # also adopts a run from before markers
        info = self.info()
        info.setdefault("kind", kind)
        info["data"] = data
        info.setdefault("history", []).append(self._stamped({
            "event": "resume", "from": checkpoint.name, "data": data,
            **({"threads": threads} if threads is not None else {}),
            "changes": {key: {"was": old, "now": new} for key, old, new in changes},
            **({"precision": precision} if precision is not None else {})}))
        self._write_info(info)
        if changes:
            self.write_config(kind, config)

    def write_config(self, kind: str, config: dict[str, Any]) -> None:
        _write_atomic(self.config_file, yaml.safe_dump({"kind": kind, **config}, sort_keys=False))

    def saved_config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_file.read_text()) or {}

    def info(self) -> dict[str, Any]:
        """run.json (empty for a run from before it existed, or when it is unreadable)."""
        try:
            info = json.loads(self.info_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        return info if isinstance(info, dict) else {}

    def _write_info(self, info: dict[str, Any]) -> None:
        _write_atomic(self.info_file, json.dumps(info, indent=1))

    @staticmethod
    def _stamped(event: dict[str, Any]) -> dict[str, Any]:
        return {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}

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
        """The logged rows; a line cut short by a killed process or a full disk is skipped."""
        if not self.metrics_file.is_file():
            return []
        return parse_rows(self.metrics_file.read_text(encoding="utf-8", errors="replace"))

    def truncate_metrics(self, last_step: int) -> None:
        """Drop rows logged after ``last_step`` (by a run killed after its last checkpoint)."""
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        text = "".join(json.dumps(row) + "\n" for row in rows)
        _write_atomic(self.metrics_file, text)


def parse_rows(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl text, one a line; a line that is not one (cut short by
    a killed process or a full disk) is skipped."""
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` under a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
