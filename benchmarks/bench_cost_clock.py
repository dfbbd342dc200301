"""Is the cost finding's clock inflated by a neighbour? The same tiny DCGAN trained alone and
beside another training (two single-threaded processes at once, as the faces demo's lanes run),
three times each, interleaved; the engine's wall-clock ``train_s`` and CPU ``train_cpu_s`` of
each, and their ratios beside / alone (a clock not inflated by the neighbour gives about 1).

Run: ``OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_cost_clock.py`` (about two
minutes on two free cores; ``--epochs`` sets the length of a training).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def _train(data: str, run: str, epochs: int) -> dict[str, float]:
    """One tiny DCGAN training in this (worker) process, single-threaded; its last epoch row's clocks."""
    import torch

    from synthworth.train import train

    torch.set_num_threads(1)
    train("dcgan", Path(data), Path(run), preset="tiny",
          overrides=[f"train.epochs={epochs}", "train.batch_size=16", "train.progress=false",
                     "train.checkpoint_every=100000"])
    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r.get("kind") == "epoch"][-1]
    return {"wall": last["train_s"], "cpu": last["train_cpu_s"]}


def _at_once(jobs: list[tuple]) -> list[dict[str, float]]:
    from synthworth.procs import WorkerProcess

    workers = [WorkerProcess() for _ in jobs]
    try:
        futures = [w.submit(_train, *job) for w, job in zip(workers, jobs)]
        return [f.result() for f in futures]
    finally:
        for w in workers:
            w.stop(kill=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="epochs of each tiny DCGAN training")
    parser.add_argument("--repeats", type=int, default=3, help="alone / beside pairs, interleaved")
    args = parser.parse_args()
    from synthworth.data.prepare import PrepareConfig, prepare

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        faces = prepare(PrepareConfig(source="lfw", size=16, fit="stretch", classes=["face"], test_fraction=0.3,
                                      workers=0), root / "faces", progress=False)
        alone, beside = [], []
        for k in range(args.repeats):
            alone += _at_once([(str(faces.path), str(root / f"alone-{k}"), args.epochs)])
            beside += _at_once([(str(faces.path), str(root / f"beside-{k}-{i}"), args.epochs) for i in range(2)])
    for clock in ("wall", "cpu"):
        a = statistics.median(r[clock] for r in alone)
        b = statistics.median(r[clock] for r in beside)
        print(f"{clock:4s} s: alone {', '.join(f'{r[clock]:.2f}' for r in alone)} (median {a:.2f}); beside a "
              f"neighbour {', '.join(f'{r[clock]:.2f}' for r in beside)} (median {b:.2f}); ratio {b / a:.2f}")
    print("verdict: the cost finding compares CPU-trained models by the cpu clock (see its ratio above; the "
          "wall clock's ratio is what a neighbour adds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
