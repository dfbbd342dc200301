"""Was each generator of ``synthworth compare`` trained on the ``--real`` Dataset it is scored against?

The findings measure a generator against the real images it learnt from: its samples against
the held-out split, the real-vs-real floor and the brightness range from the training split. A
generator trained on another Dataset measured against ``--real`` answers another question
(how close it comes to data it never saw), and its held-out split may hold the very images it
trained on. So, from what each run recorded in its ``run.json`` (the Dataset's fingerprint,
path and split):

- a conditional generator with another number of classes than ``--real`` is refused: its labels
  cannot even be matched to the real classes;
- another fingerprint is refused unless ``--allow-other-real`` is given. A demanding researcher
  wants the default to be the comparison the page's words describe; re-preparing the same data
  (a new split) changes the fingerprint too, so the flag exists, and with it every finding is
  marked: a warning on the command line, in ``findings.json`` (``warnings``) and on the page;
- the same Dataset, but trained on the held-out split the samples are scored against, is
  refused (a model that memorised those images would look best);
- a run that recorded no Dataset (a model saved outside a run) cannot be checked: a warning
  says so.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from synthworth.errors import SynthworthError


class DataWarning(UserWarning):
    """A generator compared against a Dataset it may not have been trained on."""


def recorded_data(path: Path) -> dict[str, Any] | None:
    """The Dataset a run (or its ``model/`` folder) recorded in run.json, or None."""
    for folder in (path, path.parent) if path.name == "model" else (path,):
        try:
            info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        data = info.get("data") if isinstance(info, dict) else None
        if isinstance(data, dict) and isinstance(data.get("fingerprint"), str):
            return data
    return None


def check_trained_on(runs: dict[str, Path], generators: dict[str, Any], dataset, real: Path,
                     reference_split: str, allow_other: bool) -> list[str]:
    """Refuse (SynthworthError) what cannot be compared; return the warnings (each also issued as
    a :class:`DataWarning`, which the CLI prints as one line)."""
    notes = []
    for name, gen in generators.items():
        where = f"--run {name}={runs[name]}"
        if gen.conditional and len(gen.class_names) != dataset.num_classes:
            raise SynthworthError(
                f"{where} generates {len(gen.class_names)} classes ({', '.join(gen.class_names[:10])}) but --real "
                f"{real} has {dataset.num_classes} ({', '.join(dataset.class_names[:10]) or 'unlabelled'}): it was "
                "trained on another Dataset; compare it against the Dataset it was trained on")
        data = recorded_data(runs[name])
        if data is None:
            notes.append(f"{where}: its run records no training Dataset (no run.json with one), so synthworth "
                         f"cannot check that it was trained on --real {real}")
            continue
        trained = data.get("path") or "a Dataset"
        if data["fingerprint"] != dataset.fingerprint:
            text = (f"{where} was trained on {trained} (fingerprint {data['fingerprint'][:12]}), not on --real {real} "
                    f"(fingerprint {dataset.fingerprint[:12]}): its findings measure it against images of a Dataset "
                    "it was not trained on")
            if not allow_other:
                raise SynthworthError(f"{text}; give --real {trained}, or pass --allow-other-real to compare anyway "
                                      "(the findings and the page then say so)")
            notes.append(text)
        elif data.get("split") == reference_split:
            raise SynthworthError(f"{where} was trained on the {reference_split!r} split of {real}, the held-out split "
                                  "its samples would be scored against (a model that memorised it would look best): "
                                  "pass --real-split with a split it did not train on")
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return notes
