"""Quality: class-conditional DCGAN and DDPM on the bundled digits, judged by a real-trained classifier.

Issues 3 and 4, "Quality". The bundled digits are prepared at 16x16 (the ``digits`` data
preset); a class-conditional DCGAN (preset ``dcgan/digits``) and a class-conditional pixel DDPM
(preset ``ddpm/digits-ddpm``) are trained on the real train split through ``synthworth``'s own
engine, one after the other. At chosen epochs (and the last), each model samples N images with
class-balanced labels (the DDPM with its preset sampler, steps and guidance, from its EMA
weights; the DCGAN with batch norm from running statistics, as ``DCGAN.sample`` does) and the
**agreement score** is the share a CNN trained on the real digits (>= 97 % on the real test
split; see ``_agreement.py``) labels as the intended class. Agreement rewards fidelity, not
variety (a generator repeating one good digit per class would score 100 %), so each point also
reports **train-on-synthetic, test-on-real**: the same CNN trained on ``--tstr-n`` of the
generated images alone, its accuracy on the real test split, beside the same CNN trained on as
many real images (the question the demo's study asks, in miniature).

Training time is the wall time of the training run (``fit``) up to the end of that epoch,
including what a normal run does at epoch ends (sample grids, plots, checkpoints), excluding
the evaluation itself. It is wall time on this machine: on a CPU shared with other jobs it is
longer than on an idle one, so the load average is printed with it and epochs are given too.
Caveat: the DCGAN's learning rate is constant, so its curve is what shorter runs reach; the
DDPM's decays (cosine over ``train.epochs``), so a point in the middle of its run understates
what a run of that length, with its own complete decay, reaches (measure that with
``--ddpm-set train.epochs=N``).

Targets: DCGAN >= 80 % after a few minutes on 2 CPU cores; DDPM >= 90 % within at most 10
minutes, and better than the DCGAN.

On a CPU shared with other busy processes, run it with OMP_WAIT_POLICY=PASSIVE (see
``_common.torch_note``): spinning OpenMP threads otherwise make training many times slower.

Run:  OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/quality_digits.py          (~6 min on 2 cores)
      .venv/bin/python benchmarks/quality_digits.py --models ddpm --ddpm-set train.epochs=40 --guidance 1,3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _agreement import (balanced_labels, prepare_digits, real_reference, score_generator,  # noqa: E402
                        train_judge, train_synthetic_test_real)
from _common import cpu_note, load_note, torch_note  # noqa: E402

PRESETS = {"dcgan": "digits", "ddpm": "digits-ddpm"}
TARGETS = {"dcgan": 0.80, "ddpm": 0.90}
TIME_LIMITS = {"dcgan": 5 * 60.0, "ddpm": 10 * 60.0}  # "a few minutes" / "at most 10 minutes"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default="dcgan,ddpm", help="comma-separated: dcgan, ddpm")
    p.add_argument("--data", default=None, help="a prepared 16x16 digits Dataset (default: prepared in a temp dir)")
    p.add_argument("--dcgan-preset", default=PRESETS["dcgan"], help="DCGAN preset")
    p.add_argument("--ddpm-preset", default=PRESETS["ddpm"], help="DDPM preset")
    p.add_argument("--dcgan-set", action="append", default=[], metavar="KEY=VALUE", help="override of the DCGAN config (repeatable)")
    p.add_argument("--ddpm-set", action="append", default=[], metavar="KEY=VALUE", help="override of the DDPM config (repeatable)")
    p.add_argument("--evals", type=int, default=5, help="evaluation points per model, evenly spaced in epochs (the last epoch always)")
    p.add_argument("--eval-epochs", default=None, help="explicit comma-separated epochs to evaluate at (overrides --evals)")
    p.add_argument("--n", type=int, default=500, help="samples per intermediate evaluation")
    p.add_argument("--tstr-n", type=int, default=500,
                   help="of those, how many train a classifier tested on the real test split (0: skip)")
    p.add_argument("--n-final", type=int, default=1000, help="samples for the evaluation after the last epoch")
    p.add_argument("--guidance", default=None,
                   help="DDPM only: also score these comma-separated guidance scales at each point "
                        "(the preset's own scale is always scored and is the one the verdict uses)")
    p.add_argument("--seed", type=int, default=0, help="training seed (train.seed)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--keep", default=None, help="keep the run folders under this folder (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def eval_epochs(total: int, count: int, explicit: str | None) -> list[int]:
    if explicit:
        chosen = {int(e) for e in explicit.split(",") if e.strip()}
    else:
        chosen = {max(1, round(total * (i + 1) / count)) for i in range(count)}
    return sorted(e for e in chosen | {total} if 1 <= e <= total)


def evaluating_task(kind: str, config, judge, epochs: list[int], n: int, n_final: int, results: list,
                    extra_guidance: list[float], dataset, tstr_n: int):
    """The model's engine task, plus a timer and an agreement evaluation at ``epochs``."""
    from synthworth.train import MODELS

    base = MODELS[kind].task()

    class Evaluating(base):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.t_start = time.perf_counter()
            self.eval_seconds = 0.0
            self.steps = 0

        def step(self, batch, ctx):
            self.steps += 1
            return super().step(batch, ctx)

        def on_epoch_end(self, ctx, epoch_means):
            super().on_epoch_end(ctx, epoch_means)
            epoch = ctx.epoch + 1
            if epoch not in epochs:
                return
            train_s = time.perf_counter() - self.t_start - self.eval_seconds
            t0 = time.perf_counter()
            count = n_final if epoch == ctx.config.epochs else n
            others = {}
            if kind == "dcgan":
                score, sample_s, images = score_generator(judge, self._sampler(ctx.accelerator), count, seed=10_000)
            else:
                def scores(gen):
                    for w in extra_guidance:
                        if w != gen.sampling.guidance:
                            others[w] = score_generator(judge, gen, count, seed=10_000, guidance=w)[0]
                    return score_generator(judge, gen, count, seed=10_000)

                score, sample_s, images = self._with_ema(ctx.accelerator, scores)
            tstr = None
            if tstr_n:
                m = min(tstr_n, count)
                tstr = train_synthetic_test_real(images[:m], balanced_labels(m, len(judge.class_names)), dataset)
            self.eval_seconds += time.perf_counter() - t0
            row = {"epoch": epoch, "steps": self.steps, "train_s": round(train_s, 1), "agreement": score,
                   "n": count, "tstr": tstr, "sample_s": round(sample_s, 1), "load": load_note(),
                   "other_guidance": {str(w): v for w, v in others.items()}}
            results.append(row)
            extra = "".join(f", guidance {w:g}: {v:.1%}" for w, v in others.items())
            tstr_note = f", train-on-{min(tstr_n, count)}-synthetic test-on-real {tstr:.1%}" if tstr is not None else ""
            print(f"  {kind} epoch {epoch:3d} ({self.steps:5d} steps): train time {train_s / 60:5.2f} min, "
                  f"agreement {score:6.1%} on {count} samples{tstr_note} (sampling {sample_s:.1f} s{extra}; "
                  f"{load_note()})", flush=True)

    return Evaluating(config)


