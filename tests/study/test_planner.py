"""``synthworth plan`` on a simulated study whose per-class answers are known: one class whose
synthetic images equal real ones, one where they are worthless, one whose real curve is flat
(unreadable). The plan must put the budget where the simulation says images are worth most."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from synthworth.cli import main
from synthworth.study.planner_inputs import StudyFolder, class_models, pick_group
from synthworth.study.planner import make_plan
from synthworth.study.by_class import exchange_rates_by_class

SIZES = [45, 90, 180, 360, 720]
PER_CLASS = 1500
SEEDS = 5
NAMES = ["same", "worthless", "flat"]
REAL, MIXED = 90, 180           # real images planned for; the mixture: 90 real + 90 synthetic


def law(n):
    return 1.0 - (1.5 * np.power(np.asarray(n, float), -0.5) + 0.03)


def true_recall(c: int, real: float, synthetic: float) -> float:
    """Class c's recall with ``real`` real images of the balanced set and ``synthetic`` images
    of the generator (all classes); the flat class ignores both."""
    if c == 2:
        return 0.95
    worth = 1.0 if c == 0 else 0.0
    return float(law(real + worth * synthetic))


def simulate(rng: np.random.Generator):
    """results.csv rows and per-image predictions: a cell gets right the images of class c whose
    latent (shared difficulty z plus noise) lies below its recall's quantile, the recall moved by
    a seed effect."""
    labels = np.repeat(np.arange(len(NAMES)), PER_CLASS)
    z = rng.standard_normal(len(labels))
    cells = [("real", "", n, 0.0) for n in SIZES] + [("mixed", "sim", MIXED, 0.5)]
    rows, preds = [], []
    for comp, gen, size, ratio in cells:
        for seed in range(SEEDS):
            ok = np.zeros(len(labels), bool)
            for c in range(len(NAMES)):
                target = true_recall(c, size * (1 - ratio), size * ratio)
                p = np.clip(target + 0.004 * rng.standard_normal(), 0.005, 0.995)
                mine = labels == c
                ok[mine] = 0.5 * z[mine] + math.sqrt(0.75) * rng.standard_normal(mine.sum()) < stats.norm.ppf(p)
            key = f"{comp}-{size}-{seed}"
            rows.append({"study": "sim", "composition": comp, "generator": gen, "filter": "none" if gen else "",
                         "size": size, "ratio": ratio, "seed": seed, "key": key, "accuracy": float(ok.mean()),
                         "per_class_accuracy": json.dumps({n: float(ok[labels == c].mean())
                                                           for c, n in enumerate(NAMES)})})
            preds.append(pd.DataFrame({"key": key, "test_set": "real_test", "test_generator": "",
                                       "index": np.arange(len(labels)), "label": labels,
                                       "predicted": np.where(ok, labels, (labels + 1) % len(NAMES))}))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    results, preds = simulate(np.random.default_rng(11))
    folder = tmp_path_factory.mktemp("study")
    results.to_csv(folder / "results.csv", index=False)
    (folder / "inputs.json").write_text(json.dumps({"real": {"classes": NAMES},
                                                    "synthetic": {"sim": {"path": str(folder / "nowhere")}}}))
    return folder, results, preds


def test_the_budget_goes_where_synthetic_images_are_worth_most(simulated):
    folder, _, _ = simulated
    plan = make_plan(folder, "sim", images=150, real_images=REAL, resamples=400)
    counts = plan["class_counts"]
    assert sum(counts.values()) == plan["total_images"] == 150
    # the flat class cannot be read: a uniform share (150 / 3), said so with the curve's reason
    flat = plan["classes"][2]
    assert counts["flat"] == 50 and flat["share"] == "uniform" and flat["why"].startswith("no rate: the real learning curve")
    assert any("uniform share of 50" in n for n in plan["notes"])
    # the other 100: nearly all to the class whose images equal real ones
    assert counts["same"] >= 90 and counts["worthless"] <= 10
    same, worthless = plan["classes"][0], plan["classes"][1]
    assert same["worth"] == pytest.approx(1.0, abs=0.3) and same["worth_ci_low"] <= 1.0 <= same["worth_ci_high"]
    assert worthless["worth"] == pytest.approx(0.0, abs=0.15)
    assert worthless["worth_ci_low"] <= 0.0 <= worthless["worth_ci_high"]
    # the expected accuracy (over the two readable classes) holds the simulation's own value
    expected = plan["expected"]
    assert expected["over_classes"] == ["same", "worthless"]
    truth = np.mean([true_recall(c, REAL + 3 * counts[NAMES[c]] * (1 if c == 0 else 0), 0) for c in (0, 1)])
    assert expected["ci_low"] <= truth <= expected["ci_high"]
    assert expected["ci_low"] < expected["accuracy"] < expected["ci_high"]
    # better than nothing, and better than spreading the same images evenly (paired interval above 0)
    assert expected["accuracy"] > expected["without_synthetic"]["accuracy"]
    gain = expected["gain_over_uniform"]
    assert gain["diff"] > 0 and gain["ci_low"] > 0
    assert plan["inputs"]["group"]["composition"] == "mixed" and plan["inputs"]["group"]["n_real"] == REAL
    json.dumps(plan, allow_nan=False)   # strict JSON: no NaN or Infinity


def test_a_target_a_real_price_and_refusals(simulated):
    folder, _, _ = simulated
    base = make_plan(folder, "sim", images=150, real_images=REAL, resamples=200)
    target = base["expected"]["accuracy"]
    plan = make_plan(folder, "sim", target_accuracy=target, real_images=REAL, resamples=200)
    assert plan["expected"]["accuracy"] >= target
    # about the greedy part of the 150 (100) buys it; the flat class gets the readable classes' mean
    readable = plan["class_counts"]["same"] + plan["class_counts"]["worthless"]
    assert 80 <= readable <= 110 and plan["class_counts"]["flat"] == round(readable / 2)
    from synthworth.study.planner_inputs import PlanError

    with pytest.raises(PlanError, match="beyond what the model expects"):
        make_plan(folder, "sim", target_accuracy=0.999, real_images=REAL, resamples=200)
    with pytest.raises(PlanError, match="no synthetic images are needed"):
        make_plan(folder, "sim", target_accuracy=0.5, real_images=REAL, resamples=200)
    # a real image at the price of 5 synthetic ones: worth 1 beats 1/5 for 'same', but for the
    # worthless class labelling real images is the better buy
    priced = make_plan(folder, "sim", images=150, real_images=REAL, real_cost=5, resamples=200)
    assert priced["real_to_label"]["same"] == 0 and priced["class_counts"]["same"] > 0
    assert priced["real_to_label"]["worthless"] > 0 and priced["class_counts"]["worthless"] == 0


def test_the_replicates_are_the_per_class_tables(simulated):
    # with per-image predictions, each class's worth interval is the n_eff interval that
    # exchange_rates_by_class.csv gives the same group (the same draws, paired the same way)
    _, results, preds = simulated
    study = StudyFolder(None, results, preds, NAMES, {}, {}, "")
    group = pick_group(results, "sim", REAL)
    models, table = class_models(study, "sim", group, NAMES, resamples=300)
    assert [m.readable for m in models] == [True, True, False]
    same = table[(table["class"] == 0) & (table["composition"] == "mixed")].iloc[0]
    n_eff = models[0].worth_reps * group.n_synthetic + group.n_real
    assert np.percentile(n_eff, [2.5, 97.5]) == pytest.approx([same["n_eff_ci_low"], same["n_eff_ci_high"]])
    assert models[0].worth * group.n_synthetic + group.n_real == pytest.approx(same["n_eff"])
    alone, _ = exchange_rates_by_class(results, predictions=preds, class_names=NAMES, resamples=300)
    assert alone["n_eff_ci_low"].equals(table["n_eff_ci_low"])


def test_the_command_writes_the_plan_and_prints_its_table(simulated, tmp_path, capsys):
    folder, _, _ = simulated
    out = tmp_path / "plan.json"
    assert main(["plan", str(folder), "--generator", "sim", "--images", "150", "--real-images", str(REAL),
                 "--resamples", "200", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    plan = json.loads(out.read_text())
    assert plan["class_counts"]["flat"] == 50
    assert "same" in text and "uniform share" in text and "Expected accuracy" in text
    # --seconds needs the generation time the Dataset records; here there is no Dataset
    assert main(["plan", str(folder), "--generator", "sim", "--seconds", "60", "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--seconds needs the generation time per image" in err
    assert not (tmp_path / "s.json").exists()
    # an unknown generator names the study's
    assert main(["plan", str(folder), "--generator", "nope", "--images", "10", "--out", str(tmp_path / "n.json")]) == 2
    assert "its generators: sim" in capsys.readouterr().err


def test_seconds_buy_images_at_the_rate_the_dataset_records(simulated, tmp_path):
    from synthworth.data.dataset import atomic_folder, write_packed

    folder, results, _ = simulated
    study = tmp_path / "study"
    study.mkdir()
    results.to_csv(study / "results.csv", index=False)
    with atomic_folder(tmp_path / "sim", kind="dataset") as tmp:   # as 'synthworth generate' records it
        write_packed(tmp, np.zeros((3, 8, 8, 1), np.uint8), np.arange(3), np.full(3, "train"), NAMES, [{}] * 3,
                     {"generation": {"sampling": {"seconds": 3.0, "images": 100, "devices": [{"device": "cpu"}]}}})
    (study / "inputs.json").write_text(json.dumps({"real": {"classes": NAMES},
                                                   "synthetic": {"sim": {"path": str(tmp_path / "sim")}}}))
    plan = make_plan(study, "sim", seconds=4.5, real_images=REAL, resamples=200)
    assert plan["total_images"] == 150 and plan["inputs"]["seconds_per_image"] == pytest.approx(0.03)
    assert plan["inputs"]["budget"] == {"seconds": 4.5, "images": 150}
    assert any("4.5 s of sampling at 0.03 s per image" in n for n in plan["notes"])
