"""The cells of a study and the training set of each.

Compositions at size N and seed s (real pool R, a generator's synthetic pool S, ratio r):

- ``real``:        N images of R                       (``subset(R, count=N, seed=s)``)
- ``artificial``:  N images of S                       (the classification accuracy score, CAS)
- ``mixed``:       ``mix(R, S, size=N, ratio=r, seed=s)``: N - round(N r) real + round(N r) synthetic
- ``subset_real``: the real part of ``mixed`` alone:   ``subset(R, count=N - round(N r), seed=s)``,
                   the very same images (the source study's Mixed vs Subset_real relation)
- ``augmented``:   the ``real`` cell's N images plus round(k N) synthetic ones, for each factor k
                   (``augment(R, S, count=N, extra=round(k N), seed=s)``)
- ``ratio_sweep``: ``mix`` at every ratio of the spec at size N

Every composition holds the per-class counts of ``real`` at its size (N; N + round(k N) for
``augmented``): ``artificial`` draws exactly those counts from S, and the mixtures are
stratified jointly (see :mod:`synthworth.data.compose`), so a real-vs-synthetic comparison
never also compares class balances. ``subset_real`` holds those of ``real`` at its own size
(where S lacks images of a class, ``mix`` takes more real ones of it, and the mixture's real
part is then no longer exactly ``subset_real``'s; ``artificial`` and ``augmented`` are refused).
A synthetic Dataset whose spec entry says ``draw: as_generated`` is the exception: its part of
every cell keeps the Dataset's own class proportions (a plan's uneven counts,
:func:`synthworth.data.compose.proportional_counts`) and the real part is the balanced draw of
its own size, so ``mixed`` of two such Datasets at one size and seed holds the same real images.

``real`` and ``subset_real`` hold no synthetic image: one cell each, not one per generator.
Every other composition runs once per filter of the spec (``none``: the synthetic pool as it is;
``confidence``, ``clip``: its filtered Dataset, see :mod:`synthworth.study.filtering`); a filtered cell
draws from the filtered pool, so only its key differs from the unfiltered cell's.
A synthetic Dataset generated from K >= 2 generator replicates (spec ``replicates: per_seed``,
the default) gives each seed one replicate: its cells draw from that replicate's images alone
(``synthetic_replicate``; see :mod:`synthworth.study.replicates`), a view with its own
fingerprint, so the key follows. Every other cell draws from the whole pool, with the key it
always had.
A cell's cache key hashes what decides its result: the classifier config (with the cell's
seed), the training set's fingerprint (derived from its inputs' fingerprints and the draw's
parameters), the real test set's fingerprint, torch's CPU thread count (the spec's ``threads``),
the package version, the training budget unless it is ``epochs`` (see
:mod:`synthworth.study.budget`) and the precision unless it is ``fp32``. Cells of different
compositions that draw the same images (e.g. ``subset_real`` at 100 and ``real`` at 50) share
one key and are trained once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synthworth.data.compose import augment, balanced_counts, class_sizes, mix, proportional_counts, subset
from synthworth.data.dataset import Dataset
from synthworth.engine.config import RESUMABLE_CHANGES
from synthworth.errors import DataError, SynthworthError
from synthworth.study.inputs import StudyInputs
from synthworth.study.spec import REAL_ONLY, StudySpec

# Engine options that change how a run is shown or saved, never what it computes.
NOT_RESULT_KEYS = RESUMABLE_CHANGES - {"epochs", "max_steps"}
# ``train.threads`` does change what a cell computes, but a cell's key holds it once, at the top
# (the spec's ``threads``, which the cell's classifier config copies): left out of the hashed
# classifier, so the keys of cells stored before the engine had the setting stay valid.
KEYED_APART = {"threads"}


def round_half_up(x: float) -> int:
    """Round like :func:`synthworth.data.compose.mix` does (0.5 -> 1, 2.5 -> 3)."""
    return int(np.floor(x + 0.5))


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    composition: str
    generator: str           # "" for real and subset_real
    size: int                # nominal size N of the grid (see the module docstring)
    seed: int
    ratio: float             # synthetic share of the training set
    augment_factor: float | None = None
    per_class: int | None = None
    filter: str = "none"     # the synthetic pool's filter ("none" for unfiltered and real-only cells)
    # The generator replicate whose images alone the cell draws ("": the whole pool; see study/replicates.py)
    synthetic_replicate: str = ""

    def label(self) -> str:
        extra = "" if self.filter == "none" else f" filter {self.filter}"
        if self.synthetic_replicate:
            extra += f" replicate {self.synthetic_replicate}"
        if self.composition == "ratio_sweep":
            extra += f" ratio {self.ratio:g}"
        elif self.composition == "augmented":
            extra += f" k {self.augment_factor:g}"
        gen = f" [{self.generator}]" if self.generator else ""
        return f"{self.composition}{gen}{extra} size {self.size} seed {self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_grid(spec: StudySpec, num_classes: int, replicates: dict[str, dict[int, str]] | None = None) -> list[Cell]:
    """Every cell of ``spec``, seeds outermost (so a partial run has whole seeds done first).
    ``replicates``: {generator: {seed: the replicate its cells draw from}} (see
    :func:`synthworth.study.replicates.dealing`); other generators' cells draw from the whole pool."""
    if spec.per_class is not None:
        sizes = [(n * num_classes, n) for n in spec.per_class]
    else:
        sizes = [(n, None) for n in spec.sizes]
    cells = []
    generators = list(spec.synthetic)
    for seed in spec.seeds:
        for size, per_class in sizes:
            for comp in spec.compositions:
                common = {"composition": comp, "size": size, "seed": seed, "per_class": per_class}
                if comp in REAL_ONLY:
                    cells.append(Cell(generator="", ratio=0.0, **common))
                for gen, filt in [(g, f) for g in generators for f in spec.filters] if comp not in REAL_ONLY else []:
                    both = {**common, "generator": gen, "filter": filt,
                            "synthetic_replicate": (replicates or {}).get(gen, {}).get(seed, "")}
                    if comp == "artificial":
                        cells.append(Cell(ratio=1.0, **both))
                    elif comp == "mixed":
                        cells.append(Cell(ratio=spec.ratio, **both))
                    elif comp == "ratio_sweep":
                        cells += [Cell(ratio=float(r), **both) for r in spec.ratios]
                    elif comp == "augmented":
                        for k in spec.augment_factors:
                            share = round_half_up(k * size) / (size + round_half_up(k * size))
                            cells.append(Cell(ratio=share, augment_factor=float(k), **both))
    return cells


