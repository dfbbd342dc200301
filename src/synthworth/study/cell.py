"""One cell of a study: trained under its lock, scored, and recorded in its folder.

:func:`_attempt` is what every executor calls for a cell (in this process, a worker process or a
Ray task): a training error is recorded in ``cells/<key>/failed.json`` and the run goes on; a
cell another process holds is left to it.
"""

from __future__ import annotations

import shutil
import socket
import time
import traceback
from typing import Any

import torch

from synthworth import __version__
from synthworth.config import dump_config
from synthworth.safety import LockedError
from synthworth.study.cache import CellStore, write_json_atomic
from synthworth.study.grid import cell_classifier, class_counts, counts
from synthworth.study.inputs import as_train
from synthworth.study.plan import PlannedCell, StudyPlan, _log


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
    from synthworth.classifiers.evaluate import evaluate
    from synthworth.classifiers.task import train_classifier
    from synthworth.engine import checkpoint as ckpt

    cell, key = planned.cell, planned.key
    folder = store.folder(key)
    folder.mkdir(parents=True, exist_ok=True)
    store.begin(key)
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
        "n_synthetic": n_synth, "class_counts": class_counts(planned.train_set),
        "train_fingerprint": planned.train_set.fingerprint,
        "test_fingerprint": plan.inputs.test.fingerprint, "classifier": dump_config(config),
        "real_test": real_eval.to_dict(),
        "synthetic_test": synthetic_eval.to_dict() if synthetic_eval else None,
        "train_seconds": round(t1 - t0, 3), "eval_seconds": round(t2 - t1, 3),
        "device": str(next(model.parameters()).device), "threads": torch.get_num_threads(), "host": socket.gethostname(),
        "synthworth_version": __version__, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
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
    from synthworth.classifiers.evaluate import evaluate
    from synthworth.classifiers.task import load_classifier

    if not store.complete(planned.key):
        return
    for name, synthetic in plan.inputs.synthetic.items():
        if store.read_eval(planned.key, name, synthetic.test.fingerprint) is not None:
            continue
        if model is None:
            model, _ = load_classifier(store.folder(planned.key) / "run" / "model")
        result = evaluate(model, synthetic.test, plan.classifier.eval_batch_size)
        store.save_eval(planned.key, name, synthetic.test.fingerprint, result.to_dict())
