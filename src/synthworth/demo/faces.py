"""The faces demo: DCGAN, pixel DDPM and latent diffusion on the bundled LFW faces, quality
tracked while they train, then the four findings and their page."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from synthworth.demo.common import _in_lanes, _Narrator, _train, _train_replicates


@dataclass(frozen=True)
class FacesPlan:
    """The sizes of one faces demo flavour: every model trains the same epochs on the same
    faces, is evaluated at the same epochs, and saves grids at the same epochs."""

    size: int
    common: tuple[str, ...]                  # overrides every generator gets (epochs, batch, grids, eval); a model's own win
    dcgan: tuple[str, tuple[str, ...]]       # (preset, overrides)
    ddpm: tuple[str, tuple[str, ...]]
    vae: tuple[str, tuple[str, ...]]
    ldm: tuple[str, tuple[str, ...]]
    features_preset: str                     # classifier whose penultimate layer gives the features
    features_overrides: tuple[str, ...] = ()
    draws: int = 5
    samples: int = 70
    seeds: tuple[int, ...] = (0, 1, 2)       # one replicate of each generator per seed (the autoencoder: one, shared)


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
    # at every epoch in a trial), where the UNet has three levels like the pixel one. Diagnosed
    # blobs (metrics.ldm_diagnosis): 105 autoencoder steps left it lossy (held-out PSNR 25 dB) and
    # 280 UNet steps had not learnt faces. 420 autoencoder steps at batch 5 (PSNR 28 dB) and the
    # UNet's 40 epochs at batch 3 (920 steps; each costs less) draw faces at a similar cost.
    vae=("small", ("model.block_out_channels=[32, 64]", "train.epochs=30", "train.batch_size=5",
                   "train.checkpoint_every=2000")),
    ldm=("small", ("model.block_out_channels=[32, 64, 64]", "optim.warmup_steps=50", "preview_count=1",
                   "sampling.steps=10", "train.batch_size=3")),
    features_preset="small", features_overrides=("train.epochs=10", "min_steps=150"), draws=5, samples=40)

FACES_QUICK = FacesPlan(
    size=16,
    common=("train.epochs=3", "train.batch_size=16", "train.grid_epochs=[1, 3]", "grid_size=8",
            "eval.every=1", "eval.samples=16"),
    dcgan=("tiny", ()),
    ddpm=("tiny", ("preview_count=1", "sampling.steps=3")),
    vae=("tiny", ("train.epochs=2",)),
    ldm=("tiny", ("preview_count=1", "sampling.steps=3")),
    features_preset="tiny", draws=2, samples=16, seeds=(0, 1))

FEATURES_CAVEAT = (
    "Every quality number here is measured on offline features: the penultimate layer of a small classifier "
    "trained on the training faces against scikit-image's non-face patches. They are reproducible and the same "
    "for every model, but weak: learned from a hundred-odd images, they can place texture-like samples close to "
    "faces. Read the numbers with the grids beside them; with Inception or DINOv2 weights (eval.features=..., "
    "synthworth compare --features ...) the same commands give standard numbers.")

FACES_MODELS = {"dcgan": "DCGAN", "ddpm": "pixel DDPM", "ldm": "latent diffusion"}


def _faces(out: Path, quick: bool, stages: dict[str, float], say: _Narrator, workers: int) -> Path:
    """The faces project measured: DCGAN, pixel DDPM and latent diffusion (VAE + UNet) on the
    bundled LFW faces, quality tracked while they train, then the four findings."""
    from synthworth.data.prepare import PrepareConfig, prepare
    from synthworth.metrics.compute import MetricsConfig
    from synthworth.metrics.findings import compare_generators, format_findings
    from synthworth.report.compare import build_compare_report

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
    seeds = ", ".join(map(str, plan.seeds))
    if workers > 1:
        say(f"\n[{time.perf_counter() - say.started:6.0f} s] side by side, one thread each, {len(plan.seeds)} "
            f"replicates (seeds {seeds}) of each generator: the pixel DDPM's | the DCGAN's, then the autoencoder "
            f"(one, shared) and the latent diffusion UNet's, each evaluated every {_option(plan.common, 'eval.every')} "
            "epochs ...")
        times = _in_lanes([(_faces_lane, kinds, out, faces.path, features, plan) for kinds in lanes])
        say(f"  done in {time.perf_counter() - started:.1f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ")")
    else:
        times = {}
        for kinds in lanes:
            times.update(_faces_lane(kinds, out, faces.path, features, plan, say.progress))
    stages.update(times)
    runs = {FACES_MODELS[k]: out / "runs" / k for k in ("dcgan", "ddpm", "ldm")}
    with say.stage(f"the findings: {plan.draws} draws of {plan.samples} samples per replicate against the "
                   "held-out faces, intervals and tests over replicates, plateau, exposure, cost, the autoencoder",
                   stages, "findings"):
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


def _check_no_single_runs(out: Path) -> None:
    """A faces demo folder of an earlier synthworth holds one run of each generator where this
    one trains replicates: refused in one line (its runs are kept), before any lane starts."""
    from synthworth.errors import SynthworthError
    from synthworth.safety import suggest_new

    for kind in ("dcgan", "ddpm", "ldm"):
        if (out / "runs" / kind / "config.yaml").is_file():
            raise SynthworthError(f"{out} holds a faces demo of an earlier synthworth (one run of each model, "
                                  f"{out / 'runs' / kind} among them); this one trains replicates: run it into a "
                                  f"new folder, e.g. --out {suggest_new(out)}")


def _option(overrides: tuple[str, ...], key: str) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith(key + "="))


def _face_features(faces, others, run: Path, plan: FacesPlan) -> Path:
    """A classifier of the training faces against the non-faces (never the held-out faces): its
    penultimate layer is the feature space of every quality number of the faces demo."""
    import numpy as np

    from synthworth.classifiers.task import ClassifierConfig, train_classifier
    from synthworth.config import resolve_config
    from synthworth.data.dataset import Dataset
    from synthworth.engine.run import RunFolder

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
    """Train ``kinds`` one after another (in this process); returns each one's seconds. Each
    generator trains one replicate per seed of the plan into its replicates folder
    (:func:`synthworth.train.train_replicates`); the autoencoder is trained once and every latent
    replicate uses it (a recipe's replicates differ only in their seed), so the latent model's
    interval over runs covers its UNet's seed, not the autoencoder's."""
    import torch

    torch.set_num_threads(1)
    times = {}
    for kind in kinds:
        t0 = time.perf_counter()
        preset, overrides = getattr(plan, kind)
        if kind == "vae":  # an autoencoder: its held-out reconstructions measured on the same features
            extra = (f"eval.features={features}",)
        else:
            extra = plan.common + (f"eval.features={features}",)
        if kind == "ldm":
            extra += (f"vae={out / 'runs' / 'vae'}",)
        # The model's own overrides come after the common ones: they win (the latent UNet's batch size)
        if kind == "vae":
            _train(kind, faces, out / "runs" / kind, preset, extra + tuple(overrides), progress)
        else:
            _train_replicates(kind, faces, out / "runs" / kind, preset, extra + tuple(overrides), plan.seeds,
                              progress)
        times[f"train {kind}"] = time.perf_counter() - t0
    return times
