"""The digits demo: prepare scikit-learn's digits, train a class-conditional DCGAN and DDPM,
generate from each, the classifier study with a size sweep, the report."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from synthworth.demo.common import _in_lanes, _Narrator, _train


@dataclass(frozen=True)
class DemoPlan:
    """The sizes of one demo flavour (full or quick)."""

    dcgan_preset: str
    dcgan_overrides: tuple[str, ...]
    ddpm_preset: str
    ddpm_overrides: tuple[str, ...]
    per_class: int                 # synthetic images generated per class and generator
    sizes: tuple[int, ...]         # training-set sizes of the study (the first is the headline)
    seeds: tuple[int, ...]
    classifier_preset: str
    classifier: dict = field(default_factory=dict)
    metrics: bool = True


FULL = DemoPlan(
    dcgan_preset="digits", dcgan_overrides=("train.epochs=30", "train.progress=true",
                                            "train.grid_epochs=[1, 5, 10, 15, 20, 25, 30]"),
    ddpm_preset="digits-ddpm", ddpm_overrides=("train.epochs=15", "train.progress=true",
                                               "train.grid_epochs=[1, 5, 10, 15]"),
    per_class=75, sizes=(100, 50, 200, 500), seeds=(0, 1, 2), classifier_preset="small")

QUICK = DemoPlan(
    dcgan_preset="tiny", dcgan_overrides=("model.conditional=true", "train.epochs=1", "train.batch_size=128"),
    ddpm_preset="tiny", ddpm_overrides=("conditional=true", "train.epochs=1", "train.batch_size=128",
                                        "sampling.guidance=2.0"),
    per_class=6, sizes=(20, 40), seeds=(0, 1), classifier_preset="tiny", metrics=True)


def _digits(out: Path, quick: bool, stages: dict[str, float], say: _Narrator, progress: bool,
            workers: int) -> Path:
    """The digits mission into ``out`` (its folder and flavour already checked by the entry)."""
    plan = QUICK if quick else FULL
    from synthworth.data.prepare import PrepareConfig, prepare

    with say.stage("prepare the bundled digits (16x16, 20 % real test split)", stages, "prepare"):
        real = prepare(PrepareConfig(source="digits", size=16, fit="stretch", test_fraction=0.2, seed=0),
                       out / "data" / "digits16", progress=False)
        say(f"  {len(real.split('train'))} train / {len(real.split('test'))} test images, {real.num_classes} classes")
    started = time.perf_counter()
    if workers > 1:
        runs, synthetic = _side_by_side(out, real.path, plan, stages, say)
    else:
        runs, synthetic = _one_after_another(out, real.path, plan, stages, say, progress)
    spec = _study_spec(out, real.path, synthetic, plan)
    with say.stage(f"study: {len(plan.sizes)} sizes x {len(plan.seeds)} seeds x real / artificial / mixed / "
                   "subset_real" + (" + image-quality metrics" if plan.metrics else ""), stages, "study"):
        from synthworth.study.runner import run_study

        result = run_study(spec, progress=progress, workers=workers)
    if "study dcgan cells" in stages:  # trained beside the DDPM: part of the study's work
        stages["study"] += stages.pop("study dcgan cells")
    # Relative to the results folder, as the report reads them: the same whether the demo was
    # given a relative or an absolute folder, and still true when the whole folder moves.
    (result.out / "runs.json").write_text(json.dumps(
        {k: os.path.relpath(Path(v).absolute(), result.out.absolute()) for k, v in runs.items()}, indent=1))
    wall = lambda: time.perf_counter() - started + stages["prepare"]  # noqa: E731
    _write_stages(result.out, stages, quick, wall(), workers)
    with say.stage("write the report", stages, "report"):
        from synthworth.report import build_report

        _write_stages(result.out, stages, quick, wall(), workers)
        # The demo made these folders itself: it names them, as the report follows no path stored in the results.
        shown = {"runs": runs, "datasets": {"real": real.path, **synthetic}}
        page = build_report(result.out, out / "report" / "index.html", **shown)
    _write_stages(result.out, stages, quick, wall(), workers)
    build_report(result.out, page, **shown)  # once more, so the page shows the report stage's time too
    say.table(result.out)
    # The page's path is printed once, by the command, on stdout (the last line).
    side = f" (stages side by side on {workers} workers)" if workers > 1 else ""
    say(f"\ntotal {wall():.0f} s{side}; the report, one offline HTML page to open in a browser:")
    return page

def _one_after_another(out: Path, real: Path, plan: DemoPlan, stages: dict[str, float], say: _Narrator,
                       progress: bool) -> tuple[dict[str, Path], dict[str, Path]]:
    runs = {}
    with say.stage("train a class-conditional DCGAN on the real training split", stages, "train dcgan"):
        runs["dcgan"] = _train("dcgan", real, out / "runs" / "dcgan", plan.dcgan_preset,
                               plan.dcgan_overrides, progress)
    with say.stage("train a class-conditional diffusion model (DDPM) on the same images", stages, "train ddpm"):
        runs["ddpm"] = _train("ddpm", real, out / "runs" / "ddpm", plan.ddpm_preset,
                              plan.ddpm_overrides, progress)
    synthetic = {}
    for name, run in runs.items():
        with say.stage(f"generate {plan.per_class} images per class with the {name}", stages, f"generate {name}"):
            synthetic[name] = _generate(run, out / "synthetic" / name, plan.per_class, name, progress)
    return runs, synthetic


def _side_by_side(out: Path, real: Path, plan: DemoPlan, stages: dict[str, float],
                  say: _Narrator) -> tuple[dict[str, Path], dict[str, Path]]:
    """Two single-threaded processes: the DDPM (train, generate) beside the DCGAN (train,
    generate, then the study cells that need only the real images and the DCGAN's; their keys
    are the full study's, so the study below finds them done)."""
    say(f"\n[{time.perf_counter() - say.started:6.0f} s] side by side, one thread each: train + generate the DDPM "
        "| train + generate the DCGAN, then the study cells on real and DCGAN images ...")
    t0 = time.perf_counter()
    times = _in_lanes([(_lane, kind, out, real, plan) for kind in ("dcgan", "ddpm")])
    for key in ("train dcgan", "train ddpm", "generate dcgan", "generate ddpm", "study dcgan cells"):
        stages[key] = times[key]
    say(f"  done in {time.perf_counter() - t0:.1f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ")")
    runs = {name: out / "runs" / name for name in ("dcgan", "ddpm")}
    return runs, {name: out / "synthetic" / name for name in ("dcgan", "ddpm")}


def _lane(kind: str, out: Path, real: Path, plan: DemoPlan) -> dict[str, float]:
    """One process's share of :func:`_side_by_side`; returns its stages' seconds."""
    import torch

    torch.set_num_threads(1)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    preset, overrides = (plan.dcgan_preset, plan.dcgan_overrides) if kind == "dcgan" else (plan.ddpm_preset,
                                                                                           plan.ddpm_overrides)
    run = _train(kind, real, out / "runs" / kind, preset, overrides, False)
    times[f"train {kind}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    synthetic = _generate(run, out / "synthetic" / kind, plan.per_class, kind, False)
    times[f"generate {kind}"] = time.perf_counter() - t0
    if kind == "dcgan":
        import warnings

        from synthworth.study.inputs import StudyWarning
        from synthworth.study.runner import run_study

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StudyWarning)  # the whole study below shows them
            run_study(_study_spec(out, real, {"dcgan": synthetic}, plan), progress=False, workers=1)
        times["study dcgan cells"] = time.perf_counter() - t0
    return times

def _generate(run: Path, out: Path, per_class: int, name: str, progress: bool) -> Path:
    from synthworth.generate import GenerateConfig, generate

    config = GenerateConfig(from_run=str(run), per_class=per_class, seed=0, batch_size=64, name=name)
    generate(config, out, progress=progress)
    return out


def _study_spec(out: Path, real: Path, synthetic: dict[str, Path], plan: DemoPlan):
    from synthworth.study.spec import StudySpec

    return StudySpec(
        name="digits (scarce real data)", out=str(out / "study"), real=str(real),
        synthetic={k: {"path": str(v)} for k, v in synthetic.items()},
        compositions=["real", "artificial", "mixed", "subset_real"], sizes=list(plan.sizes),
        seeds=list(plan.seeds), classifier_preset=plan.classifier_preset, classifier=plan.classifier,
        threads=1, metrics={"enabled": plan.metrics})


def _write_stages(results: Path, stages: dict[str, float], quick: bool, wall: float, workers: int) -> None:
    # With workers > 1 some stages ran side by side: their seconds overlap, the total is wall time.
    data = {"flavour": "quick" if quick else "full", "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
            "total_seconds": round(wall, 1), "workers": workers}
    (results / "demo.json").write_text(json.dumps(data, indent=1))
