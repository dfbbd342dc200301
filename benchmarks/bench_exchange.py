"""Benchmark: computing the exchange-rate table of a results folder, two-way vs seeds only.

The table (``synthworth.study.exchange.exchange_rates``) is timed two ways side by side in the
same run, on the same results:

  a. seeds only (``predictions=None``): the bootstrap resamples the classifier seeds of every
     size and cell: the baseline, what the table cost before per-image predictions;
  b. two-way (``predictions=read_predictions(folder)``): the bootstrap resamples seeds and test
     images together, as ``synthworth study run`` writes ``exchange_rates.csv``.

Reading the per-image predictions (``read_predictions``) is timed apart, once per repeat: the
study pays it once for the paired comparisons and the rates together (study/tables.py). The
runs are interleaved, ``--repeats`` times; best and median are printed. The target (issue 21,
"Done when"): the demo's table, predictions read included, in under 10 s on 2 cores.

Without ``--results`` a small study of the digits is trained first (real and artificial cells,
held-out real digits as the "generator"; about a minute). A given results folder is copied to
a temporary folder first and only read there: the original is never written.

Run:  .venv/bin/python benchmarks/bench_exchange.py --results /path/to/demo/study
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_note, torch_note  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--results", default=None,
                   help="a finished study's results folder with per-image predictions (copied, never written); "
                        "None: train a small digits study first")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each way; best and median printed")
    p.add_argument("--target", type=float, default=10.0,
                   help="seconds the two-way table (predictions read included) must stay under")
    return p.parse_args(argv)


def small_study(root: Path) -> Path:
    """A finished digits study: real and artificial cells at 3 sizes x 3 seeds, the
    "generator" being real training digits the real pool lacks (as tests/study's fixtures)."""
    import numpy as np
    import yaml

    from synthworth.data.dataset import atomic_folder, write_packed
    from synthworth.data.prepare import PrepareConfig, prepare
    from synthworth.study import run_study

    digits = prepare(PrepareConfig(source="digits", size=16, fit="stretch", workers=0), root / "digits16",
                     progress=False)
    train, test = digits.split("train"), digits.split("test")
    order = np.random.default_rng(0).permutation(len(train))

    def write(path, idx, with_test):
        images, labels, splits = train.take(idx), train.labels[idx], np.full(len(idx), "train")
        if with_test:
            images = np.concatenate([images, test.take(np.arange(len(test)))])
            labels, splits = np.concatenate([labels, test.labels]), np.concatenate([splits, np.full(len(test), "test")])
        with atomic_folder(path, kind="dataset") as tmp:
            write_packed(tmp, images, labels, splits, train.class_names, [{} for _ in range(len(images))],
                         {"kind": "real" if with_test else "synthetic"})

    write(root / "real", order[:700], True)
    write(root / "held", order[700:], False)
    spec = {"name": "bench-exchange", "real": str(root / "real"), "synthetic": {"held": str(root / "held")},
            "sizes": [50, 100, 200], "seeds": [0, 1, 2], "compositions": ["real", "artificial", "mixed"],
            "classifier_preset": "tiny", "classifier": {"model": {"width": 8}, "train": {"epochs": 10, "batch_size": 16}}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    run_study(root / "spec.yaml", out=root / "out", progress=False)
    return root / "out"


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from synthworth.study.exchange import exchange_rates, study_frame
    from synthworth.study.predictions import read_predictions

    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-exchange-") as tmp:
        tmp = Path(tmp)
        if args.results:
            folder = tmp / "results"
            shutil.copytree(args.results, folder)   # a copy: the given folder is only read
            print(f"results: a copy of {args.results}")
        else:
            t0 = time.perf_counter()
            folder = small_study(tmp)
            print(f"results: a small digits study, trained in {time.perf_counter() - t0:.1f} s")
        results = pd.read_csv(folder / "results.csv", keep_default_na=False, na_values=[""])
        evals = pd.read_csv(folder / "evaluations.csv", keep_default_na=False, na_values=[""])
        frame = study_frame(results, evals)
        print(f"{len(results)} cells, {len(frame)} rows (cells x test sets); {cpu_note()}; {torch_note()}")

        reads, seeds_only, two_way = [], [], []
        for _ in range(args.repeats):   # interleaved, so drifting load falls on both ways alike
            t0 = time.perf_counter()
            predictions = read_predictions(folder, warn=False)
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            base, _ = exchange_rates(frame)
            seeds_only.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            table, _ = exchange_rates(frame, predictions=predictions)
            two_way.append(time.perf_counter() - t0)
        lacking = len(predictions.attrs.get("lacking", []))
        # (rows without a curve to invert, e.g. a step-shaped one, draw nothing and say "seeds only")
        covers = "; ".join(f"{k}: {v}" for k, v in table["interval_covers"].value_counts().items())
        print(f"{len(predictions):,} per-image predictions read ({lacking} cell(s) lacking them); "
              f"{len(table)} table rows (interval covers {covers})")

        def line(label, values):
            print(f"  {label:<34} best {min(values):7.2f} s   median {statistics.median(values):7.2f} s")

        print(f"seconds over {args.repeats} interleaved run(s):")
        line("read_predictions", reads)
        line("a. table, seeds only (baseline)", seeds_only)
        line("b. table, seeds + test images", two_way)
        total = min(reads) + min(two_way)
        print(f"two-way / seeds-only: {min(two_way) / min(seeds_only):.2f}x; "
              f"two-way with the read: {total:.2f} s")
        ok = total < args.target
        print(f"two-way table with its read: {total:.2f} s (target < {args.target:g} s): {'OK' if ok else 'FAIL'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