def run_model(kind: str, preset: str, overrides: list[str], data, run_dir: Path, judge, args) -> dict:
    from synthworth.data.dataset import Dataset
    from synthworth.engine.loop import fit
    from synthworth.metrics.tracking import training_hooks
    from synthworth.train import resolve_train_config

    overrides = [f"train.seed={args.seed}", "train.progress=false", *overrides]
    config = resolve_train_config(kind, run_dir, preset=preset, overrides=overrides)
    epochs = eval_epochs(config.train.epochs, args.evals, args.eval_epochs)
    results: list[dict] = []
    extra = [float(w) for w in args.guidance.split(",")] if args.guidance and kind == "ddpm" else []
    if kind == "ddpm":
        print(f"  sampling: {config.sampling.sampler}, {config.sampling.steps} steps, guidance {config.sampling.guidance:g}",
              flush=True)
    dataset = Dataset.open(data)
    task = evaluating_task(kind, config, judge, epochs, args.n, args.n_final, results, extra, dataset, args.tstr_n)
    params = None
    t0 = time.perf_counter()
    task.t_start = t0
    fit(task, dataset, run_dir, config.train, hooks=training_hooks(config))
    total = time.perf_counter() - t0
    params = sum(p.numel() for name, m in task.modules.items() if name in ("generator", "unet") for p in m.parameters())
    summary = {"model": kind, "preset": preset, "overrides": overrides, "epochs": config.train.epochs,
               "batch_size": config.train.batch_size, "generator_parameters": params,
               "fit_wall_s": round(total, 1), "eval_s": round(task.eval_seconds, 1), "points": results}
    print(f"  {kind}: fit() took {total / 60:.2f} min wall in all, of which {task.eval_seconds / 60:.2f} min "
          f"evaluation; generator {params / 1e6:.2f} M parameters", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in PRESETS:
            raise SystemExit(f"unknown model {m!r}; choose from {', '.join(PRESETS)}")
    print(f"quality_digits: {', '.join(models)} on the bundled digits at 16x16; {cpu_note()}, "
          f"{torch_note()}; {load_note()} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="synthworth-quality-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        data = Path(args.data) if args.data else base / "digits16"
        ds = prepare_digits(data) if not args.data else None
        from synthworth.data.dataset import Dataset

        ds = ds or Dataset.open(data)
        judge = train_judge(ds)
        print(judge.describe(), flush=True)
        reference = None
        if args.tstr_n:
            reference = real_reference(ds, args.tstr_n)
            print(f"reference: the same CNN trained on {args.tstr_n} class-balanced REAL training images scores "
                  f"{reference:.1%} on the real test split (the train-on-synthetic figures below compare with this)",
                  flush=True)
        summaries = []
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for kind in models:
            preset = args.dcgan_preset if kind == "dcgan" else args.ddpm_preset
            overrides = args.dcgan_set if kind == "dcgan" else args.ddpm_set
            print(f"\n{kind}: preset {preset}" + (f", overrides {' '.join(overrides)}" if overrides else ""), flush=True)
            summaries.append(run_model(kind, preset, overrides, data, base / f"{kind}-{stamp}", judge, args))

    print("\nagreement vs training time (wall time on this machine; see the load averages above)")
    print(f"{'model':<7}{'epoch':>6}{'steps':>7}{'train min':>11}{'agreement':>11}{'samples':>9}"
          f"{'train-on-synthetic':>20}")
    for s in summaries:
        for row in s["points"]:
            tstr = f"{row['tstr']:.1%}" if row["tstr"] is not None else "-"
            print(f"{s['model']:<7}{row['epoch']:>6}{row['steps']:>7}{row['train_s'] / 60:>11.2f}"
                  f"{row['agreement']:>11.1%}{row['n']:>9}{tstr:>20}")
    if reference is not None:
        print(f"(train-on-synthetic: CNN trained on {args.tstr_n} generated images, accuracy on the real test split; "
              f"on {args.tstr_n} real images: {reference:.1%})")
    if args.json:
        Path(args.json).write_text(json.dumps({"summaries": summaries, "judge_test_accuracy": judge.test_accuracy,
                                               "real_reference": reference}, indent=1))
    print()
    lines = []
    final = {s["model"]: s["points"][-1] for s in summaries if s["points"]}
    for kind, row in final.items():
        ok = row["agreement"] >= TARGETS[kind] and row["train_s"] <= TIME_LIMITS[kind]
        lines.append(f"{kind} agreement after {row['train_s'] / 60:.1f} min ({row['epoch']} epochs): "
                     f"{row['agreement']:.1%} (target >= {TARGETS[kind]:.0%} within "
                     f"{TIME_LIMITS[kind] / 60:.0f} min): {'OK' if ok else 'FAIL'}")
    if "dcgan" in final and "ddpm" in final:
        better = final["ddpm"]["agreement"] > final["dcgan"]["agreement"]
        lines.append(f"ddpm better than dcgan: {final['ddpm']['agreement']:.1%} vs {final['dcgan']['agreement']:.1%}: "
                     f"{'OK' if better else 'FAIL'}")
    print("\n".join(lines))
    return 0 if all(line.endswith("OK") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
