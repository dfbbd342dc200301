"""The results folder: its guard, and one folder per cell key under ``RESULTS/cells/``.

    cells/<key>/cell.json           the cell (composition, generator, size, seed ...) and the
                                    payload its key hashes (written when the cell starts)
    cells/<key>/run/                the engine's run folder (config.yaml, log.txt,
                                    metrics.jsonl, model/; checkpoints while it trains)
    cells/<key>/result.json         metrics and durations (written atomically)
    cells/<key>/eval-<generator>.json   a real-only cell scored on a generator's held-out images
                                    (the generator name made file-safe; the real one inside)
    cells/<key>/predictions-*.parquet   per-image predictions on each test set the cell was
                                    scored on (see synthworth.study.predictions)
    cells/<key>/failed.json         the error of the last attempt, when training raised
    cells/<key>/COMPLETE            written last: only then does the cell count as done
    cells/<key>/.synthworth.lock    held while a process trains the cell

A killed cell has no COMPLETE; the next run resumes its newest checkpoint (or starts it again).
A cell whose result file cannot be read (truncated, edited) is not complete: it is trained
again, with a warning, never a traceback.

The results folder itself is a synthworth output of kind ``study`` (a ``.synthworth`` marker
listing the entries below). A study writes only into an absent or empty folder, or into one it
marked; a folder holding anything else (a user's spec, a colleague's results.csv) is refused
before anything is written, so nothing synthworth did not write is ever overwritten.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from synthworth import safety

COMPLETE = "COMPLETE"
RESULT = "result.json"
FAILED = "failed.json"
KIND = "study"
TABLES = ("results", "evaluations", "summary", "comparisons", "metrics", "exchange_rates", "exchange_rates_by_class",
          "worth_per_compute")
TABLES_LOCK = "tables.lock"
# Every top-level entry a study writes into its results folder.
ENTRIES = ("study.yaml", "inputs.json", "log.txt", "cells", "metrics", "grid.json", TABLES_LOCK, "filtered", "features",
           *(f"{t}.{ext}" for t in TABLES for ext in ("csv", "parquet")))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON under a temporary name and rename it, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (truncated, not JSON)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _warn(message: str) -> None:
    from synthworth.study.inputs import StudyWarning

    warnings.warn(message, StudyWarning, stacklevel=3)


# ------------------------------------------------------------------------------ results folder
def _ours_description(path: Path) -> bool:
    """``study.yaml`` as a study writes it (keys ``spec`` and ``classifier``): a user's spec
    file has ``real:`` at the top and can never look like this."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and {"spec", "classifier"} <= set(data)


def check_results_folder(out: Path, inputs: list[str | None], spec_file: Path | None = None) -> None:
    """Refuse, before anything is written, a results folder the study may not write into:

    - one that is, contains or lies inside an input Dataset (or the spec file's own path);
    - a file or a symbolic link;
    - a non-empty folder without a study marker (someone else's files: maybe the spec itself);
    - a study folder holding, under a name the study writes, a file it did not write.
    """
    safety.check_apart(out, inputs, what="the results folder")
    inside = spec_file is not None and spec_file.resolve().is_relative_to(out.resolve())
    if inside and (spec_file.resolve() == out.resolve()
                   or spec_file.resolve().relative_to(out.resolve()).parts[0] in ENTRIES):
        raise safety.OwnershipError(f"the results folder {out} would overwrite the spec {spec_file}; choose a new "
                                    f"results folder, e.g. --out {safety.suggest_new(out)}")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        safety.check_replaceable(out, KIND, what="the results folder")  # raises with the right message
    if not out.is_dir() or not any(out.iterdir()):
        return
    marker = safety.read_marker(out)
    if marker is None and _legacy_study(out):
        safety.mark_owned(out, KIND, ENTRIES)  # a results folder of synthworth 0.1.0 (no marker yet)
        marker = safety.read_marker(out)
    if marker is None or marker["kind"] != KIND:
        found = f"a synthworth {marker['kind']}" if marker else "files synthworth did not write"
        shown = ", ".join(sorted(p.name for p in out.iterdir())[:3])
        raise safety.OwnershipError(f"the results folder {out} holds {found} ({shown}); a study writes only into a "
                                    f"new folder or its own: choose a new one, e.g. --out {safety.suggest_new(out)}")
    listed = set(marker.get("entries", []))
    foreign = sorted(name for name in ENTRIES if (out / name).exists() and name not in listed)
    if (out / "study.yaml").is_file() and not _ours_description(out / "study.yaml"):
        foreign = sorted({*foreign, "study.yaml"})
    if foreign:
        raise safety.OwnershipError(f"the results folder {out} holds {', '.join(foreign)} that this study did not "
                                    f"write and would overwrite; move them away or choose a new folder, e.g. "
                                    f"--out {safety.suggest_new(out)}")


