"""The checks of a study's inputs before any cell trains (see :func:`check_before_training`):
real test images in no training pool, a held-out test set of every class for each synthetic
Dataset, no generator trained on the real test images, the metrics' splits there."""

from __future__ import annotations

import numpy as np

from synthworth.data.dataset import Dataset
from synthworth.errors import DataError
from synthworth.study.inputs import StudyInputs, SyntheticInput, image_hashes
from synthworth.study.leakage import check_leaks
from synthworth.study.spec import StudySpec


def _shared(test_hashes: list[bytes], train: Dataset) -> list[tuple[int, int]]:
    """(test index, training index) of every training image identical to a test image."""
    where = {h: i for i, h in enumerate(test_hashes)}
    return [(where[h], j) for j, h in enumerate(image_hashes(train)) if h in where]


def check_before_training(spec: StudySpec, inputs: StudyInputs) -> None:
    """Everything about the inputs that can be checked before a cell trains:

    - no image of the real test split is also in the real training pool (compared by content,
      so copies under other file names count): scoring a classifier on images it trained on
      inflates every accuracy of the study;
    - no synthetic training pool holds a real test image. A generator trained on the real pool
      cannot produce a test image pixel for pixel; an exact copy means the "synthetic" Dataset
      was made from the test split, and artificial / mixed cells would train on the test. (A
      synthetic Dataset's own held-out images are only used for its synthetic_accuracy, never
      for the real-test scores, so their overlap with the real test is not checked. Images that
      were resized to the real shape are compared after resizing, which can hide a copy.)
    - each synthetic Dataset keeps test images of every class after its hold-out;
    - no generator was trained on real test images, as its provenance tells (:mod:`synthworth.study.leakage`;
      allowed, and marked, with ``allow_test_leakage: true``);
    - the metrics' splits exist.
    """
    if spec.real_train_split == spec.real_test_split:
        raise DataError(f"real_train_split and real_test_split are both {spec.real_test_split!r}: the classifiers "
                        "would be tested on the images they trained on; give two different splits")
    test_hashes = image_hashes(inputs.test)
    shared = _shared(test_hashes, inputs.pool)
    if shared:
        i, j = shared[0]
        raise DataError(f"the real Dataset {spec.real}: {len(shared)} image(s) of the test split "
                        f"{spec.real_test_split!r} are identical to images of the training split "
                        f"{spec.real_train_split!r} (e.g. test image {i} = training image {j}): every accuracy "
                        "would be inflated. Prepare the Dataset again with splits that share no image, or name "
                        "disjoint splits with real_train_split / real_test_split")
    for name, synthetic in inputs.synthetic.items():
        shared = _shared(test_hashes, synthetic.pool)
        if shared:
            raise DataError(f"synthetic Dataset {name!r} ({synthetic.path}) holds {len(shared)} image(s) identical "
                            f"to real test images (e.g. real test image {shared[0][0]}): it must not be made "
                            f"from the real test split {spec.real_test_split!r}")
        _check_synthetic_test(name, synthetic, inputs.real.class_names)
    check_leaks(spec, inputs, test_hashes)
    if spec.metrics.enabled:
        _check_metrics_splits(spec, inputs)


def _check_synthetic_test(name: str, synthetic: SyntheticInput, class_names: list[str]) -> None:
    held = set(np.unique(synthetic.test.labels).tolist())
    lacking = [class_names[c] for c in np.unique(synthetic.pool.labels).tolist() if c not in held]
    # A Dataset drawn as generated (a plan's) may hold a class or two by a single image, too few
    # to hold one out: its synthetic test set covers the classes it can.
    if len(synthetic.test) and (not lacking or synthetic.draw == "as_generated"):
        return
    what = synthetic.held_out
    detail = "no image" if not len(synthetic.test) else f"no image of the classes {lacking[:10]}"
    advice = ("raise synthetic_holdout or generate more images per class" if what.startswith("a ") else
              f"give that split images of every class, or set synthetic.{name}.test_split to a split it does not "
              "have (e.g. none) to hold out a share instead")
    raise DataError(f"synthetic Dataset {name!r} ({synthetic.path}) is too small to hold out test images: "
                    f"{what} has {detail}; {advice}")


def _check_metrics_splits(spec: StudySpec, inputs: StudyInputs) -> None:
    m = spec.metrics
    if m.real_split and m.real_split not in inputs.real.split_names:
        raise DataError(f"metrics.real_split {m.real_split!r}: the real Dataset has no such split "
                        f"(it has: {', '.join(inputs.real.split_names)})")
    if m.fake_split:
        for name, synthetic in inputs.synthetic.items():
            names = sorted(set(Dataset.open(synthetic.path).split_names))
            if m.fake_split not in names:
                raise DataError(f"metrics.fake_split {m.fake_split!r}: synthetic Dataset {name!r} has no such split "
                                f"(it has: {', '.join(names)})")
