"""Where the report writes: its page and the page's own figures folder, and nothing else.

* The page is recognisable as the report's by a ``<meta name='generator' content='synthworth ...'>``
  tag in its head (pages of synthworth 0.1.0, which had none, by their exact opening; the check,
  and the removal of such a page, are :mod:`synthworth.safety`'s). Only such a page is
  overwritten; any other file at ``--out`` is refused.
* The figures live in ``<page stem>-figures/`` beside the page (``index.html`` ->
  ``index-figures/``), one folder per page, so two reports in one folder never share, replace or
  mislabel each other's figures. The folder carries a ``.synthworth`` marker of kind
  ``report-figures`` listing every file the report wrote (:mod:`synthworth.safety`); only such
  a folder, holding nothing else, is emptied and refilled.
* One writer at a time: a lock inside the figures folder refuses a second report on the same page.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthworth import __version__, safety
from synthworth.safety import GENERATOR_TAG, figures_dir, is_report_page

KIND = safety.REPORT_FIGURES


def head_html() -> str:
    return f"{GENERATOR_TAG} {__version__}'>"


def suggest(page: Path) -> Path:
    """A page name beside ``page`` for which neither the page nor its figures folder exists."""
    for i in range(2, 10_000):
        candidate = page.with_name(f"{page.stem}-{i}{page.suffix or '.html'}")
        if not candidate.exists() and not figures_dir(candidate).exists():
            return candidate
    return page.with_name(f"{page.stem}-new{page.suffix}")


def check(page: Path) -> None:
    """Raise :class:`safety.OwnershipError` unless the report may write ``page`` and its figures
    folder: each absent or the report's own. (Whatever the report reads is then not in the way:
    the page is a report page and the figures folder holds only the report's figures.)"""
    figdir = figures_dir(page)
    advice = f"choose a new --out, e.g. {suggest(page)}"
    if page.is_symlink() or (page.exists() and not page.is_file()):
        raise safety.OwnershipError(f"--out {page} exists and is not a plain file; the report will not replace "
                                    f"it: {advice}")
    if page.exists() and not is_report_page(page):
        raise safety.OwnershipError(f"--out {page} exists and is not a page synthworth wrote; it will not be "
                                    f"replaced: {advice}")
    starting = figdir.is_dir() and not figdir.is_symlink() and {p.name for p in figdir.iterdir()} <= {safety.LOCK}
    try:
        if not starting:  # (a folder holding only the lock: another report has just begun; the lock decides)
            safety.check_replaceable(figdir, KIND, what="figures folder")
    except safety.OwnershipError:
        raise safety.OwnershipError(f"{figdir} (where the report would put the figures of --out {page}) exists "
                                    f"and holds files the report did not write; they will not be replaced: "
                                    f"{advice}") from None


@contextmanager
def figures_folder(page: Path) -> Iterator[Path]:
    """Check the outputs, then hold the emptied figures folder of ``page`` while the block writes."""
    check(page)
    figdir = figures_dir(page)
    page.parent.mkdir(parents=True, exist_ok=True)
    with safety.output_lock(figdir, what="the report"):
        for entry in figdir.iterdir():  # every entry is the report's own: check() made sure
            if entry.name == safety.LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        safety.mark_owned(figdir, KIND, entries=[])
        yield figdir


def claim(figdir: Path, name: str) -> Path:
    """``figdir / name``, listed in the folder's marker before it is written (so a report that
    dies half-way leaves a folder the next report still recognises as its own)."""
    safety.mark_owned(figdir, KIND, entries=[name])
    return figdir / name


def write_page(page: Path, text: str) -> Path:
    """Write the page atomically (a hidden temporary file beside it, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=page.parent, prefix=f".{page.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, page)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return page
