"""``synthworth report`` on bad results folders and in the way of other people's files.

Each test is one bad input through the real CLI, with what a user needs: a refused report is
one line with exit code 2 and leaves every file as it was (snapshot before == after); an
accepted one escapes what it prints and says how much of the grid it shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from synthworth import safety
from synthworth.report.output import figures_dir



from adversarial_helpers import resultsdir, snapshot  # noqa: E402  (see conftest.py)


@pytest.fixture
def results(tmp_path) -> Path:
    return resultsdir.write_results(tmp_path / "res")


def first_table(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    return text[:text.index("<table")]


# ------------------------------------------------------------------------------------ in the way
def test_a_foreign_page_at_out_is_kept(results, tmp_path, refused):
    page = tmp_path / "index.html"
    page.write_text("<html>a colleague's page</html>")
    before = snapshot(tmp_path)
    refused("report", results, "--out", page, match=("not a page synthworth wrote", "--out", "index-2.html"))
    assert snapshot(tmp_path) == before


def test_out_pointing_at_a_results_table_is_refused(results, refused):
    before = snapshot(results)
    refused("report", results, "--out", results / "summary.csv", match="not a page synthworth wrote")
    assert snapshot(results) == before


def test_out_pointing_at_a_folder_is_refused(results, tmp_path, refused):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("mine")
    before = snapshot(tmp_path)
    refused("report", results, "--out", tmp_path / "site", match="not a plain file")
    assert snapshot(tmp_path) == before


def test_out_as_a_symlink_to_the_users_file_is_refused(results, tmp_path, refused):
    (tmp_path / "thesis.html").write_text("chapter 1")
    (tmp_path / "link.html").symlink_to(tmp_path / "thesis.html")
    before = snapshot(tmp_path)
    refused("report", results, "--out", tmp_path / "link.html", match="not a plain file")
    assert snapshot(tmp_path) == before


def test_a_foreign_figures_folder_is_kept_and_a_new_out_works(results, tmp_path, refused, cli):
    page = tmp_path / "report.html"
    figures_dir(page).mkdir()
    (figures_dir(page) / "plot.png").write_bytes(b"someone's plot")
    (tmp_path / "figures").mkdir()  # what the old report deleted without asking
    (tmp_path / "figures" / "fig1.png").write_bytes(b"mine too")
    before = snapshot(tmp_path)
    line = refused("report", results, "--out", page, match=("did not write", "report-2.html"))
    assert snapshot(tmp_path) == before
    suggested = line.rsplit("e.g. ", 1)[1].strip()
    code, out, _ = cli("report", results, "--out", suggested)  # the advice works when followed
    assert code == 0 and Path(suggested).is_file()
    assert {k: v for k, v in snapshot(tmp_path).items() if k in before} == before


@pytest.mark.parametrize("earlier", [True, False])
def test_a_second_report_on_the_same_page_is_refused_while_the_first_runs(results, tmp_path, refused, cli, earlier):
    page = tmp_path / "r.html"
    if earlier:
        assert cli("report", results, "--out", page)[0] == 0
    with safety.output_lock(figures_dir(page), what="the report"):  # as a running report holds it
        before = snapshot(tmp_path)
        refused("report", results, "--out", page, match=("in use by another synthworth process", "pid"))
        assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------ not results
def test_a_folder_of_photos_is_not_a_results_folder(tmp_path, make_image, refused):
    photos = tmp_path / "photos"
    make_image(photos / "cat.png")
    before = snapshot(photos)
    refused("report", photos, match="not a study results folder")
    assert snapshot(photos) == before


@pytest.mark.parametrize("content, match", [
    (b"", "holds no finished cell"),
    (b"study,composition,generator,size,seed,accuracy\n", "holds no finished cell"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "results.csv"),
    (b"a,b\n1,2\n", "lacks the column(s) composition"),
])
def test_empty_or_foreign_results_csv(results, content, match, refused):
    (results / "results.csv").write_bytes(content)
    before = snapshot(results)
    refused("report", results, match=match)
    assert snapshot(results) == before


def test_a_missing_summary_table(results, refused):
    (results / "summary.csv").unlink()
    refused("report", results, match=("no summary.csv", "synthworth study run"))
    assert not (results / "report").exists()


@pytest.mark.parametrize("table, column, value", [
    ("results", "accuracy", "<script>alert(1)</script>"),
    ("results", "seed", "1.5"),
    ("summary", "n_seeds", "inf"),
    ("comparisons", "p_value", "javascript:alert(1)"),
    ("metrics", "fid", "$x^2$"),
    ("results", "accuracy", "1e300"),  # a number, but no accuracy: the figures would place text by it
])
def test_csv_cells_of_the_wrong_type(results, table, column, value, refused):
    df = pd.read_csv(results / f"{table}.csv", dtype=str, keep_default_na=False)
    df.loc[0, column] = value
    df.to_csv(results / f"{table}.csv", index=False)
    refused("report", results, match=(f"{table}.csv", repr(column), "row 2", repr(value)))


def test_per_class_accuracy_that_is_not_json(results, refused):
    df = pd.read_csv(results / "results.csv", dtype=str, keep_default_na=False)
    df.loc[3, "per_class_accuracy"] = "[0.5, oops"
    df.to_csv(results / "results.csv", index=False)
    refused("report", results, match=("per_class_accuracy", "row 5"))


@pytest.mark.parametrize("name, content", [("inputs.json", "{broken"), ("inputs.json", '{"real": [1, 2]}'),
                                           ("study.yaml", "- a list\n- not a map\n"), ("runs.json", '{"gan": 3}')])
def test_corrupt_side_files(results, name, content, refused):
    (results / name).write_text(content)
    refused("report", results, match=name)


def test_a_fifo_in_place_of_a_table_is_never_opened(results, refused):
    import os
    import threading

    (results / "summary.csv").unlink()
    os.mkfifo(results / "summary.csv")

    def unblock():  # should the report open the FIFO, let the test fail instead of hanging
        fd = os.open(results / "summary.csv", os.O_WRONLY)
        os.close(fd)

    timer = threading.Timer(60, unblock)
    timer.start()
    try:
        refused("report", results, match=("summary.csv", "not a regular file"))
    finally:
        timer.cancel()


def test_a_missing_run_folder(results, tmp_path, refused):
    refused("report", results, "--run", f"gan={tmp_path / 'nowhere'}", match=("--run gan=", "no such folder"))


# ------------------------------------------------------------------------------------ hostile content
def test_hostile_names_in_the_tables_are_printed_as_text(tmp_path, cli):
    names = ["<img src=x onerror=alert(1)>", "\"'><script>alert(1)</script>", "a&b", "javascript:alert(1)",
             "$\\foo", "$x^2$", "un$balanced", "two\nlines"]
    rows = [r for g in names for r in resultsdir.results_rows(generators=(g,), classes=names)
            if r["generator"] or g == names[0]]
    res = resultsdir.write_results(tmp_path / "res", rows=rows, classes=names, name="<b>study</b>")
    page = tmp_path / "r.html"
    code, _, err = cli("report", res, "--out", page)
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and "<img src=x" not in text and "<b>study</b>" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;b&gt;study&lt;/b&gt;" in text
    assert len(list(figures_dir(page).glob("*.png"))) >= 6  # math-text names did not stop any figure


def test_hostile_names_in_grid_json(results, cli, tmp_path):
    rows = pd.read_csv(results / "results.csv").to_dict("records")
    missing = [{"composition": "<script>x</script>", "generator": "$\\foo", "size": 20, "ratio": None,
                "seed": 0, "state": "failed"}]
    (results / "grid.json").write_text(json.dumps(resultsdir.partial_grid(rows, missing, ["<b>gen</b>"])))
    code, _, err = cli("report", results, "--out", tmp_path / "r.html")
    assert code == 0, err
    head = first_table(tmp_path / "r.html")
    assert "&lt;script&gt;x&lt;/script&gt;" in head and "&lt;b&gt;gen&lt;/b&gt;" in head and "<script>" not in head


def test_a_partial_grid_is_announced_before_any_table(tmp_path, cli):
    rows = resultsdir.results_rows(seeds=(0,))
    missing = [{"composition": "artificial", "generator": "gan", "size": 40, "ratio": 1.0, "seed": 1,
                "state": "interrupted"}]
    res = resultsdir.write_results(tmp_path / "res", rows=rows, grid=resultsdir.partial_grid(rows, missing))
    code, _, _ = cli("report", res)
    assert code == 0
    head = first_table(res / "report" / "index.html")
    assert "Partial results: 8 of 9 cells" in head and "artificial · gan · size 40" in head


def test_a_corrupt_grid_json_never_reads_as_complete(results, cli):
    (results / "grid.json").write_text('{"planned_cells": 16, "finished_cells": ')
    code, _, _ = cli("report", results)
    assert code == 0
    text = (results / "report" / "index.html").read_text()
    assert "Completeness unknown" in first_table(results / "report" / "index.html") and "Complete:" not in text


def test_paths_in_the_results_pointing_outside_are_never_opened(tmp_path, cli, monkeypatch, make_image):
    outside = tmp_path / "outside"
    make_image(outside / "samples" / "grid-epoch-001.png")
    (outside / "config.yaml").write_text("secret: hunter2")
    res = resultsdir.write_results(tmp_path / "res", inputs={
        "real": {"path": "/etc", "classes": ["cat", "dog"]},
        "synthetic": {"gan": {"path": "../outside"}}})
    (res / "runs.json").write_text(json.dumps({"gan": str(outside), "up": "../outside"}))
    from synthworth.data import dataset

    def no_open(cls, path):
        raise AssertionError(f"the report opened {path}")

    monkeypatch.setattr(dataset.Dataset, "open", classmethod(no_open))
    before = snapshot(tmp_path, skip=("res",))
    code, _, err = cli("report", res)
    assert code == 0, err
    text = (res / "report" / "index.html").read_text()
    assert "hunter2" not in text and "pass --run gan=PATH" in text and "pass --dataset real=PATH" in text
    assert not [p for p in figures_dir(res / "report" / "index.html").iterdir() if p.name.startswith(("run-", "dataset-"))]
    assert snapshot(tmp_path, skip=("res",)) == before
