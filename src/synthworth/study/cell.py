"""One cell of a study: trained under its lock, scored, and recorded in its folder.

Its per-image predictions on every test set it is scored on are kept beside its scores
(:mod:`synthworth.study.predictions`); a cell finished before they were kept gets them from its
saved model (:func:`_add_predictions`), never by training again.

:func:`_attempt` is what every executor calls for a cell (in this process, a worker process or a
Ray task): a training error is recorded in ``cells/<key>/failed.json`` and the run goes on; a
cell another process holds is left to it.
"""

from __future__ import annotations

import shutil
import socket
import time
import traceback
import warnings
from typing import Any

import torch

from synthworth import __version__
from synthworth.config import dump_config
from synthworth.engine.precision import PrecisionWarning, native_bf16
from synthworth.safety import LockedError
from synthworth.study.cache import CellStore, write_json_atomic
from synthworth.study.grid import cell_classifier, class_counts, counts
from synthworth.study.inputs import as_train
from synthworth.study.inputs import StudyWarning, replicate_counts
from synthworth.study.plan import PlannedCell, StudyPlan, _log
from synthworth.study.predictions import REAL, SYNTHETIC, check_predictions, clear_predictions, save_predictions
from synthworth.study.probing import is_probe, load_cell, train_cell


def _attempt(plan: StudyPlan, planned: PlannedCell, store: CellStore) -> str:
    """Train one cell under its lock: "trained", "failed" (recorded, the run goes on) or
    "elsewhere" (another process holds it)."""
    key, label = planned.key, planned.cell.label()
    try:
        with store.lock(key):
            if store.complete(key):  # finished by another process since this run looked
                return "skipped"
            try:
                run_cell(plan, planned, store)
            except Exception as exc:  # noqa: BLE001 (any error of one cell must not end the others)
                _log(plan, f"failed {key} {label}: {type(exc).__name__}: {exc}\n" + traceback.format_exc())
                store.save_failure(key, {"cell": planned.cell.as_dict(), "error": f"{type(exc).__name__}: {exc}",
                                         "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname()})
                return "failed"
    except LockedError:
        _log(plan, f"skip {key} {label} (running elsewhere)")
        return "elsewhere"
    return "trained"


# ------------------------------------------------------------------------------ one cell
def run_cell(plan: StudyPlan, planned: PlannedCell, store: CellStore) -> dict[str, Any]:
    """Train and score one cell; resumes its newest checkpoint when a killed run left one."""
    from synthworth.engine import checkpoint as ckpt

    cell, key = planned.cell, planned.key
    folder = store.folder(key)
    folder.mkdir(parents=True, exist_ok=True)
    store.begin(key)
    clear_predictions(folder)
    run_dir = folder / "run"
    resume = ckpt.latest_checkpoint(run_dir / "checkpoints") is not None
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    write_json_atomic(folder / "cell.json", {"cell": cell.as_dict(), "key": key, "hashed": planned.payload})
    _log(plan, f"{'resume' if resume else 'start'} {key} {cell.label()}")
    config = cell_classifier(plan.classifier, cell.seed)
    config = config.model_copy(update={"train": config.train.model_copy(update={"progress": False})})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)  # said once for the study (plan_study)
        model, task = train_cell(plan, as_train(planned.train_set), run_dir, config, resume)
    t1 = time.perf_counter()
    real_eval, real_pred = model.score(plan.inputs.test)
    # Kept before the result and COMPLETE: a complete cell always has its predictions.
    save_predictions(folder, key, REAL, "", plan.inputs.test.fingerprint, real_eval.to_dict(), real_pred)
    synthetic_eval = synthetic_fingerprint = None
    if cell.generator:
        synthetic_test = plan.inputs.synthetic[cell.generator].test
        synthetic_eval, synthetic_pred = model.score(synthetic_test)
        synthetic_fingerprint = synthetic_test.fingerprint
        save_predictions(folder, key, SYNTHETIC, cell.generator, synthetic_fingerprint, synthetic_eval.to_dict(),
                         synthetic_pred)
    t2 = time.perf_counter()
    n_real, n_synth = counts(cell, plan.spec.ratio)
    result = {
        "key": key, "cell": cell.as_dict(), "n_train": len(planned.train_set), "n_real": n_real,
        "n_synthetic": n_synth, "class_counts": class_counts(planned.train_set),
        "train_fingerprint": planned.train_set.fingerprint,
        "test_fingerprint": plan.inputs.test.fingerprint, "classifier": dump_config(config),
        "real_test": real_eval.to_dict(),
        "synthetic_test": synthetic_eval.to_dict() if synthetic_eval else None,
        "synthetic_test_fingerprint": synthetic_fingerprint,
        "train_seconds": round(t1 - t0, 3), "eval_seconds": round(t2 - t1, 3),
        "device": model.device, "threads": torch.get_num_threads(), "host": socket.gethostname(),
        "precision": plan.spec.precision, "native_bf16": native_bf16(model.device),
        "synthworth_version": __version__, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "budget_steps": None if is_probe(plan) else plan.budget.steps, **task.budget_used(),
    }
    replicates = replicate_counts(planned.train_set, plan.inputs.synthetic[cell.generator]) if cell.generator else None
    if replicates is not None:  # generated from replicates: the images each one made, in this training set
        result["synthetic_replicates"] = replicates
    if plan.backbone:
        result["backbone"] = {k: plan.backbone[k] for k in ("weights", "kind", "sha256", "preprocess")}
    store.save(key, result)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # done: the exported model is enough
    _log(plan, f"done {key} {cell.label()}: accuracy {real_eval.accuracy:.4f} in {t1 - t0:.1f}s")
    if not cell.generator:
        _score_on_synthetic(plan, planned, store, model)
    return result


def _same_scores(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["n"] == b["n"] and a["accuracy"] == b["accuracy"] and a["confusion"] == b["confusion"]


def _rescored(plan: StudyPlan, key: str, what: str, stored: dict[str, Any], new) -> bool:
    """Whether the saved model scored again gives the stored scores; if not (another device or
    library version), the stored ones stay and the cell goes without predictions, saying so."""
    if _same_scores(stored, new.to_dict()):
        return True
    message = (f"cell {key}: its saved model scored on {what} again gives accuracy {new.accuracy:.6g}, not the stored "
               f"{stored['accuracy']:.6g} (another device or library version?); its predictions are not stored: "
               f"remove {plan.out / 'cells' / key} and run the study again to retrain it")
    _log(plan, message)
    warnings.warn(message, StudyWarning, stacklevel=3)
    return False


def _scored_on(plan: StudyPlan, planned: PlannedCell, store: CellStore, *, own: bool = False) -> list[tuple]:
    """(test set, generator, Dataset, stored scores) of every test set a complete cell has current
    scores on: the real test images, its generator's held-out ones and (unless ``own``) those of
    every generator a real-only cell was scored on."""
    result = store.result(planned.key)
    if result is None:
        return []
    out = [(REAL, "", plan.inputs.test, result["real_test"])]
    generator = planned.cell.generator
    if generator and result.get("synthetic_test"):
        out.append((SYNTHETIC, generator, plan.inputs.synthetic[generator].test, result["synthetic_test"]))
    if not generator and not own:
        for name, synthetic in plan.inputs.synthetic.items():
            stored = store.read_eval(planned.key, name, synthetic.test.fingerprint)
            if stored is not None:
                out.append((SYNTHETIC, name, synthetic.test, stored))
    return out


def lacks_predictions(plan: StudyPlan, planned: PlannedCell, store: CellStore) -> bool:
    """Whether a complete cell lacks current predictions on a test set it has scores on."""
    folder = store.folder(planned.key)
    return any(check_predictions(folder, planned.key, test_set, generator, stored, dataset.fingerprint)[1] is not None
               for test_set, generator, dataset, stored in _scored_on(plan, planned, store))


def _add_predictions(plan: StudyPlan, planned: PlannedCell, store: CellStore, model=None) -> list[str]:
    """Give a complete cell that lacks them (finished before synthworth kept them) its
    predictions on the test sets it was trained and scored for, from its saved model; its
    scores are checked to be the stored ones. Returns the test sets added."""
    key, folder, added = planned.key, store.folder(planned.key), []
    wanted = _scored_on(plan, planned, store, own=True)
    for test_set, generator, dataset, stored in wanted:
        if check_predictions(folder, key, test_set, generator, stored, dataset.fingerprint)[1] is None:
            continue  # current
        if model is None:
            model = load_cell(plan, folder / "run" / "model")
        evaluation, predictions = model.score(dataset)
        if _rescored(plan, key, generator or "the real test images", stored, evaluation):
            save_predictions(folder, key, test_set, generator, dataset.fingerprint, stored, predictions)
            added.append(test_set)
    if added:
        _log(plan, f"predictions {key} {planned.cell.label()}: {', '.join(added)} from the saved model")
    return added


def _score_on_synthetic(plan: StudyPlan, planned: PlannedCell, store: CellStore, model=None) -> list[str]:
    """Score a real-only cell on every generator's held-out images it has no current score (or
    no predictions) for: a changed synthetic Dataset re-scores the saved model, it never retrains
    it. Returns the generators whose missing predictions were added to current scores."""
    if not store.complete(planned.key):
        return []
    key, folder, added = planned.key, store.folder(planned.key), []
    for name, synthetic in plan.inputs.synthetic.items():
        fingerprint = synthetic.test.fingerprint
        stored = store.read_eval(key, name, fingerprint)
        if stored is not None and check_predictions(folder, key, SYNTHETIC, name, stored, fingerprint)[1] is None:
            continue
        if model is None:
            model = load_cell(plan, folder / "run" / "model")
        result, predictions = model.score(synthetic.test)
        if stored is not None:  # current scores without predictions (kept before synthworth kept them)
            if _rescored(plan, key, name, stored, result):
                save_predictions(folder, key, SYNTHETIC, name, fingerprint, stored, predictions)
                added.append(name)
            continue
        # The predictions first: scores found current always have theirs beside them.
        save_predictions(folder, key, SYNTHETIC, name, fingerprint, result.to_dict(), predictions)
        store.save_eval(key, name, fingerprint, result.to_dict())
    return added
