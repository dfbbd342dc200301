"""What both demo flavours use: the folder's flavour, training a run (or reusing it), stages
side by side in processes, the narrator and the headline accuracy table."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def default_out(quick: bool, faces: bool) -> str:
    """Each flavour its own folder by default: a demo folder holds one flavour's results."""
    return ("synthworth-faces-demo" if faces else "synthworth-demo") + ("-quick" if quick else "")


FLAVOUR_FILE = "flavour.json"
DEMO_ENTRIES = ("data", "runs", "synthetic", "study", "findings", "report", FLAVOUR_FILE)


def _check_flavour(out: Path, flavour: str, quick: bool, faces: bool) -> None:
    """A demo continues only its own flavour: the runs of another (digits vs faces, quick vs full)
    would otherwise be taken as finished stages of this one."""
    from synthworth.errors import SynthworthError
    from synthworth.safety import LOCK, MARKER

    if not out.is_dir():
        return
    try:
        found = json.loads((out / FLAVOUR_FILE).read_text(encoding="utf-8")).get("flavour")
    except (OSError, ValueError, AttributeError):
        found = None
    if found == flavour or not {p.name for p in out.iterdir()} - {MARKER, LOCK}:
        return
    held = f"the {found} demo" if found else "a demo of an earlier synthworth (flavour unknown)"
    suggestion = default_out(quick, faces)
    if Path(suggestion).resolve() == out.resolve():
        suggestion += "-2"
    raise SynthworthError(f"--out {out} holds {held}, not the {flavour} demo asked for; choose another folder, "
                          f"e.g. --out {suggestion}")


def _train(kind: str, data: Path, run: Path, preset: str, overrides: tuple[str, ...], progress: bool) -> Path:
    from synthworth.config import last_wins
    from synthworth.train import train

    from synthworth.engine.run import RunFolder

    if (run / "model").is_dir():
        return run  # finished by an earlier demo run
    extra = () if progress else ("train.progress=false",)
    if RunFolder(run).usable_checkpoint() is not None:
        train(kind, data, run, resume=True, overrides=extra)
    else:  # new, or started but never checkpointed: the engine starts it again in place
        train(kind, data, run, preset=preset, overrides=last_wins([*overrides, *extra]))
    return run


def _train_replicates(kind: str, data: Path, out: Path, preset: str, overrides: tuple[str, ...],
                      seeds: tuple[int, ...], progress: bool) -> Path:
    """One replicate of the recipe per seed into the replicates folder ``out``, continuing what an
    earlier demo run left (a finished replicate is kept, an interrupted one resumed)."""
    from synthworth.config import last_wins
    from synthworth.engine.replicates import ReplicatesFolder, is_replicates
    from synthworth.train import train_replicates

    if is_replicates(out) and {r.seed for r in ReplicatesFolder(out).replicates()} >= set(seeds) and all(
            (r.path / "model").is_dir() for r in ReplicatesFolder(out).replicates() if r.seed in seeds):
        return out  # finished by an earlier demo run
    extra = () if progress else ("train.progress=false",)
    train_replicates(kind, data, out, seeds=list(seeds), preset=preset, overrides=last_wins([*overrides, *extra]),
                     resume=True)
    return out


def _in_lanes(jobs: list[tuple]) -> dict[str, float]:
    """Each job ``(fn, *args)`` in its own single-threaded process; their merged results."""
    from synthworth.procs import WorkerProcess

    workers = [WorkerProcess() for _ in jobs]
    finished = False
    try:
        futures = [w.submit(*job) for w, job in zip(workers, jobs)]
        times: dict[str, float] = {}
        for future in futures:
            times.update(future.result())
        finished = True
    finally:  # Ctrl-C or a failed lane: stop the others (every stage resumes on the next run)
        for worker in workers:
            worker.stop(kill=not finished)
    return times


class _Narrator:
    """Prints each stage with its time (to stderr, beside the progress bars)."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    def stage(self, title: str, stages: dict[str, float], key: str):
        narrator = self

        class _Stage:
            def __enter__(self):
                self.t0 = time.perf_counter()
                narrator(f"\n[{time.perf_counter() - narrator.started:6.0f} s] {title} ...")

            def __exit__(self, kind, exc, tb):
                stages[key] = time.perf_counter() - self.t0
                if kind is None:
                    narrator(f"  done in {stages[key]:.1f} s")
                return False

        return _Stage()

    def table(self, results: Path) -> None:
        if self.progress:
            self("\n" + accuracy_table(results / "summary.csv"))


DASH = "—"


def accuracy_table(summary_csv: Path) -> str:
    """The demo's headline table from a study's summary.csv: one row per training-set size, one
    column per composition (and generator), the mean accuracy over seeds on the real test
    images. A composition with no cell at any size gets no column; a cell not finished (a
    partial study) is a dash, explained under the table: never a NaN."""
    import csv

    with open(summary_csv, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["composition"] in ("real", "subset_real", "artificial", "mixed")]
    value: dict[tuple[str, int], str] = {}
    for r in rows:
        column = r["composition"] + (f" ({r['generator']})" if r["generator"] else "")
        if r["accuracy_mean"] not in ("", "nan", "NaN"):
            value[(column, int(r["size"]))] = f"{float(r['accuracy_mean']):.3f}"
    generators = sorted({r["generator"] for r in rows if r["generator"]})
    columns = [c for c in ["real", "subset_real", *(f"{comp} ({g})" for comp in ("artificial", "mixed")
                                                    for g in generators)]
               if any(col == c for col, _ in value)]
    sizes = sorted({size for _, size in value})
    n_seeds = sorted({r["n_seeds"] for r in rows if r.get("n_seeds")})
    seeds = f"{n_seeds[0]} seeds" if len(n_seeds) == 1 else "seeds"
    table = [["size", *columns]] + [[str(n), *(value.get((c, n), DASH) for c in columns)] for n in sizes]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table]
    title = (f"accuracy on the real test images, mean of {seeds} (subset_real = the real half of mixed; "
             "rows: training-set size):")
    note = [f"{DASH} = not finished at this size (a partial study)"] if any(DASH in r for r in table) else []
    return "\n".join([title, *lines, *note])
