"""Image classifiers: torchvision models or a small CNN from scratch, fine-tuned from pretrained weights
(torchvision, DINOv2, CLIP), or linear probes on a frozen backbone's cached features."""

from synthworth.classifiers.evaluate import Evaluation, evaluate, predict
from synthworth.classifiers.models import Classifier, build_classifier
from synthworth.classifiers.task import (
    ClassifierConfig,
    ClassifierTask,
    load_classifier,
    save_classifier,
    train_classifier,
)

__all__ = ["Classifier", "build_classifier", "ClassifierConfig", "ClassifierTask", "train_classifier",
           "load_classifier", "save_classifier", "evaluate", "predict", "Evaluation"]
