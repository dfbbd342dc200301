"""``synthbench demo``: the whole mission, offline, on data that ships with the packages.

Digits (default): prepare scikit-learn's digits at 16x16 -> train a class-conditional DCGAN and
a class-conditional DDPM on the whole real training split -> generate a labelled synthetic
Dataset from each -> the classifier study (real / artificial / mixed / subset_real, both
generators, 3 seeds) where real data is scarce, with a size sweep -> image-quality metrics ->
the HTML report.

Faces (``--faces``): the second source project measured on scikit-image's bundled LFW faces: an
unconditional DCGAN, a pixel DDPM and a latent diffusion model (an autoencoder trained here, then
the UNet on its latents), each evaluated while it trains, then four findings per model: closeness
to the held-out faces (FID/KID/precision/recall over draws, next to the real-vs-real floor),
whether its quality still improves, exposure failures, and training cost.

Every stage reuses what a previous run of the demo finished (prepared data, trained models,
generated images, study cells), so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path



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


def default_out(quick: bool, faces: bool) -> str:
    """Each flavour its own folder by default: a demo folder holds one flavour's results."""
    return ("synthbench-faces-demo" if faces else "synthbench-demo") + ("-quick" if quick else "")


def run_demo(out: str | os.PathLike | None = None, *, quick: bool = False, faces: bool = False,
             progress: bool = True, workers: int | None = 1) -> Path:
    """Run the demo into ``out``; returns the path of the HTML report.

    ``workers`` > 1 (None: one per core) runs independent stages side by side in processes of
    one thread each: the DDPM trains and generates while the DCGAN trains, generates and its
    study cells train; then the study's remaining cells run on ``workers`` processes. Every
    stage is seeded and single-threaded either way, so the table is the serial run's."""
    import torch

    from synthbench.study.executors import check_workers, machine_workers

    workers = check_workers(workers) or machine_workers()

    threads = torch.get_num_threads()
    # The demo's networks are small: one thread per process is about as fast on an idle machine
    # and many times faster on a busy one, where spinning OpenMP threads fight for the cores.
    torch.set_num_threads(1)
    try:
        return _run(Path(out or default_out(quick, faces)), quick, faces, progress, workers)
    finally:
        torch.set_num_threads(threads)


FLAVOUR_FILE = "flavour.json"
DEMO_ENTRIES = ("data", "runs", "synthetic", "study", "findings", "report", FLAVOUR_FILE)


def _check_flavour(out: Path, flavour: str, quick: bool, faces: bool) -> None:
    """A demo continues only its own flavour: the runs of another (digits vs faces, quick vs full)
    would otherwise be taken as finished stages of this one."""
    from synthbench.errors import SynthbenchError
    from synthbench.safety import LOCK, MARKER

    if not out.is_dir():
        return
    try:
        found = json.loads((out / FLAVOUR_FILE).read_text(encoding="utf-8")).get("flavour")
    except (OSError, ValueError, AttributeError):
        found = None
    if found == flavour or not {p.name for p in out.iterdir()} - {MARKER, LOCK}:
        return
    held = f"the {found} demo" if found else "a demo of an earlier synthbench (flavour unknown)"
    suggestion = default_out(quick, faces)
    if Path(suggestion).resolve() == out.resolve():
        suggestion += "-2"
    raise SynthbenchError(f"--out {out} holds {held}, not the {flavour} demo asked for; choose another folder, "
                          f"e.g. --out {suggestion}")


def _run(out: Path, quick: bool, faces: bool, progress: bool, workers: int) -> Path:
    from synthbench.safety import check_replaceable, mark_owned

    # The demo writes only into a folder of its own: absent, empty, or an earlier demo's (which
    # it continues). A folder of the user's is refused before anything is written.
    check_replaceable(out, "demo")
    flavour = ("faces" if faces else "digits") + ("-quick" if quick else "")
    _check_flavour(out, flavour, quick, faces)
    out.mkdir(parents=True, exist_ok=True)
    mark_owned(out, "demo", DEMO_ENTRIES)
    if not (out / FLAVOUR_FILE).is_file():
        (out / FLAVOUR_FILE).write_text(json.dumps({"flavour": flavour}) + "\n")
    stages: dict[str, float] = {}
    say = _Narrator(progress)
    if faces:
        return _faces(out, quick, stages, say, workers)
    plan = QUICK if quick else FULL
    from synthbench.data.prepare import PrepareConfig, prepare

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
        from synthbench.study.runner import run_study

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
        from synthbench.report import build_report

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

        from synthbench.study.inputs import StudyWarning
        from synthbench.study.runner import run_study

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StudyWarning)  # the whole study below shows them
            run_study(_study_spec(out, real, {"dcgan": synthetic}, plan), progress=False, workers=1)
        times["study dcgan cells"] = time.perf_counter() - t0
    return times


