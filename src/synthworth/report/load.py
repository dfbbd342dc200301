"""Reading a study's results folder for the report: every file is untrusted input.

A results folder may come from a colleague, be half-written, hand-edited or not a results
folder at all. Everything is checked here before a single line of HTML is written: the tables
have their columns and their numbers are numbers, the JSON/YAML files have the shapes the
report uses. A problem is one :class:`ResultsError` line naming the file and what is wrong,
never a traceback. Paths stored *inside* the folder (Datasets, run folders) are data too: the
report follows one only when it resolves inside the results folder (:func:`inside`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from synthworth.errors import SynthworthError

RERUN = "re-run 'synthworth study run SPEC.yaml' on its spec to rewrite the tables"

# Per table: columns the report needs, columns that must hold numbers (when present), the numeric
# columns that must hold whole numbers (counts, sizes, seeds), the columns no row may leave empty and
# those that hold a share (accuracy, p-value: between 0 and 1; the figures place text by them).
TEXT = ("study", "composition", "generator", "generator_a", "generator_b", "composition_a",
        "composition_b", "kind", "metric", "device", "features", "features_label", "host", "family", "method",
        "interval_covers", "accuracy_interval", "synthetic_replicate")
SCHEMA: dict[str, dict[str, tuple[str, ...]]] = {
    "results": {
        "required": ("composition", "generator", "size", "seed", "accuracy"),
        "numbers": ("size", "seed", "accuracy", "macro_f1", "ratio", "per_class", "augment_factor",
                    "n_train", "n_real", "n_synthetic", "n_test", "train_seconds", "eval_seconds",
                    "synthetic_accuracy", "planned_cells", "finished_cells"),
        "whole": ("size", "seed", "planned_cells", "finished_cells"),
        "filled": ("composition", "size", "seed"),
        "unit": ("accuracy", "macro_f1", "synthetic_accuracy", "synthetic_macro_f1"),
    },
    "summary": {
        "required": ("composition", "generator", "size", "n_seeds", "accuracy_mean", "accuracy_ci_low",
                     "accuracy_ci_high"),
        "numbers": ("size", "n_seeds", "ratio", "per_class", "augment_factor", "planned_cells", "finished_cells"),
        "whole": ("size", "n_seeds"),
        "filled": ("composition", "size", "n_seeds"),
        "unit": ("accuracy_mean", "macro_f1_mean", "synthetic_accuracy_mean"),
    },
    "comparisons": {
        "required": ("composition_a", "generator_a", "composition_b", "generator_b", "size", "n", "mean_a",
                     "mean_b", "diff", "ci_low", "ci_high", "p_value"),
        "numbers": ("size", "n", "n_images", "mean_a", "mean_b", "diff", "diff_sd", "ci_low", "ci_high", "p_value",
                    "p_holm", "t_ci_low", "t_ci_high", "t_p_value"),
        "whole": ("size", "n", "n_images"),
        "filled": ("composition_a", "composition_b", "size", "n"),
        "unit": ("mean_a", "mean_b", "p_value", "p_holm", "t_p_value"),
    },
    "metrics": {
        "required": ("generator",),
        "numbers": tuple(f"{m}{s}" for m in ("fid", "kid", "precision", "recall", "density", "coverage")
                         for s in ("", "_real_floor")) + ("cas", "cas_ci_low", "cas_ci_high", "cas_size"),
        "whole": ("cas_size",),
        "filled": ("generator",),
        "unit": ("precision", "recall", "coverage", "cas"),
    },
}
STAT_SUFFIXES = ("_mean", "_sd", "_ci_low", "_ci_high")


class ResultsError(SynthworthError):
    """The results folder (or a file in it) cannot be read as a study's results."""


@dataclass
class Results:
    """Everything the report shows, read and checked."""

    path: Path
    tables: dict[str, pd.DataFrame]
    study: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    stage_seconds: dict[str, Any] = field(default_factory=dict)


def inside(path: str | os.PathLike, root: str | os.PathLike) -> Path | None:
    """``path`` (relative paths taken from ``root``) with symbolic links resolved, when it lies
    inside ``root``; None otherwise. The only way the report follows a path read from a file."""
    root = Path(root).resolve()
    try:
        target = (root / Path(path)).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
        return None
    return target if target.is_relative_to(root) else None


def load(results: str | os.PathLike) -> Results:
    """Read and check a results folder; raises :class:`ResultsError` (one line) on any problem."""
    results = Path(results)
    if not results.is_dir():
        what = "does not exist" if not results.exists() else "is not a folder"
        raise ResultsError(f"{results} {what}; give the results folder of a study (the 'out' of its spec)")
    if not (results / "results.csv").is_file() and (results / "study" / "results.csv").is_file():
        # The demo's folder (data, runs, synthetic, study, report): its study's results are one level down.
        raise ResultsError(f"{results} is not a study results folder itself, but holds one in {results / 'study'} "
                           "(as the demo's folder does): give that folder instead")
    if not (results / "results.csv").is_file():
        raise ResultsError(f"{results} is not a study results folder (no results.csv); run "
                           "'synthworth study run SPEC.yaml' first")
    tables = {}
    for name in ("results", "summary", "comparisons", "metrics"):
        tables[name] = _table(results, name, needed=name in ("results", "summary"))
    if tables["results"].empty:
        raise ResultsError(f"{results / 'results.csv'} holds no finished cell; nothing to report yet: "
                           "run or resume the study first")
    if tables["summary"].empty:
        raise ResultsError(f"{results / 'summary.csv'} is empty although results.csv is not; {RERUN}")
    _per_class_lists(results, tables["results"])
    out = Results(results, tables)
    study = _structured(results / "study.yaml", dict)
    out.study = {"spec": _mapping(study, "spec", results / "study.yaml"),
                 "classifier": _mapping(study, "classifier", results / "study.yaml")}
    out.inputs = _structured(results / "inputs.json", dict)
    _check_inputs(results / "inputs.json", out.inputs)
    runs = _structured(results / "runs.json", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in runs.items()):
        raise ResultsError(f"{results / 'runs.json'} is not a map of run names to folders")
    out.runs = runs
    demo = _structured(results / "demo.json", dict)
    stages = demo.get("stage_seconds", {})
    out.stage_seconds = stages if isinstance(stages, dict) else {}
    return out


