"""``synthbench study run`` and ``synthbench study status``: the entry functions.

A run opens and checks every input, builds the grid and every cell's key (all before any cell
trains: bad input fails fast), then trains the cells of its shard that are not complete yet,
scores real-only cells on each generator's held-out images, computes the image-quality
metrics asked for, and rewrites the tables from every complete cell in the folder.

Results folder::

    RESULTS/study.yaml        the resolved spec and classifier config of the last run
    RESULTS/inputs.json       every input Dataset: path, fingerprint, shape, pool and test sizes, resizes
    RESULTS/log.txt           one line per cell started, finished or skipped
    RESULTS/cells/<key>/      one folder per cell (see synthbench.study.cache)
    RESULTS/results.csv       the tidy table: one row per cell (also .parquet)
    RESULTS/evaluations.csv   long form: every cell on every test set it was scored on
    RESULTS/summary.csv       mean, sd and 95 % CI over seeds per cell group
    RESULTS/comparisons.csv   paired differences between compositions / generators
    RESULTS/metrics/<generator>.json, RESULTS/metrics.csv    image-quality metrics (when asked)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from synthbench import __version__
from synthbench.config import dump_config
from synthbench.data.dataset import Dataset
from synthbench.errors import SynthbenchError
from synthbench.study.cache import CellStore, write_json_atomic
from synthbench.study.grid import (
    Cell,
    build_grid,
    cell_classifier,
    cell_key,
    check_sizes,
    counts,
    parse_shard,
    shard_of,
    training_set,
)
from synthbench.study.inputs import StudyInputs, StudyWarning, as_train, open_inputs, shape_text
from synthbench.study.spec import StudySpec, classifier_config, load_spec
from synthbench.study.stats import compare, summarise, t_interval

METRICS_JOB = "metrics:"


@dataclass
class PlannedCell:
    cell: Cell
    key: str
    payload: dict[str, Any]
    train_set: Dataset


@dataclass
class StudyPlan:
    """Everything a run needs, checked: the inputs, the classifier config and every cell's key."""

    spec: StudySpec
    out: Path
    inputs: StudyInputs
    classifier: Any  # ClassifierConfig
    cells: list[PlannedCell]
    resized_from: int | None = None  # the real images' side when the classifier sees another

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(p.key for p in self.cells))

    def jobs(self) -> list[str]:
        """Unique job ids: cell keys, and one metrics job per generator when metrics are asked."""
        metrics = [METRICS_JOB + g for g in self.spec.synthetic] if self.spec.metrics.enabled else []
        return self.keys + metrics

    def by_key(self) -> dict[str, PlannedCell]:
        out: dict[str, PlannedCell] = {}
        for p in self.cells:
            out.setdefault(p.key, p)
        return out


@dataclass
class StudyRun:
    """What :func:`run_study` did."""

    out: Path
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


# ------------------------------------------------------------------------------ planning
def plan_study(spec: StudySpec, out: str | os.PathLike | None = None) -> StudyPlan:
    """Open the inputs and build every cell with its key; any bad input raises here."""
    from synthbench.classifiers.models import build_classifier

    out = Path(out or spec.out or "")
    if not str(out) or str(out) == ".":
        raise SynthbenchError("no results folder: give --out or 'out' in the spec")
    inputs = open_inputs(spec)
    classifier = classifier_config(spec)
    h, _, c = inputs.real.shape
    side = classifier.model.resolution or h
    # Build the network once now, so an unknown model name or an impossible size fails before
    # any cell trains.
    build_classifier(classifier.model.name, inputs.num_classes, c, side, normalize=classifier.model.normalize,
                     width=classifier.model.width, dropout=classifier.model.dropout)
    if side != h:
        message = (f"the classifier ({spec.classifier_preset} preset) sees {side}x{side} images, the real ones are "
                   f"{h}x{h}: every image is resized on the fly (recorded as classifier_resized_from)")
        inputs.notes.append(message)
        warnings.warn(message, StudyWarning, stacklevel=2)
    grid = build_grid(spec, inputs.num_classes)
    check_sizes(grid, inputs, spec.ratio)
    cells = []
    for cell in grid:
        train = training_set(cell, inputs, spec.ratio)
        config = cell_classifier(classifier, cell.seed)
        key, payload = cell_key(dump_config(config), train.fingerprint, inputs.test.fingerprint, __version__)
        cells.append(PlannedCell(cell=cell, key=key, payload=payload, train_set=train))
    return StudyPlan(spec=spec, out=out, inputs=inputs, classifier=classifier, cells=cells,
                     resized_from=h if side != h else None)


