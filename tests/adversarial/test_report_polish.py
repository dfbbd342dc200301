"""``synthworth report`` on inputs that could break the report's newer parts: class names that
are HTML in a grid's labels, intervals that are missing or do not hold the mean, and a run
folder whose grid or model description does not match. Each through the real CLI: the page is
written, escapes what it prints and never labels a grid it cannot vouch for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from synthworth.engine.plots import save_grid
from synthworth.report.output import figures_dir



from adversarial_helpers import resultsdir, snapshot  # noqa: E402  (see conftest.py)
HOSTILE = ["<script>alert(1)</script>", "a&b\"'", "<img src=x onerror=alert(1)>"]


def make_run(root: Path, classes, rows: int | None = None, resolution: int = 8) -> Path:
    (root / "samples").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "log.txt").write_text("")
    (root / "model" / "synthworth.json").write_text(json.dumps({"class_names": classes, "resolution": resolution}))
    n = 2 * (rows if rows is not None else len(classes))
    images = np.random.default_rng(0).integers(0, 255, (n, resolution, resolution, 3), np.uint8)
    save_grid(images, root / "samples" / "grid-epoch-001.png", nrow=2, scale=max(1, 64 // resolution))
    return root


def test_html_in_class_names_is_escaped_in_grid_labels(tmp_path, cli, class_tree, run_prepare):
    res = resultsdir.write_results(tmp_path / "res", classes=HOSTILE)
    run = make_run(tmp_path / "run", HOSTILE)
    class_tree(tmp_path / "src", {"a": 2, "b": 2})
    ds = run_prepare(tmp_path / "ds", source="folder", path=tmp_path / "src", size=8, test_fraction=0.0)
    page = tmp_path / "r.html"
    code, _, err = cli("report", res, "--out", page, "--run", f"gan={run}", "--dataset", f"real={ds.path}")
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and "<img src=x" not in text
    assert ("<div class='rows'><span>&lt;script&gt;alert(1)&lt;/script&gt;</span><span>a&amp;b&quot;&#x27;</span>"
            "<span>&lt;img src=x onerror=alert(1)&gt;</span></div>") in text
    assert "<div class='rows'><span>a</span><span>b</span></div>" in text  # the Dataset's own labels


def test_a_summary_with_missing_intervals_still_reports(tmp_path, cli):
    res = resultsdir.write_results(tmp_path / "res")
    summary = pd.read_csv(res / "summary.csv")
    for col in [c for c in summary.columns if c.endswith(("_ci_low", "_ci_high", "_sd"))]:
        summary[col] = np.nan  # one seed per cell, or a hand-edited table: no interval anywhere
    summary.to_csv(res / "summary.csv", index=False)
    before = snapshot(res)
    page = tmp_path / "r.html"
    code, _, err = cli("report", res, "--out", page)
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert "no interval" in text and "NaN" not in text and ">nan" not in text.lower()
    assert (figures_dir(page) / "size_sweep.png").is_file() and (figures_dir(page) / "real_vs_artificial.png").is_file()
    assert snapshot(res) == before


def test_an_interval_that_does_not_hold_the_mean_draws_without_failing(tmp_path, cli):
    res = resultsdir.write_results(tmp_path / "res")
    summary = pd.read_csv(res / "summary.csv")
    summary["accuracy_ci_low"] = summary["accuracy_mean"] + 0.01  # edited by hand: above the mean
    summary["accuracy_ci_high"] = summary["accuracy_mean"] + 0.02
    summary.to_csv(res / "summary.csv", index=False)
    page = tmp_path / "r.html"
    code, _, err = cli("report", res, "--out", page)
    assert code == 0, err
    assert len(list(figures_dir(page).glob("*.png"))) >= 5


def test_a_run_grid_that_does_not_match_its_classes_is_shown_unlabelled(tmp_path, cli):
    res = resultsdir.write_results(tmp_path / "res")
    wrong_rows = make_run(tmp_path / "wrong", ["cat", "dog"], rows=3)  # 3 rows drawn, 2 classes claimed
    corrupt = make_run(tmp_path / "corrupt", ["cat", "dog"])
    (corrupt / "model" / "synthworth.json").write_text("{not json")
    odd = make_run(tmp_path / "odd", ["cat", "dog"])
    (odd / "model" / "synthworth.json").write_text(json.dumps({"class_names": "cat,dog", "resolution": 8}))
    page = tmp_path / "r.html"
    code, _, err = cli("report", res, "--out", page, "--run", f"wrong={wrong_rows}", "--run", f"corrupt={corrupt}",
                       "--run", f"odd={odd}")
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert "class='rows'" not in text  # no grid labelled with names it cannot vouch for
    assert all(f"{name}: epoch 1" in text for name in ("wrong", "corrupt", "odd"))  # every grid still shown
