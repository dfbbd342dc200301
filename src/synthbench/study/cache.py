"""The cell cache: one folder per cell key under ``RESULTS/cells/``.

    cells/<key>/cell.json           the cell (composition, generator, size, seed ...) and the
                                    payload its key hashes (written when the cell starts)
    cells/<key>/run/                the engine's run folder (config.yaml, log.txt,
                                    metrics.jsonl, model/; checkpoints while it trains)
    cells/<key>/result.json         metrics and durations (written atomically)
    cells/<key>/eval-<generator>.json   a real-only cell scored on a generator's held-out images
    cells/<key>/COMPLETE            written last: only then does the cell count as done

A killed cell has no COMPLETE; the next run resumes its newest checkpoint (or starts it again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

COMPLETE = "COMPLETE"
RESULT = "result.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON under a temporary name and rename it, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


class CellStore:
    """Paths and atomic writers of the cell folders of one results folder."""

    def __init__(self, out: str | os.PathLike):
        self.root = Path(out) / "cells"

    def folder(self, key: str) -> Path:
        return self.root / key

    def complete(self, key: str) -> bool:
        return (self.folder(key) / COMPLETE).is_file() and (self.folder(key) / RESULT).is_file()

    def started(self, key: str) -> bool:
        """Begun but not complete (running elsewhere, or killed)."""
        return self.folder(key).is_dir() and not self.complete(key)

    def result(self, key: str) -> dict[str, Any]:
        return json.loads((self.folder(key) / RESULT).read_text(encoding="utf-8"))

    def save(self, key: str, result: dict[str, Any]) -> None:
        write_json_atomic(self.folder(key) / RESULT, result)
        write_json_atomic(self.folder(key) / COMPLETE, {"key": key})

    def eval_file(self, key: str, generator: str) -> Path:
        return self.folder(key) / f"eval-{generator}.json"

    def read_eval(self, key: str, generator: str, fingerprint: str) -> dict[str, Any] | None:
        """A stored evaluation on ``generator``'s held-out images, if it was made on these images."""
        path = self.eval_file(key, generator)
        if not path.is_file():
            return None
        stored = json.loads(path.read_text(encoding="utf-8"))
        return stored["evaluation"] if stored.get("fingerprint") == fingerprint else None

    def save_eval(self, key: str, generator: str, fingerprint: str, evaluation: dict[str, Any]) -> None:
        write_json_atomic(self.eval_file(key, generator), {"fingerprint": fingerprint, "evaluation": evaluation})
