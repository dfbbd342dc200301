"""Training a classifier on the shared engine, and the saved-model format.

The defaults are the source study's protocol (its ``traintest`` program): ResNet-34 from
scratch, cross-entropy, Adam with lr 1e-3, batch 32, 30 epochs, StepLR (step 7 epochs,
gamma 0.1), images resized to 256x256 and normalised with the ImageNet mean/std. Shipped
presets (group ``classifier``): ``thesis`` (those settings), ``small`` (a small CNN for 8 to
32 px images that trains in seconds on a CPU) and ``tiny`` (tests).
"""

from __future__ import annotations

import math

import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from safetensors.torch import load_file, save_file

from synthworth.classifiers.models import Classifier, build_classifier
from synthworth.config import StrictModel
from synthworth.data.dataset import Dataset
from synthworth.engine.config import TrainConfig
from synthworth.engine.task import StepContext, Task
from synthworth.errors import SynthworthError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ClassifierModelConfig(StrictModel):
    """The network and its input handling."""

    name: str = Field("resnet34", description="'small_cnn' or any torchvision classification model name (untrained).")
    resolution: int | None = Field(256, ge=4, le=1024, description="Side the network sees; other sizes are resized on the fly (null: the Dataset's).")
    normalize: Literal["imagenet", "none"] = Field("imagenet", description="Input normalisation after scaling to [0, 1]: ImageNet mean/std, or none.")
    width: int = Field(32, ge=1, description="small_cnn only: channels of the first block (the second has twice as many).")
    dropout: float = Field(0.0, ge=0, lt=1, description="small_cnn only: dropout before the last layer.")


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

    @model_validator(mode="before")
    @classmethod
    def _train_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("train"), dict):
            data = {**data, "train": {**TRAIN_DEFAULTS, **data["train"]}}
        return data


class ClassifierTask(Task):
    """Cross-entropy training of a :class:`Classifier` for the shared engine."""

    kind = "classifier"

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.classifier: Classifier | None = None
        self.class_names: list[str] = []
        self.data_resolution: int | None = None

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
        resolution = m.resolution or dataset.resolution
        self.classifier = build_classifier(m.name, dataset.num_classes, dataset.channels, resolution,
                                           normalize=m.normalize, width=m.width, dropout=m.dropout)
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
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        ctx.accelerator.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": loss.item(), "train_accuracy": (logits.argmax(1) == labels).float().mean().item()}

    def on_epoch_end(self, ctx: StepContext, epoch_means: dict[str, float]) -> None:
        sched = self.schedulers.get("lr")
        if sched is not None:
            # The schedule counts epochs. Step the wrapped scheduler itself: accelerate's wrapper
            # steps once per process and per optimizer step, which suits per-batch schedules only.
            getattr(sched, "scheduler", sched).step()

    def diverged_advice(self, lower: str, checkpoint: Path | None, restart: str | None = None) -> str:
        # Classifiers are trained by 'study run' and 'metrics', where the key is the study's.
        return (f"lower the classifier's learning rate (classifier.{lower} in a study spec) "
                "and run it again")

    def trained(self, accelerator) -> Classifier:
        """The trained classifier, unwrapped from accelerate, in eval mode."""
        model = accelerator.unwrap_model(self.modules["model"])
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
            "model": config.model_dump(mode="json")}
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
    model = build_classifier(m.name, len(meta["class_names"]), meta["channels"], meta["resolution"],
                             normalize=m.normalize, width=m.width, dropout=m.dropout)
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), meta


def stretch_to_min_steps(config: ClassifierConfig, n_train: int) -> ClassifierConfig:
    """The config with enough epochs for ``min_steps`` batches on ``n_train`` images; the StepLR
    step is stretched by the same factor so the schedule keeps its shape."""
    if not config.min_steps or n_train == 0:
        return config
    per_epoch = max(1, math.ceil(n_train / config.train.batch_size) if not config.train.drop_last
                    else n_train // config.train.batch_size)
    epochs = max(config.train.epochs, math.ceil(config.min_steps / per_epoch))
    if epochs == config.train.epochs:
        return config
    factor = epochs / config.train.epochs
    optim = config.optim
    if optim.step_size:
        optim = optim.model_copy(update={"step_size": max(1, round(optim.step_size * factor))})
    train = config.train.model_copy(update={"epochs": epochs,
                                            "grid_epochs": [], "max_steps": config.train.max_steps})
    return config.model_copy(update={"train": train, "optim": optim})


def train_classifier(dataset: Dataset, run_dir: str | Path, config: ClassifierConfig, *,
                     resume: bool = False) -> tuple[Classifier, ClassifierTask]:
    """Train on ``dataset``'s ``config.train.split`` through the shared engine into ``run_dir``
    (which then holds the run's config, log, metrics.jsonl and the exported ``model/``).
    Returns the trained classifier (eval mode) and its task (which knows e.g. ``resized_from``)."""
    from synthworth.engine.loop import fit

    config = stretch_to_min_steps(config, len(dataset.split(config.train.split)))
    task = ClassifierTask(config)
    fit(task, dataset, run_dir, config.train, resume=resume)
    return task.classifier.eval(), task
