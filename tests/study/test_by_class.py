"""Per-class exchange rates on a simulated study whose per-class answers are known: a class whose
synthetic images equal real ones (rate 1), one where they are worth half as much (rate 2), one
where they are worthless, and one whose real curve is flat (no rate, and the status says why)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from synthworth.study.by_class import COLUMNS, class_recalls, exchange_rates_by_class
from synthworth.study.exchange import OK, exchange_rates
from synthworth.study.resample import BOTH, SEEDS

SIZES = [50, 100, 200, 400, 800]
PER_CLASS = 1500         # real test images of each class
SEEDS_K, M = 5, 200      # seeds per cell; synthetic images of the artificial cells (their size)


def law(a, b, c):
    return lambda n: 1.0 - (a * np.power(np.asarray(n, float), -b) + c)


# class: (its real recall curve, the recall the artificial cells reach on it)
CURVES = {0: law(2.0, 0.6, 0.05), 1: law(1.2, 0.4, 0.03), 2: lambda n: np.full(np.shape(n), 0.95),
          3: law(1.5, 0.55, 0.04)}
SYNTHETIC = {0: CURVES[0](M),      # synthetic = real: 200 synthetic images worth 200 real ones
             1: 0.02,              # worthless: the generator never draws this class right
             2: 0.95,              # flat real curve: nothing to read
             3: CURVES[3](M / 2)}  # worth half: 200 synthetic images worth 100 real ones (rate 2)
NAMES = ["same", "worthless", "flat", "half"]


def simulate(rng: np.random.Generator, seed_sd: float = 0.004):
    """results and per-image predictions of a study of 4 classes: each cell gets right the images
    of class c whose latent ``rho z_i + sqrt(1 - rho²) eps`` lies below its recall's quantile (z_i:
    the image's difficulty, shared by every cell), the recall moved by a seed effect."""
    labels = np.repeat(np.arange(len(CURVES)), PER_CLASS)
    z = rng.standard_normal(len(labels))
    cells = [("real", "", n) for n in SIZES] + [("artificial", "sim", M)]
    rows, preds = [], []
    for comp, gen, size in cells:
        for seed in range(SEEDS_K):
            ok = np.zeros(len(labels), bool)
            for c in CURVES:
                target = SYNTHETIC[c] if comp == "artificial" else float(CURVES[c](size))
                p = np.clip(target + seed_sd * rng.standard_normal(), 0.005, 0.995)
                mine = labels == c
                ok[mine] = 0.5 * z[mine] + math.sqrt(0.75) * rng.standard_normal(mine.sum()) < stats.norm.ppf(p)
            predicted = np.where(ok, labels, (labels + 1) % len(CURVES))
            key = f"{comp}-{size}-{seed}"
            recall = [float(ok[labels == c].mean()) for c in CURVES]
            rows.append({"composition": comp, "generator": gen, "size": size, "ratio": 0.0, "seed": seed,
                         "key": key, "accuracy": float(ok.mean()),
                         "per_class_accuracy": json.dumps(dict(zip(NAMES, recall)))})
            preds.append(pd.DataFrame({"key": key, "test_set": "real_test", "test_generator": "",
                                       "index": np.arange(len(labels)), "label": labels, "predicted": predicted}))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


@pytest.fixture(scope="module")
def study():
    results, preds = simulate(np.random.default_rng(5))
    table, curves = exchange_rates_by_class(results, predictions=preds, class_names=NAMES, resamples=400)
    return results, preds, table, curves


def row(table, c) -> pd.Series:
    part = table[table["class"] == c]
    assert len(part) == 1
    return part.iloc[0]


def test_recalls_come_from_the_predictions_and_agree_with_the_per_class_record(study):
    results, preds, _, _ = study
    recalls, counts, _ = class_recalls(results, preds)
    assert counts.tolist() == [PER_CLASS] * 4
    for i, r in results.iterrows():
        assert recalls.loc[i].tolist() == pytest.approx(list(json.loads(r["per_class_accuracy"]).values()))
    # the class recalls average (equal class sizes) to the cell's accuracy
    assert recalls.mean(axis=1).to_numpy() == pytest.approx(results["accuracy"].to_numpy())


