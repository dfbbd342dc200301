"""The demo's entry: its own folder, of one flavour, then the digits or the faces mission."""

from __future__ import annotations

import json
import os
from pathlib import Path

from synthworth.demo.common import DEMO_ENTRIES, FLAVOUR_FILE, _check_flavour, _Narrator, default_out
from synthworth.demo.digits import _digits
from synthworth.demo.faces import _check_no_single_runs, _faces


def run_demo(out: str | os.PathLike | None = None, *, quick: bool = False, faces: bool = False,
             progress: bool = True, workers: int | None = 1) -> Path:
    """Run the demo into ``out``; returns the path of the HTML report.

    ``workers`` > 1 (None: one per core) runs independent stages side by side in processes of
    one thread each: the DDPM trains and generates while the DCGAN trains, generates and its
    study cells train; then the study's remaining cells run on ``workers`` processes. Every
    stage is seeded and single-threaded either way, so the table is the serial run's."""
    import torch

    from synthworth.procs import check_workers, machine_workers

    workers = check_workers(workers) or machine_workers()

    threads = torch.get_num_threads()
    # The demo's networks are small: one thread per process is about as fast on an idle machine
    # and many times faster on a busy one, where spinning OpenMP threads fight for the cores.
    torch.set_num_threads(1)
    try:
        return _run(Path(out or default_out(quick, faces)), quick, faces, progress, workers)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, quick: bool, faces: bool, progress: bool, workers: int) -> Path:
    from synthworth.safety import check_replaceable, mark_owned

    # The demo writes only into a folder of its own: absent, empty, or an earlier demo's (which
    # it continues). A folder of the user's is refused before anything is written.
    check_replaceable(out, "demo")
    flavour = ("faces" if faces else "digits") + ("-quick" if quick else "")
    _check_flavour(out, flavour, quick, faces)
    if faces:
        _check_no_single_runs(out)
    out.mkdir(parents=True, exist_ok=True)
    mark_owned(out, "demo", DEMO_ENTRIES)
    if not (out / FLAVOUR_FILE).is_file():
        (out / FLAVOUR_FILE).write_text(json.dumps({"flavour": flavour}) + "\n")
    stages: dict[str, float] = {}
    say = _Narrator(progress)
    if faces:
        return _faces(out, quick, stages, say, workers)
    return _digits(out, quick, stages, say, progress, workers)