def counts(cell: Cell, mixed_ratio: float) -> tuple[int, int]:
    """(real images, synthetic images) of ``cell``'s training set."""
    n = cell.size
    if cell.composition == "real":
        return n, 0
    if cell.composition == "subset_real":
        return n - round_half_up(n * mixed_ratio), 0
    if cell.composition == "artificial":
        return 0, n
    if cell.composition in ("mixed", "ratio_sweep"):
        synth = round_half_up(n * cell.ratio)
        return n - synth, synth
    if cell.composition == "augmented":
        return n, round_half_up(cell.augment_factor * n)
    raise SynthworthError(f"unknown composition {cell.composition!r}")


def check_sizes(cells: list[Cell], inputs: StudyInputs, mixed_ratio: float) -> None:
    """Every cell can draw its images: otherwise one error listing each shortfall and what exists."""
    problems: dict[str, str] = {}

    def need(what: str, pool: Dataset, n: int, cell: Cell) -> None:
        if n > len(pool):
            problems.setdefault(f"{what}:{n}", f"{cell.label()} needs {n} {what} training images but only "
                                               f"{len(pool)} exist")
        elif cell.per_class is not None and n:
            share = -(-n // inputs.num_classes)
            have = np.bincount(pool.labels, minlength=inputs.num_classes)
            short = ", ".join(f"{pool.class_names[i]} has {have[i]}" for i in np.flatnonzero(have < share))
            if short:
                problems.setdefault(f"{what}:{n}:pc", f"{cell.label()} needs {share} {what} images per class "
                                                      f"but {short}")

    for cell in cells:
        n_real, n_synth = counts(cell, mixed_ratio)
        before = len(problems)
        need("real", inputs.pool, n_real, cell)
        if n_synth:
            need(f"synthetic ({cell.generator})", synthetic_pool(cell, inputs), n_synth, cell)
        if len(problems) == before:
            # Enough images in all, but perhaps not of every class real's balance asks for.
            try:
                training_set(cell, inputs, mixed_ratio)
            except DataError as exc:
                problems.setdefault(f"{cell.composition}:{cell.generator}:{cell.filter}:{cell.size}:{cell.ratio}",
                                    f"{cell.label()} (which holds real's per-class counts at its size): {exc}")
    if problems:
        split = any(c.synthetic_replicate for c in cells)
        raise DataError("too few images for the asked sizes: " + "; ".join(problems.values())
                        + ("; each seed draws from one generator replicate's share of the synthetic images: generate "
                           "more images, or set replicates: pooled in the spec to draw from all of them" if split
                           else ""))


def training_set(cell: Cell, inputs: StudyInputs, mixed_ratio: float) -> Dataset:
    """The training set of ``cell`` (a view; no pixels copied)."""
    real, s = inputs.pool, cell.seed
    n_real, n_synth = counts(cell, mixed_ratio)
    if cell.composition in ("real", "subset_real"):
        return subset(real, count=n_real, seed=s)
    synthetic = synthetic_pool(cell, inputs)
    # as_generated (the spec's draw): the synthetic part keeps the Dataset's own class proportions
    as_is = inputs.synthetic[cell.generator].draw == "as_generated"
    if cell.composition == "artificial":
        # The classes of a real draw of this size, not of a draw from S (S may be unbalanced).
        want = proportional_counts(n_synth, class_sizes(synthetic)) if as_is else \
            balanced_counts(n_synth, class_sizes(real))
        return subset(synthetic, class_counts=want, seed=s)
    if cell.composition in ("mixed", "ratio_sweep"):
        return mix(real, synthetic, size=cell.size, ratio=cell.ratio, seed=s, second_as_is=as_is)
    if cell.composition == "augmented":
        return augment(real, synthetic, count=n_real, extra=n_synth, seed=s, second_as_is=as_is)
    raise DataError(f"unknown composition {cell.composition!r}")


def synthetic_pool(cell: Cell, inputs: StudyInputs) -> Dataset:
    """The synthetic images ``cell`` draws from: its generator's pool (filtered by its filter),
    only its replicate's share where it has one."""
    return inputs.synthetic_pool(cell.generator, cell.filter, cell.synthetic_replicate)


def class_counts(train_set: Dataset) -> list[int]:
    """Images per class of a training set (recorded with each cell, see study/cell.py)."""
    return np.bincount(train_set.labels[train_set.labels >= 0], minlength=len(train_set.class_names)).tolist()


def cell_classifier(config, seed: int):
    """The classifier config of a cell: the study's, seeded with the cell's seed."""
    return config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})


