"""Per-image predictions of every cell, kept beside its scores, and the reader of a results folder.

Each complete cell stores, for every test set it was scored on, what its classifier said about
each image, in its folder (keyed like the cell)::

    cells/<key>/predictions-real_test.parquet                   the real test images
    cells/<key>/predictions-synthetic_test-<generator>.parquet  a generator's held-out images

one row per image: ``index`` (position in that test split), ``label``, ``predicted``,
``p_true`` (softmax probability of the true class). The parquet's schema metadata (key
``synthworth``) holds the cell key, the test set, the generator, the test split's fingerprint
and the evaluation's ``n`` and ``accuracy``. A file counts only when it agrees with the cell's
stored scores (key, fingerprint, row count, accuracy): the accuracy recomputed from its rows is
the cell's accuracy exactly, because both come from one forward pass
(:func:`synthworth.classifiers.evaluate.score`).

Cells finished before synthworth kept predictions have none. They still load everywhere: the
reader and ``synthworth study status`` name them, and the next ``synthworth study run`` of the
spec adds them by scoring each cell's saved model again (nothing is retrained; the cell keys
are unchanged), :data:`ADVICE`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from synthworth import __version__, safety
from synthworth.errors import SynthworthError
from synthworth.study.cache import CellStore, read_json

if TYPE_CHECKING:
    from synthworth.classifiers.evaluate import ImagePredictions

META = b"synthworth"
REAL, SYNTHETIC = "real_test", "synthetic_test"
COLUMNS = ("index", "label", "predicted", "p_true")
# The join columns: the evaluations table's, in its order.
CELL_COLUMNS = ("study", "composition", "generator", "filter", "size", "per_class", "ratio", "augment_factor",
                "seed", "key", "test_set", "test_generator")
ADVICE = ("run 'synthworth study run SPEC' again on the same spec and results folder: finished cells are not "
          "retrained, their saved models score the test images again and the predictions are stored")


def prediction_file(folder: Path, test_set: str, generator: str = "") -> Path:
    """Where a cell folder keeps its predictions on ``test_set`` (and ``generator``'s held-out images)."""
    if test_set == REAL:
        return folder / f"predictions-{REAL}.parquet"
    return folder / f"predictions-{SYNTHETIC}-{safety.safe_name(generator, fallback='generator')}.parquet"


def save_predictions(folder: Path, key: str, test_set: str, generator: str, fingerprint: str | None,
                     evaluation: dict[str, Any], predictions: ImagePredictions) -> Path:
    """Write one cell's predictions on one test set atomically (a reader never sees half a file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = predictions.frame()
    meta = {"key": key, "test_set": test_set, "test_generator": generator or "", "test_fingerprint": fingerprint,
            "n": int(evaluation["n"]), "accuracy": evaluation["accuracy"], "synthworth_version": __version__}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META: json.dumps(meta).encode()})
    path = prediction_file(folder, test_set, generator)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def clear_predictions(folder: Path) -> None:
    """Remove a cell's predictions (before it is trained again: they belong to the old model)."""
    for path in folder.glob("predictions-*.parquet"):
        path.unlink(missing_ok=True)


def stored_scores(store: CellStore, key: str, test_set: str, generator: str = "") -> tuple[dict | None, str | None]:
    """The cell's stored evaluation on a test set and that test split's fingerprint (None, None
    when the cell has none; the fingerprint is None where older cells did not record it)."""
    result = store.result(key)
    if result is None:
        return None, None
    if test_set == REAL:
        return result["real_test"], result.get("test_fingerprint")
    if result.get("synthetic_test") and (result.get("cell") or {}).get("generator") == generator:
        return result["synthetic_test"], result.get("synthetic_test_fingerprint")
    stored = read_json(store.eval_file(key, generator))
    if isinstance(stored, dict) and isinstance(stored.get("evaluation"), dict):
        return stored["evaluation"], stored.get("fingerprint")
    return None, None


def check_predictions(folder: Path, key: str, test_set: str, generator: str, evaluation: dict[str, Any],
                      fingerprint: str | None, *, rows: bool = False) -> tuple[pd.DataFrame | None, str | None]:
    """(the predictions, None) when the file agrees with the cell's stored ``evaluation``, else
    (None, why not). Without ``rows`` only the file's metadata is read (cheap: the run and
    ``study status`` check every cell); with ``rows`` the accuracy is recomputed from the rows."""
    import pyarrow.parquet as pq

    path = prediction_file(folder, test_set, generator)
    if not path.is_file():
        return None, "no predictions (scored before synthworth kept them)"
    try:
        meta = pq.read_metadata(path)
        info = json.loads((meta.metadata or {}).get(META, b"{}"))
        frame = pd.read_parquet(path, columns=list(COLUMNS)) if rows else None
    except (OSError, ValueError, KeyError) as exc:  # truncated, not parquet, missing columns
        return None, f"unreadable predictions ({type(exc).__name__})"
    if (info.get("key"), info.get("test_set"), info.get("test_generator", "")) != (key, test_set, generator or ""):
        return None, "predictions of another cell or test set"
    if fingerprint is not None and info.get("test_fingerprint") not in (None, fingerprint):
        return None, "predictions on an older version of the test images"
    n = int(evaluation["n"])
    if meta.num_rows != n or info.get("n") != n or info.get("accuracy") != evaluation["accuracy"]:
        return None, "predictions that do not match the cell's scores"
    if frame is not None:
        if not frame["index"].equals(pd.Series(range(n), name="index")) or \
                float((frame["predicted"] == frame["label"]).mean()) != evaluation["accuracy"]:
            return None, "predictions that do not match the cell's scores"
    return frame, None


def _table(results: Path, name: str) -> pd.DataFrame | None:
    if (results / f"{name}.parquet").is_file():
        try:
            return pd.read_parquet(results / f"{name}.parquet")
        except (OSError, ValueError):
            pass
    if (results / f"{name}.csv").is_file():
        try:  # only its cell columns are used: the scores checked are the cell folders' own
            return pd.read_csv(results / f"{name}.csv", keep_default_na=False, na_values=[""])
        except (OSError, ValueError, pd.errors.ParserError):
            pass
    return None


def read_predictions(results: str | os.PathLike, *, warn: bool = True) -> pd.DataFrame:
    """Every stored per-image prediction of the study in ``results``: one row per cell, test set
    and image, with the evaluations table's cell columns (key, composition, generator, filter,
    size, ratio, seed, test_set, test_generator, ...) joined to ``index``, ``label``,
    ``predicted`` and ``p_true``. A cell sharing its training with another (same key) appears
    under each of its grid rows.

    Cells without current predictions (finished by an older synthworth) are left out, never an
    error: ``frame.attrs["lacking"]`` lists them (the cell columns and ``reason``) and, with
    ``warn``, one StudyWarning says how many and how to add them (:data:`ADVICE`)."""
    results = Path(results)
    evals = _table(results, "evaluations")
    if evals is None:
        raise SynthworthError(f"{results} has no readable evaluations table (evaluations.parquet or .csv); is it a "
                              "study's results folder? 'synthworth study run SPEC' writes it")
    missing = [c for c in ("key", "test_set", "test_generator") if c not in evals.columns]
    if missing:
        raise SynthworthError(f"{results / 'evaluations.csv'} lacks the column(s) {', '.join(missing)}; "
                              "'synthworth study run SPEC' rewrites it")
    cell_columns = [c for c in CELL_COLUMNS if c in evals.columns]
    evals = evals[cell_columns].assign(test_generator=evals["test_generator"].fillna("").astype(str))
    store = CellStore(results)
    frames, lacking = [], []
    found: dict[tuple[str, str, str], tuple[pd.DataFrame | None, str | None]] = {}
    for row in evals.itertuples(index=False):
        cell = row._asdict()
        which = (str(cell["key"]), str(cell["test_set"]), cell["test_generator"])
        if which not in found:
            evaluation, fingerprint = stored_scores(store, *which)
            found[which] = ((None, "no stored scores (cell folder missing or incomplete)") if evaluation is None else
                            check_predictions(store.folder(which[0]), *which, evaluation, fingerprint, rows=True))
        frame, why = found[which]
        if frame is None:
            lacking.append({**cell, "reason": why})
        else:
            frames.append(frame.assign(**{c: pd.Series([cell[c]] * len(frame), dtype=evals[c].dtype)
                                          for c in cell_columns}))
    empty = pd.DataFrame({**{c: pd.Series(dtype=evals[c].dtype) for c in cell_columns},
                          "index": pd.Series(dtype="int64"), "label": pd.Series(dtype="int64"),
                          "predicted": pd.Series(dtype="int64"), "p_true": pd.Series(dtype="float32")})
    out = pd.concat(frames, ignore_index=True) if frames else empty
    out = out[[*cell_columns, *COLUMNS]]
    out.attrs["lacking"] = pd.DataFrame(lacking, columns=[*cell_columns, "reason"])
    if lacking and warn:
        from synthworth.study.inputs import StudyWarning

        keys = {r["key"] for r in lacking}
        warnings.warn(f"{len(lacking)} of {len(evals)} cell evaluations in {results} ({len(keys)} cell(s)) have no "
                      f"current per-image predictions and are left out (frame.attrs['lacking'] lists them); to add "
                      f"them, {ADVICE}", StudyWarning, stacklevel=2)
    return out


def lacking_note(count: int, total: int) -> str:
    """The line ``study status`` prints when complete cells lack predictions."""
    return (f"predictions {count} of {total} complete cell(s) lack per-image predictions (finished before synthworth "
            f"kept them); to add them, {ADVICE}")


__all__ = ["read_predictions", "save_predictions", "check_predictions", "stored_scores", "prediction_file",
           "clear_predictions", "lacking_note", "ADVICE"]
