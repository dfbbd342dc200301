"""The adversarial suite: bad inputs and faults, each with the outcome a user needs.

Every test here states one thing a careless or hostile input could do, runs the real CLI on it
(in this process, through :func:`synthworth.cli.main`) and asserts what a user needs: the data
is still there (:func:`snapshot` before == after), the labels are right, the message is one
clear line with exit code 2, and nothing was written outside the output (:func:`snapshot` of
the neighbourhood).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from synthworth.cli import main

# tests/ has no packages, so ``import conftest`` could find another folder's: the test modules
# here import these helpers under a name of their own, ``from adversarial_helpers import snapshot``.
sys.modules.setdefault("adversarial_helpers", sys.modules[__name__])


def _load(name: str, path: Path):
    """A test helper module by file (tests/ has no packages), loaded once."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# The hand-built results folder of the report's own tests.
resultsdir = _load("report_resultsdir", Path(__file__).parent.parent / "report" / "resultsdir.py")


def snapshot(root: str | os.PathLike, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: content hash (or 'dir' / 'link -> target')}`` of everything under
    ``root`` (symbolic links are recorded, not followed), leaving out paths under ``skip``."""
    root = Path(root)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if any(rel == s or rel.startswith(s + os.sep) for s in skip):
                continue
            if path.is_symlink():
                out[rel] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                out[rel] = "dir"
            elif path.is_file():
                out[rel] = hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()
            else:
                out[rel] = "special"
    return out


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr lines)``: the real CLI, in this process."""

    def run(*args) -> tuple[int, str, list[str]]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]

    return run


@pytest.fixture
def refused(cli):
    """``refused(*args, match=...)``: the CLI exits 2 with exactly one ``synthworth`` error line
    (no traceback) that contains every string of ``match``; returns that line."""

    def run(*args, match: str | tuple[str, ...] = ()) -> str:
        code, _, err = cli(*args)
        errors = [line for line in err if "error" in line]
        assert code == 2, (code, err)
        assert len(errors) == 1, err
        assert "Traceback" not in "\n".join(err), err
        for needle in (match,) if isinstance(match, str) else match:
            assert needle in errors[0], (needle, errors[0])
        return errors[0]

    return run


@pytest.fixture(name="snapshot")
def snapshot_fixture():
    """The :func:`snapshot` function, as a fixture (test modules here are not importable)."""
    return snapshot
