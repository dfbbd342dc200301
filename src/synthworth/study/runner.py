"""``synthworth study run`` and ``synthworth study status``: the entry functions.

A run checks the results folder (see :mod:`synthworth.study.cache`: never an input, never a
folder holding files synthworth did not write), opens and checks every input, builds the grid
and every cell's key (all before any cell trains: bad input fails fast; see
:mod:`synthworth.study.plan`), then trains the cells of its shard that are not complete yet
(:mod:`synthworth.study.cell`), scores real-only cells on each generator's held-out images,
computes the image-quality metrics asked for, and rewrites the tables and grid.json from every
complete cell in the folder (:mod:`synthworth.study.tables`).

Faults while cells run:

- a cell whose training raises is recorded as failed (``cells/<key>/failed.json``, the
  traceback in log.txt); the other cells still run, the tables are written (partial, and
  grid.json says so), and the run ends with one error line naming the failed cells and the log.
  Running the same command again retries them;
- a cell another process is training now (two ``study run`` of one spec, or overlapping shards)
  is skipped with a warning: each cell holds a lock while it trains;
- Ctrl-C (or a kill) leaves the cell interrupted: the next run resumes it.

Results folder::

    RESULTS/.synthworth       the marker: a study's results folder, and the entries it wrote
    RESULTS/study.yaml        the resolved spec and classifier config of the last run
    RESULTS/inputs.json       every input Dataset: path, fingerprint, shape, pool and test sizes, resizes,
                              each generator's provenance (what it saw) and filtered pools
    RESULTS/filtered/<key>/   the synthetic pools filtered by the spec's filters (synthworth.study.filtering)
    RESULTS/log.txt           one line per cell started, finished, failed or skipped
    RESULTS/cells/<key>/      one folder per cell (see synthworth.study.cache)
    RESULTS/grid.json         planned and finished cells, and every missing one (see synthworth.study.tables)
    RESULTS/results.csv       the tidy table: one row per cell (also .parquet)
    RESULTS/evaluations.csv   long form: every cell on every test set it was scored on
    RESULTS/summary.csv       mean, sd and 95 % CI over seeds per cell group
    RESULTS/comparisons.csv   paired differences between compositions / generators
    RESULTS/metrics/<generator>.json, RESULTS/metrics.csv    image-quality metrics (when asked)
    RESULTS/features/<backbone>/  linear probes: the backbone's features of every image (synthworth.study.probing)
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from synthworth import __version__
from synthworth.config import dump_config
from synthworth.data.dataset import Dataset
from synthworth.errors import SynthworthError
from synthworth.safety import LockedError, output_lock, safe_name
from synthworth.study import compute
from synthworth.study.cache import CellStore, check_results_folder, claim_results_folder, write_json_atomic
from synthworth.study.cell import _add_predictions, _score_on_synthetic, lacks_predictions
from synthworth.study.grid import parse_shard, shard_of
from synthworth.study.inputs import StudyWarning, shape_text
from synthworth.study.predictions import lacking_note
from synthworth.study.probing import warm_features
from synthworth.study.replicates import dealing
from synthworth.study.plan import METRICS_JOB, PlannedCell, StudyPlan, _log, cell_threads, plan_study
from synthworth.study.spec import StudySpec, load_spec
from synthworth.study.tables import grid_state, metrics_file, read_metrics, write_tables


class StudyFailed(SynthworthError):
    """Some cells (or metrics) of a run raised; the others ran and the tables say what is missing."""

    def __init__(self, message: str, report: StudyRun):
        super().__init__(message)
        self.report = report


@dataclass
class StudyRun:
    """What :func:`run_study` did."""

    out: Path
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)          # cell keys (and "metrics:<generator>")
    elsewhere: list[str] = field(default_factory=list)       # cells another process was training
    grid: dict[str, Any] = field(default_factory=dict)       # what grid.json says after the run
    metrics: list[str] = field(default_factory=list)
    predictions_added: list[str] = field(default_factory=list)  # finished cells given predictions from saved models
    notes: list[str] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


# ------------------------------------------------------------------------------ entry points
def run_study(spec: str | os.PathLike | StudySpec, *, shard: str | tuple[int, int] | None = None,
              out: str | os.PathLike | None = None, overrides: tuple[str, ...] | list[str] = (),
              progress: bool = True, workers: int | None = 1, executor: str = "local",
              address: str | None = None) -> StudyRun:
    """Run the cells of ``spec`` (or of one shard ``"i/n"``) that are not complete, then rewrite
    the tables. Safe to run again: finished cells are skipped, a killed or failed cell is redone.
    Raises :class:`StudyFailed` at the end when a cell failed (the tables are written first).

    ``workers``: cells trained at once in local worker processes (1: one after another in this
    process; None: one per GPU, else one per CPU core); ``executor="ray"``: every cell a Ray task
    on the cluster at ``address`` (or a local one). See :mod:`synthworth.study.executors`."""
    from synthworth.procs import check_workers, machine_workers
    from synthworth.study.executors import EXECUTORS, run_cells

    started = time.perf_counter()
    check_workers(workers)
    if executor not in EXECUTORS:
        raise SynthworthError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        from synthworth.procs import check_address, import_ray

        import_ray()  # not installed: one line saying how, before anything is read or written
        check_address(address)
    spec_file = None if isinstance(spec, StudySpec) else Path(spec)
    spec, _ = load_spec(spec, overrides)
    shard = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    target = Path(out or spec.out or "")
    if str(target) not in ("", "."):
        # Before the inputs are opened (slow) and before anything is written.
        check_results_folder(target, [spec.real, *(s.path for s in spec.synthetic.values())], spec_file)
    plan = plan_study(spec, out)
    claim_results_folder(plan.out)
    _write_description(plan)
    store = CellStore(plan.out)
    mine = shard_of(plan.jobs(), shard)
    report = StudyRun(out=plan.out, notes=list(plan.inputs.notes))
    by_key = plan.by_key()
    todo = [k for k in plan.keys if k in mine]
    pending = [k for k in todo if not store.complete(k)]
    report.skipped = [k for k in todo if k not in pending]
    for key in report.skipped:
        _log(plan, f"skip {key} {by_key[key].cell.label()} (complete)")
    if pending:
        # Linear probes: every image's backbone features once, before the cells (with all threads).
        warm_features(plan, progress)
    threads = torch.get_num_threads()
    torch.set_num_threads(cell_threads(plan))  # scoring and metrics too: the same numbers in every executor
    try:
        # Ray: a local cluster gets the machine's cores unless --workers says (procs.ray_session),
        # not one CPU per GPU, which would hold back cells that share a GPU.
        local_workers = workers if executor == "ray" else workers or machine_workers()
        outcomes = run_cells(plan, pending, store, workers=local_workers, executor=executor,
                             address=address, progress=progress)
        for key in pending:  # in grid order, whatever order they finished in
            {"trained": report.trained, "skipped": report.skipped, "failed": report.failed,
             "elsewhere": report.elsewhere}[outcomes[key]].append(key)
        for key in todo:
            if key in report.failed:
                continue
            try:
                # A cell finished before predictions were kept gets them from its saved model.
                added = _add_predictions(plan, by_key[key], store)
                if not by_key[key].cell.generator:
                    added += _score_on_synthetic(plan, by_key[key], store)
                if added:
                    report.predictions_added.append(key)
            except Exception as exc:  # noqa: BLE001 (e.g. a damaged saved model: reported at the end)
                _log(plan, f"failed scoring {key} on its test sets: {type(exc).__name__}: {exc}")
                report.failed.append(key)
        for job in sorted(j for j in mine if j.startswith(METRICS_JOB)):
            generator = job[len(METRICS_JOB):]
            outcome = _attempt_metrics(plan, generator, progress)
            if outcome == "done":
                report.metrics.append(generator)
            elif outcome == "failed":
                report.failed.append(job)
    finally:
        torch.set_num_threads(threads)
        report.tables, report.grid = write_tables(plan, store, _metrics_done(plan))
    report.seconds = time.perf_counter() - started
    _finish(plan, report, by_key)
    return report


def _finish(plan: StudyPlan, report: StudyRun, by_key: dict[str, PlannedCell]) -> None:
    """Warn about cells left to another process; raise StudyFailed naming the failed ones."""
    grid = report.grid
    partial = f"the tables hold {grid['finished_cells']} of {grid['planned_cells']} cells (see grid.json)"
    if report.elsewhere:
        warnings.warn(f"{len(report.elsewhere)} cell(s) were being trained by another process and were skipped; "
                      f"{partial}: run the same command again when it has finished", StudyWarning, stacklevel=3)
    if not grid["complete"] and not report.failed and not report.elsewhere:
        missing = [f"{grid['planned_cells'] - grid['finished_cells']} cell(s)"] if grid["missing"] else []
        missing += [f"the metrics of {', '.join(grid['metrics_missing'])}"] if grid["metrics_missing"] else []
        # Shards complete one study only when they share its results folder (there is no merge of
        # separate folders): say which folder every shard must write into.
        warnings.warn(f"the study is partial: {' and '.join(missing)} not done yet (other shards, or running "
                      f"elsewhere); {partial}; every shard completes this study only when run with --out "
                      f"{shlex.quote(str(plan.out))}; 'synthworth study status' lists what is left",
                      StudyWarning, stacklevel=3)
    if report.failed:
        names = [by_key[k].cell.label() if k in by_key else k.replace(METRICS_JOB, "metrics of ")
                 for k in report.failed]
        shown = "; ".join(names[:5]) + (f"; and {len(names) - 5} more" if len(names) > 5 else "")
        raise StudyFailed(f"{len(names)} job(s) of the study failed ({shown}); the errors are in "
                          f"{plan.out / 'log.txt'}; {partial}: fix the cause and run the same command again "
                          "(finished cells are kept)", report)


@dataclass
class StudyStatus:
    """Where a study stands: the same counts and states as the grid.json a run writes."""

    out: Path
    cells: int                      # rows of the grid
    unique: int                     # distinct trainings (cells sharing a training set count once)
    complete: list[str]             # keys
    started: list[str]              # interrupted: begun, not finished (killed, or running now)
    failed: list[str]
    pending: list[str]              # not started
    running: list[str]              # of the started ones, those another process holds now
    metrics_done: list[str]
    metrics_pending: list[str]
    per_composition: dict[str, tuple[int, int]]   # composition -> (complete cells, cells)
    grid: dict[str, Any]                          # grid.json's content, as it would be written now
    lacking_predictions: list[str] = field(default_factory=list)  # complete cells without current predictions

    def format(self) -> str:
        g = self.grid
        verdict = "complete" if g["complete"] else "PARTIAL"
        lines = [f"results    {self.out}",
                 f"cells      {g['finished_cells']} of {g['planned_cells']} finished ({verdict}); "
                 f"{g['finished_trainings']} of {g['planned_trainings']} distinct trainings: "
                 f"{len(self.started)} interrupted"
                 + (f" ({len(self.running)} running now in another process)" if self.running else "")
                 + f", {len(self.failed)} failed, {len(self.pending)} not started"]
        for comp, (done, total) in self.per_composition.items():
            lines.append(f"  {comp:12s} {done}/{total}")
        if self.metrics_done or self.metrics_pending:
            lines.append(f"metrics    done: {', '.join(self.metrics_done) or '-'}; "
                         f"to do: {', '.join(self.metrics_pending) or '-'}")
        if self.lacking_predictions:
            lines.append(lacking_note(len(self.lacking_predictions), len(self.complete)))
        return "\n".join(lines)


def study_status(spec: str | os.PathLike | StudySpec, *, out: str | os.PathLike | None = None,
                 overrides: tuple[str, ...] | list[str] = ()) -> StudyStatus:
    """How far the study in its results folder is (reads the inputs to know the keys; writes nothing)."""
    spec, _ = load_spec(spec, overrides)
    plan = plan_study(spec, out, build_filters=False)
    store = CellStore(plan.out)
    states = {k: store.state(k) for k in plan.keys}
    per: dict[str, tuple[int, int]] = {}
    for p in plan.cells:
        done, total = per.get(p.cell.composition, (0, 0))
        per[p.cell.composition] = (done + (states[p.key] == "complete"), total + 1)
    metrics = list(plan.spec.synthetic) if plan.spec.metrics.enabled else []
    done_metrics = _metrics_done(plan)

    by_key = plan.by_key()

    def having(state: str) -> list[str]:
        return [k for k, s in states.items() if s == state]

    return StudyStatus(out=plan.out, cells=len(plan.cells), unique=len(states), complete=having("complete"),
                       started=having("interrupted"), failed=having("failed"), pending=having("not started"),
                       running=[k for k in having("interrupted") if store.running_elsewhere(k)],
                       metrics_done=[g for g in metrics if g in done_metrics],
                       metrics_pending=[g for g in metrics if g not in done_metrics], per_composition=per,
                       grid=grid_state(plan, store, done_metrics),
                       lacking_predictions=[k for k in having("complete") if lacks_predictions(plan, by_key[k], store)])


# ------------------------------------------------------------------------------ metrics
def _metrics_key(plan: StudyPlan, generator: str) -> str:
    from synthworth.metrics.features import weights_key

    # The weights' contents, not only their path: weights retrained or replaced in place are new.
    payload = {"real": plan.inputs.real.fingerprint, "fake": plan.inputs.synthetic[generator].fingerprint,
               "config": plan.spec.metrics.model_dump(mode="json"), "synthworth_version": __version__,
               "weights": weights_key(plan.spec.metrics)}
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest()


def _metrics_current(plan: StudyPlan, generator: str) -> bool:
    stored = read_metrics(plan, generator)
    return stored is not None and stored.get("key") == _metrics_key(plan, generator)


def _metrics_done(plan: StudyPlan) -> list[str]:
    """Generators whose stored metrics were made on the current inputs and options."""
    return [g for g in plan.spec.synthetic if _metrics_current(plan, g)]


def _attempt_metrics(plan: StudyPlan, generator: str, progress: bool) -> str:
    """Compute one generator's metrics under a lock: "done", "current", "failed" or "elsewhere"."""
    try:
        with output_lock(plan.out / "metrics", name=f".{safe_name(generator, fallback='generator')}.lock",
                         what="these metrics"):
            if _metrics_current(plan, generator):
                return "current"
            try:
                _run_metrics(plan, generator, progress)
            except Exception as exc:  # noqa: BLE001 (as a cell: recorded, the run goes on)
                _log(plan, f"failed metrics {generator}: {type(exc).__name__}: {exc}\n" + traceback.format_exc())
                return "failed"
    except LockedError:
        _log(plan, f"skip metrics {generator} (running elsewhere)")
        return "elsewhere"
    return "done"


