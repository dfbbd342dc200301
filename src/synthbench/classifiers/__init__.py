"""Image classifiers: torchvision models from scratch or a small CNN, trained on the shared engine."""

from synthbench.classifiers.evaluate import Evaluation, evaluate, predict
from synthbench.classifiers.models import Classifier, build_classifier
from synthbench.classifiers.task import (
    ClassifierConfig,
    ClassifierTask,
    load_classifier,
    save_classifier,
    train_classifier,
)

__all__ = ["Classifier", "build_classifier", "ClassifierConfig", "ClassifierTask", "train_classifier",
           "load_classifier", "save_classifier", "evaluate", "predict", "Evaluation"]
