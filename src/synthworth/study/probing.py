"""How a study's cell trains its classifier and scores it, for every protocol
(``classifier.model.mode``): through the training engine (``scratch``, ``finetune``) or, for a
linear probe, on the backbone's features kept in the study's cache::

    RESULTS/features/<backbone key>/    the features of every image the study's cells use
                                        (see synthworth.classifiers.feature_cache)

Before the cells run, :func:`warm_features` extracts the features of every pool and test set of
the study once (under the cache's lock); a probe cell then only looks its images up, fits a
logistic regression and scores the test sets from their cached features, without building the
backbone. A cell reached first in another process (a shard that started later) extracts what is
missing itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthworth.classifiers.evaluate import Evaluation, ImagePredictions
from synthworth.classifiers.feature_cache import FeatureCache, backbone_key

if TYPE_CHECKING:
    from synthworth.data.dataset import Dataset
    from synthworth.study.plan import StudyPlan

FEATURES = "features"
_BACKBONES: dict[str, Any] = {}  # backbone key -> its classifier, built once per process when needed


def is_probe(plan: StudyPlan) -> bool:
    return plan.classifier.model.mode == "linear_probe"


def feature_cache(plan: StudyPlan) -> FeatureCache:
    key = backbone_key(plan.backbone, plan.classifier.model.name)
    return FeatureCache(plan.out / FEATURES / key, {"model": plan.classifier.model.name, **plan.backbone})


def _backbone(plan: StudyPlan):
    """The classifier whose features the probes are fitted on (loaded once, when features are missing)."""
    from synthworth.classifiers.backbones import build_model

    key = backbone_key(plan.backbone, plan.classifier.model.name)
    if key not in _BACKBONES:
        h, _, c = plan.inputs.real.shape
        _BACKBONES[key] = build_model(plan.classifier.model, plan.inputs.num_classes, c, h).eval()
    return _BACKBONES[key]


def features(plan: StudyPlan, dataset: Dataset, progress: bool = False):
    """The cached backbone features of ``dataset``'s images (extracting the missing ones)."""
    return feature_cache(plan).features(dataset, lambda: _backbone(plan), plan.classifier.eval_batch_size, progress)


def warm_features(plan: StudyPlan, progress: bool = False) -> int:
    """Extract the features of every Dataset the cells draw from or are tested on; returns the
    images that went through the backbone (0 when all were cached)."""
    if not is_probe(plan):
        return 0
    cache = feature_cache(plan)
    inputs = plan.inputs
    datasets = [inputs.pool, inputs.test]
    for synthetic in inputs.synthetic.values():
        datasets += [synthetic.pool, synthetic.test, *synthetic.filtered.values()]
    for dataset in datasets:
        cache.features(dataset, lambda: _backbone(plan), plan.classifier.eval_batch_size, progress)
    return cache.extracted


# ------------------------------------------------------------------------------ trained cells
class ImageScorer:
    """A classifier trained through the engine, scoring Datasets image by image."""

    def __init__(self, model, batch_size: int):
        self.model, self.batch_size = model, batch_size

    @property
    def device(self) -> str:
        return str(next(self.model.parameters()).device)

    def score(self, dataset: Dataset) -> tuple[Evaluation, ImagePredictions]:
        from synthworth.classifiers.evaluate import score

        return score(self.model, dataset, self.batch_size)


class ProbeScorer:
    """A linear probe, scoring Datasets from their cached features."""

    device = "cpu"

    def __init__(self, probe, plan: StudyPlan):
        self.probe, self.plan = probe, plan

    def score(self, dataset: Dataset) -> tuple[Evaluation, ImagePredictions]:
        return self.probe.score(features(self.plan, dataset), dataset)


def train_cell(plan: StudyPlan, train_set: Dataset, run_dir: Path, config, resume: bool):
    """(scorer, task) of a cell trained on ``train_set`` into ``run_dir``; the task knows what
    the training ran (``budget_used()``)."""
    if is_probe(plan):
        from synthworth.classifiers.probe import train_probe

        probe, run = train_probe(train_set, run_dir, config, features=lambda ds: features(plan, ds),
                                 backbone=plan.backbone, resolution=plan.backbone["preprocess"]["size"])
        return ProbeScorer(probe, plan), run
    from synthworth.classifiers.task import train_classifier

    model, task = train_classifier(train_set, run_dir, config, resume=resume, **plan.budget.train_options())
    return ImageScorer(model, config.eval_batch_size), task


def load_cell(plan: StudyPlan, model_dir: Path):
    """The scorer of a cell's saved model (``run/model``)."""
    if is_probe(plan):
        from synthworth.classifiers.probe import load_probe

        return ProbeScorer(load_probe(model_dir)[0], plan)
    from synthworth.classifiers.task import load_classifier

    return ImageScorer(load_classifier(model_dir)[0], plan.classifier.eval_batch_size)
