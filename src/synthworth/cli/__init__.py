"""The ``synthworth`` command line. Each sub-command is a thin call of one entry function.

:mod:`synthworth.cli.app` holds the click group, the one error format and :func:`main`; each
command group has its module, imported here so that its commands are attached to the group."""

from synthworth.cli import data, demo, generate, metrics, plan, report, study, train  # noqa: F401  (attach the commands)
from synthworth.cli.app import cli, main

__all__ = ["cli", "main"]