def test_each_class_gets_its_known_rate_or_says_why_not(study):
    _, _, table, curves = study
    assert list(table.columns) == [c for c in COLUMNS if c != "filter"]
    assert sorted(table["class"]) == [0, 1, 2, 3] and list(table["class_images"]) == [PER_CLASS] * 4
    # synthetic = real: rate about 1, its interval holding 1, read with the test images resampled
    same = row(table, 0)
    assert same["status"].startswith(OK) and same["rate"] == pytest.approx(1.0, abs=0.25)
    assert same["rate_ci_low"] <= 1.0 <= same["rate_ci_high"]
    assert same["interval_covers"] == BOTH
    # worth half: rate about 2, its interval holding 2
    half = row(table, 3)
    assert half["status"].startswith(OK) and half["rate"] == pytest.approx(2.0, rel=0.3)
    assert half["rate_ci_low"] <= 2.0 <= half["rate_ci_high"]
    # worthless: below the class's measured range, a bound and no rate
    worthless = row(table, 1)
    assert worthless["status"].startswith("below range") and math.isnan(worthless["rate"])
    assert math.isnan(worthless["n_eff"]) and worthless["bound"] == "worth fewer than 50 real images"
    # a flat real curve: no rate, and the status says why
    flat = row(table, 2)
    assert flat["status"].startswith("no rate: the real learning curve does not rise beyond seed noise")
    assert math.isnan(flat["rate"]) and flat["curve_status"] == flat["status"]
    # each class's own curve: the known power laws come back at the measured sizes
    for c in (0, 1, 3):
        assert curves[c].status == OK
        assert curves[c].accuracy(SIZES) == pytest.approx(CURVES[c](SIZES), abs=0.03)
    assert curves[2].status != OK and curves[2].params is None
    for c, r in table.set_index("class").iterrows():
        assert r["statement"].startswith(f"Class {NAMES[c]} ({PER_CLASS} real test images): ")


def test_the_per_class_rates_are_the_overall_method_on_one_class(study):
    # the same curve, statuses and bootstrap as exchange_rates run by hand on one class's recalls
    # and its own test images
    results, preds, table, _ = study
    recalls, _, _ = class_recalls(results, preds)
    mine = preds[preds["label"] == 0]
    alone, _ = exchange_rates(results.assign(accuracy=recalls[0], per_class_accuracy=json.dumps([0] * 4)),
                              resamples=400, predictions=mine)
    for col in ("n_eff", "n_eff_ci_low", "n_eff_ci_high", "rate", "rate_ci_low", "rate_ci_high", "status", "chance"):
        assert alone.iloc[0][col] == row(table, 0)[col], col
    assert row(table, 0)["chance"] == pytest.approx(0.25)   # 1 / classes


def test_cells_without_predictions_fall_back_to_their_record_with_seeds_only_intervals(study):
    results, preds, table, _ = study
    older, _ = exchange_rates_by_class(results, predictions=preds[preds["key"] != "real-50-0"], class_names=NAMES,
                                       resamples=400)
    none, _ = exchange_rates_by_class(results, class_names=NAMES, resamples=400)
    for t in (older, none):
        assert set(t["interval_covers"].dropna()) <= {SEEDS, ""} and (t["interval_covers"] == SEEDS).any()
        # the point estimates come from the same recalls
        assert t["n_eff"].to_numpy() == pytest.approx(table["n_eff"].to_numpy(), nan_ok=True)
    assert list(none["class_images"]) == [0] * 4   # no predictions and no confusion matrix: unknown


def test_a_table_without_synthetic_cells_or_classes_is_empty_not_an_error():
    results, preds = simulate(np.random.default_rng(1))
    real = results[results["composition"] == "real"]
    table, _ = exchange_rates_by_class(real, predictions=preds, resamples=50)
    assert table.empty
    bare, _ = exchange_rates_by_class(results.drop(columns="per_class_accuracy"), resamples=50)
    assert bare.empty and "class" in bare.columns