# ------------------------------------------------------------------------------------ tables
def _table(results: Path, name: str, *, needed: bool) -> pd.DataFrame:
    path = results / f"{name}.csv"
    if not path.exists():
        if needed:
            raise ResultsError(f"{results} has results.csv but no {name}.csv; {RERUN}")
        return pd.DataFrame()
    if not path.is_file():  # a folder, a FIFO (reading one would wait forever), a device
        raise ResultsError(f"{path} is not a regular file; {RERUN}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise ResultsError(f"{path} is not a readable CSV table ({_short(exc)}); {RERUN}") from None
    if df.empty and not needed:
        return df
    schema = SCHEMA[name]
    missing = [c for c in schema["required"] if c not in df.columns]
    if missing:
        raise ResultsError(f"{path} lacks the column(s) {', '.join(missing)}: it was not written by this "
                           f"synthworth or was edited; {RERUN}")
    empty = [c for c in schema["filled"] if df[c].isna().any()]
    if empty:
        row = int(df[empty[0]].isna().idxmax())
        raise ResultsError(f"{path}: column {empty[0]!r} is empty in row {row + 2}; {RERUN}")
    numbers = set(schema["numbers"]) | {c for c in df.columns if c.endswith(STAT_SUFFIXES)}
    for col in df.columns:
        if col in numbers:
            df[col] = _numbers(path, df, col, whole=col in schema["whole"], unit=col in schema["unit"])
        elif col in TEXT:
            df[col] = df[col].fillna("").astype(str)
    return df


def _numbers(path: Path, df: pd.DataFrame, col: str, *, whole: bool, unit: bool = False) -> pd.Series:
    """The column as floats (empty cells: NaN); a cell that is not a finite number is an error."""
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce")
    said_nan = raw.str.strip().str.lower().isin(["nan"])  # pandas writes NaN as "", a person may write "nan"
    bad = (raw.notna() & values.isna() & ~said_nan) | values.isin([math.inf, -math.inf])
    if whole:
        bad |= values.notna() & (values % 1 != 0)
    if unit:
        bad |= (values < 0) | (values > 1)
    if bad.any():
        row = int(bad.idxmax())
        kind = "a whole number" if whole else "a number between 0 and 1" if unit else "a finite number"
        raise ResultsError(f"{path}: column {col!r} must hold {kind}, row {row + 2} holds "
                           f"{_short(raw[row])}; {RERUN}")
    return values.astype(float)


def _per_class_lists(results: Path, df: pd.DataFrame) -> None:
    """Parse ``per_class_accuracy`` (a JSON list or map of numbers per row) in place."""
    if "per_class_accuracy" not in df.columns:
        return
    parsed = []
    for i, text in enumerate(df["per_class_accuracy"]):
        try:
            value = json.loads(text) if isinstance(text, str) else []
            if isinstance(value, dict):
                value = list(value.values())
            if not isinstance(value, list):
                raise ValueError
            value = [float(v) if v is not None else math.nan for v in value]
        except (ValueError, TypeError):
            raise ResultsError(f"{results / 'results.csv'}: per_class_accuracy in row {i + 2} is not a JSON "
                               f"list of numbers ({_short(text)}); {RERUN}") from None
        parsed.append(value)
    df["per_class_accuracy"] = parsed


# ------------------------------------------------------------------------------------ JSON / YAML
def _structured(path: Path, kind: type) -> Any:
    """A JSON or YAML file's content when it exists (``kind()`` when not); wrong shape: an error."""
    if not path.exists():
        return kind()
    if not path.is_file():
        raise ResultsError(f"{path} is not a regular file; {RERUN}")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ResultsError(f"{path} is unreadable ({_short(exc)}); {RERUN}") from None
    if data is None:
        return kind()
    if not isinstance(data, kind):
        raise ResultsError(f"{path} does not hold a {'map' if kind is dict else kind.__name__} of settings; {RERUN}")
    return data


def _mapping(data: dict, key: str, path: Path) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ResultsError(f"{path}: '{key}' is not a map of settings; {RERUN}")
    return value


def _check_inputs(path: Path, inputs: dict) -> None:
    """The parts of inputs.json the report uses have the types it expects."""
    real = inputs.get("real", {})
    synthetic = inputs.get("synthetic", {})
    ok = isinstance(real, dict) and isinstance(synthetic, dict)
    ok = ok and all(isinstance(v, dict) for v in synthetic.values())
    ok = ok and isinstance(real.get("classes", []), list)
    ok = ok and all(isinstance(v.get("path", ""), (str, type(None))) for v in [real, *synthetic.values()])
    if not ok:
        raise ResultsError(f"{path} does not describe the study's inputs (real, synthetic); {RERUN}")
    real["classes"] = [str(c) for c in real.get("classes", [])]


def _short(value: Any, limit: int = 60) -> str:
    """A value for a one-line message: its repr (control characters made visible), cut short."""
    text = " ".join(str(value).split()) if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
