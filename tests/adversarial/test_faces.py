"""``synthworth demo --faces``: a folder of the user's is never touched, and a demo killed outright
leaves no worker process behind (the lanes train in worker processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from adversarial_helpers import snapshot  # noqa: E402  (see conftest.py)

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_a_foreign_out_is_refused_before_anything_is_written(tmp_path, refused):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    before = snapshot(tmp_path)
    refused("demo", "--faces", "--quick", "--out", out, match=("will not be replaced", "mine-2"))
    assert snapshot(tmp_path) == before


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_ends_when_its_parent_is_killed_outright(tmp_path):
    """kill -9 of the demo (or of a study) cannot stop its workers: each must notice and end, not
    train on into the run folder the next attempt resumes (nor idle on, holding its memory)."""
    script = ("import sys, time\n"
              "from synthworth.procs import WorkerProcess\n"
              "w = WorkerProcess()\n"
              "w.submit(time.sleep, 600)\n"  # busy, as a lane training a model is
              "print(w.pid, flush=True)\n"
              "time.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    worker = None
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived its killed parent"
    finally:
        parent.kill()
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)
