"""The example study specs shipped in examples/ are valid against the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthbench.study.spec import load_spec

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_spec_loads(path):
    spec, base = load_spec(path)
    assert base == path.parent.resolve()
    assert Path(spec.real).is_absolute() and spec.out and Path(spec.out).is_absolute()
    assert {"real", "artificial", "mixed", "subset_real"} <= set(spec.compositions)


def test_thesis_examples_follow_the_source_study():
    for name in ("animals-thesis.yaml", "fruits-thesis.yaml"):
        spec, _ = load_spec(Path(__file__).parents[1] / "examples" / name)
        assert spec.classifier_preset == "thesis" and spec.sizes == [1000]
        assert sorted(spec.synthetic) == sorted(["sd21", "realistic-vision-14", "openjourney-v4", "kandinsky-22"])