def _train(kind: str, data: Path, run: Path, preset: str, overrides: tuple[str, ...], progress: bool) -> Path:
    from synthbench.config import last_wins
    from synthbench.train import train

    from synthbench.engine.run import RunFolder

    if (run / "model").is_dir():
        return run  # finished by an earlier demo run
    extra = () if progress else ("train.progress=false",)
    if RunFolder(run).usable_checkpoint() is not None:
        train(kind, data, run, resume=True, overrides=extra)
    else:  # new, or started but never checkpointed: the engine starts it again in place
        train(kind, data, run, preset=preset, overrides=last_wins([*overrides, *extra]))
    return run


def _generate(run: Path, out: Path, per_class: int, name: str, progress: bool) -> Path:
    from synthbench.generate import GenerateConfig, generate

    config = GenerateConfig(from_run=str(run), per_class=per_class, seed=0, batch_size=64, name=name)
    generate(config, out, progress=progress)
    return out


def _study_spec(out: Path, real: Path, synthetic: dict[str, Path], plan: DemoPlan):
    from synthbench.study.spec import StudySpec

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


@dataclass(frozen=True)
class FacesPlan:
    """The sizes of one faces demo flavour: every model trains the same epochs on the same
    faces, is evaluated at the same epochs, and saves grids at the same epochs."""

    size: int
    common: tuple[str, ...]                  # overrides every generator gets (epochs, batch, grids, eval)
    dcgan: tuple[str, tuple[str, ...]]       # (preset, overrides)
    ddpm: tuple[str, tuple[str, ...]]
    vae: tuple[str, tuple[str, ...]]
    ldm: tuple[str, tuple[str, ...]]
    features_preset: str                     # classifier whose penultimate layer gives the features
    features_overrides: tuple[str, ...] = ()
    draws: int = 5
    samples: int = 70


FACES_FULL = FacesPlan(
    size=32,
    common=("train.epochs=40", "train.batch_size=10", "train.grid_epochs=[1, 10, 20, 30, 40]", "grid_size=16",
            "train.checkpoint_every=2000", "eval.every=5", "eval.samples=40"),
    # The source project's DCGAN design (five layers a network, Adam, betas 0.5 / 0.9999) scaled to
    # 70 faces at 32x32: 64-d noise, 32 base channels.
    dcgan=("dcgan", ("model.latent_dim=64", "model.base_channels=32", "optim.lr=2e-4")),
    ddpm=("celeba-ddpm", ("model.block_out_channels=[32, 64, 64]", "model.attention_levels=[]",
                          "model.norm_num_groups=8", "model.layers_per_block=1", "train.mixed_precision=no",
                          "noise.beta_schedule=cosine", "optim.lr=1e-3", "optim.warmup_steps=50",
                          "ema.decay=0.995", "preview_count=1", "sampling.steps=10")),
    # The autoencoder maps 32x32 faces to 16x16x4 latents (8x8 latents lost the faces: FID 100+
    # at every epoch in a trial), where the UNet has three levels like the pixel one.
    vae=("small", ("model.block_out_channels=[32, 64]", "train.epochs=15", "train.batch_size=10",
                   "train.checkpoint_every=2000")),
    ldm=("small", ("model.block_out_channels=[32, 64, 64]", "optim.warmup_steps=50", "preview_count=1",
                   "sampling.steps=10")),
    features_preset="small", features_overrides=("train.epochs=10", "min_steps=150"), draws=5, samples=40)

FACES_QUICK = FacesPlan(
    size=16,
    common=("train.epochs=3", "train.batch_size=16", "train.grid_epochs=[1, 3]", "grid_size=8",
            "eval.every=1", "eval.samples=16"),
    dcgan=("tiny", ()),
    ddpm=("tiny", ("preview_count=1", "sampling.steps=3")),
    vae=("tiny", ("train.epochs=2",)),
    ldm=("tiny", ("preview_count=1", "sampling.steps=3")),
    features_preset="tiny", draws=2, samples=16)

FEATURES_CAVEAT = (
    "Every quality number here is measured on offline features: the penultimate layer of a small classifier "
    "trained on the training faces against scikit-image's non-face patches. They are reproducible and the same "
    "for every model, but weak: learned from a hundred-odd images, they can place texture-like samples close to "
    "faces. Read the numbers with the grids beside them; with Inception or DINOv2 weights (eval.features=..., "
    "synthbench compare --features ...) the same commands give standard numbers.")

FACES_MODELS = {"dcgan": "DCGAN", "ddpm": "pixel DDPM", "ldm": "latent diffusion"}


