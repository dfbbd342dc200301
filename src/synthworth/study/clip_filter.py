"""The ``clip`` filter's scores: how well each synthetic image agrees with its class's prompt.

An image's score is the cosine similarity of its CLIP image embedding and its class's text
embedding. A class's text embedding is the mean of the unit embeddings of every prompt generation
could make for it (the theme's template with the class's subject words, each distance with each
angle the template uses: CLIP's usual prompt ensemble), scaled to unit length again. The prompts
come from the theme a text-to-image Dataset records (the very text its images were made from),
else from the spec's ``clip_theme``; a Dataset with neither is refused with one line saying so.

The filter then keeps what ``confidence`` keeps, with the score in place of the confidence
(:mod:`synthworth.study.filtering`). CLIP was trained on external data, not on any real image of
the study, so the filter adds no real image of the study to what the generator saw.

The image embeddings depend only on the pool's images and the model, so they are cached by both::

    RESULTS/filtered/clip-embeddings/<pool fingerprint>-<model fingerprint>.npy   (n, d) float32

and a rerun (another ``filter_keep``, other prompts) embeds no image again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthworth.data.dataset import Dataset
from synthworth.errors import ConfigError, DataError
from synthworth.study.inputs import SyntheticInput

EMBEDDINGS = "clip-embeddings"
SCORES_FILE = "clip_scores.npy"
SCORE = ("cosine similarity of the image's CLIP embedding and the unit mean of the embeddings of its "
         "class's prompts")


@dataclass
class ClipModel:
    """The spec's CLIP model, found and named (loaded only when something must be embedded)."""

    folder: Path
    hub_id: str | None
    identity: dict[str, Any]
    _embedder: Any = None

    def embedder(self):
        from synthworth.metrics.clip import ClipEmbedder

        if self._embedder is None:
            self._embedder = ClipEmbedder(self.folder, self.hub_id)
        return self._embedder


def find_model(spec, *, download: bool = True) -> ClipModel:
    """The spec's ``clip_model`` (else ${SYNTHWORTH_CLIP_WEIGHTS}, else the default hub id), checked;
    a missing model is one ConfigError saying how to fetch it."""
    from synthworth.metrics.clip import clip_identity, resolve_clip

    folder, hub_id = resolve_clip(spec.clip_model, download=download)
    return ClipModel(folder, hub_id, clip_identity(folder, hub_id))


def _theme_of(name: str, syn: SyntheticInput, clip_theme: str | None):
    """(the theme whose prompts score generator ``name``'s images, where it came from)."""
    from synthworth.themes import Theme, load_theme

    plan = syn.pool.manifest.get("plan") if isinstance(syn.pool.manifest, dict) else None
    recorded = (plan.get("generator") or {}).get("theme") if isinstance(plan, dict) else None
    if isinstance(recorded, dict):
        try:
            return Theme.model_validate(recorded), f"the theme {recorded.get('name')!r} its images were generated with"
        except ValueError as exc:
            raise DataError(f"synthetic Dataset {name!r} ({syn.path}) records a theme that is not valid "
                            f"({_first_line(exc)}); give the prompts with clip_theme in the spec") from None
    if clip_theme is None:
        raise ConfigError(f"filters: clip needs prompts for generator {name!r} ({syn.path}), whose Dataset records "
                          "no prompt theme (not made by a text-to-image pipeline): set clip_theme in the spec to a "
                          "shipped theme (animals, fruits) or a theme YAML file (see synthworth.themes), or leave "
                          "clip out of filters")
    return load_theme(clip_theme), f"clip_theme {clip_theme}"


def class_prompts(name: str, syn: SyntheticInput, clip_theme: str | None,
                  class_map: dict[str, str | None]) -> tuple[dict[str, list[str]], str]:
    """({class of the study: its prompts}, where they came from). A class of the study is scored
    with the prompts of every synthetic class the spec's class_map sends to it."""
    theme, source = _theme_of(name, syn, clip_theme)
    original = Dataset.open(syn.path).class_names
    theme = theme.with_subjects(list(original))
    prompts: dict[str, list[str]] = {c: [] for c in syn.pool.class_names}
    for subject in original:
        target = class_map.get(subject, subject)
        if target in prompts:
            prompts[target] += [p for p in theme.all_prompts(subject) if p not in prompts[target]]
    return {c: p for c, p in prompts.items() if p}, source


def clip_key(pool: Dataset, keep: float, identity: dict[str, Any], prompts: dict[str, list[str]]) -> str:
    from synthworth import __version__

    payload = {"parent": pool.fingerprint, "method": "clip", "keep": keep, "clip_model": identity["fingerprint"],
               "prompts": prompts, "score": SCORE, "synthworth_version": __version__}
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest()


def pool_embeddings(model: ClipModel, pool: Dataset, cache: Path, batch: int = 256) -> np.ndarray:
    """The pool's unit image embeddings, from ``cache`` (a folder) when stored there, else made and
    stored (written under a temporary name and renamed, so a reader never sees half a file)."""
    path = cache / f"{pool.fingerprint}-{model.identity['fingerprint']}.npy"
    try:
        stored = np.load(path, allow_pickle=False)
        if stored.ndim == 2 and len(stored) == len(pool) and np.isfinite(stored).all():
            return stored
    except (OSError, ValueError):
        pass  # missing or damaged: made again
    embedder = model.embedder()
    parts = [embedder.images(pool.take(np.arange(s, min(s + batch, len(pool))))) for s in range(0, len(pool), batch)]
    embeddings = np.concatenate(parts).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{path.name}.{os.getpid()}.part"
    with open(tmp, "wb") as fh:
        np.save(fh, embeddings)
    os.replace(tmp, path)
    return embeddings


def class_embeddings(model: ClipModel, prompts: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Each class's unit text embedding: the mean of its prompts' unit embeddings, scaled to unit length."""
    embedder = model.embedder()
    out = {}
    for name, texts in prompts.items():
        mean = embedder.texts(texts).mean(axis=0)
        out[name] = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    return out


def clip_scores(model: ClipModel, pool: Dataset, prompts: dict[str, list[str]], cache: Path) -> np.ndarray:
    """Every pool image's score (see the module docstring), in pool order."""
    images = pool_embeddings(model, pool, cache)
    texts = class_embeddings(model, prompts)
    table = np.stack([texts[c] for c in pool.class_names if c in texts])
    row = {c: i for i, c in enumerate(c for c in pool.class_names if c in texts)}
    index = np.array([row.get(c, -1) for c in pool.class_names])[pool.labels]
    if (index < 0).any():
        raise DataError("the clip filter has no prompt for some images' classes")
    return np.einsum("nd,nd->n", images, table[index]).astype(np.float64)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
