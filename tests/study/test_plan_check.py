"""The plan checked in a study: a synthetic Dataset drawn as generated keeps its uneven classes in
the cells, the mixtures of the planned and the uniform Dataset hold the same real images, and
``synthworth plan-check`` compares them end to end on a tiny setting (the same numbers as the
study's comparisons table)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from synthworth.cli import main
from synthworth.data.compose import class_sizes, proportional_counts, subset
from synthworth.data.dataset import atomic_folder, write_packed
from synthworth.study.grid import training_set
from synthworth.study.plan import plan_study
from synthworth.study.runner import run_study
from synthworth.study.spec import load_spec

PLANNED = [30, 30, 20, 10, 5, 5, 0, 0, 0, 0]   # 100 images, as a plan might ask


def test_proportional_counts_keep_the_pool_s_shares():
    assert proportional_counts(40, {0: 24, 1: 24, 2: 16, 3: 8, 4: 8}) == {0: 12, 1: 12, 2: 8, 3: 4, 4: 4}
    assert proportional_counts(80, {0: 60, 1: 20}) == {0: 60, 1: 20}   # the whole pool
    assert proportional_counts(3, {0: 1, 1: 1, 2: 1, 3: 1}) == {0: 1, 1: 1, 2: 1, 3: 0}   # ties: lowest index
    with pytest.raises(Exception, match="only 4 exist"):
        proportional_counts(5, {0: 2, 1: 2})


@pytest.fixture(scope="module")
def check_study(digits16, tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    train = digits16.split("train")
    uniform = subset(train, per_class=10, seed=21)
    planned = subset(train, class_counts=dict(enumerate(PLANNED)), seed=22)
    for name, part in (("uniform", uniform), ("planned", planned)):
        with atomic_folder(root / name, kind="dataset") as tmp:
            write_packed(tmp, part.take(np.arange(len(part))), part.labels, np.full(len(part), "train"),
                         part.class_names, [{} for _ in range(len(part))], {"kind": "synthetic"})
    spec = {"name": "check", "real": str(digits16.path), "out": str(root / "results"),
            "synthetic": {"uniform": str(root / "uniform"),
                          "planned": {"path": str(root / "planned"), "draw": "as_generated"}},
            "compositions": ["real", "mixed"], "sizes": [20, 40, 80], "seeds": [0, 1],
            "classifier_preset": "tiny", "classifier": {"train": {"epochs": 2, "batch_size": 16}}}
    import yaml

    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    run_study(root / "spec.yaml", progress=False, workers=1)
    return root


def test_as_generated_cells_keep_the_plan_and_share_the_real_images(check_study):
    spec, _ = load_spec(check_study / "spec.yaml")
    plan = plan_study(spec, build_filters=False)
    cells = {(p.cell.generator, p.cell.size, p.cell.seed): p for p in plan.cells if p.cell.composition == "mixed"}
    pool = plan.inputs.synthetic_pool("planned")
    synthetic = proportional_counts(40, class_sizes(pool))
    real = {c: 4 for c in range(10)}
    a, b = cells[("planned", 80, 0)].train_set, cells[("uniform", 80, 0)].train_set
    assert np.bincount(a.labels, minlength=10).tolist() == [real[c] + synthetic.get(c, 0) for c in range(10)]
    assert np.bincount(b.labels, minlength=10).tolist() == [8] * 10
    assert sum(synthetic.values()) == 40 and synthetic.get(9, 0) == 0 and synthetic[0] > synthetic[5]
    # the real part: the same images in both mixtures (first part of the view: the real pool's rows)
    assert a.arrays[0] is b.arrays[0]
    assert np.array_equal(np.sort(a.row[a.part == 0]), np.sort(b.row[b.part == 0]))
    assert (a.part == 0).sum() == (b.part == 0).sum() == 40
    # the default draw would have rebalanced the planned images
    inputs = replace(plan.inputs, synthetic={k: replace(v, draw="balanced") for k, v in plan.inputs.synthetic.items()})
    balanced = training_set(cells[("planned", 80, 0)].cell, inputs, spec.ratio)
    assert np.bincount(balanced.labels, minlength=10).tolist() != np.bincount(a.labels, minlength=10).tolist()
    # a planned class too small to hold an image out (a plan may give a class one or two) is
    # accepted from a Dataset drawn as generated, refused from a balanced one as before
    from synthworth.errors import DataError
    from synthworth.study.checks import _check_synthetic_test

    syn = plan.inputs.synthetic["planned"]
    lonely = replace(syn, test=syn.test.select(np.flatnonzero(syn.test.labels != 0)))
    _check_synthetic_test("planned", lonely, plan.inputs.real.class_names)
    with pytest.raises(DataError, match="too small to hold out test images"):
        _check_synthetic_test("planned", replace(lonely, draw="balanced"), plan.inputs.real.class_names)


def test_plan_check_compares_them_paired_end_to_end(check_study, tmp_path, capsys):
    results = check_study / "results"
    out = tmp_path / "check.json"
    assert main(["plan-check", str(results), "--planned", "planned", "--uniform", "uniform", "--resamples", "200",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Accuracy: planned" in text and "In real images" in text
    check = json.loads(out.read_text())
    assert (check["size"], check["n_real"], check["n_synthetic"], check["seeds"]) == (80, 40, 40, 2)
    acc = check["accuracy"]
    # the same paired difference and interval as the study's own comparisons table
    comparisons = pd.read_csv(results / "comparisons.csv")
    row = comparisons[(comparisons["kind"] == "generator") & (comparisons["composition_a"] == "mixed")
                      & (comparisons["size"] == 80)].iloc[0]
    assert (row["generator_a"], row["generator_b"]) == ("planned", "uniform")
    assert acc["diff"] == pytest.approx(row["diff"]) and acc["ci_low"] == pytest.approx(row["ci_low"])
    assert acc["ci_high"] == pytest.approx(row["ci_high"]) and acc["method"] == row["method"]
    assert acc["diff"] == pytest.approx(acc["mean_planned"] - acc["mean_uniform"])
    worth = check["real_equivalents"]
    assert set(worth) >= {"n_eff_planned", "n_eff_uniform", "diff", "ci_low", "ci_high"}
    # the balanced Dataset named as the planned one is refused: its cells undo any plan
    assert main(["plan-check", str(results), "--planned", "uniform", "--uniform", "planned"]) == 2
    assert "drawn balanced" in capsys.readouterr().err


def test_real_image_equivalents_of_a_known_difference(tmp_path):
    # A simulated study: real accuracy follows a power law; the planned Dataset's 90 images are
    # worth 90 real ones, the uniform one's 45. n_eff: 180 against 135, a difference of 45.
    import yaml

    from synthworth.study.exchange import exchange_rates
    from synthworth.study.plan_check import check_plan

    def law(n):
        return 1.0 - (1.5 * np.power(float(n), -0.5) + 0.03)

    rng = np.random.default_rng(3)
    rows = []
    cells = [("real", "", n, 0.0, law(n)) for n in (45, 90, 180, 360, 720)]
    cells += [("mixed", "planned", 180, 0.5, law(180)), ("mixed", "uniform", 180, 0.5, law(135))]
    for comp, gen, size, ratio, acc in cells:
        for seed in range(5):
            rows.append({"composition": comp, "generator": gen, "filter": "none" if gen else "", "size": size,
                         "ratio": ratio, "seed": seed, "accuracy": acc + 0.004 * rng.standard_normal()})
    results = pd.DataFrame(rows)
    results.to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "inputs.json").write_text(json.dumps({"real": {"classes": [str(c) for c in range(10)]}}))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"spec": {"synthetic": {
        "planned": {"path": "p", "draw": "as_generated"}, "uniform": {"path": "u"}}}, "classifier": {}}))
    check = check_plan(tmp_path, "planned", "uniform", resamples=400)
    worth = check["real_equivalents"]
    assert worth["n_eff_planned"] == pytest.approx(180, rel=0.15) and worth["n_eff_uniform"] == pytest.approx(135, rel=0.15)
    assert worth["ci_low"] <= 45 <= worth["ci_high"] and worth["ci_low"] > 0 and worth["note"] == ""
    assert check["accuracy"]["method"].startswith("paired t-test")
    # each group's n_eff is the exchange table's
    table, _ = exchange_rates(results.assign(test_set="real_test"), resamples=400)
    planned = table[table["generator"] == "planned"].iloc[0]
    assert worth["n_eff_planned"] == pytest.approx(planned["n_eff"])