def _faces(out: Path, quick: bool, stages: dict[str, float], say: _Narrator, workers: int) -> Path:
    """The faces project measured: DCGAN, pixel DDPM and latent diffusion (VAE + UNet) on the
    bundled LFW faces, quality tracked while they train, then the four findings."""
    from synthbench.data.prepare import PrepareConfig, prepare
    from synthbench.metrics.compute import MetricsConfig
    from synthbench.metrics.findings import compare_generators, format_findings
    from synthbench.report.compare import build_compare_report

    plan = FACES_QUICK if quick else FACES_FULL
    with say.stage(f"prepare scikit-image's bundled LFW faces ({plan.size}x{plan.size} grayscale, 30 % held out)",
                   stages, "prepare"):
        faces = prepare(PrepareConfig(source="lfw", size=plan.size, fit="stretch", classes=["face"],
                                      test_fraction=0.3, seed=0), out / "data" / "faces", progress=False)
        others = prepare(PrepareConfig(source="lfw", size=plan.size, fit="stretch", classes=["non_face"],
                                       test_fraction=0.0, seed=0), out / "data" / "non-faces", progress=False)
        say(f"  {len(faces.split('train'))} training faces, {len(faces.split('test'))} held-out faces")
    with say.stage("train the feature extractor: a small classifier of the training faces vs the non-faces",
                   stages, "train features"):
        features = _face_features(faces, others, out / "runs" / "features", plan)
    started = time.perf_counter()
    lanes = [("ddpm",), ("dcgan", "vae", "ldm")]
    if workers > 1:
        say(f"\n[{time.perf_counter() - say.started:6.0f} s] side by side, one thread each: the pixel DDPM | "
            "the DCGAN, then the autoencoder and the latent diffusion UNet, each evaluated every "
            f"{_option(plan.common, 'eval.every')} epochs ...")
        times = _in_lanes([(_faces_lane, kinds, out, faces.path, features, plan) for kinds in lanes])
        say(f"  done in {time.perf_counter() - started:.1f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ")")
    else:
        times = {}
        for kinds in lanes:
            times.update(_faces_lane(kinds, out, faces.path, features, plan, say.progress))
    stages.update(times)
    runs = {FACES_MODELS[k]: out / "runs" / k for k in ("dcgan", "ddpm", "ldm")}
    with say.stage(f"the findings: {plan.draws} draws of {plan.samples} samples per model against the "
                   "held-out faces, plateau, exposure, cost", stages, "findings"):
        import torch

        torch.set_num_threads(workers)  # the lanes are done: this one process has the machine's cores
        try:
            findings = compare_generators(runs, faces.path, out / "findings", draws=plan.draws,
                                          samples=plan.samples, metrics=MetricsConfig(features=str(features)))
        finally:
            torch.set_num_threads(1)
    with say.stage("write the report", stages, "report"):
        page = build_compare_report(findings, runs, out / "report" / "index.html",
                                    title="faces: DCGAN vs pixel diffusion vs latent diffusion", stage_seconds=stages,
                                    notes=[FEATURES_CAVEAT])
    say("\n" + format_findings(findings))
    say(f"\ntotal {time.perf_counter() - say.started:.0f} s; the report, one offline HTML page to open in a browser:")
    return page


def _option(overrides: tuple[str, ...], key: str) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith(key + "="))


def _face_features(faces, others, run: Path, plan: FacesPlan) -> Path:
    """A classifier of the training faces against the non-faces (never the held-out faces): its
    penultimate layer is the feature space of every quality number of the faces demo."""
    import numpy as np

    from synthbench.classifiers.task import ClassifierConfig, train_classifier
    from synthbench.config import resolve_config
    from synthbench.data.dataset import Dataset
    from synthbench.engine.run import RunFolder

    if (run / "model").is_dir():
        return run / "model"
    train = faces.split("train")
    images = np.concatenate([train.take(np.arange(len(train))), others.take(np.arange(len(others)))])
    labels = np.r_[np.zeros(len(train), np.int64), np.ones(len(others), np.int64)]
    data = Dataset.from_arrays(images, labels, ["face", "non_face"])
    config = resolve_config(ClassifierConfig, preset=("classifier", plan.features_preset),
                            overrides=[*plan.features_overrides, "train.progress=false"])
    resume = RunFolder(run).usable_checkpoint() is not None
    train_classifier(data, run, config, resume=resume)
    return run / "model"


def _faces_lane(kinds: tuple[str, ...], out: Path, faces: Path, features: Path, plan: FacesPlan,
                progress: bool = False) -> dict[str, float]:
    """Train ``kinds`` one after another (in this process); returns each one's seconds."""
    import torch

    torch.set_num_threads(1)
    times = {}
    for kind in kinds:
        t0 = time.perf_counter()
        preset, overrides = getattr(plan, kind)
        if kind == "vae":
            extra = ()  # an autoencoder: no grids of samples, no quality to track
        else:
            extra = plan.common + (f"eval.features={features}",)
        if kind == "ldm":
            extra += (f"vae={out / 'runs' / 'vae'}",)
        _train(kind, faces, out / "runs" / kind, preset, tuple(overrides) + extra, progress)
        times[f"train {kind}"] = time.perf_counter() - t0
    return times


def _in_lanes(jobs: list[tuple]) -> dict[str, float]:
    """Each job ``(fn, *args)`` in its own single-threaded process; their merged results."""
    from synthbench.study.executors import WorkerProcess

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