def _run_metrics(plan: StudyPlan, generator: str, progress: bool) -> None:
    from synthworth.metrics.compute import MetricsConfig, compute_metrics

    _log(plan, f"metrics {generator}: start")
    options = plan.spec.metrics.model_dump()
    options.pop("enabled")
    t0 = time.perf_counter()
    result = compute_metrics(plan.inputs.real, Dataset.open(plan.inputs.synthetic[generator].path),
                             MetricsConfig(**options), cache_dir=plan.out / "metrics" / "extractors",
                             progress=progress)
    result.update({"key": _metrics_key(plan, generator), "generator": generator,
                   "seconds": round(time.perf_counter() - t0, 3), "synthworth_version": __version__})
    write_json_atomic(metrics_file(plan, generator), result)
    _log(plan, f"metrics {generator}: fid {result['fid']:.4g} (real floor {result.get('fid_real_floor')})")


# ------------------------------------------------------------------------------ bookkeeping
def _write_description(plan: StudyPlan) -> None:
    from synthworth.data import provenance

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
                                 "pool": describe(s.pool), "test": describe(s.test),
                                 # what the generator saw (None: not recorded), and the filtered pools
                                 "provenance": s.provenance, "provenance_text": provenance.describe(s.provenance),
                                 "compute": compute.record(s.pool.manifest, s.provenance),  # sampling, training time
                                 "filtered": {f: {**describe(ds), "path": str(ds.path)} for f, ds in s.filtered.items()},
                                 # the generator replicates its images came from, and the seed each serves
                                 "replicates": s.replicate_names, "replicates_use": spec.replicates,
                                 "replicate_of_seed": dealing(spec.seeds, spec.replicates, {name: s.replicate_names}).get(name, {})}
                          for name, s in inputs.synthetic.items()},
            "classifier_resized_from": plan.resized_from, "notes": inputs.notes, "test_leakage": inputs.leaks,
            "classifier_backbone": plan.backbone and {k: plan.backbone[k] for k in ("weights", "kind", "sha256",
                                                                                    "preprocess")},
            "cells": len(plan.cells), "distinct_trainings": len(plan.keys), "synthworth_version": __version__}
    write_json_atomic(plan.out / "inputs.json", data)


