"""Which protocol trained a study's classifiers (``classifier.model.mode``): from scratch,
fine-tuned from pretrained weights, or a linear probe on a frozen backbone, with the weights
(their SHA-256) and the input preprocessing that came with them. Read from results.csv (every
cell's classifier config), ``study.yaml`` and ``inputs.json`` (``classifier_backbone``); results
written before pretrained weights existed were all trained from scratch."""

from __future__ import annotations

from typing import Any

import pandas as pd

from synthworth.report.numbers import esc

WHAT = {
    "scratch": "trained from scratch (random initial weights)",
    "finetune": "fine-tuned: every layer trained on each cell's images, starting from pretrained weights",
    "linear_probe": ("a linear probe: the pretrained backbone frozen, a logistic regression fitted on its features "
                     "of each cell's images (L-BFGS to convergence, whatever the set's size)"),
}


def _column(results: pd.DataFrame, name: str, default: Any) -> list:
    if name not in results.columns:
        return [default]
    return sorted({default if pd.isna(v) else v for v in results[name]}, key=str)


def text(results: pd.DataFrame, classifier: dict[str, Any], inputs: dict[str, Any]) -> str:
    """One sentence (HTML, escaped) naming the protocol, model and weights of the cells."""
    if results.empty:
        return ""
    modes = _column(results, "classifier.model.mode", "scratch")
    names = _column(results, "classifier.model.name", (classifier.get("model") or {}).get("name", "?"))
    parts = [f"Protocol: {esc(WHAT.get(str(m), str(m)))}" for m in modes]
    said = "; ".join(parts) + f"; model {esc(', '.join(map(str, names)))}"
    backbone = inputs.get("classifier_backbone") if isinstance(inputs, dict) else None
    if isinstance(backbone, dict) and backbone.get("weights"):
        pre = backbone.get("preprocess") if isinstance(backbone.get("preprocess"), dict) else {}
        said += (f", weights {esc(backbone['weights'])} (SHA-256 {esc(str(backbone.get('sha256', '?'))[:12])}"
                 + (f"; images resized to {esc(pre.get('size'))} px ({esc(pre.get('interpolation'))}) and normalised, "
                    f"as set by {esc(pre.get('source'))}" if pre else "") + ")")
    if "linear_probe" in modes:
        c = _column(results, "classifier.probe.c", None)
        said += f", C = {esc(', '.join(str(v) for v in c if v is not None) or '?')}"
    return f" {said}."
