"""The study's tables and ``grid.json``: what is finished, and what is not.

Every table is rebuilt from the complete cells in the results folder (of any shard). A study
that is partial (interrupted, one shard of several, failed cells) says so everywhere:

- ``exchange_rates.csv``: how many real images
  each synthetic cell group is worth, from the real learning curve (:mod:`synthworth.study.exchange`);
- ``exchange_rates_by_class.csv``: the same, class by class, from each class's recall on the real
  test images (:mod:`synthworth.study.by_class`);
- ``results.csv``, ``summary.csv`` and ``exchange_rates.csv`` carry ``planned_cells`` and ``finished_cells`` (the
  whole grid's cell counts; the same on every row);
- ``comparisons.csv``: paired differences, the spec's ``comparisons`` as the primary family
  (:mod:`synthworth.study.paired`);
- every table carries ``test_leakage``: the real test images the row's generator saw (0: none found;
  more only where the spec allowed it, see :mod:`synthworth.study.leakage`);
- ``grid.json`` is the contract a reader (the report) relies on::

    {"planned_cells": M, "finished_cells": N, "planned_trainings": m, "finished_trainings": n,
     "complete": bool, "missing": [{"composition", "generator", "filter", "size", "ratio", "seed", "state"}],
     "metrics_missing": [generator names], "written_at": "YYYY-mm-ddTHH:MM:SS"}

  A cell is a row of the grid; a training is a distinct training set + classifier (cells that
  draw the same images share one). ``state`` is ``not started``, ``interrupted`` (begun and not
  finished: killed, or being trained by another process now) or ``failed`` (its training raised;
  see log.txt). ``complete`` is true only when every cell is finished and no metrics asked for are
  missing. ``generator``, ``filter`` and ``ratio`` are null for cells without synthetic data.

Tables and grid.json are written under one lock (:func:`cache.tables_lock`), each file
atomically, so two runs sharing a folder never interleave half a set.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from synthworth import safety
from synthworth.study.by_class import exchange_rates_by_class
from synthworth.study.cache import CellStore, read_json, tables_lock, write_json_atomic
from synthworth.study.compute import worth_per_compute
from synthworth.study.exchange import exchange_rates, provenance_of, study_frame
from synthworth.study.grid import class_counts, synthetic_pool
from synthworth.study.leakage import mark
from synthworth.study.paired import compare
from synthworth.study.predictions import read_predictions
from synthworth.study.stats import _trials, proportion_interval, summarise

# What a cell's training ran, beside its budget mode (see synthworth.study.budget): the steps
# budget, batches, optimizer steps, epochs (a fraction when a budget ended one early) and, under
# converge, the best epoch whose weights were kept, its steps, the validation images and loss.
BUDGET_COLUMNS = ("budget_steps", "train_batches", "optimizer_steps", "epochs_run", "best_epoch",
                  "steps_at_best", "n_validation", "validation_loss")

if TYPE_CHECKING:
    from synthworth.study.plan import StudyPlan


def metrics_file(plan: StudyPlan, generator: str) -> Path:
    """``metrics/<generator>.json``: the name made file-safe (a generator named ``../x`` stays
    inside ``metrics/``); the real name is inside the file."""
    return plan.out / "metrics" / f"{safety.safe_name(generator, fallback='generator')}.json"


def grid_state(plan: StudyPlan, store: CellStore, metrics_done: list[str]) -> dict[str, Any]:
    """The content of grid.json (without ``written_at``): counts over the whole grid."""
    states = {key: store.state(key) for key in plan.keys}
    missing = []
    for p in plan.cells:
        if states[p.key] == "complete":
            continue
        synthetic = bool(p.cell.generator)
        missing.append({"composition": p.cell.composition, "generator": p.cell.generator or None,
                        "filter": p.cell.filter if synthetic else None,
                        "size": int(p.cell.size), "ratio": float(p.cell.ratio) if synthetic else None,
                        "seed": int(p.cell.seed), "state": states[p.key]})
    wanted = list(plan.spec.synthetic) if plan.spec.metrics.enabled else []
    metrics_missing = [g for g in wanted if g not in metrics_done]
    finished_cells = len(plan.cells) - len(missing)
    return {"planned_cells": len(plan.cells), "finished_cells": finished_cells,
            "planned_trainings": len(states), "finished_trainings": sum(s == "complete" for s in states.values()),
            "complete": not missing and not metrics_missing, "missing": missing, "metrics_missing": metrics_missing}


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list) else value


def result_rows(plan: StudyPlan, store: CellStore) -> tuple[list[dict], list[dict]]:
    """(rows of the results table, rows of the evaluations table) of every complete cell."""
    rows, evals = [], []
    spec, inputs = plan.spec, plan.inputs
    for planned in plan.cells:
        res = store.result(planned.key)
        if res is None:
            continue
        cell = planned.cell
        synthetic = inputs.synthetic.get(cell.generator)
        real_test, synth_test = res["real_test"], res.get("synthetic_test") or {}
        row: dict[str, Any] = {
            "study": spec.name, "composition": cell.composition, "generator": cell.generator,
            "filter": cell.filter, "size": cell.size, "per_class": cell.per_class, "ratio": cell.ratio,
            "augment_factor": cell.augment_factor, "seed": cell.seed,
            # the generator replicate the cell's synthetic images came from ("": the whole pool)
            "synthetic_replicate": cell.synthetic_replicate,
            "n_train": res["n_train"], "n_real": res["n_real"], "n_synthetic": res["n_synthetic"],
            # Images per class of the training set (read from the plan, so older results get it too:
            # the key fixes the images).
            "class_counts": json.dumps(class_counts(planned.train_set)),
            "accuracy": real_test["accuracy"], "macro_f1": real_test["macro_f1"],
            "synthetic_accuracy": synth_test.get("accuracy"), "synthetic_macro_f1": synth_test.get("macro_f1"),
            "n_test": real_test["n"], "n_synthetic_test": synth_test.get("n"),
            "per_class_accuracy": json.dumps(real_test["per_class_accuracy"]),
            "confusion_matrix": json.dumps(real_test["confusion"]),
            "train_seconds": res["train_seconds"], "eval_seconds": res["eval_seconds"],
            # The training budget and what the cell ran (results stored before budgets: epochs, counts unknown).
            "budget": res.get("budget", "epochs"), **{k: res.get(k) for k in BUDGET_COLUMNS},
            "key": planned.key, "train_fingerprint": res["train_fingerprint"],
            "real_path": spec.real, "real_fingerprint": inputs.real.fingerprint,
            "real_train_split": spec.real_train_split, "real_test_split": spec.real_test_split,
            "synthetic_path": synthetic.path if synthetic else None,
            "synthetic_fingerprint": synthetic.fingerprint if synthetic else None,
            "synthetic_resized_from": synthetic.resized_from if synthetic else None,
            "synthetic_pool_fingerprint": synthetic_pool(cell, inputs).fingerprint if synthetic else None,
            "classifier_preset": spec.classifier_preset,
            "classifier_resized_from": plan.resized_from,
            "device": res["device"], "threads": res.get("threads"),
            # The classifiers' arithmetic (results stored before precisions: fp32) and whether the
            # device computed bf16 natively (unknown for those results).
            "precision": res.get("precision", "fp32"), "native_bf16": res.get("native_bf16"),
            "host": res.get("host"), "synthworth_version": res.get("synthworth_version", res.get("synthbench_version")),
            "finished_at": res["finished_at"],
        }
        _flatten("classifier", res["classifier"], row)
        rows.append(row)
        base = {k: row[k] for k in ("study", "composition", "generator", "filter", "size", "per_class", "ratio",
                                    "augment_factor", "seed", "synthetic_replicate", "key")}
        evals.append({**base, "test_set": "real_test", "test_generator": "", **_scores(real_test)})
        if synth_test:
            evals.append({**base, "test_set": "synthetic_test", "test_generator": cell.generator,
                          **_scores(synth_test)})
        if not cell.generator:
            for name, syn in inputs.synthetic.items():
                stored = store.read_eval(planned.key, name, syn.test.fingerprint)
                if stored is not None:
                    evals.append({**base, "test_set": "synthetic_test", "test_generator": name, **_scores(stored)})
    return rows, evals


def _scores(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {"accuracy": evaluation["accuracy"], "macro_f1": evaluation["macro_f1"], "n": evaluation["n"]}


def read_metrics(plan: StudyPlan, generator: str) -> dict[str, Any] | None:
    """The stored metrics of ``generator`` (None when missing or unreadable: computed again)."""
    data = read_json(metrics_file(plan, generator))
    return data if isinstance(data, dict) and "fid" in data else None


def metrics_rows(plan: StudyPlan, results: pd.DataFrame, generators: list[str]) -> list[dict]:
    """One row per generator with current metrics: every metric and its floor, and the CAS (the
    ``artificial`` cells' accuracy on real test images at the largest size run)."""
    rows = []
    for gen in generators:
        m = read_metrics(plan, gen)
        if m is None:
            continue
        row = {"study": plan.spec.name, "generator": gen, "features": m["features"],
               "features_label": m["features_label"], "n_real": m["real"]["images"], "n_fake": m["fake"]["images"]}
        row.update({k: v for k, v in m.items() if isinstance(v, (int, float)) and k not in ("seconds",)})
        art = results
        if len(results):
            art = results[(results["composition"] == "artificial") & (results["generator"] == gen)]
        if len(art):
            size = int(art["size"].max())
            at = art[art["size"] == size]  # an accuracy: the interval stays inside [0, 1] (stats.py)
            mean, _, low, high = proportion_interval(at["accuracy"].tolist(), _trials(at, "accuracy"))
            row.update({"cas": mean, "cas_ci_low": low, "cas_ci_high": high, "cas_size": size,
                        "cas_n_seeds": int((art["size"] == size).sum()),
                        "cas_source": "results.csv rows with composition == 'artificial'"})
        rows.append(row)
    return rows


def _write_table(df: pd.DataFrame, out: Path, name: str) -> dict[str, Path]:
    paths = {}
    for ext in ("csv", "parquet"):
        path = out / f"{name}.{ext}"
        tmp = out / f".{name}.{os.getpid()}.part.{ext}"
        if ext == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        paths[f"{name}.{ext}"] = path
    return paths


def _with_counts(df: pd.DataFrame, state: dict[str, Any]) -> pd.DataFrame:
    return df.assign(planned_cells=pd.Series(state["planned_cells"], index=df.index, dtype="int64"),
                     finished_cells=pd.Series(state["finished_cells"], index=df.index, dtype="int64"))


def write_tables(plan: StudyPlan, store: CellStore, metrics_done: list[str]) -> tuple[dict[str, Path], dict]:
    """Rewrite every table and grid.json from the complete cells (of any shard) in the results
    folder, under the tables lock. Returns (paths, the grid state written)."""
    with tables_lock(plan.out):
        rows, evals = result_rows(plan, store)
        state = grid_state(plan, store, metrics_done)
        leaks = plan.inputs.leaks  # a generator that saw real test images (allow_test_leakage): its rows say so
        results = mark(pd.DataFrame(rows), leaks)
        paths = _write_table(_with_counts(results, state), plan.out, "results")
        paths.update(_write_table(mark(pd.DataFrame(evals), leaks), plan.out, "evaluations"))
        # The accuracy intervals and the paired bootstrap read the cells' per-image predictions
        # (after evaluations.csv, which indexes them, is written); cells without any fall back to
        # the logit-t interval and the t-test, group by group.
        predictions = read_predictions(plan.out, warn=False) if len(results) else None
        paths.update(_write_table(_with_counts(mark(summarise(results, predictions=predictions), leaks), state),
                                  plan.out, "summary"))
        paths.update(_write_table(mark(compare(results, plan.spec.comparisons, predictions=predictions), leaks),
                                  plan.out, "comparisons"))
        if len(results):   # always rewritten (empty without synthetic cells), so it never outlives its results
            scope = "complete" if state["complete"] else f"partial: {state['finished_cells']} of {state['planned_cells']} cells"
            prov = provenance_of(read_json(plan.out / "inputs.json"))
            for name, syn in plan.inputs.synthetic.items():  # Datasets that record it, where inputs.json does not
                if prov.get(name) is None:
                    prov[name] = (getattr(syn.pool, "manifest", None) or {}).get("provenance")
            # The same per-image predictions give the test images' part of the rates' intervals.
            rates, _ = exchange_rates(study_frame(results, pd.DataFrame(evals)), grid=scope, provenance=prov,
                                      predictions=predictions)
            paths.update(_write_table(_with_counts(mark(rates, leaks), state), plan.out, "exchange_rates"))
            by_class, _ = exchange_rates_by_class(results, predictions=predictions, grid=scope, provenance=prov,
                                                  class_names=plan.inputs.real.class_names)
            paths.update(_write_table(_with_counts(mark(by_class, leaks), state), plan.out, "exchange_rates_by_class"))
            paths.update(_write_table(mark(worth_per_compute(rates, read_json(plan.out / "inputs.json")), leaks),
                                      plan.out, "worth_per_compute"))   # n_eff per generation-hour (compute.py)
        metric_rows = metrics_rows(plan, results, metrics_done)
        if metric_rows:
            paths.update(_write_table(mark(pd.DataFrame(metric_rows), leaks), plan.out, "metrics"))
        write_json_atomic(plan.out / "grid.json", {**state, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        paths["grid.json"] = plan.out / "grid.json"
    return paths, state