# ------------------------------------------------------------------------------ entry points
def run_study(spec: str | os.PathLike | StudySpec, *, shard: str | tuple[int, int] | None = None,
              out: str | os.PathLike | None = None, overrides: tuple[str, ...] | list[str] = (),
              progress: bool = True) -> StudyRun:
    """Run the cells of ``spec`` (or of one shard ``"i/n"``) that are not complete, then rewrite
    the tables. Safe to run again: finished cells are skipped, a killed cell resumes."""
    started = time.perf_counter()
    spec, _ = load_spec(spec, overrides)
    shard = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    plan = plan_study(spec, out)
    plan.out.mkdir(parents=True, exist_ok=True)
    _write_description(plan)
    store = CellStore(plan.out)
    mine = shard_of(plan.jobs(), shard)
    report = StudyRun(out=plan.out, notes=list(plan.inputs.notes))
    by_key = plan.by_key()
    todo = [k for k in plan.keys if k in mine]
    pending = [k for k in todo if not store.complete(k)]
    report.skipped = [k for k in todo if store.complete(k)]
    for key in report.skipped:
        _log(plan, f"skip {key} {by_key[key].cell.label()} (complete)")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc="study cells", unit="cell", disable=not progress, leave=True)
    threads = torch.get_num_threads()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        for key in pending:
            bar.set_postfix_str(by_key[key].cell.label(), refresh=True)
            run_cell(plan, by_key[key], store)
            report.trained.append(key)
            bar.update()
        for key in todo:
            if not by_key[key].cell.generator:
                _score_on_synthetic(plan, by_key[key], store)
        for job in sorted(j for j in mine if j.startswith(METRICS_JOB)):
            if _run_metrics(plan, job[len(METRICS_JOB):], progress):
                report.metrics.append(job[len(METRICS_JOB):])
    finally:
        torch.set_num_threads(threads)
        bar.close()
        report.tables = write_tables(plan, store)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class StudyStatus:
    out: Path
    cells: int                      # rows of the grid
    unique: int                     # distinct trainings (cells sharing a training set count once)
    complete: list[str]
    started: list[str]
    pending: list[str]
    metrics_done: list[str]
    metrics_pending: list[str]
    per_composition: dict[str, tuple[int, int]]   # composition -> (complete cells, cells)

    def format(self) -> str:
        lines = [f"results    {self.out}",
                 f"cells      {self.cells} in the grid, {self.unique} distinct trainings: "
                 f"{len(self.complete)} complete, {len(self.started)} started or interrupted, "
                 f"{len(self.pending)} not started"]
        for comp, (done, total) in self.per_composition.items():
            lines.append(f"  {comp:12s} {done}/{total}")
        if self.metrics_done or self.metrics_pending:
            lines.append(f"metrics    done: {', '.join(self.metrics_done) or '-'}; "
                         f"to do: {', '.join(self.metrics_pending) or '-'}")
        return "\n".join(lines)


def study_status(spec: str | os.PathLike | StudySpec, *, out: str | os.PathLike | None = None,
                 overrides: tuple[str, ...] | list[str] = ()) -> StudyStatus:
    """How far the study in its results folder is (reads the inputs to know the keys)."""
    spec, _ = load_spec(spec, overrides)
    plan = plan_study(spec, out)
    store = CellStore(plan.out)
    keys = plan.keys
    per: dict[str, tuple[int, int]] = {}
    for p in plan.cells:
        done, total = per.get(p.cell.composition, (0, 0))
        per[p.cell.composition] = (done + store.complete(p.key), total + 1)
    metrics = [g for g in plan.spec.synthetic] if plan.spec.metrics.enabled else []
    done_metrics = [g for g in metrics if _metrics_current(plan, g)]
    return StudyStatus(out=plan.out, cells=len(plan.cells), unique=len(keys),
                       complete=[k for k in keys if store.complete(k)],
                       started=[k for k in keys if store.started(k)],
                       pending=[k for k in keys if not store.folder(k).exists()],
                       metrics_done=done_metrics, metrics_pending=[g for g in metrics if g not in done_metrics],
                       per_composition=per)