def _legacy_study(out: Path) -> bool:
    present = {p.name for p in out.iterdir()} - {safety.LOCK}
    return "study.yaml" in present and present <= set(ENTRIES) and _ours_description(out / "study.yaml")


def claim_results_folder(out: Path) -> None:
    """Create the results folder (if needed) and mark it as a study's."""
    out.mkdir(parents=True, exist_ok=True)
    safety.mark_owned(out, KIND, ENTRIES)


@contextmanager
def tables_lock(out: Path) -> Iterator[None]:
    """Wait for, then hold, the lock under which the tables and grid.json are rewritten: two
    runs sharing a folder write them one after the other, each set from one moment."""
    fd = os.open(out / TABLES_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ cells
class CellStore:
    """Paths, states and atomic writers of the cell folders of one results folder."""

    def __init__(self, out: str | os.PathLike):
        self.root = Path(out) / "cells"
        self._bad: set[str] = set()  # keys whose unreadable result was already reported

    def folder(self, key: str) -> Path:
        return self.root / key

    def result(self, key: str) -> dict[str, Any] | None:
        """The stored result of a complete cell; None when there is none or it is unreadable
        (reported once as a warning: the cell is then trained again)."""
        folder = self.folder(key)
        if not (folder / COMPLETE).is_file():
            return None
        data = read_json(folder / RESULT)
        if isinstance(data, dict) and data.get("key") == key and isinstance(data.get("real_test"), dict):
            return data
        if key not in self._bad:
            self._bad.add(key)
            _warn(f"{folder / RESULT} is missing or unreadable (truncated or edited): the cell is not counted "
                  "and is trained again")
        return None

    def complete(self, key: str) -> bool:
        return self.result(key) is not None

    def failure(self, key: str) -> dict[str, Any] | None:
        """The error of the cell's last attempt, when it failed (and is not complete since)."""
        path = self.folder(key) / FAILED
        if not path.is_file() or self.complete(key):
            return None
        data = read_json(path)
        return data if isinstance(data, dict) else {"error": "unknown (failed.json is unreadable)"}

    def state(self, key: str) -> str:
        """complete, failed, interrupted (begun, not finished: killed or running elsewhere) or not started."""
        if self.complete(key):
            return "complete"
        if self.failure(key) is not None:
            return "failed"
        folder = self.folder(key)
        if (folder / "cell.json").exists() or (folder / "run").exists():
            return "interrupted"
        return "not started"

    def running_elsewhere(self, key: str) -> bool:
        """Another process holds the cell's lock now (probed without writing anything)."""
        path = self.folder(key) / safety.LOCK
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the cell's lock while it trains; a second process gets safety.LockedError."""
        with safety.output_lock(self.folder(key), what="this cell"):
            yield

    def begin(self, key: str) -> None:
        """Forget a previous result or failure before (re)training: a kill during the new attempt
        must never leave an old COMPLETE beside a new, half-made run."""
        for name in (COMPLETE, RESULT, FAILED):
            (self.folder(key) / name).unlink(missing_ok=True)
        self._bad.discard(key)

    def save(self, key: str, result: dict[str, Any]) -> None:
        write_json_atomic(self.folder(key) / RESULT, result)
        write_json_atomic(self.folder(key) / COMPLETE, {"key": key})

    def save_failure(self, key: str, info: dict[str, Any]) -> None:
        try:
            write_json_atomic(self.folder(key) / FAILED, info)
        except OSError:
            pass  # e.g. a full disk: the cell stays "interrupted", and the log says why

    def eval_file(self, key: str, generator: str) -> Path:
        return self.folder(key) / f"eval-{safety.safe_name(generator, fallback='generator')}.json"

    def read_eval(self, key: str, generator: str, fingerprint: str) -> dict[str, Any] | None:
        """A stored evaluation on ``generator``'s held-out images, if it was made on these images
        (an unreadable file counts as none: the saved model is scored again)."""
        stored = read_json(self.eval_file(key, generator))
        if not isinstance(stored, dict) or stored.get("fingerprint") != fingerprint:
            return None
        return stored.get("evaluation") if isinstance(stored.get("evaluation"), dict) else None

    def save_eval(self, key: str, generator: str, fingerprint: str, evaluation: dict[str, Any]) -> None:
        write_json_atomic(self.eval_file(key, generator),
                          {"generator": generator, "fingerprint": fingerprint, "evaluation": evaluation})
