"""The report on results folders built by hand: what it may overwrite, how it shows a partial
grid, what it reads, and how it draws and prints names it did not choose."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from resultsdir import partial_grid, results_rows, write_results

from synthworth.cli import main
from synthworth.report import build_report
from synthworth.report.figures import literal
from synthworth.report.output import figures_dir
from synthworth.safety import safe_name


def report(*args) -> int:
    return main(["report", *map(str, args)])


def page_text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[set[str]] = []
        self.data: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append({name for name, _ in attrs})

    def handle_data(self, data):
        self.data.append(data)


def tags(page: Path) -> Tags:
    parser = Tags()
    parser.feed(page_text(page))
    return parser


# ------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("name", ["$x^2$", "$\\foo$", "a $ b", "$", "two\nlines", "tab\there", "\\$x$", "_hidden"])
def test_literal_labels_draw_as_themselves(name, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cbook

    label = literal(name)
    assert "\n" not in label and "\t" not in label and not cbook.is_math_text(label)
    fig, ax = plt.subplots()
    ax.set_title(label)
    ax.set_xticks([0], [label])
    ax.plot([0], [0], label="x " + label)
    ax.legend()
    fig.savefig(tmp_path / "ok.png")  # would raise on math text it cannot parse
    plt.close(fig)
    drawn = fig.axes[0].title._preprocess_math(fig.axes[0].title.get_text())
    assert drawn == (" ".join(name.split()), False)


def test_unescaped_math_names_do_break_matplotlib(tmp_path):
    """The reason for literal(): without it this name stops the whole report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title("$\\foo$")
    with pytest.raises(ValueError):
        fig.savefig(tmp_path / "bad.png")
    plt.close(fig)


# ------------------------------------------------------------------------------------ ownership
def test_report_refuses_a_foreign_page_and_its_advice_works(tmp_path, capsys):
    results = write_results(tmp_path / "res")
    page = tmp_path / "notes.html"
    page.write_text("<html>my own notes</html>")
    assert report(results, "--out", page) == 2
    err = capsys.readouterr().err
    assert "not a page synthworth wrote" in err and "notes-2.html" in err
    assert page.read_text() == "<html>my own notes</html>"
    assert report(results, "--out", tmp_path / "notes-2.html") == 0


def test_report_refuses_a_foreign_figures_folder(tmp_path, capsys):
    results = write_results(tmp_path / "res")
    page = tmp_path / "out" / "index.html"
    figures_dir(page).mkdir(parents=True)
    (figures_dir(page) / "holiday.png").write_bytes(b"mine")
    assert report(results, "--out", page) == 2
    assert "holds files the report did not write" in capsys.readouterr().err
    assert (figures_dir(page) / "holiday.png").read_bytes() == b"mine" and not page.exists()


def test_report_leaves_a_plain_figures_folder_beside_the_page_alone(tmp_path):
    results = write_results(tmp_path / "res")
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "thesis-plot.png").write_bytes(b"mine")
    assert report(results, "--out", tmp_path / "index.html") == 0
    assert (figures / "thesis-plot.png").read_bytes() == b"mine"


def test_report_rewrites_its_own_page_and_figures(tmp_path):
    results = write_results(tmp_path / "res")
    page = tmp_path / "r.html"
    assert report(results, "--out", page) == 0
    (figures_dir(page) / "stale.png.part").write_bytes(b"half-written by a killed report")
    assert report(results, "--out", page) == 0
    assert not (figures_dir(page) / "stale.png.part").exists()
    assert "<meta name='generator' content='synthworth" in page_text(page)


def test_a_page_of_synthworth_0_1_is_recognised(tmp_path):
    results = write_results(tmp_path / "res")
    page = tmp_path / "index.html"
    page.write_text("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>synthworth report: x"
                    "</title></head><body></body></html>\n")
    assert report(results, "--out", page) == 0
    assert "generator" in page_text(page)


def test_two_pages_in_one_folder_keep_their_own_figures(tmp_path):
    one = write_results(tmp_path / "one", name="one")
    two = write_results(tmp_path / "two", name="two", rows=results_rows(sizes=(30,), study="two"))
    assert report(one, "--out", tmp_path / "one.html") == 0
    before = (figures_dir(tmp_path / "one.html") / "real_vs_artificial.png").read_bytes()
    assert report(two, "--out", tmp_path / "two.html") == 0
    assert (figures_dir(tmp_path / "one.html") / "real_vs_artificial.png").read_bytes() == before


