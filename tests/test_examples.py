"""The example study specs shipped in examples/ are valid against the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthworth.study.spec import load_spec

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_spec_loads(path):
    spec, base = load_spec(path)
    assert base == path.parent.resolve()
    assert Path(spec.real).is_absolute() and spec.out and Path(spec.out).is_absolute()
    if path.name.startswith("digits-plan"):   # the plan example's pilot and check: real and mixed cells only
        assert {"real", "mixed"} <= set(spec.compositions)
    else:
        assert {"real", "artificial", "mixed", "subset_real"} <= set(spec.compositions)


def test_the_plan_check_example_draws_the_planned_images_as_generated():
    spec, _ = load_spec(Path(__file__).parents[1] / "examples" / "digits-plan-check.yaml")
    assert spec.synthetic["planned"].draw == "as_generated" and spec.synthetic["uniform"].draw == "balanced"
    # the mixed cells at the largest size: 40 real + 120 synthetic, the real images the plan was made for
    assert max(spec.sizes) * spec.ratio == 120


def test_thesis_examples_follow_the_source_study():
    for name in ("animals-thesis.yaml", "fruits-thesis.yaml"):
        spec, _ = load_spec(Path(__file__).parents[1] / "examples" / name)
        assert spec.classifier_preset == "thesis" and spec.sizes == [1000]
        assert spec.budget == "epochs"  # the source study trained every set for 30 epochs
        assert sorted(spec.synthetic) == sorted(["sd21", "realistic-vision-14", "openjourney-v4", "kandinsky-22"])


ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_results_go_where_gitignore_expects_them(path):
    spec, _ = load_spec(path)
    ignored = [line.strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()
               if line.startswith("/") and line.endswith("/")]
    top = Path(spec.out).relative_to(ROOT.resolve()).parts[0]
    assert top in ignored, f"{path.name}: out {spec.out} is not under a git-ignored folder ({ignored})"


def test_the_digits_example_is_the_demos_grid_in_the_demos_results_folder():
    """Its real / artificial / mixed / subset_real cells are the demo's (cells are keyed by the
    classifier config and the training and test sets, all the same here), so after 'synthworth
    demo' only the ratio sweep is trained."""
    from synthworth.demo.digits import FULL, _study_spec

    demo = ROOT.resolve() / "synthworth-demo"
    demo_spec, _ = load_spec(_study_spec(demo, demo / "data" / "digits16",
                                         {g: demo / "synthetic" / g for g in ("dcgan", "ddpm")}, FULL))
    example, _ = load_spec(ROOT / "examples" / "digits-scarce.yaml")
    assert example.out == str(demo / "study")
    grid_axes = {"compositions", "ratios"}
    assert example.model_dump(exclude=grid_axes) == demo_spec.model_dump(exclude=grid_axes)
    assert set(demo_spec.compositions) <= set(example.compositions)
