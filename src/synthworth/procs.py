"""Processes and clusters: worker processes that die with their parent, and Ray sessions.

Used by the study (cells in local workers or Ray tasks), the image-quality tracking of a
training (its metrics in a worker process), generation (blocks on Ray actors) and the demo.

:class:`WorkerProcess` is one spawned worker process (a one-process pool: a death breaks only
this one) that ignores SIGINT from its start (the parent alone decides, and stops it) and ends
itself once its parent is gone. :func:`machine_workers` is the default number of workers.

Ray is the optional engine that spreads study cells and generation blocks over a cluster;
``pip install "synthworth[ray]"`` installs it, and it is imported only when asked for.
:func:`ray_session` joins the cluster named by ``--address`` (or ``RAY_ADDRESS``; ``auto`` finds
one started on this machine with ``ray start``), or else starts a local one for the run with
``num_cpus`` = ``--workers`` (or the machine's cores), and shuts down only what it started. Every
node must have synthworth installed and see the input and output folders under the same paths
(a shared file system).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager

from synthworth.errors import ConfigError


# ------------------------------------------------------------------------------ worker processes
def machine_workers() -> int:
    """One worker per GPU on a GPU machine, else one single-threaded worker per CPU core."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.cuda.device_count()
    return cpu_cores()


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def check_workers(workers: int | None) -> int | None:
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be 1 or more (1: one cell after another in this process), got {workers}")
    return workers


def _init_worker(gpu: int | None) -> None:
    # Ctrl-C reaches the whole process group: the parent alone decides, and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu is not None:  # before CUDA is initialised (torch initialises it lazily)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import threading

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone: a parent killed outright (kill -9, the OOM killer)
    cannot stop it, and an orphan would idle on holding its memory, or go on training into a run
    folder (and its lock) that the next attempt needs."""
    import time

    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a worker process starts: a Ctrl-C then reaches only this process (which
    stops the workers), not a worker half-way through importing torch (a traceback, no cleanup)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


class WorkerProcess:
    """One spawned worker process (a one-process pool: a death breaks only this one, and names its
    job). It ignores SIGINT from its start; :meth:`stop` with ``kill`` ends it at once."""

    def __init__(self, gpu: int | None = None, threads: int | None = None):
        import multiprocessing

        # spawn, never fork: a forked torch process can deadlock (OpenMP / CUDA state is not fork-safe).
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(gpu,))
        with _sigint_ignored():  # inherited by the new process from its very start
            first = self.pool.submit(os.getpid)
        try:
            self.pid: int = first.result()
        except BaseException:  # Ctrl-C while it starts: end it now (its pid is not known yet)
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
            self.pool.shutdown(wait=False, cancel_futures=True)
            raise

    def submit(self, fn, *args) -> Future:
        return self.pool.submit(fn, *args)

    def stop(self, kill: bool) -> None:
        if kill:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass
        self.pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ Ray
INSTALL = 'Ray is not installed: pip install "synthworth[ray]" (or leave out --executor ray to use local processes)'
CONNECT_TIMEOUT_S = 10.0


def import_ray():
    """The ray module, or one ConfigError line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL) from None
    return ray


def check_address(address: str | None) -> None:
    """Refuse at once (before anything is written, not after Ray's long retries) an address that
    is not HOST:PORT / auto / ray://HOST:PORT, or a HOST:PORT nobody answers on."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not HOST:PORT (as 'ray start --head' prints it), 'auto' or "
                          "ray://HOST:PORT; or leave out --address to start a local cluster")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S) as conn:
            # Ray's GCS and Ray Client are gRPC (HTTP/2) servers, which answer the HTTP/2 preface
            # with a SETTINGS frame; any other listener (a web server, a wrong port) would leave
            # ray.init retrying for minutes, printing C++ warnings.
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        raise ConfigError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one there with "
                          "'ray start --head', or leave out --address to start a local one") from None
    if len(head) < 9 or head[3] != 4:  # frame type 4: SETTINGS
        raise ConfigError(f"{address} answers, but not as a Ray cluster (is it the port 'ray start --head' printed?); "
                          "start one there with 'ray start --head', or leave out --address to start a local one")


@contextmanager
def ray_session(address: str | None, workers: int | None) -> Iterator:
    """The ray module, connected: to ``address`` / RAY_ADDRESS, to the session already started in
    this process (e.g. by a test), or to a new local cluster shut down at the end."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        check_address(address)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot join the Ray cluster at {address}: {' '.join(str(exc).split())[:300]}; "
                              "start one with 'ray start --head', or leave out --address to start a local "
                              "one") from None
    else:
        # The machine's cores, not machine_workers() (one per GPU): cells asking for a share of a
        # GPU each (resources.gpus < 1) would otherwise be held back by too few CPUs.
        ray.init(num_cpus=workers or cpu_cores(), **options)
    try:
        yield ray
    finally:
        ray.shutdown()
