"""Training a classifier on the shared engine, and the saved-model format.

The defaults are the source study's protocol (its ``traintest`` program): ResNet-34 from
scratch, cross-entropy, Adam with lr 1e-3, batch 32, 30 epochs, StepLR (step 7 epochs,
gamma 0.1), images resized to 256x256 and normalised with the ImageNet mean/std. Shipped
presets (group ``classifier``): ``thesis`` (those settings), ``small`` (a small CNN for 8 to
32 px images that trains in seconds on a CPU), ``tiny`` (tests), ``finetune`` (ResNet-18 from
its ImageNet weights, every layer trained) and ``probe`` (a linear probe on DINOv2-small).

Three protocols (``model.mode``): ``scratch`` (random initial weights), ``finetune`` (every
weight but the last layer's from ``model.weights``, then all trained here) and ``linear_probe``
(the backbone frozen, a logistic regression on its features: :mod:`synthworth.classifiers.probe`).
Weights and their preprocessing: :mod:`synthworth.classifiers.weights`, :mod:`synthworth.classifiers.backbones`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from safetensors.torch import load_file, save_file

from synthworth.classifiers.backbones import build_model, rebuild_model
from synthworth.classifiers.early_stop import EarlyStopping, Watch, validation_loss, validation_mask
from synthworth.classifiers.models import Classifier
from synthworth.classifiers.probe import ProbeConfig, ProbeRun
from synthworth.config import StrictModel
from synthworth.data.dataset import Dataset
from synthworth.engine.config import TrainConfig
from synthworth.engine.task import StepContext, Task
from synthworth.errors import SynthworthError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ClassifierModelConfig(StrictModel):
    """The network and its input handling."""

    name: str = Field("resnet34", description="'small_cnn', any torchvision classification model name, or (with weights) the transformers encoders 'dinov2' and 'clip'.")
    resolution: int | None = Field(256, ge=4, le=1024, description="Side the network sees; other sizes are resized on the fly (null: the Dataset's). Named torchvision weights and transformers folders set their own.")
    normalize: Literal["imagenet", "none"] = Field("imagenet", description="Input normalisation after scaling to [0, 1]: ImageNet mean/std, or none. Named torchvision weights and transformers folders set their own.")
    width: int = Field(32, ge=1, description="small_cnn only: channels of the first block (the second has twice as many).")
    dropout: float = Field(0.0, ge=0, lt=1, description="small_cnn only: dropout before the last layer.")
    weights: str | None = Field(None, description="Pretrained weights: a local .safetensors file, torchvision's named weights (e.g. ResNet18_Weights.IMAGENET1K_V1, from torch.hub's cache), or for dinov2/clip a save_pretrained folder or a hub id; null: random initial weights.")
    mode: Literal["scratch", "finetune", "linear_probe"] = Field("scratch", description="scratch: train from random weights; finetune: start from the weights and train every layer; linear_probe: freeze the backbone and fit a logistic regression on its features.")

    @model_validator(mode="after")
    def _protocol(self) -> ClassifierModelConfig:
        if self.mode == "scratch" and self.weights is not None:
            raise ValueError(f"model.weights is {self.weights!r} but model.mode is scratch (random initial weights): "
                             "set model.mode to finetune or linear_probe, or model.weights to null")
        if self.mode != "scratch" and self.weights is None:
            raise ValueError(f"model.mode {self.mode} starts from pretrained weights: give model.weights (a "
                             ".safetensors file, torchvision's named weights, or a transformers folder or hub id)")
        return self


class ClassifierOptimConfig(StrictModel):
    """Adam, with an optional step decay of the learning rate per epoch."""

    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 weight decay.")
    step_size: int | None = Field(7, ge=1, description="StepLR: multiply the lr by gamma every this many epochs (null: constant lr).")
    gamma: float = Field(0.1, gt=0, le=1, description="StepLR decay factor.")


# The engine's defaults suit GANs; a classifier's differ. They fill the keys a config leaves out
# (a partial ``train:`` mapping keeps them too, unlike a pydantic default_factory).
TRAIN_DEFAULTS = {"epochs": 30, "batch_size": 32, "drop_last": False, "checkpoint_every": 10_000}


class ClassifierConfig(StrictModel):
    """Everything a classifier training run needs (preset group ``classifier``)."""

    model: ClassifierModelConfig = Field(default_factory=ClassifierModelConfig, description="The network.")
    optim: ClassifierOptimConfig = Field(default_factory=ClassifierOptimConfig, description="The optimizer and lr schedule.")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**TRAIN_DEFAULTS),
                               description="The training loop (train.seed seeds weights and batch order).")
    eval_batch_size: int = Field(256, ge=1, description="Images per batch when evaluating or extracting features.")
    min_steps: int | None = Field(None, ge=1, description="Train at least this many batches: small training sets get more epochs (StepLR stretched alike), so a 25-image set is not compared under-trained.")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="model.mode linear_probe only: the logistic regression on the frozen features.")

    @model_validator(mode="before")
    @classmethod
    def _train_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("train"), dict):
            data = {**data, "train": {**TRAIN_DEFAULTS, **data["train"]}}
        return data


class ClassifierTask(Task):
    """Cross-entropy training of a :class:`Classifier` for the shared engine."""

    kind = "classifier"

    def __init__(self, config: ClassifierConfig, *, early_stop: EarlyStopping | None = None,
                 validation: Dataset | None = None, budget: str = "epochs"):
        super().__init__()
        self.config = config
        self.classifier: Classifier | None = None
        self.class_names: list[str] = []
        self.data_resolution: int | None = None
        self.budget = budget  # recorded in budget_used(): epochs, steps or converge
        self.watch = Watch(early_stop) if early_stop is not None else None
        self.validation = validation
        self.batches = 0
        self.n_train = 0  # images trained on (set by train_classifier)
        self.optimizer_steps: int | None = None  # None until known (a fresh run, or a checkpoint's state)

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def check_data(self, dataset: Dataset) -> None:
        if not dataset.labelled or (dataset.labels < 0).any():
            raise SynthworthError("a classifier needs a labelled Dataset with every image labelled")
        if dataset.num_classes < 2:
            raise SynthworthError(f"a classifier needs at least 2 classes; the Dataset has {dataset.num_classes}")

    def build(self, dataset: Dataset, device: torch.device) -> None:
        m, o = self.config.model, self.config.optim
        self.class_names = list(dataset.class_names)
        self.data_resolution = dataset.resolution
        if m.mode == "linear_probe":
            raise SynthworthError("linear probes are fitted on cached features, not by the training engine: train "
                                  "them with synthworth.classifiers.train_classifier (as studies and "
                                  "'synthworth train classifier' do)")
        self.classifier = build_model(m, dataset.num_classes, dataset.channels, dataset.resolution)
        self.modules = {"model": self.classifier}
        opt = torch.optim.Adam(self.classifier.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        self.optimizers = {"adam": opt}
        if o.step_size:
            self.schedulers = {"lr": torch.optim.lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)}

    @property
    def resized_from(self) -> int | None:
        """The Dataset's side when the network sees another one (images resized on the fly)."""
        if self.classifier is None or self.data_resolution == self.classifier.resolution:
            return None
        return self.data_resolution

    def step(self, batch, ctx: StepContext) -> dict[str, float]:
        images, labels = batch
        model, opt = self.modules["model"], self.optimizers["adam"]
        if self.optimizer_steps is None:  # a fresh run, or a checkpoint written before steps were counted
            self.optimizer_steps = ctx.global_step // self.config.train.grad_accum
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        ctx.accelerator.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        # accelerate skips the optimizer's step while gradients accumulate; count the real ones.
        self.optimizer_steps += int(ctx.accelerator.sync_gradients)
        self.batches = ctx.global_step + 1
        return {"loss": loss.item(), "train_accuracy": (logits.argmax(1) == labels).float().mean().item()}

    def on_epoch_end(self, ctx: StepContext, epoch_means: dict[str, float]) -> None:
        sched = self.schedulers.get("lr")
        if sched is not None:
            # The schedule counts epochs. Step the wrapped scheduler itself: accelerate's wrapper
            # steps once per process and per optimizer step, which suits per-batch schedules only.
            getattr(sched, "scheduler", sched).step()
        if self.watch is not None:
            from synthworth.classifiers.evaluate import probabilities

            model = ctx.accelerator.unwrap_model(self.modules["model"])
            loss = validation_loss(probabilities(model, self.validation, self.config.eval_batch_size),
                                   self.validation.labels)
            self.stop_training = self.watch.update(loss, ctx.epoch + 1, self.optimizer_steps or 0, model)

    def extra_state(self) -> Any:
        state: dict[str, Any] = {"batches": self.batches, "optimizer_steps": self.optimizer_steps or 0}
        if self.watch is not None:
            state["early_stop"] = {**self.watch.state(), "stopped": self.stop_training}
        return state

    def load_extra_state(self, state: Any) -> None:
        self.batches, self.optimizer_steps = int(state["batches"]), int(state["optimizer_steps"])
        if self.watch is not None and "early_stop" in state:
            self.watch.load(state["early_stop"])
            self.stop_training = bool(state["early_stop"]["stopped"])

    def budget_used(self) -> dict[str, Any]:
        """What this run trained: its budget mode, batches, optimizer steps, epochs (a fraction when
        it stopped inside one) and, when stopped early, the best epoch, its steps and the
        validation images (the kept weights are that epoch's)."""
        per_epoch = _batches_per_epoch(self.config, self.n_train)
        used: dict[str, Any] = {"budget": self.budget, "train_batches": self.batches,
                                "optimizer_steps": self.optimizer_steps or 0,
                                "epochs_run": round(self.batches / per_epoch, 3)}
        if self.watch is not None:
            used.update({"best_epoch": self.watch.best_epoch, "steps_at_best": self.watch.best_steps,
                         "n_validation": len(self.validation), "validation_loss": self.watch.best_loss})
        return used

    def diverged_advice(self, lower: str, checkpoint: Path | None, restart: str | None = None) -> str:
        # Classifiers are trained by 'study run' and 'metrics', where the key is the study's.
        return (f"lower the classifier's learning rate (classifier.{lower} in a study spec) "
                "and run it again")

    def trained(self, accelerator) -> Classifier:
        """The trained classifier, unwrapped from accelerate, in eval mode (stopped early: the
        best epoch's weights)."""
        model = accelerator.unwrap_model(self.modules["model"])
        if self.watch is not None:
            self.watch.restore(model)
        return model.eval()

    def export(self, folder: Path, accelerator) -> None:
        save_classifier(self.trained(accelerator), folder, self.config.model, self.class_names,
                        data_resolution=self.data_resolution)