# ------------------------------------------------------------------------------ through the CLI
@pytest.fixture(scope="module")
def tiny_study(digits16, fake_generators, tmp_path_factory):
    """A tiny digits study run by ``synthworth study run``: real and artificial cells (one fake
    generator) at 3 sizes, 2 seeds, the tiny classifier for 2 epochs."""
    import torch
    import yaml

    from synthworth.cli import main

    root = tmp_path_factory.mktemp("by-class")
    spec = {"name": "by-class", "real": str(digits16.path), "synthetic": {"gan": str(fake_generators["gan"])},
            "sizes": [20, 40, 80], "seeds": [0, 1], "compositions": ["real", "artificial"],
            "classifier_preset": "tiny", "classifier": {"train": {"epochs": 2, "batch_size": 16}}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["study", "run", str(root / "spec.yaml"), "-q", "--workers", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "spec-results"


def test_the_study_writes_the_per_class_table_and_the_report_shows_it(tiny_study, tmp_path):
    import shutil

    from synthworth.report.load import ResultsError
    from synthworth.report.page import build_report

    out = tiny_study
    assert (out / "exchange_rates_by_class.parquet").is_file()
    table = pd.read_csv(out / "exchange_rates_by_class.csv", keep_default_na=False, na_values=[""])
    overall = pd.read_csv(out / "exchange_rates.csv", keep_default_na=False, na_values=[""])
    overall = overall[overall["test_set"] == "real_test"]
    inputs = json.loads((out / "inputs.json").read_text())
    names = inputs["real"]["classes"]
    assert list(table.columns[:3]) == ["class", "class_name", "class_images"]
    # one row per class and cell group; every digit's 36 or so test images, 360 in all
    assert len(table) == len(names) * len(overall) and sorted(set(table["class"])) == list(range(len(names)))
    per_class = table.drop_duplicates("class").set_index("class")
    assert per_class["class_images"].sum() == 360 and list(per_class["class_name"].astype(str)) == names
    assert set(table["chance"].round(3)) == {round(1 / len(names), 3)}
    assert set(table["grid"]) == {"complete"} and set(table["planned_cells"]) == {12}
    # the recalls come from the same predictions as the accuracy: weighted by the class's images,
    # each group's class means add up to its overall mean accuracy
    for size, part in table.groupby("size"):
        weighted = (part["accuracy_mean"] * part["class_images"]).sum() / part["class_images"].sum()
        assert weighted == pytest.approx(overall.loc[overall["size"] == size, "accuracy_mean"].iloc[0], abs=1e-9)
    # every row reads or says why not, from its own class's curve (2 epochs: each says near chance,
    # with that class's own best recall)
    assert table["status"].astype(str).str.len().gt(0).all()
    assert table.drop_duplicates("class")["curve_status"].nunique() > 1
    assert (table["statement"].str.startswith("Class ")).all()

    # the report: its section, the figure, a row per class
    page = build_report(out, tmp_path / "report" / "index.html").read_text()
    start = page.index("<h2>Per class: which classes a generator serves</h2>")
    section = page[start:page.index("<h2>", start + 4)]
    assert "exchange_by_class.png" in section and "read from exchange_rates_by_class.csv" in section
    assert (tmp_path / "report" / "index-figures" / "exchange_by_class.png").stat().st_size > 1000
    for name in names:
        assert f"<tr><th class='l'>{name}</th>" in section

    # without the table (an older study), the report computes the same from results.csv
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("exchange_rates_by_class.*"))
    again = build_report(copy, tmp_path / "again" / "index.html").read_text()
    start = again.index("<h2>Per class")
    assert "computed from results.csv" in again[start:again.index("<h2>", start + 4)]

    # every name and status from the table is escaped; a damaged table is one line with working advice
    edited = table.assign(class_name=table["class_name"].astype(str).where(table["class"] != 0, "<b>zero</b>"))
    edited.to_csv(copy / "exchange_rates_by_class.csv", index=False)
    text = build_report(copy, tmp_path / "edited" / "index.html").read_text()
    assert "&lt;b&gt;zero&lt;/b&gt;" in text and "<b>zero</b>" not in text
    edited.assign(rate="many").to_csv(copy / "exchange_rates_by_class.csv", index=False)
    with pytest.raises(ResultsError, match="column 'rate' must hold finite numbers.*delete the file"):
        build_report(copy, tmp_path / "broken" / "index.html")
    # (the advice, deleting the file, gives the folder without the table above: its report computes it)


def test_the_figure_marks_every_class_it_has_no_number_for(study, tmp_path):
    from synthworth.report import by_class

    _, _, table, _ = study
    every = [(i, n) for i, n in enumerate(NAMES + ["unseen"])]   # a class the table has no row for
    lines = by_class.ordered(table, every)
    kinds = {name: kind for name, kind, *_ in lines}
    assert kinds == {"same": by_class.NUMBER, "half": by_class.NUMBER, "worthless": by_class.BELOW,
                     "flat": by_class.UNREAD, "unseen": by_class.MISSING}
    assert [t[0] for t in lines] == ["same", "half", "worthless", "flat", "unseen"]   # best served first
    assert lines[2][2] == pytest.approx(M / 50)   # the bound: 200 synthetic images worth fewer than 50 real
    path = by_class.plot(table, M, every, tmp_path / "f.png", scope="partial: 5 of 8 cells")
    assert path.stat().st_size > 1000
    text = by_class.sentence("sim: artificial", lines)
    assert "served best: same (rate 1.0" in text and "no rate for flat" in text and "no data for unseen" in text
