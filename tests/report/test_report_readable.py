"""What a reader of the report needs to read it right: intervals inside [0, 1], one number
format, whiskers that do not hide each other, axes on the data, labelled sample grids without
empty cells, the right count of classifiers and headline size, and raw configs folded away."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from resultsdir import results_rows, write_results

from synthworth.engine.plots import save_grid
from synthworth.report import build_report, figures
from synthworth.report.numbers import fmt
from synthworth.report.sections import grid_rows
from synthworth.study.stats import proportion_interval, summarise, t_interval


def page_text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def rows_with(accuracies: dict[tuple[str, str, int], list[float]]) -> pd.DataFrame:
    rows = []
    for (comp, gen, size), values in accuracies.items():
        for seed, acc in enumerate(values):
            rows.append({"composition": comp, "generator": gen, "size": size, "per_class": None, "ratio": 0.0,
                         "augment_factor": None, "seed": seed, "accuracy": acc, "macro_f1": acc, "n_test": 360})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ intervals
def test_accuracy_intervals_stay_inside_0_and_1_where_a_t_interval_would_not():
    data = {("real", "", 100): [1.0, 0.99, 0.98], ("mixed", "gan", 100): [1.0, 1.0, 1.0],
            ("artificial", "gan", 100): [0.0, 0.01, 0.02], ("subset_real", "", 100): [0.969, 0.931, 0.942]}
    summary = summarise(rows_with(data))
    for m in ("accuracy", "macro_f1"):
        low, high, mean = summary[f"{m}_ci_low"], summary[f"{m}_ci_high"], summary[f"{m}_mean"]
        assert ((low >= 0) & (high <= 1) & (low <= mean) & (mean <= high)).all()
    row = summary.set_index("composition").loc
    assert (row["mixed", "accuracy_ci_low"], row["mixed", "accuracy_ci_high"]) == (1.0, 1.0)  # all seeds at 1.0
    assert row["real", "accuracy_ci_high"] < 1.0 < t_interval(data[("real", "", 100)])[3]  # the old one ran past 1
    assert row["artificial", "accuracy_ci_low"] > 0.0 > t_interval(data[("artificial", "gan", 100)])[2]
    # the mean and sd stay the plain ones (the tables and the README print them)
    assert row["real", "accuracy_mean"] == pytest.approx(0.99)


def test_the_interval_of_a_share_moves_0_and_1_half_a_test_image_inwards():
    wide = proportion_interval([1.0, 0.99, 0.98], n=10_000)
    narrow = proportion_interval([1.0, 0.99, 0.98], n=100)
    assert wide[3] > narrow[3] and 0 < narrow[2] < narrow[3] < 1  # fewer test images: 1.0 is less extreme
    assert np.isnan(proportion_interval([0.9])[2]) and np.isnan(proportion_interval([])[0])


# ------------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize("value, kind, text", [
    (0.903, "value", "0.903"), (0.9, "value", "0.900"), (1.7630, "value", "1.76"), (0.0322, "value", "0.0322"),
    (1018.4, "value", "1,018"), (1.6e-14, "value", "1.60e-14"), (0.067, "signed", "+0.0670"),
    (-0.019, "signed", "−0.0190"), (1437, "count", "1,437"), (float("nan"), "value", "—"), (None, "count", "—")])
def test_one_rule_for_every_number(value, kind, text):
    assert fmt(value, kind) == text


def test_the_page_writes_every_table_number_by_that_rule(tmp_path):
    page = build_report(write_results(tmp_path / "res"), tmp_path / "r.html")
    cells = re.findall(r"<td>(.*?)</td>", page_text(page))  # numeric cells (text ones are class='l')
    numbers = [n for cell in cells for n in re.findall(r"[+−-]?\d[\d,]*(?:\.\d+)?(?:e[+-]\d+)?", re.sub("<[^>]+>", " ", cell))]
    decimals = [n for n in numbers if "." in n and "e" not in n]
    assert len(decimals) > 20
    for n in decimals:
        digits = n.lstrip("+−-").replace(".", "").lstrip("0")
        assert len(digits) == 3, n  # 3 significant digits, never 0.5830000 or 0.58


# ------------------------------------------------------------------------------------ figures
def test_size_sweep_whiskers_are_dodged_sideways(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = []
    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, *a, **k: drawn.append(np.asarray(x, float)) or real(self, x, y, *a, **k))
    summary = summarise(pd.DataFrame(results_rows(generators=("gan", "vae"), sizes=(20, 40), seeds=(0, 1, 2))))
    assert figures.size_curves(summary, tmp_path / "s.png") is not None
    assert len(drawn) == 6  # real, subset_real, artificial and mixed per generator
    at_20 = [x[0] for x in drawn]
    assert len(set(np.round(at_20, 6))) == 6  # no two series share an x position
    assert all(15 < x < 27 for x in at_20)  # and each stays near its size on the log axis


def test_accuracy_axes_span_the_data_not_0_to_1():
    low, high = figures.data_limits([0.90, 0.93], [0.95, 0.97], [0.92, 0.95])
    assert 0.85 < low < 0.90 and 0.97 < high <= 1.0
    assert figures.data_limits([np.nan], [np.nan], [np.nan]) == (0.0, 1.0)


def test_whiskers_never_negative_or_nan():
    err = figures.whiskers([0.9, 0.5, 0.7], [0.95, np.nan, 0.6], [0.97, np.nan, 0.8])
    assert (err >= 0).all() and np.isfinite(err).all() and err[0, 0] == 0


# ------------------------------------------------------------------------------------ the page
def test_the_classifier_count_counts_shared_cells_once(tmp_path):
    rows = results_rows(sizes=(20, 40), seeds=(0, 1))
    for r in rows:  # subset_real at 40 is real at 20: one classifier, two cells of the grid
        size = r["size"] // 2 if r["composition"] == "subset_real" else r["size"]
        comp = "real" if r["composition"] == "subset_real" else r["composition"]
        r["key"] = f"{comp}-{r['generator']}-{size}-{r['seed']}"
    distinct = len({r["key"] for r in rows})
    assert distinct < len(rows)
    text = page_text(build_report(write_results(tmp_path / "res", rows=rows), tmp_path / "r.html"))
    assert f"{distinct} classifiers trained ({len(rows)} cells of the grid" in text


def test_the_headline_is_the_specs_first_size_with_every_composition(tmp_path):
    rows = [r for r in results_rows(sizes=(20, 40, 80)) if not (r["size"] == 80 and r["composition"] == "mixed")]
    res = write_results(tmp_path / "res", rows=rows)
    study = yaml.safe_load((res / "study.yaml").read_text())
    study["spec"]["sizes"] = [80, 40, 20]  # 80 lacks mixed: the next listed size is the headline
    (res / "study.yaml").write_text(yaml.safe_dump(study))
    text = page_text(build_report(res, tmp_path / "r.html"))
    assert "Headline, at 40 training images" in text and "training size 40 (headline)" in text
    study["spec"].pop("sizes")
    (res / "study.yaml").write_text(yaml.safe_dump(study))
    assert "Headline, at 20 training images" in page_text(build_report(res, tmp_path / "r.html"))


def test_raw_spec_inputs_and_configs_are_folded_away(tmp_path):
    res = write_results(tmp_path / "res")
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "config.yaml").write_text("train:\n  epochs: 3\n")
    (run / "log.txt").write_text("")
    text = page_text(build_report(res, tmp_path / "r.html", runs={"gan": run}))
    outside = re.sub(r"<details>.*?</details>", "", text, flags=re.S)
    assert text.count("<details>") >= 3 and "<pre>" in text and "<pre>" not in outside
    assert "epochs: 3" in text and "epochs: 3" not in outside


def make_run(root: Path, classes: list[str], epochs: list[int], resolution: int = 8) -> Path:
    """A class-conditional run folder as the generators write it: one row per class."""
    (root / "samples").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "log.txt").write_text("")
    (root / "model" / "synthworth.json").write_text(json.dumps({"class_names": classes, "resolution": resolution}))
    images = np.random.default_rng(0).integers(0, 255, (3 * len(classes), resolution, resolution, 3), np.uint8)
    for e in epochs:
        save_grid(images, root / "samples" / f"grid-epoch-{e:03d}.png", nrow=3, scale=max(1, 64 // resolution))
    return root


def test_run_grids_carry_class_labels_and_no_empty_cells(tmp_path):
    res = write_results(tmp_path / "res")
    runs = {"gan": make_run(tmp_path / "gan", ["cat", "dog"], [1, 5, 10]),
            "ddpm": make_run(tmp_path / "ddpm", ["cat", "dog"], [1, 2])}
    page = build_report(res, tmp_path / "r.html", runs=runs)
    text = page_text(page)
    labels = re.findall(r"<div class='rows'>(.*?)</div>", text)
    assert labels == ["<span>cat</span><span>dog</span>"] * 5  # every grid, its rows named
    assert "<td>—</td>" not in text  # no cell for an epoch a model did not have
    assert "gan: epoch 10 (last saved)" in text and "ddpm: epoch 2 (last saved)" in text
    assert grid_rows(next((page.parent / "r-figures").glob("run-gan-epoch-001.png")), 8, 8) == 2


def test_dataset_grids_have_one_labelled_row_per_class(tmp_path, class_tree, run_prepare):
    class_tree(tmp_path / "src", {"cat": 3, "dog": 1})  # dog has fewer images than a row
    ds = run_prepare(tmp_path / "ds", source="folder", path=tmp_path / "src", size=8, test_fraction=0.0)
    res = write_results(tmp_path / "res")
    page = build_report(res, tmp_path / "r.html", datasets={"real": ds.path})
    assert "<div class='rows'><span>cat</span><span>dog</span></div>" in page_text(page)
    assert grid_rows(page.parent / "r-figures" / "dataset-real.png", 8, 6) == 2  # rows stay on their class


def test_the_page_names_the_interval_the_summary_holds(tmp_path):
    res = write_results(tmp_path / "res")
    assert "a logit-scale Student-t interval" in page_text(build_report(res, tmp_path / "r.html"))
    old = pd.read_csv(res / "summary.csv")  # as an older synthworth wrote it: mean ± t half-width
    half = (old["accuracy_ci_high"] - old["accuracy_ci_low"]) / 2
    old["accuracy_ci_low"], old["accuracy_ci_high"] = old["accuracy_mean"] - half, old["accuracy_mean"] + half
    old.to_csv(res / "summary.csv", index=False)
    assert "a plain Student-t interval over the seeds, as an older synthworth" in page_text(
        build_report(res, tmp_path / "r.html"))
