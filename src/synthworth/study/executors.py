"""Where a study's cells train: one after another in this process, in local worker processes
(``--workers N``), or as Ray tasks on a cluster (``--executor ray``).

Every cell is a pure function of its key, so the three give the same results.csv byte for byte,
on one condition this module enforces: a cell's numbers depend on torch's CPU thread count
(reductions split differently), so every cell runs with ``spec.threads`` threads (default 1),
however many cells run at once and whichever executor runs them. More cores are used by more
workers, not by more threads per cell.

A worker never receives arrays: it gets the spec (as JSON), the results folder and a cell key,
opens the inputs itself from their paths (once per worker process) and trains the cell through
the same ``_attempt`` as a serial run: under the cell's lock, writing into ``cells/<key>/``
through the CellStore, a training error recorded in failed.json. The parent only counts
outcomes, shows one progress bar for the whole grid, and writes the tables once at the end.

A local worker process that dies (killed, out of memory) marks its cell failed ("the worker
process died"); the other workers go on and the same command retries the cell. A Ray task whose
worker or node dies is retried by Ray (``max_retries``), then marked failed the same way.
Ctrl-C: the workers ignore SIGINT; the parent stops them (SIGTERM), their cells stay
interrupted and resume from their last checkpoint on the next run.

Test hook (harmless, off unless set): ``SYNTHWORTH_TEST_CRASH_ONCE=<path>`` makes the first
worker to start a cell create ``<path>`` and exit at once (``os._exit(1)``), as a killed worker
would; later attempts see the file and train normally. The tests use it to kill a worker.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from synthworth.errors import ConfigError
from synthworth.procs import WorkerProcess, ray_session
from synthworth.study.plan import cell_threads

if TYPE_CHECKING:
    from synthworth.study.cache import CellStore
    from synthworth.study.plan import StudyPlan

CRASH_HOOK = "SYNTHWORTH_TEST_CRASH_ONCE"
EXECUTORS = ("local", "ray")
DIED = "the worker process training it died (killed, or out of memory)"


# ------------------------------------------------------------------------------ worker side
_PLANS: dict[tuple[str, str], Any] = {}


def _worker_plan(spec_json: str, out: str) -> StudyPlan:
    """The plan of this study in this worker process, opened once (inputs read from their paths)."""
    from synthworth.study.plan import plan_study
    from synthworth.study.spec import StudySpec

    if (spec_json, out) not in _PLANS:
        from synthworth.engine.precision import PrecisionWarning
        from synthworth.study.inputs import StudyWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StudyWarning)  # the parent already showed them
            warnings.simplefilter("ignore", PrecisionWarning)
            _PLANS[(spec_json, out)] = plan_study(StudySpec.model_validate_json(spec_json), out)
    return _PLANS[(spec_json, out)]


def _crash_once(hook: str | None) -> None:
    if not hook:
        return
    try:
        os.close(os.open(hook, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)  # as if killed: no cleanup, no result


def train_job(spec_json: str, out: str, key: str, threads: int, hook: str | None = None) -> str:
    """Train one cell in this (worker) process: "trained", "skipped", "failed" or "elsewhere"."""
    import torch

    from synthworth.study.cache import CellStore
    from synthworth.study.cell import _attempt

    plan = _worker_plan(spec_json, out)
    planned = plan.by_key()[key]
    torch.set_num_threads(threads)
    _crash_once(hook)
    return _attempt(plan, planned, CellStore(plan.out))


# ------------------------------------------------------------------------------ parent side
class GridProgress:
    """One bar for the whole grid: cells done, running and left, and tqdm's time left."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="study cells", unit="cell", disable=not enabled, leave=True)
        self.total, self.done, self.running = total, 0, 0

    def show(self, running: int, label: str = "") -> None:
        self.running = running
        left = self.total - self.done - running
        self.bar.set_postfix_str(f"running {running}, left {left}" + (f" ({label})" if label else ""), refresh=True)

    def finished(self, running: int) -> None:
        self.done += 1
        self.bar.update()
        self.show(running)

    def close(self) -> None:
        self.bar.close()


