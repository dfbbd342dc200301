"""Linear probes: a logistic-regression layer trained on the frozen features of a pretrained
backbone (``model.mode: linear_probe``).

The backbone's features (the input of its last linear layer) are extracted once per image and
kept (:mod:`synthworth.classifiers.feature_cache`); the probe itself is scikit-learn's
``LogisticRegression`` (multinomial, L2 penalty ``probe.c``, L-BFGS) on standardised features.
Not a few hundred SGD steps through the shared engine: the problem is convex, so L-BFGS reaches
its unique optimum in tens of iterations on a few thousand images, with no learning rate or
step budget to choose and the same weights on every run; a cell takes a fraction of a second,
so a study's grid of probes takes seconds once the features are cached. It is also how linear
probes are usually evaluated (CLIP's paper fitted them with the same scikit-learn L-BFGS
logistic regression). The training budget of a study (steps, epochs, converge) does not apply:
every probe is fitted to convergence, whatever the set's size.

The fitted layer is stored as the classifier's last linear layer (the standardisation folded
into its weights), in float32; every score is computed from the stored weights, so scores
recomputed from a saved probe are the stored ones exactly. A class with no training image gets
a logit of ``ABSENT`` (never predicted). Saved probes hold that layer only
(``head.weight``, ``head.bias``) and the record of their backbone, whose weights are needed again
to run the probe on images (:func:`synthworth.classifiers.task.load_classifier`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file

from synthworth.classifiers.evaluate import Evaluation, ImagePredictions, score_logits
from synthworth.config import StrictModel
from synthworth.data.dataset import Dataset
from synthworth.errors import SynthworthError
from synthworth.safety import output_lock

ABSENT = -1.0e4  # the logit of a class the probe never saw
MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"


class ProbeConfig(StrictModel):
    """The logistic regression of a linear probe (model.mode: linear_probe)."""

    c: float = Field(1.0, gt=0, description="Inverse L2 penalty of the logistic regression on standardised features (scikit-learn's C; smaller: stronger).")
    max_iter: int = Field(1000, ge=1, description="L-BFGS iterations at most; a fit that stops short is recorded (probe_converged: false).")


@dataclass
class LinearProbe:
    """The probe's linear layer: logits = features @ weight.T + bias (float32, computed in float64)."""

    weight: np.ndarray  # (classes, features)
    bias: np.ndarray    # (classes,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        with _threads():
            return features.astype(np.float64) @ self.weight.astype(np.float64).T + self.bias.astype(np.float64)

    def score(self, features: np.ndarray, dataset: Dataset) -> tuple[Evaluation, ImagePredictions]:
        """Scores and per-image predictions on ``dataset`` from its images' ``features``."""
        return score_logits(self.logits(features), dataset)

    def state(self) -> dict[str, torch.Tensor]:
        return {"head.weight": torch.from_numpy(np.ascontiguousarray(self.weight, np.float32)),
                "head.bias": torch.from_numpy(np.ascontiguousarray(self.bias, np.float32))}