# ------------------------------------------------------------------------------------ completeness
def banner_then_tables(page: Path) -> tuple[str, str]:
    text = page_text(page)
    first_table = text.index("<table")
    return text[:first_table], text[first_table:]


def test_a_complete_grid_says_so(tmp_path):
    results = write_results(tmp_path / "res")
    page = build_report(results, tmp_path / "r.html")
    before, _ = banner_then_tables(page)
    assert "Complete:</b> 16 of 16 cells" in before and "partial" not in page_text(page).lower()


def test_a_partial_grid_says_n_of_m_before_any_table_and_in_every_caption(tmp_path):
    rows = results_rows(seeds=(0,))
    missing = [{"composition": "mixed", "generator": "gan", "size": 40, "ratio": 0.5, "seed": s, "state": "not started"}
               for s in (1, 2, 3)] + [{"composition": "real", "generator": None, "size": 20, "ratio": 0.0,
                                       "seed": 1, "state": "failed"}]
    results = write_results(tmp_path / "res", rows=rows, grid=partial_grid(rows, missing, ["gan"]))
    page = build_report(results, tmp_path / "r.html")
    before, after = banner_then_tables(page)
    assert "Partial results: 8 of 12 cells" in before
    assert "mixed · gan · size 40 · ratio 0.5: seeds 1–3" in before and "(failed)" in before
    assert "metrics missing for: gan" in before
    captions = [d for d in tags(page).data if "accuracy" in d.lower()]
    assert captions
    text = page_text(page)
    assert text.count("<figcaption><span class='scope'>[partial: 8 of 12 cells]</span>") >= 5
    assert "Complete" not in text


def test_a_long_missing_list_is_condensed(tmp_path):
    rows = results_rows(seeds=(0,))
    missing = [{"composition": "artificial", "generator": f"g{i}", "size": 20, "ratio": 1.0, "seed": s,
                "state": "interrupted"} for i in range(30) for s in range(5)]
    results = write_results(tmp_path / "res", rows=rows, grid=partial_grid(rows, missing))
    before, _ = banner_then_tables(build_report(results, tmp_path / "r.html"))
    assert "… and 18 more group(s), 90 cell(s) in all" in before
    assert before.count("<li>") < 20


def test_without_grid_json_completeness_is_unknown(tmp_path):
    results = write_results(tmp_path / "res", grid=None)
    page = build_report(results, tmp_path / "r.html")
    before, _ = banner_then_tables(page)
    assert "Completeness unknown" in before and "no grid.json" in before
    assert "Complete:" not in page_text(page)
    assert "[grid completeness unknown]" in page_text(page)


@pytest.mark.parametrize("grid", ["{not json", "[1, 2]", json.dumps({"planned_cells": "all"}),
                                  json.dumps({"planned_cells": 3, "finished_cells": 9, "planned_trainings": 3,
                                              "finished_trainings": 3, "complete": True, "missing": []})])
def test_a_corrupt_grid_json_gives_the_unknown_banner(tmp_path, grid):
    results = write_results(tmp_path / "res", grid=grid)
    before, _ = banner_then_tables(build_report(results, tmp_path / "r.html"))
    assert "Completeness unknown" in before and "grid.json is unreadable" in before


def test_grid_json_that_disagrees_with_results_is_not_called_complete(tmp_path):
    rows = results_rows()
    grid = {"planned_cells": 30, "finished_cells": 30, "planned_trainings": 30, "finished_trainings": 30,
            "complete": True, "missing": [], "metrics_missing": []}
    results = write_results(tmp_path / "res", rows=rows, grid=grid)
    before, _ = banner_then_tables(build_report(results, tmp_path / "r.html"))
    assert "Complete:" not in before and "results.csv holds 16 cell(s) but grid.json counts 30" in before


def test_results_csv_counts_are_a_cross_check(tmp_path):
    rows = [dict(r, planned_cells=40, finished_cells=len(results_rows())) for r in results_rows()]
    results = write_results(tmp_path / "res", rows=rows, grid=None)
    before, _ = banner_then_tables(build_report(results, tmp_path / "r.html"))
    assert "Partial results: 16 of 40 cells" in before


# ------------------------------------------------------------------------------------ names and paths
HOSTILE = ["<script>alert(1)</script>", "<b>bold</b>", "\"quoted\"", "it's", "a&b", "javascript:alert(1)",
           "$x^2$", "$\\foo", "line\nbreak"]