def _record_death(plan: StudyPlan, store: CellStore, key: str, why: str = DIED) -> str:
    """A cell whose worker died: failed.json (unless another process has taken the cell since)."""
    from synthworth.safety import LockedError
    from synthworth.study.plan import _log

    label = plan.by_key()[key].cell.label()
    try:
        with store.lock(key):
            if store.complete(key):
                return "trained"
            _log(plan, f"failed {key} {label}: {why}")
            store.save_failure(key, {"cell": plan.by_key()[key].cell.as_dict(), "error": why,
                                     "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname()})
    except LockedError:
        return "elsewhere"
    return "failed"


def run_cells(plan: StudyPlan, keys: list[str], store: CellStore, *, workers: int | None = 1,
              executor: str = "local", address: str | None = None, progress: bool = True) -> dict[str, str]:
    """Train ``keys`` (cells not complete yet); returns each key's outcome. ``workers``: local
    processes, or the CPUs of a local Ray cluster (None: the machine's cores)."""
    bar = GridProgress(len(keys), progress)
    try:
        if executor == "ray":
            return _ray(plan, keys, store, bar, workers=workers, address=address)
        workers = workers or 1
        if workers <= 1 or len(keys) <= 1:
            return _serial(plan, keys, store, bar)
        return _pool(plan, keys, store, bar, min(workers, len(keys)))
    finally:
        bar.close()


def _serial(plan: StudyPlan, keys: list[str], store: CellStore, bar: GridProgress) -> dict[str, str]:
    import torch

    from synthworth.study.cell import _attempt

    outcomes = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(cell_threads(plan))
    by_key = plan.by_key()
    try:
        for key in keys:
            bar.show(1, by_key[key].cell.label())
            outcomes[key] = _attempt(plan, by_key[key], store)
            bar.finished(0)
    finally:
        torch.set_num_threads(threads)
    return outcomes


def _pool(plan: StudyPlan, keys: list[str], store: CellStore, bar: GridProgress, workers: int) -> dict[str, str]:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    job = (plan.spec.model_dump_json(), str(plan.out))
    options = (cell_threads(plan), os.environ.get(CRASH_HOOK))
    queue = list(keys)
    slots: list[WorkerProcess | None] = [None] * workers
    running: dict[Future, tuple[str, int]] = {}
    outcomes: dict[str, str] = {}
    interrupted = True
    try:
        while queue or running:
            busy = {slot for _, slot in running.values()}
            for i in range(workers):
                if queue and i not in busy:
                    if slots[i] is None:
                        slots[i] = WorkerProcess(i % gpus if gpus else None)
                    key = queue.pop(0)
                    running[slots[i].submit(train_job, *job, key, *options)] = (key, i)
            bar.show(len(running))
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                key, i = running.pop(future)
                try:
                    outcomes[key] = future.result()
                except BrokenProcessPool:
                    outcomes[key] = _record_death(plan, store, key)
                    slots[i].stop(kill=False)
                    slots[i] = None
                except Exception as exc:  # noqa: BLE001 (e.g. an input changed under the run: the cell fails)
                    outcomes[key] = _record_death(plan, store, key, f"{type(exc).__name__}: {exc}")
                bar.finished(len(running))
        interrupted = False
    finally:
        for slot in slots:
            if slot is not None:
                slot.stop(kill=interrupted)
    return outcomes


# ------------------------------------------------------------------------------ Ray
def _ray(plan: StudyPlan, keys: list[str], store: CellStore, bar: GridProgress, *, workers: int | None,
         address: str | None) -> dict[str, str]:
    """Each cell a Ray task with the spec's resources; a task whose worker or node dies is retried
    by Ray (resources.max_retries times), then recorded as failed like a dead local worker."""
    res = plan.spec.resources
    spec_json = plan.spec.model_dump_json()
    hook = os.environ.get(CRASH_HOOK)
    outcomes: dict[str, str] = {}
    with ray_session(address, workers) as ray:
        total = ray.cluster_resources()
        if not (address or os.environ.get("RAY_ADDRESS")):
            _check_local_resources(res, total)
        task = ray.remote(train_job).options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=res.max_retries,
                                             retry_exceptions=False)
        refs = {task.remote(spec_json, str(plan.out), key, cell_threads(plan), hook): key for key in keys}
        slots = total.get("CPU", 1) / res.cpus if res.cpus else len(keys)
        if res.gpus:
            slots = min(slots, total.get("GPU", 0) / res.gpus)
        pending = list(refs)
        try:
            while pending:
                bar.show(min(len(pending), max(1, int(slots))))
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    key = refs[ref]
                    try:
                        outcomes[key] = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # raised inside the task (not a training error)
                        outcomes[key] = _record_death(plan, store, key, f"{type(exc.cause).__name__}: {exc.cause}")
                    except ray.exceptions.RayError as exc:  # the worker or its node died, retries spent
                        outcomes[key] = _record_death(plan, store, key, f"{DIED}; Ray: {type(exc).__name__}")
                    bar.finished(min(len(pending), max(1, int(slots))))
        finally:
            for ref in pending:  # Ctrl-C: stop what is still queued or running
                ray.cancel(ref, force=True)
    return outcomes


def _check_local_resources(res, total: dict[str, float]) -> None:
    """A cell asking a local cluster (which never grows) for more than it has would wait forever:
    refuse it in one line instead. A joined cluster may add nodes on demand, so it is not checked."""
    gpus, cpus = total.get("GPU", 0), total.get("CPU", 0)
    if res.gpus > gpus:
        raise ConfigError(f"resources.gpus={res.gpus:g} asks each cell for {'a share of ' if res.gpus < 1 else ''}"
                          f"{'a GPU' if res.gpus <= 1 else f'{res.gpus:g} GPUs'}, but the local Ray cluster has "
                          f"{gpus:g} GPU(s): set resources.gpus=0 to train the cells on the CPU, or join a cluster "
                          "with GPUs (--address)")
    if res.cpus > cpus:
        raise ConfigError(f"resources.cpus={res.cpus:g} is more than the {cpus:g} CPU(s) of the local Ray cluster: "
                          f"set resources.cpus to at most {cpus:g}")