def cell_key(classifier: dict[str, Any], train_fingerprint: str, test_fingerprint: str,
             version: str, threads: int, budget: dict[str, Any] | None = None,
             weights: dict[str, Any] | None = None, precision: str = "fp32") -> tuple[str, dict]:
    """(key, the payload it hashes). ``threads``: torch's CPU threads while the cell trains, which
    change its numbers (reductions split differently), so another count is another cell.
    ``budget``: the training budget when it is not ``epochs`` (the default of earlier versions),
    which is left out of the payload so the keys of results stored before budgets existed stay
    valid for specs that set ``budget: epochs``. ``weights``: the SHA-256 and preprocessing of
    pretrained weights, so weights replaced in place (same path) train the cells again. The
    classifier keys added with pretrained weights (``model.weights``, ``model.mode``, ``probe``)
    are left out at their defaults (training from scratch), for the same reason. ``precision``:
    the spec's, named in the payload only when it is not fp32 (the classifier's
    ``train.mixed_precision`` differs then too), so results stored before precisions existed keep
    their keys."""
    train = {k: v for k, v in classifier["train"].items() if k not in NOT_RESULT_KEYS | KEYED_APART}
    classifier = {**classifier, "train": train}
    model = classifier.get("model")
    if isinstance(model, dict) and model.get("mode", "scratch") == "scratch" and model.get("weights") is None:
        classifier["model"] = {k: v for k, v in model.items() if k not in ("weights", "mode")}
        classifier.pop("probe", None)
    payload = {"classifier": classifier, "train_set": train_fingerprint,
               "test_set": test_fingerprint, "threads": threads, "synthworth_version": version}
    if budget is not None:
        payload["budget"] = budget
    if weights is not None:
        payload["weights"] = weights
    if precision != "fp32":
        payload["precision"] = precision
    digest = hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest()
    return digest, payload


def shard_of(items: list[str], shard: tuple[int, int] | None) -> set[str]:
    """The items (unique job ids) shard ``i`` of ``n`` runs: every n-th of the sorted ids, from
    the i-th (0-based, as ``synthworth generate --shard``). The same on every machine; the
    shards partition the whole."""
    unique = sorted(set(items))
    if shard is None:
        return set(unique)
    i, n = shard
    return {item for j, item in enumerate(unique) if j % n == i}


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) -> (i, n)."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise SynthworthError(f"--shard {text!r}: expected i/n, e.g. 0/4 (shards are numbered 0..n-1)") from None
    if not 0 <= i < n:
        raise SynthworthError(f"--shard {text!r}: need 0 <= i < n (e.g. 0/4 ... 3/4)")
    return i, n