def save_classifier(model: Classifier, folder: str | Path, config: ClassifierModelConfig,
                    class_names: list[str], *, data_resolution: int | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (replaced atomically)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / MODEL_FILE))
    meta = {"kind": "classifier", "class_names": list(class_names), "channels": model.channels,
            "resolution": model.resolution, "data_resolution": data_resolution,
            "model": config.model_dump(mode="json"), "backbone": model.backbone}
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_classifier(folder: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """A classifier saved by :func:`save_classifier` (weights from safetensors, nothing unpickled),
    in eval mode, and its ``config.json``."""
    folder = Path(folder)
    if folder.is_file() and folder.name == MODEL_FILE:
        folder = folder.parent
    config_file, weights = folder / CONFIG_FILE, folder / MODEL_FILE
    if not config_file.is_file() or not weights.is_file():
        raise SynthworthError(f"{folder} is not a saved synthworth classifier (needs {CONFIG_FILE} and {MODEL_FILE})")
    meta = json.loads(config_file.read_text())
    if meta.get("kind") != "classifier":
        raise SynthworthError(f"{folder} holds a {meta.get('kind')!r}, not a classifier")
    m = ClassifierModelConfig(**meta["model"])
    if m.mode == "linear_probe":
        return _load_probe_classifier(folder, m, meta), meta
    model = rebuild_model(meta)
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), meta


