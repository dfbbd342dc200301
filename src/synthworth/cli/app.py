"""The ``synthworth`` click group, the one error and warning format of every command, and
:func:`main`. The commands are attached by their modules (``synthworth.cli`` imports them all)."""

from __future__ import annotations

import contextlib

import click

from synthworth import __version__
from synthworth.errors import SynthworthError

OVERRIDES_HELP = "KEY=VALUE overrides of any config key, e.g. size=32 classes=[cat,dog]."


class Choice(click.Choice):
    """click.Choice whose error names the closest choice ("did you mean 'digits'?"), as click
    does for a mistyped sub-command."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            from synthworth.config import did_you_mean

            hint = did_you_mean(value, self.choices)
            if hint:
                exc.message = exc.message.rstrip(".") + hint

            raise


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="synthworth")
def cli() -> None:
    """synthworth: can generated images stand in for real ones?

    Prepare real image datasets, train or load generators, make labelled synthetic datasets
    and judge them against the real ones.
    """


@contextlib.contextmanager
def _one_line_warnings():
    """Every Python warning (a library's too) as one ``synthworth: warning: ...`` line, the
    same shape as the errors, instead of Python's two-line 'file:line: Category: ...' form."""
    import warnings

    def show(message, category, *args, **kwargs):
        kind = "" if category.__module__.startswith("synthworth") or category is UserWarning else f"{category.__name__}: "
        click.echo(f"synthworth: warning: {kind}{' '.join(str(message).split())}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def os_error_message(exc: OSError) -> str | None:
    """One line for the file-system failures a user can fix (a full disk, a folder they cannot
    write); None for any other OSError (a bug, shown with its traceback)."""
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"the disk is full{where}: free some space and run the same command again (a run "
                "never leaves a half-written result under its final name)")
    if exc.errno == errno.EROFS:
        return f"cannot write{where}: the file system is read-only; choose an output folder on a writable disk"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{exc.strerror}{where}: make the inputs readable and the output folder writable, or "
                "choose another output folder")
    return None


def error(message: str) -> None:
    """Print the one error format of every command: ``synthworth: error: <message>``, one line."""
    click.echo(f"synthworth: error: {' '.join(str(message).split())}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. Every failure a user can act on (a SynthworthError, a usage error, a file
    system error) prints one ``synthworth: error: ...`` line and exits 2; an interrupt exits 130."""
    try:
        with _one_line_warnings():
            cli.main(args=argv, prog_name="synthworth", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "synthworth"
        error(f"{exc.format_message()} (see '{where} --help')")
        return 2
    except click.ClickException as exc:
        error(exc.format_message())
        return 2
    except SynthworthError as exc:
        error(str(exc))
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except OSError as exc:
        # A failure the user can fix gets its advice; any other still gets the one line (the
        # system's own words and the file), never a traceback.
        where = f" ({exc.filename})" if exc.filename else ""
        error(os_error_message(exc) or f"{exc.strerror or exc}{where}")
        return 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        error("interrupted (nothing half-written is left under its final name)")
        return 130
    return 0
