"""Test-set leakage: did a generator see the study's real test images?

A generator trained on images of the real test split reproduces them more or less closely, so
every cell that draws its images (and the confidence filter's classifier, trained on the same
real data) is scored on images it has, in effect, trained on: its accuracies and exchange rates
are inflated. The study refuses such a generator before any cell trains, unless the spec says
``allow_test_leakage: true``; then every number that depends on it carries ``test_leakage`` (the
number of real test images its training data held) in results.csv, summary.csv,
comparisons.csv, exchange_rates.csv and metrics.csv, and the report and ``study exchange`` warn.

What each generator trained on comes from its Dataset's provenance: ``trained_on`` (the
fingerprint, path and split its run recorded), the parent's of a filtered Dataset, the real data
of the filter that made it, and any nested provenance with a ``trained_on`` (e.g. an
autoencoder's). Each is compared with the real test images:

- the study's own real Dataset (same fingerprint): its recorded split is the training split
  (none of the test images: checked before), the test split (all of them), or any other split,
  compared image by image;
- another Dataset still readable at its recorded path with the recorded fingerprint: compared
  image by image (content hashes, so copies under other names count);
- otherwise (moved, changed, another image size) it cannot be compared; nothing is claimed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from synthworth.data.dataset import Dataset
from synthworth.errors import DataError

if TYPE_CHECKING:
    from synthworth.study.inputs import StudyInputs
    from synthworth.study.spec import StudySpec

COLUMN = "test_leakage"


def training_sources(prov: Any) -> list[tuple[str, dict[str, Any]]]:
    """(what trained, {"fingerprint", "path", "split"}) of every real Dataset a provenance names."""
    found: dict[tuple, tuple[str, dict[str, Any]]] = {}

    def add(who: str, fingerprint: Any, path: Any, split: Any) -> None:
        if isinstance(fingerprint, str) and fingerprint:
            found.setdefault((fingerprint, path, split), (who, {"fingerprint": fingerprint, "path": path,
                                                                 "split": split}))

    def walk(p: Any, who: str) -> None:
        if not isinstance(p, dict):
            return
        on = p.get("trained_on")
        if isinstance(on, dict):
            add(who, on.get("fingerprint"), on.get("path"), on.get("split"))
        f = p.get("filter")
        if isinstance(f, dict):
            add(f"the {f.get('method') or 'filter'} filter's classifier", f.get("real_fingerprint"),
                f.get("real_path"), f.get("real_split"))
        walk(p.get("parent"), who)
        for key, value in p.items():  # e.g. a latent model's autoencoder, recorded with its own data
            if key not in ("trained_on", "filter", "parent") and isinstance(value, dict) and "trained_on" in value:
                walk(value, f"its {key}")

    walk(prov, "its generator")
    return list(found.values())


def _seen(on: dict[str, Any], spec: StudySpec, inputs: StudyInputs, test_hashes: list[bytes],
          cache: dict) -> set[int] | None:
    """Indices of the real test images among the images ``on`` names (None: cannot be compared)."""
    from synthworth.study.inputs import image_hashes

    fingerprint, split = on["fingerprint"], on.get("split")
    key = (fingerprint, split)
    if key in cache:
        return cache[key]
    view: Dataset | None = None
    if fingerprint == inputs.real.fingerprint:
        if split == spec.real_test_split:
            cache[key] = set(range(len(test_hashes)))
            return cache[key]
        if split == spec.real_train_split:   # check_before_training found it disjoint from the test
            cache[key] = set()
            return cache[key]
        view = inputs.real
    elif on.get("path"):
        try:
            opened = Dataset.open(on["path"])
        except (DataError, OSError):
            opened = None
        if opened is not None and opened.fingerprint == fingerprint:
            view = opened
    if view is not None and split:
        view = view.split(split) if split in view.split_names else None
    if view is None or view.shape != inputs.test.shape:
        cache[key] = None
        return None
    train = set(image_hashes(view))
    cache[key] = {i for i, h in enumerate(test_hashes) if h in train}
    return cache[key]


def find_leaks(spec: StudySpec, inputs: StudyInputs, test_hashes: list[bytes]) -> dict[str, dict[str, Any]]:
    """{generator: {"images": test images its training data held, "of": the test's size,
    "sources": [one line per source that held some]}} of every generator that saw a test image."""
    cache: dict = {}
    leaks = {}
    for name, syn in inputs.synthetic.items():
        seen: set[int] = set()
        sources = []
        for who, on in training_sources(syn.provenance):
            hit = _seen(on, spec, inputs, test_hashes, cache)
            if hit:
                seen |= hit
                split = f", split {on['split']!r}" if on.get("split") else ""
                sources.append(f"{who} was trained on {on.get('path') or on['fingerprint'][:12]}{split}")
        if seen:
            leaks[name] = {"images": len(seen), "of": len(test_hashes), "sources": sources}
    return leaks


def describe(name: str, leak: dict[str, Any]) -> str:
    return (f"generator {name!r} saw {leak['images']} of the study's {leak['of']} real test images "
            f"({'; '.join(leak['sources'])})")


def check_leaks(spec: StudySpec, inputs: StudyInputs, test_hashes: list[bytes]) -> None:
    """Refuse (DataError) a generator that saw real test images, unless the spec allows it; then
    record the leaks in ``inputs.leaks`` and warn."""
    import warnings

    from synthworth.study.inputs import StudyWarning

    leaks = find_leaks(spec, inputs, test_hashes)
    inputs.leaks = leaks
    if not leaks:
        return
    what = "; ".join(describe(name, leak) for name, leak in leaks.items())
    if not spec.allow_test_leakage:
        raise DataError(f"test-set leakage: {what}: every accuracy of its cells would be inflated. Generate from a "
                        f"generator trained without the real test split {spec.real_test_split!r}, or set "
                        "allow_test_leakage: true in the spec (or pass allow_test_leakage=true) to run anyway with "
                        "every affected number marked")
    message = (f"test-set leakage allowed (allow_test_leakage: true): {what}; every number of its cells is "
               f"inflated and marked in the {COLUMN} column")
    inputs.notes.append(message)
    warnings.warn(message, StudyWarning, stacklevel=3)


def mark(table, leaks: dict[str, Any]):
    """``table`` with the ``test_leakage`` column: per row, the real test images seen by the
    generator(s) its numbers depend on (0: none found). ``leaks`` maps a generator to its leak
    record (or count)."""
    counts = {str(k): int(v["images"] if isinstance(v, dict) else v) for k, v in (leaks or {}).items()}

    def of(column: str):
        if column not in table.columns:
            return np.zeros(len(table), np.int64)
        return table[column].fillna("").astype(str).map(lambda g: counts.get(g, 0)).to_numpy(np.int64)

    if "generator" in table.columns:
        values = of("generator")
    else:  # comparisons: two generators per row
        values = np.maximum(of("generator_a"), of("generator_b"))
    return table.assign(**{COLUMN: values})


def leaks_of(inputs_json: Any) -> dict[str, dict[str, Any]]:
    """{generator: leak record} from a study's inputs.json content (empty when none or unreadable)."""
    leaks = inputs_json.get(COLUMN) if isinstance(inputs_json, dict) else None
    if not isinstance(leaks, dict):
        return {}
    return {str(k): v for k, v in leaks.items()
            if isinstance(v, dict) and isinstance(v.get("images"), int) and v["images"] > 0}


def warning_lines(leaks: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per leaking generator, for the report and ``study exchange``."""
    return [f"TEST-SET LEAKAGE: {describe(name, leak)}; every number of its cells is inflated (the study ran with "
            f"allow_test_leakage: true; column {COLUMN})" for name, leak in leaks.items()]


def banner(inputs_json: Any, esc) -> str:
    """The report's warning box, one paragraph per leaking generator (empty when none)."""
    return "".join(f"<p class='warning'>{esc(line)}</p>" for line in warning_lines(leaks_of(inputs_json)))