def _load_probe_classifier(folder: Path, m: ClassifierModelConfig, meta: dict[str, Any]) -> Classifier:
    """A saved linear probe on its backbone, whose weights are read again (and must be the same)."""
    from synthworth.classifiers.probe import install_head, load_probe

    probe, _ = load_probe(folder)
    model = build_model(m, len(meta["class_names"]), meta["channels"], meta.get("data_resolution") or meta["resolution"])
    was = (meta.get("backbone") or {}).get("sha256")
    if model.backbone["sha256"] != was:
        raise SynthworthError(f"the linear probe in {folder} was fitted on the features of weights with SHA-256 "
                              f"{str(was)[:12]}, but {m.weights} now have {model.backbone['sha256'][:12]}: fit it again "
                              "on the current weights (train it again, or remove its study cell and run the study again)")
    install_head(model, probe)
    return model.eval()


def _batches_per_epoch(config: ClassifierConfig, n_train: int) -> int:
    bs = config.train.batch_size
    return max(1, math.ceil(n_train / bs) if not config.train.drop_last else n_train // bs)


def _stretched(config: ClassifierConfig, epochs: int, max_steps: int | None) -> ClassifierConfig:
    """``config`` trained for ``epochs`` epochs, its StepLR step stretched by the same factor so
    the learning-rate schedule keeps its shape."""
    factor = epochs / config.train.epochs
    optim = config.optim
    if optim.step_size and epochs != config.train.epochs:
        optim = optim.model_copy(update={"step_size": max(1, round(optim.step_size * factor))})
    train = config.train.model_copy(update={"epochs": epochs, "grid_epochs": [], "max_steps": max_steps})
    return config.model_copy(update={"train": train, "optim": optim})


def stretch_to_min_steps(config: ClassifierConfig, n_train: int) -> ClassifierConfig:
    """The config with enough epochs for ``min_steps`` batches on ``n_train`` images; the StepLR
    step is stretched by the same factor so the schedule keeps its shape."""
    if not config.min_steps or n_train == 0:
        return config
    epochs = max(config.train.epochs, math.ceil(config.min_steps / _batches_per_epoch(config, n_train)))
    if epochs == config.train.epochs:
        return config
    return _stretched(config, epochs, config.train.max_steps)


def steps_per_epochs(config: ClassifierConfig, n_train: int) -> int:
    """Optimizer steps of ``config.train.epochs`` epochs on ``n_train`` images (``min_steps``
    applied): what the epochs budget trains."""
    config = stretch_to_min_steps(config, n_train)
    return math.ceil(config.train.epochs * _batches_per_epoch(config, n_train) / config.train.grad_accum)


def fit_to_steps(config: ClassifierConfig, n_train: int, steps: int) -> ClassifierConfig:
    """The config that trains exactly ``steps`` optimizer steps on ``n_train`` images whatever
    their number: as many epochs as that takes (the last one cut short by ``max_steps``), the
    StepLR step stretched alike; ``min_steps`` no longer applies (every set gets ``steps``)."""
    batches = steps * config.train.grad_accum
    epochs = math.ceil(batches / _batches_per_epoch(config, n_train))
    return _stretched(config, epochs, batches).model_copy(update={"min_steps": None})


def train_classifier(dataset: Dataset, run_dir: str | Path, config: ClassifierConfig, *,
                     resume: bool = False, steps: int | None = None,
                     early_stop: EarlyStopping | None = None) -> tuple[Classifier, ClassifierTask | ProbeRun]:
    """Train on ``dataset``'s ``config.train.split`` through the shared engine into ``run_dir``
    (which then holds the run's config, log, metrics.jsonl and the exported ``model/``).
    Returns the trained classifier (eval mode) and its task (which knows e.g. ``resized_from``
    and, in :meth:`ClassifierTask.budget_used`, the steps it ran).

    The training budget: by default ``config.train.epochs`` (``min_steps`` applied); ``steps``:
    exactly that many optimizer steps whatever the set's size; ``early_stop``: a stratified share
    of the training split is held out (drawn with the run's seed) and the run stops when its loss
    stops improving (at most ``steps`` steps when given, else the epochs).

    A linear probe (``model.mode: linear_probe``) is fitted to convergence on its backbone's
    features instead (no budget applies; nothing to resume: it takes seconds), and the second
    value is its :class:`~synthworth.classifiers.probe.ProbeRun`."""
    from synthworth.engine.loop import fit

    if config.model.mode == "linear_probe":
        return _train_probe(dataset, run_dir, config)
    validation = None
    if early_stop is not None:
        split = config.train.split
        part = dataset.split(split)
        held = validation_mask(part.labels, early_stop.validation, config.train.seed)
        validation = part.select(np.flatnonzero(held))
        # The held-out images leave the training split (renamed), so the engine never trains on them.
        splits = np.asarray(dataset.splits, dtype=object).copy()
        rows = np.flatnonzero(splits == split)
        splits[rows[held]] = f"{split}-validation"
        dataset = dataclasses.replace(dataset, splits=splits.astype(str))
    n_train = len(dataset.split(config.train.split))
    config = fit_to_steps(config, n_train, steps) if steps else stretch_to_min_steps(config, n_train)
    budget = "converge" if early_stop is not None else "steps" if steps else "epochs"
    task = ClassifierTask(config, early_stop=early_stop, validation=validation, budget=budget)
    task.n_train = n_train
    fit(task, dataset, run_dir, config.train, resume=resume)
    model = task.classifier
    if task.watch is not None:
        task.watch.restore(model)
    return model.eval(), task


def _train_probe(dataset: Dataset, run_dir: str | Path, config: ClassifierConfig) -> tuple[Classifier, ProbeRun]:
    """A linear probe on features extracted here (a study keeps them in its cache instead)."""
    from synthworth.classifiers.extract import extract_features
    from synthworth.classifiers.feature_cache import backbone_features
    from synthworth.classifiers.probe import install_head, train_probe

    model = build_model(config.model, dataset.num_classes, dataset.channels, dataset.resolution).eval()
    extractor = backbone_features(model)
    probe, run = train_probe(dataset, run_dir, config,
                             features=lambda ds: extract_features(extractor, ds, config.eval_batch_size).astype(np.float32),
                             backbone=model.backbone, resolution=model.resolution)
    install_head(model, probe)
    return model, run