def fit_probe(features: np.ndarray, labels: np.ndarray, num_classes: int, config: ProbeConfig) -> tuple[LinearProbe, dict]:
    """The logistic regression of ``labels`` on ``features`` and what the fit did."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, np.float64)
    weight = np.zeros((num_classes, x.shape[1]))
    bias = np.full(num_classes, ABSENT)
    present = np.unique(labels)
    if len(present) == 1:  # nothing to tell apart: the one class seen is always predicted
        bias[present[0]] = 0.0
        return _rounded(weight, bias), {"probe_iterations": 0, "probe_converged": True}
    scaler = StandardScaler().fit(x)
    with warnings.catch_warnings(), _threads():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded as probe_converged instead
        fit = LogisticRegression(C=config.c, max_iter=config.max_iter).fit(scaler.transform(x), labels)
    coef, intercept = fit.coef_, fit.intercept_
    if len(fit.classes_) == 2:  # scikit-learn's binary form: one row for the second class (logit 0 for the first)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    # The standardisation folded in: w . (x - mean) / scale + b = (w / scale) . x + (b - w . mean / scale).
    folded = coef / scaler.scale_
    weight[fit.classes_] = folded
    bias[fit.classes_] = intercept - folded @ scaler.mean_
    iterations = int(np.max(fit.n_iter_))
    return _rounded(weight, bias), {"probe_iterations": iterations, "probe_converged": iterations < config.max_iter}


_CONTROLLER: list = []  # threadpoolctl's view of the loaded BLAS libraries, found once per process


def _threads():
    """NumPy's BLAS limited to torch's CPU threads (a study cell's ``threads``): by default it
    starts one thread per core in every worker process, and on a busy machine a small fit then
    runs tens of times slower than on one thread."""
    if not _CONTROLLER:
        import sklearn.linear_model  # noqa: F401 (loads scipy's BLAS too, so the controller sees it)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=torch.get_num_threads(), user_api="blas")


def _rounded(weight: np.ndarray, bias: np.ndarray) -> LinearProbe:
    return LinearProbe(weight.astype(np.float32), bias.astype(np.float32))


@dataclass
class ProbeRun:
    """What training a probe did (the counterpart of a ClassifierTask for the callers)."""

    n_train: int
    fit: dict[str, Any]
    resized_from: int | None = None
    seconds: float = 0.0

    def budget_used(self) -> dict[str, Any]:
        """The budget a probe trains under: to convergence (recorded as ``linear_probe``)."""
        return {"budget": "linear_probe", **self.fit}


def train_probe(dataset: Dataset, run_dir: str | os.PathLike, config, *, features: Callable[[Dataset], np.ndarray],
                backbone: dict[str, Any], resolution: int) -> tuple[LinearProbe, ProbeRun]:
    """Fit the probe of ``config`` (a ClassifierConfig) on ``dataset``'s ``train.split`` into the
    run folder ``run_dir`` (config, run.json, log, metrics.jsonl and the exported ``model/``).
    ``features(ds)``: the backbone's features of a Dataset's images; ``backbone``: its record,
    kept with the model; ``resolution``: the side the backbone sees."""
    from synthworth.engine.resume import data_record
    from synthworth.engine.run import RunFolder

    split = config.train.split
    train_set = dataset.split(split)
    if not train_set.labelled or len(train_set) == 0 or (train_set.labels < 0).any():
        raise SynthworthError(f"a linear probe needs a labelled {split!r} split with every image labelled")
    if dataset.num_classes < 2:
        raise SynthworthError(f"a classifier needs at least 2 classes; the Dataset has {dataset.num_classes}")
    run = RunFolder(run_dir)
    restart = run.check_new([dataset.path])
    with output_lock(run.path, what="this run"):
        run.create("classifier", config.model_dump(mode="json"), data_record(dataset, split), restart=restart)
        started = time.perf_counter()
        x = features(train_set)
        probe, fit = fit_probe(x, train_set.labels, dataset.num_classes, config.probe)
        seconds = time.perf_counter() - started
        train_accuracy = float((probe.logits(x).argmax(1) == train_set.labels).mean())
        save_probe(probe, run.model, config.model.model_dump(mode="json"), list(dataset.class_names),
                   channels=dataset.channels, resolution=resolution, data_resolution=dataset.resolution,
                   backbone=backbone, fit=fit)
        run.append_metrics([{"kind": "probe", "train_accuracy": train_accuracy, "n_train": len(train_set),
                             "features": int(x.shape[1]), "seconds": round(seconds, 3), **fit}])
        run.log(f"linear probe on {len(train_set)} images x {x.shape[1]} features: train accuracy "
                f"{train_accuracy:.4f}, {fit['probe_iterations']} L-BFGS iterations"
                + ("" if fit["probe_converged"] else " (stopped at probe.max_iter before converging)"))
    resized = dataset.resolution if dataset.resolution != resolution else None
    return probe, ProbeRun(n_train=len(train_set), fit=fit, resized_from=resized, seconds=seconds)


# ------------------------------------------------------------------------------ saving
def save_probe(probe: LinearProbe, folder: str | os.PathLike, model: dict[str, Any], class_names: list[str], *,
               channels: int, resolution: int, data_resolution: int | None, backbone: dict[str, Any],
               fit: dict[str, Any]) -> Path:
    """``model.safetensors`` (the linear layer) and ``config.json`` (the classifier's settings and
    its backbone's record) in ``folder``, replaced atomically: the format of
    :func:`synthworth.classifiers.task.save_classifier`, holding the last layer only."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(probe.state(), str(tmp / MODEL_FILE))
    meta = {"kind": "classifier", "class_names": list(class_names), "channels": channels, "resolution": resolution,
            "data_resolution": data_resolution, "model": model, "backbone": backbone, "probe": fit}
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=str))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_probe(folder: str | os.PathLike) -> tuple[LinearProbe, dict[str, Any]]:
    """The linear layer of a saved probe and its ``config.json`` (safetensors only)."""
    folder = Path(folder)
    meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    state = load_file(str(folder / MODEL_FILE))
    if set(state) != {"head.weight", "head.bias"}:
        raise SynthworthError(f"{folder} is not a saved linear probe (its {MODEL_FILE} holds {sorted(state)[:3]})")
    return LinearProbe(state["head.weight"].numpy(), state["head.bias"].numpy()), meta


@torch.no_grad()
def install_head(model, probe: LinearProbe) -> None:
    """Put the probe's weights into the last linear layer of ``model`` (a Classifier)."""
    head = model.net.get_submodule(model.head_name)
    head.weight.copy_(torch.from_numpy(probe.weight))
    head.bias.copy_(torch.from_numpy(probe.bias))
