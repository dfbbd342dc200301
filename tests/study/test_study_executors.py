"""Executors of a study: serial, local worker processes and Ray give the same results; a worker
that dies fails (local) or is retried (Ray) only its own cell, and a rerun completes the study."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

from synthworth.study.executors import CRASH_HOOK

# Columns that differ between any two runs, serial or not (clocks and process details).
VARYING = {"train_seconds", "eval_seconds", "finished_at", "host"}
KEYS = {"compositions": ["real", "artificial"], "seeds": [0, 1]}  # 2 + 2 x 2 generators = 6 cells


def table(out) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    return frame.drop(columns=[c for c in frame.columns if c in VARYING])


def trainers(out) -> set[str]:
    """The process ids that trained cells (log.txt tags each line with its writer's pid)."""
    return set(re.findall(r"\[(\d+)\] done ", (out / "log.txt").read_text()))


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr lines)``: the real CLI, in this process."""
    from synthworth.cli import main

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]

    return run


@pytest.fixture(scope="module")
def serial(digits16, fake_generators, tmp_path_factory):
    """The study's results run serially (once per module)."""
    from synthworth.cli import main

    root = tmp_path_factory.mktemp("serial")
    spec = {"name": "test-study", "real": str(digits16.path), "synthetic": {k: str(v) for k, v in fake_generators.items()},
            "sizes": [40], "classifier_preset": "tiny", "classifier": {"train": {"epochs": 2, "batch_size": 16}}, **KEYS}
    (root / "serial.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["study", "run", str(root / "serial.yaml"), "-q", "--workers", "1"]) == 0
    return root / "serial-results"


def test_two_workers_and_ray_give_the_serial_results(serial, write_spec, cli, ray_cluster, monkeypatch):
    import os

    import synthworth.procs as procs

    # The default: one worker per core (this machine may have 1 core or 64: say 2).
    monkeypatch.delenv("SYNTHWORTH_WORKERS")
    monkeypatch.setattr(procs, "machine_workers", lambda: 2)
    pool = write_spec("pool", **KEYS)
    code, text, err = cli("study", "run", pool, "-q")
    assert code == 0 and "6 cell(s) trained" in text, err
    assert len(trainers(pool.parent / "pool-results")) == 2 and str(os.getpid()) not in trainers(
        pool.parent / "pool-results")
    on_ray = write_spec("ray", **KEYS)
    code, text, err = cli("study", "run", on_ray, "-q", "--executor", "ray")
    assert code == 0 and "6 cell(s) trained" in text, err
    expected = table(serial)
    assert len(expected) == 6 and set(expected.columns) > {"key", "accuracy", "per_class_accuracy"}
    pd.testing.assert_frame_equal(table(pool.parent / "pool-results"), expected)
    pd.testing.assert_frame_equal(table(on_ray.parent / "ray-results"), expected)
    for name in ("summary.csv", "comparisons.csv"):
        assert (pool.parent / "pool-results" / name).read_bytes() == (serial / name).read_bytes(), name
    # A rerun, with or without Ray, skips every finished cell.
    code, text, _ = cli("study", "run", on_ray, "-q", "--workers", "2")
    assert code == 0 and "0 cell(s) trained, 6 already complete" in text


def test_a_killed_ray_worker_is_retried_and_the_study_finishes(serial, write_spec, cli, ray_cluster, tmp_path,
                                                               monkeypatch):
    hook = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_HOOK, str(hook))
    spec = write_spec("retried", **KEYS)
    code, text, err = cli("study", "run", spec, "-q", "--executor", "ray")
    assert hook.exists(), "no worker was killed"
    assert code == 0 and "6 cell(s) trained" in text, err
    pd.testing.assert_frame_equal(table(spec.parent / "retried-results"), table(serial))


def test_a_killed_pool_worker_fails_its_cell_only_and_a_rerun_completes(serial, write_spec, cli, tmp_path,
                                                                         monkeypatch):
    hook = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_HOOK, str(hook))
    spec = write_spec("killed", **KEYS)
    out = spec.parent / "killed-results"
    code, _, err = cli("study", "run", spec, "-q", "--workers", "2")
    assert hook.exists() and code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert "1 job(s) of the study failed" in err[0] and "5 of 6 cells" in err[0]
    failed = [json.loads(p.read_text()) for p in (out / "cells").glob("*/failed.json")]
    assert len(failed) == 1 and "worker process training it died" in failed[0]["error"]
    code, text, _ = cli("study", "status", spec)
    assert "1 failed" in text
    code, text, err = cli("study", "run", spec, "-q", "--workers", "2")  # the same command again
    assert code == 0 and "1 cell(s) trained, 5 already complete" in text, err
    pd.testing.assert_frame_equal(table(out), table(serial))
