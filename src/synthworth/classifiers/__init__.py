"""Image classifiers: torchvision models from scratch or a small CNN, trained on the shared engine."""

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
