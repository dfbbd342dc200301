"""Evaluating a classifier on a Dataset: accuracy, macro-F1, per-class accuracy, confusion matrix,
and the per-image predictions they are computed from (:func:`score`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from synthworth.data.dataset import Dataset
from synthworth.errors import SynthworthError


@dataclass
class Evaluation:
    """Scores of a classifier on one labelled Dataset."""

    accuracy: float
    macro_f1: float
    per_class_accuracy: dict[str, float | None]  # recall of each class; None where it has no image
    confusion: list[list[int]]                    # rows: true class, columns: predicted class
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def _per_batch(model: torch.nn.Module, dataset: Dataset, batch_size: int, head) -> list[np.ndarray]:
    """``head(logits)`` of every batch of ``dataset`` in order, with the model in eval mode."""
    was_training = model.training
    model.eval()
    device = _device(model)
    out = []
    try:
        for images, _ in dataset.batches(batch_size, shuffle=False):
            x = torch.from_numpy(images).permute(0, 3, 1, 2).to(device)
            out.append(head(model(x)).cpu().numpy())
    finally:
        model.train(was_training)
    return out


def predict(model: torch.nn.Module, dataset: Dataset, batch_size: int = 256) -> np.ndarray:
    """Predicted class index of every image of ``dataset``, in order (model in eval mode)."""
    out = _per_batch(model, dataset, batch_size, lambda logits: logits.argmax(1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def probabilities(model: torch.nn.Module, dataset: Dataset, batch_size: int = 256) -> np.ndarray:
    """Softmax class probabilities (n, classes) of every image of ``dataset``, in order."""
    out = _per_batch(model, dataset, batch_size, lambda logits: torch.softmax(logits.float(), dim=1))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass
class ImagePredictions:
    """What the model said about each image of a Dataset, in the Dataset's order."""

    label: np.ndarray      # the true class index
    predicted: np.ndarray  # the predicted class index (argmax of the logits)
    p_true: np.ndarray     # softmax probability of the true class

    def frame(self):
        """One row per image: ``index`` (position in the Dataset), ``label``, ``predicted``, ``p_true``."""
        import pandas as pd

        return pd.DataFrame({"index": np.arange(len(self.label), dtype=np.int64),
                             "label": self.label.astype(np.int64), "predicted": self.predicted.astype(np.int64),
                             "p_true": self.p_true.astype(np.float32)})


def evaluate(model: torch.nn.Module, dataset: Dataset, batch_size: int = 256) -> Evaluation:
    """Score ``model`` on every image of ``dataset`` (labels must use the model's class indices)."""
    return score(model, dataset, batch_size)[0]


def score(model: torch.nn.Module, dataset: Dataset, batch_size: int = 256) -> tuple[Evaluation, ImagePredictions]:
    """The :class:`Evaluation` of ``model`` on ``dataset`` and the per-image predictions it is
    computed from, both from one forward pass: the accuracy recomputed from the predictions is
    the evaluation's, exactly."""
    _check_scorable(dataset)
    return score_logits(np.concatenate(_per_batch(model, dataset, batch_size, lambda out: out.float())), dataset)


def _check_scorable(dataset: Dataset) -> None:
    if len(dataset) == 0:
        raise SynthworthError("cannot evaluate on an empty Dataset")
    if (dataset.labels < 0).any():
        raise SynthworthError("cannot evaluate on unlabelled images")


def score_logits(logits: np.ndarray, dataset: Dataset) -> tuple[Evaluation, ImagePredictions]:
    """:func:`score` from the logits (n, classes) of every image of ``dataset``, in its order
    (a linear probe computes them from cached features, see synthworth.classifiers.probe)."""
    from scipy.special import softmax
    from sklearn.metrics import confusion_matrix, f1_score

    _check_scorable(dataset)
    pred = logits.argmax(1)
    true = dataset.labels
    p_true = softmax(logits, axis=1)[np.arange(len(true)), true]
    k = dataset.num_classes
    labels = np.arange(k)
    cm = confusion_matrix(true, pred, labels=labels)
    support = cm.sum(1)
    per_class = {name: (float(cm[i, i] / support[i]) if support[i] else None)
                 for i, name in enumerate(dataset.class_names)}
    # Macro-F1 over the classes present in the test set (a class with no test image has no F1).
    present = labels[support > 0]
    evaluation = Evaluation(accuracy=float((pred == true).mean()),
                            macro_f1=float(f1_score(true, pred, labels=present, average="macro", zero_division=0)),
                            per_class_accuracy=per_class, confusion=cm.tolist(), n=int(len(true)))
    return evaluation, ImagePredictions(label=np.asarray(true), predicted=pred, p_true=p_true)
