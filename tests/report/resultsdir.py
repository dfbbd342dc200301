"""A study results folder built by hand, in the shape ``study.runner.write_tables`` writes it.

The tables come from a hand-made results table through the study's own ``summarise`` and
``compare``, so they look exactly like a real study's; nothing is trained. Used by the report's
tests and the adversarial suite (tests/adversarial/test_report.py loads this file by path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from synthworth.study.paired import compare
from synthworth.study.stats import summarise

PAIRS = [("real", "artificial"), ("real", "mixed"), ("mixed", "subset_real"), ("artificial", "mixed")]


def results_rows(generators=("gan",), sizes=(20, 40), seeds=(0, 1), classes=("cat", "dog"),
                 compositions=("real", "artificial", "mixed", "subset_real"), study="toy") -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        for comp in compositions:
            for gen in ([""] if comp in ("real", "subset_real") else list(generators)):
                for seed in seeds:
                    acc = round(0.5 + 0.1 * compositions.index(comp) / len(compositions) + 0.01 * seed
                                + size / 1000, 4)
                    rows.append({
                        "study": study, "composition": comp, "generator": gen, "size": size,
                        "per_class": None, "ratio": {"real": 0.0, "subset_real": 0.0, "artificial": 1.0}.get(comp, 0.5),
                        "augment_factor": None, "seed": seed, "n_train": size, "n_real": size, "n_synthetic": 0,
                        "accuracy": acc, "macro_f1": acc - 0.01, "synthetic_accuracy": None,
                        "n_test": 10, "per_class_accuracy": json.dumps([acc] * len(classes)),
                        "train_seconds": 1.5, "eval_seconds": 0.25, "device": "cpu",
                        "synthetic_path": f"/elsewhere/synthetic/{gen}" if gen else None,
                    })
    return rows


def write_results(root: Path, *, rows: list[dict] | None = None, classes=("cat", "dog"), generators=("gan",),
                  grid: Any = "complete", metrics: bool = True, inputs: dict | None = None,
                  name: str = "toy") -> Path:
    """Write a results folder at ``root``. ``grid``: "complete" (a grid.json matching the rows),
    None (no grid.json, as an older synthworth wrote), a dict (written as grid.json) or a str
    other than "complete" (written verbatim)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = results_rows(generators=generators, classes=classes, study=name) if rows is None else rows
    results = pd.DataFrame(rows)
    results.to_csv(root / "results.csv", index=False)
    summarise(results).to_csv(root / "summary.csv", index=False)
    compare(results, PAIRS).to_csv(root / "comparisons.csv", index=False)
    gens = sorted({r["generator"] for r in rows if r["generator"]})
    if metrics:
        pd.DataFrame([{"study": name, "generator": g, "features": "inception", "features_label": "Inception v3 pool",
                       "fid": 12.5, "fid_real_floor": 3.25, "kid": 0.01, "kid_real_floor": 0.001}
                      for g in gens]).to_csv(root / "metrics.csv", index=False)
    if inputs is None:
        inputs = {"real": {"path": "/elsewhere/real", "fingerprint": "abc", "shape": "3x16x16",
                           "classes": list(classes), "test": {"images": 10}},
                  "synthetic": {g: {"path": f"/elsewhere/synthetic/{g}", "fingerprint": "def"} for g in gens}}
    (root / "inputs.json").write_text(json.dumps(inputs))
    (root / "study.yaml").write_text(yaml.safe_dump({"spec": {"name": name, "out": str(root)},
                                                     "classifier": {"preset": "tiny"}}))
    if grid == "complete":
        grid = {"planned_cells": len(rows), "finished_cells": len(rows), "planned_trainings": len(rows),
                "finished_trainings": len(rows), "complete": True, "missing": [], "metrics_missing": [],
                "written_at": "2025-01-01T00:00:00"}
    if isinstance(grid, dict):
        (root / "grid.json").write_text(json.dumps(grid))
    elif isinstance(grid, str):
        (root / "grid.json").write_text(grid)
    return root


def partial_grid(rows: list[dict], missing: list[dict], metrics_missing=()) -> dict:
    """A grid.json for ``rows`` finished and ``missing`` not."""
    planned = len(rows) + len(missing)
    return {"planned_cells": planned, "finished_cells": len(rows), "planned_trainings": planned,
            "finished_trainings": len(rows), "complete": False, "missing": missing,
            "metrics_missing": list(metrics_missing), "written_at": "2025-01-01T00:00:00"}
