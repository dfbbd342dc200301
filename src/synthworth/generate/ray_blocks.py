"""``generate --executor ray``: generation blocks spread over Ray actors.

One long-lived actor per GPU of the cluster (or, without GPUs, up to ``--workers`` one-CPU
actors) opens the generator or pipeline once, then takes blocks from a queue (Ray's ActorPool)
and writes their PNGs into the output folder, which every node must see under the same path.
A block is the unit the single-process run uses too (its seeds, one sampling call), and each
actor runs torch with the caller's thread count, so the files are the ones one process makes.
The caller keeps the bookkeeping: the timing log, the metadata and the packed form.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from synthworth.errors import SynthworthError


class BlockWorker:
    """A Ray actor (see :func:`make_on_ray`): the generator, loaded once, writing blocks."""

    def __init__(self, config_json: str, out: str, plan: dict[str, Any], threads: int):
        import torch

        from synthworth.generate.config import GenerateConfig
        from synthworth.generate.plan import _Layout
        from synthworth.generate.sources import _Pipeline, trained_source

        torch.set_num_threads(threads)
        self.out, self.plan, self.layout = Path(out), plan, _Layout.of(plan)
        self.native_marked = False
        self.failed: BaseException | None = None
        try:
            config = GenerateConfig.model_validate_json(config_json)
            device = torch.device("cuda" if torch.cuda.is_available() and not config.cpu else "cpu")
            self.source = _Pipeline(config, device) if config.pipeline is not None else trained_source(config)
            self.source.load(device)
        except Exception as exc:  # noqa: BLE001
            # Raised again by make(): Ray hands a task's exception back as it was (one line for the
            # user), but an actor that dies in __init__ only as a printed traceback.
            self.failed = exc

    def make(self, number: int, start: int, stop: int) -> tuple[int, int, int, float, float, dict[str, Any]]:
        from synthworth.generate.blocks import write_block

        if self.failed is not None:
            raise self.failed
        started = time.perf_counter()
        written, sampled = write_block(self.out, self.plan, self.layout, self.source, range(start, stop), self)
        # The runtime (device and its name) as this actor sees it: the caller's machine may differ.
        return number, stop - start, written, time.perf_counter() - started, sampled, self.source.runtime()


class _Remote:
    """The Session's view of the source: the device the last block was made on."""

    def __init__(self):
        self.last: dict[str, Any] = {}

    def runtime(self) -> dict[str, Any]:
        return self.last


def make_on_ray(config, out: Path, plan: dict[str, Any], todo: list[tuple[int, range]], session, progress: bool, *,
                workers: int | None, address: str | None) -> int:
    import torch

    from synthworth.procs import ray_session

    with ray_session(address, workers) as ray:
        from ray.util import ActorPool

        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = min(len(todo), gpus if gpus else (workers or int(ray.cluster_resources().get("CPU", 1))))
        actor = ray.remote(num_gpus=1, num_cpus=0)(BlockWorker) if gpus else ray.remote(num_cpus=1)(BlockWorker)
        args = (config.model_dump_json(), str(out), plan, torch.get_num_threads())
        pool = ActorPool([actor.remote(*args) for _ in range(max(1, count))])
        remote = _Remote()
        session.source = remote
        bar = tqdm(total=sum(len(b) for _, b in todo), desc=f"generating {plan['name']!r} on {max(1, count)} Ray "
                   f"worker(s)", unit="img", disable=not progress, file=sys.stderr, mininterval=0.5)
        made = 0
        try:
            for number, images, written, seconds, sampled, runtime in pool.map_unordered(
                    lambda a, job: a.make.remote(job[0], job[1].start, job[1].stop), todo):
                remote.last = runtime
                session.log(number, images, written, seconds, sampled)
                made += written
                bar.update(images)
        except ray.exceptions.RayError as exc:
            raise worker_error(ray, exc) from None
        finally:
            bar.close()
    return made


def worker_error(ray, exc: BaseException) -> BaseException:
    """What a Ray worker's failure is to the user: the worker's own exception where it was one the
    CLI reports in one line (a SynthworthError, a file system error), else one line naming it.
    Never Ray's text, which holds the worker's whole traceback flattened into the message."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        if isinstance(cause, (SynthworthError, OSError)):
            return cause
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return SynthworthError(f"a Ray worker failed while generating: {type(cause).__name__}: {text}")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return SynthworthError(f"a Ray worker stopped while generating ({type(exc).__name__}: "
                           f"{lines[-1] if lines else 'no reason given'}); the images written so far are kept: run "
                           "the same command again to make the rest")