def test_hostile_names_are_escaped_in_the_page_and_literal_in_figures(tmp_path):
    rows = []
    for i, gen in enumerate(HOSTILE[:4] + HOSTILE[7:]):
        for r in results_rows(generators=(gen,), classes=HOSTILE, study=HOSTILE[0]):
            if r["generator"] or i == 0:
                rows.append(r)
    results = write_results(tmp_path / "res", rows=rows, classes=HOSTILE, name="<script>x</script>$y$")
    page = build_report(results, tmp_path / "r.html")
    parsed = tags(page)
    assert "script" not in parsed.tags
    assert all(a <= {"src", "alt", "style", "class", "lang", "charset", "name", "content"} for a in parsed.attrs)
    shown = "".join(parsed.data)
    for name in HOSTILE[:6]:
        assert name in shown  # printed as text, so the reader sees the real name
    text = page_text(page)
    assert "<script>" not in text and "<b>bold</b>" not in text
    srcs = [part.split("'")[0] for part in text.split("src='")[1:]]
    assert srcs and all(src.startswith("./r-figures/") and (page.parent / src).is_file() for src in srcs)
    assert len(srcs) >= 6  # every figure was drawn despite the math-text names


def test_numbers_read_back_from_csv_are_checked(tmp_path, capsys):
    results = write_results(tmp_path / "res")
    summary = pd.read_csv(results / "summary.csv", dtype=str)
    summary.loc[0, "accuracy_mean"] = "<script>alert(1)</script>"
    summary.to_csv(results / "summary.csv", index=False)
    assert report(results, "--out", tmp_path / "r.html") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "accuracy_mean" in err[0] and "row 2" in err[0]
    assert not (tmp_path / "r.html").exists()


def make_dataset(root: Path, class_tree, run_prepare) -> Path:
    class_tree(root / "src", {"cat": 2, "dog": 2})
    return run_prepare(root / "ds", source="folder", path=root / "src", size=8, test_fraction=0.5).path


def test_datasets_named_in_the_results_are_read_only_inside_them(tmp_path, class_tree, run_prepare, monkeypatch):
    outside = make_dataset(tmp_path / "elsewhere", class_tree, run_prepare)
    results = write_results(tmp_path / "res", inputs={"real": {"path": str(outside), "classes": ["cat", "dog"]},
                                                      "synthetic": {"../../x": {"path": "../elsewhere/ds"}}})
    from synthworth.data import dataset

    opened = []
    real_open = dataset.Dataset.open
    monkeypatch.setattr(dataset.Dataset, "open", classmethod(lambda cls, p: opened.append(p) or real_open(p)))
    page = build_report(results, tmp_path / "r.html")
    assert opened == [] and "pass --dataset real=PATH" in page_text(page)
    assert not list(figures_dir(page).glob("dataset-*"))
    # named explicitly, it is shown
    assert report(results, "--out", tmp_path / "s.html", "--dataset", f"real={outside}") == 0
    assert (figures_dir(tmp_path / "s.html") / "dataset-real.png").is_file()
    # inside the results folder, it is shown too
    inner = make_dataset(results / "data", class_tree, run_prepare)
    (results / "inputs.json").write_text(json.dumps({"real": {"path": "data/ds", "classes": ["cat", "dog"]}}))
    assert inner.is_dir() and report(results, "--out", tmp_path / "t.html") == 0
    assert (figures_dir(tmp_path / "t.html") / "dataset-real.png").is_file()


def test_run_folders_from_runs_json_only_inside_results(tmp_path, make_image):
    results = write_results(tmp_path / "res")
    outside = tmp_path / "run-out"
    make_image(outside / "samples" / "grid-epoch-001.png")
    inside = results / "runs" / "gan"
    make_image(inside / "samples" / "grid-epoch-001.png")
    (inside / "plots").mkdir()
    secret = tmp_path / "secret.png"
    make_image(secret)
    (inside / "plots" / "loss.png").symlink_to(secret)
    (inside / "config.yaml").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "secret.txt").write_text("password: hunter2")
    (results / "runs.json").write_text(json.dumps({"far": str(outside), "../../evil": "runs/gan"}))
    page = build_report(results, tmp_path / "r.html")
    names = sorted(p.name for p in figures_dir(page).iterdir())
    assert [n for n in names if n.startswith("run-")] == [f"run-{safe_name('../../evil')}-epoch-001.png"]
    assert all(not n.startswith("run-far") for n in names) and not any("loss" in n for n in names)
    text = page_text(page)
    assert "hunter2" not in text and "pass --run far=PATH" in text
    assert not (tmp_path / "evil").exists() and not (results / "evil").exists()