# ------------------------------------------------------------------------------ one cell
def run_cell(plan: StudyPlan, planned: PlannedCell, store: CellStore) -> dict[str, Any]:
    """Train and score one cell; resumes its newest checkpoint when a killed run left one."""
    from synthbench.classifiers.evaluate import evaluate
    from synthbench.classifiers.task import train_classifier
    from synthbench.engine import checkpoint as ckpt

    cell, key = planned.cell, planned.key
    folder = store.folder(key)
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = folder / "run"
    resume = ckpt.latest_checkpoint(run_dir / "checkpoints") is not None
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    write_json_atomic(folder / "cell.json", {"cell": cell.as_dict(), "key": key, "hashed": planned.payload})
    _log(plan, f"{'resume' if resume else 'start'} {key} {cell.label()}")
    config = cell_classifier(plan.classifier, cell.seed)
    config = config.model_copy(update={"train": config.train.model_copy(update={"progress": False})})
    t0 = time.perf_counter()
    model, _ = train_classifier(as_train(planned.train_set), run_dir, config, resume=resume)
    t1 = time.perf_counter()
    real_eval = evaluate(model, plan.inputs.test, config.eval_batch_size)
    synthetic_eval = None
    if cell.generator:
        synthetic_eval = evaluate(model, plan.inputs.synthetic[cell.generator].test, config.eval_batch_size)
    t2 = time.perf_counter()
    n_real, n_synth = counts(cell, plan.spec.ratio)
    result = {
        "key": key, "cell": cell.as_dict(), "n_train": len(planned.train_set), "n_real": n_real,
        "n_synthetic": n_synth, "train_fingerprint": planned.train_set.fingerprint,
        "test_fingerprint": plan.inputs.test.fingerprint, "classifier": dump_config(config),
        "real_test": real_eval.to_dict(),
        "synthetic_test": synthetic_eval.to_dict() if synthetic_eval else None,
        "train_seconds": round(t1 - t0, 3), "eval_seconds": round(t2 - t1, 3),
        "device": str(next(model.parameters()).device), "host": socket.gethostname(),
        "synthbench_version": __version__, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    store.save(key, result)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # done: the exported model is enough
    _log(plan, f"done {key} {cell.label()}: accuracy {real_eval.accuracy:.4f} in {t1 - t0:.1f}s")
    if not cell.generator:
        _score_on_synthetic(plan, planned, store, model)
    return result


def _score_on_synthetic(plan: StudyPlan, planned: PlannedCell, store: CellStore, model=None) -> None:
    """Score a real-only cell on every generator's held-out images it has no current score for
    (a changed synthetic Dataset re-scores the saved model; it never retrains it)."""
    from synthbench.classifiers.evaluate import evaluate
    from synthbench.classifiers.task import load_classifier

    if not store.complete(planned.key):
        return
    for name, synthetic in plan.inputs.synthetic.items():
        if store.read_eval(planned.key, name, synthetic.test.fingerprint) is not None:
            continue
        if model is None:
            model, _ = load_classifier(store.folder(planned.key) / "run" / "model")
        result = evaluate(model, synthetic.test, plan.classifier.eval_batch_size)
        store.save_eval(planned.key, name, synthetic.test.fingerprint, result.to_dict())


# ------------------------------------------------------------------------------ metrics
def _metrics_key(plan: StudyPlan, generator: str) -> str:
    payload = {"real": plan.inputs.real.fingerprint, "fake": plan.inputs.synthetic[generator].fingerprint,
               "config": plan.spec.metrics.model_dump(mode="json"), "synthbench_version": __version__}
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest()


def _metrics_file(plan: StudyPlan, generator: str) -> Path:
    return plan.out / "metrics" / f"{generator}.json"


def _metrics_current(plan: StudyPlan, generator: str) -> bool:
    path = _metrics_file(plan, generator)
    return path.is_file() and json.loads(path.read_text()).get("key") == _metrics_key(plan, generator)


def _run_metrics(plan: StudyPlan, generator: str, progress: bool) -> bool:
    from synthbench.metrics.compute import MetricsConfig, compute_metrics

    if _metrics_current(plan, generator):
        return False
    _log(plan, f"metrics {generator}: start")
    options = plan.spec.metrics.model_dump()
    options.pop("enabled")
    t0 = time.perf_counter()
    result = compute_metrics(plan.inputs.real, Dataset.open(plan.inputs.synthetic[generator].path),
                             MetricsConfig(**options), cache_dir=plan.out / "metrics" / "extractors",
                             progress=progress)
    result.update({"key": _metrics_key(plan, generator), "generator": generator,
                   "seconds": round(time.perf_counter() - t0, 3), "synthbench_version": __version__})
    write_json_atomic(_metrics_file(plan, generator), result)
    _log(plan, f"metrics {generator}: fid {result['fid']:.4g} (real floor {result.get('fid_real_floor')})")
    return True


# ------------------------------------------------------------------------------ tables
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
        if not store.complete(planned.key):
            continue
        cell, res = planned.cell, store.result(planned.key)
        synthetic = inputs.synthetic.get(cell.generator)
        real_test, synth_test = res["real_test"], res["synthetic_test"] or {}
        row: dict[str, Any] = {
            "study": spec.name, "composition": cell.composition, "generator": cell.generator,
            "size": cell.size, "per_class": cell.per_class, "ratio": cell.ratio,
            "augment_factor": cell.augment_factor, "seed": cell.seed,
            "n_train": res["n_train"], "n_real": res["n_real"], "n_synthetic": res["n_synthetic"],
            "accuracy": real_test["accuracy"], "macro_f1": real_test["macro_f1"],
            "synthetic_accuracy": synth_test.get("accuracy"), "synthetic_macro_f1": synth_test.get("macro_f1"),
            "n_test": real_test["n"], "n_synthetic_test": synth_test.get("n"),
            "per_class_accuracy": json.dumps(real_test["per_class_accuracy"]),
            "confusion_matrix": json.dumps(real_test["confusion"]),
            "train_seconds": res["train_seconds"], "eval_seconds": res["eval_seconds"],
            "key": planned.key, "train_fingerprint": res["train_fingerprint"],
            "real_path": spec.real, "real_fingerprint": inputs.real.fingerprint,
            "real_train_split": spec.real_train_split, "real_test_split": spec.real_test_split,
            "synthetic_path": synthetic.path if synthetic else None,
            "synthetic_fingerprint": synthetic.fingerprint if synthetic else None,
            "synthetic_resized_from": synthetic.resized_from if synthetic else None,
            "classifier_preset": spec.classifier_preset,
            "classifier_resized_from": plan.resized_from,
            "device": res["device"], "host": res.get("host"), "synthbench_version": res["synthbench_version"],
            "finished_at": res["finished_at"],
        }
        _flatten("classifier", res["classifier"], row)
        rows.append(row)
        base = {k: row[k] for k in ("study", "composition", "generator", "size", "per_class", "ratio",
                                    "augment_factor", "seed", "key")}
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


def metrics_rows(plan: StudyPlan, results: pd.DataFrame) -> list[dict]:
    """One row per generator with metrics: every metric and its floor, and the CAS (the
    ``artificial`` cells' accuracy on real test images at the largest size run)."""
    rows = []
    for gen in plan.spec.synthetic:
        path = _metrics_file(plan, gen)
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        row = {"study": plan.spec.name, "generator": gen, "features": m["features"],
               "features_label": m["features_label"], "n_real": m["real"]["images"], "n_fake": m["fake"]["images"]}
        row.update({k: v for k, v in m.items() if isinstance(v, (int, float)) and k not in ("seconds",)})
        art = results
        if len(results):
            art = results[(results["composition"] == "artificial") & (results["generator"] == gen)]
        if len(art):
            size = int(art["size"].max())
            mean, _, low, high = t_interval(art[art["size"] == size]["accuracy"].tolist())
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


def write_tables(plan: StudyPlan, store: CellStore) -> dict[str, Path]:
    """Rewrite every table from the complete cells (of any shard) in the results folder."""
    rows, evals = result_rows(plan, store)
    results = pd.DataFrame(rows)
    paths = _write_table(results, plan.out, "results")
    paths.update(_write_table(pd.DataFrame(evals), plan.out, "evaluations"))
    paths.update(_write_table(summarise(results), plan.out, "summary"))
    paths.update(_write_table(compare(results, plan.spec.comparisons), plan.out, "comparisons"))
    metric_rows = metrics_rows(plan, results)
    if metric_rows:
        paths.update(_write_table(pd.DataFrame(metric_rows), plan.out, "metrics"))
    return paths


# ------------------------------------------------------------------------------ bookkeeping
def _write_description(plan: StudyPlan) -> None:
    spec = plan.spec
    text = yaml.safe_dump({"spec": dump_config(spec), "classifier": dump_config(plan.classifier)}, sort_keys=False)
    tmp = plan.out / f".study.yaml.{os.getpid()}.part"  # shards may write it at the same time
    tmp.write_text(text)
    os.replace(tmp, plan.out / "study.yaml")
    inputs = plan.inputs

    def describe(ds: Dataset) -> dict[str, Any]:
        return {"images": len(ds), "fingerprint": ds.fingerprint}

    data = {"real": {"path": spec.real, "fingerprint": inputs.real.fingerprint, "shape": shape_text(inputs.real.shape),
                     "classes": inputs.real.class_names, "pool": describe(inputs.pool), "test": describe(inputs.test)},
            "synthetic": {name: {"path": s.path, "fingerprint": s.fingerprint, "resized_from": s.resized_from,
                                 "pool": describe(s.pool), "test": describe(s.test)}
                          for name, s in inputs.synthetic.items()},
            "classifier_resized_from": plan.resized_from, "notes": inputs.notes,
            "cells": len(plan.cells), "distinct_trainings": len(plan.keys), "synthbench_version": __version__}
    write_json_atomic(plan.out / "inputs.json", data)


def _log(plan: StudyPlan, message: str) -> None:
    with open(plan.out / "log.txt", "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {message}\n")

