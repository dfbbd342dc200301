"""``synthworth study exchange`` (and the report's answer) on bad results folders.

Each case is one bad input through the real CLI: a refusal is one line, exit code 2, and leaves
every file as it was; an accepted input prints what it can and escapes what it shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd



from adversarial_helpers import resultsdir, snapshot  # noqa: E402  (see conftest.py)
SWEEP = (25, 50, 100, 200)   # real accuracy rises with size in the hand-made rows: a learning curve


def sweep_folder(root: Path, generators=("gan",), sizes=SWEEP) -> Path:
    rows = resultsdir.results_rows(generators=generators, sizes=sizes, seeds=(0, 1, 2),
                                   compositions=("real", "artificial"))
    return resultsdir.write_results(root, rows=rows, generators=generators)


def test_nan_and_inf_accuracies(tmp_path, cli, refused):
    res = sweep_folder(tmp_path / "res")
    table = pd.read_csv(res / "results.csv", dtype=str, keep_default_na=False)
    art = table.index[(table["composition"] == "artificial") & (table["size"] == "100")]
    table.loc[art[0], "accuracy"] = "nan"       # a cell whose score was lost: left out, not averaged as 0
    table.to_csv(res / "results.csv", index=False)
    code, out, err = cli("study", "exchange", res)
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("real_test") and " artificial " in x and " 100 " in x)
    assert line.split()[3:7] == ["100", "0", "100", "2"]   # size, real, synthetic, 2 seeds (not 3)
    assert not re.search(r"\bnan\b", "\n".join(x for x in out.splitlines() if x.startswith(("real_test", "- ["))), re.I)
    table.loc[art[0], "accuracy"] = "inf"
    table.to_csv(res / "results.csv", index=False)
    before = snapshot(tmp_path)
    refused("study", "exchange", res, match=("accuracy", "a number between 0 and 1", "'inf'"))
    assert snapshot(tmp_path) == before


def test_a_single_size_is_refused_naming_the_sizes(tmp_path, refused):
    res = sweep_folder(tmp_path / "res", sizes=(40,))
    before = snapshot(tmp_path)
    refused("study", "exchange", res, match="need real cells at 3 or more sizes; this study has sizes [40]")
    assert snapshot(tmp_path) == before


def test_a_foreign_folder_is_refused_and_left_alone(tmp_path, refused):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not really a jpeg")
    (foreign / "exchange_rates.csv").write_text("who,what\nme,this\n")
    before = snapshot(tmp_path)
    refused("study", "exchange", foreign, match="is not a study results folder")
    refused("study", "exchange", tmp_path / "missing", match="does not exist")
    assert snapshot(tmp_path) == before


def test_a_broken_exchange_table_is_refused_and_the_advice_works(tmp_path, cli, refused):
    res = sweep_folder(tmp_path / "res")
    (res / "exchange_rates.csv").write_text("a,b\n1,2\n")
    before = snapshot(tmp_path)
    refused("study", "exchange", res, match=("exchange_rates.csv lacks the column(s)", "delete it"))
    assert snapshot(tmp_path) == before
    (res / "exchange_rates.csv").unlink()       # the advice, followed
    code, out, err = cli("study", "exchange", res)
    assert code == 0 and "computed from" in out, err


def test_a_generator_named_with_html(tmp_path, cli):
    name = "<script>alert('x')</script>"
    res = sweep_folder(tmp_path / "res", generators=(name,))
    code, out, err = cli("study", "exchange", res)
    assert code == 0, err
    assert f"{name} images alone" in out        # a terminal shows the name as it is
    code, out, err = cli("report", res)
    assert code == 0, err
    page = (res / "report" / "index.html").read_text()
    section = page[page.index("<h2>The answer"):page.index("<h2>", page.index("<h2>The answer") + 5)]
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; images alone" in section
    assert "provenance not recorded" in section


def power_rows(real_bump: float = 0.0, groups=()) -> list[dict]:
    """Results rows on a known learning curve (sizes SWEEP, 3 seeds; ``real_bump`` added to the
    largest size's real cells), plus ``groups``: (composition, filter, size, ratio, mean accuracy)."""
    import numpy as np

    from synthworth.study.exchange import power_law

    template = resultsdir.results_rows(compositions=("real",), sizes=(25,), seeds=(0,))[0]
    acc = lambda n: float(1 - power_law(np.asarray(n, float), 2.0, 0.6, 0.05))  # noqa: E731
    noise = (-0.002, 0.0, 0.002)
    rows = [{**template, "size": n, "seed": s, "filter": "none",
             "accuracy": acc(n) + (real_bump if n == SWEEP[-1] else 0) + noise[s]} for n in SWEEP for s in range(3)]
    for comp, filt, size, ratio, mean in groups:
        mean = mean(acc) if callable(mean) else mean
        rows += [{**template, "composition": comp, "generator": "gan", "filter": filt, "size": size, "ratio": ratio,
                  "seed": s, "accuracy": mean + noise[s]} for s in range(3)]
    return rows


def test_filtered_and_unfiltered_rates_name_their_filter(tmp_path, cli, monkeypatch):
    """Sentences (the statement column), the page and the figure's legend say which pool is filtered."""
    from synthworth.report import figures

    rows = power_rows(groups=[("artificial", "none", 100, 1.0, lambda acc: acc(40)),
                              ("artificial", "confidence", 100, 1.0, lambda acc: acc(80))])
    res = resultsdir.write_results(tmp_path / "res", rows=rows)
    code, out, err = cli("study", "exchange", res)
    assert code == 0, err
    said = [x for x in out.splitlines() if x.startswith("- [")]
    assert len(said) == 2
    assert sum("100 gan (confidence-filtered) images alone are worth" in x for x in said) == 1
    assert sum("100 gan images alone are worth" in x for x in said) == 1
    legends = []
    real_save = figures._save

    def save(fig, path):
        legends.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
        return real_save(fig, path)

    monkeypatch.setattr(figures, "_save", save)
    code, _, err = cli("report", res)
    assert code == 0, err
    page = (res / "report" / "index.html").read_text()
    section = page[page.index("<h2>The answer"):page.index("<h2>", page.index("<h2>The answer") + 5)]
    assert "100 gan (confidence-filtered) images alone are worth" in section and "100 gan images alone" in section
    assert {"generator: gan", "generator: gan (confidence-filtered)"} <= set(legends), legends


def test_a_mixture_below_its_real_part_at_the_largest_size_is_not_worth_more_than_0(tmp_path, cli):
    """Its real part (200) is the largest real size and it scores below it (but above the fitted
    curve's end): it is worth less than its own real part, not "more than 0 real images"."""
    rows = power_rows(real_bump=0.03)
    real = sum(r["accuracy"] for r in rows if r["size"] == SWEEP[-1]) / 3
    rows = power_rows(real_bump=0.03, groups=[("mixed", "none", 400, 0.5, real - 0.01)])
    res = resultsdir.write_results(tmp_path / "res", rows=rows)
    code, out, err = cli("study", "exchange", res)
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("- [")]
    assert "more than 0" not in out
    assert (f"adding 200 gan images to 200 real ones is worth less than its own real part: the accuracy "
            f"({real - 0.01:.3f}) is below the {real:.3f} its 200 real images reach alone") in line
    assert "worse than its real part" in next(x for x in out.splitlines() if x.startswith("real_test"))


def test_a_generator_named_with_a_line_break_cannot_forge_a_line(tmp_path, cli):
    """A name from results.csv with a newline (and a terminal escape) is printed escaped, on its
    own sentence's line: no printed line is the forged one."""
    forged = "- [real_test] At 25 training images, 25 real images are worth 1000 real images"
    name = f"gan\n{forged}\x1b[31m"
    res = sweep_folder(tmp_path / "res", generators=(name,))
    code, out, err = cli("study", "exchange", res)
    assert code == 0, err
    lines = out.splitlines()
    assert not any(line.startswith(forged) for line in lines)
    assert "\x1b" not in out
    sentences = [line for line in lines if line.startswith("- [")]
    assert sentences and all("gan\\n- [real_test] At 25" in line and "\\x1b[31m images alone" in line
                             for line in sentences)
    assert not (res / "exchange_rates.csv").exists()   # printing wrote nothing


def test_the_demos_folder_points_at_its_study(tmp_path, cli, refused):
    """``study exchange DEMO_FOLDER``: the results are in DEMO_FOLDER/study; the error names that
    folder and the command, and the command works."""
    demo = tmp_path / "synthworth demo"
    sweep_folder(demo / "study")
    before = snapshot(tmp_path)
    line = refused("study", "exchange", demo, match=(f"its study's results are in {demo / 'study'}",
                                                     "run: synthworth study exchange "))
    assert snapshot(tmp_path) == before
    import shlex
    command = shlex.split(line.split("run: ", 1)[1])
    assert command[:3] == ["synthworth", "study", "exchange"]
    code, out, err = cli(*command[1:])
    assert code == 0 and "computed from" in out, err


def test_the_page_says_plainly_when_synthetic_data_hurt_and_when_the_curve_does_not_fit(tmp_path, cli):
    """A mixture that reached the accuracy of 41 real images with its 50 real ones: the answer
    section says "Synthetic data hurt" with its cost and interval. A real curve with a jump at
    its last size fails the lack-of-fit test: the page warns, and the terminal marks every row."""
    rows = power_rows(groups=[("mixed", "none", 100, 0.5, lambda acc: acc(41)),
                              ("artificial", "none", 100, 1.0, lambda acc: acc(60))])
    res = resultsdir.write_results(tmp_path / "res", rows=rows)
    code, _, err = cli("report", res)
    assert code == 0, err
    page = (res / "report" / "index.html").read_text()
    section = page[page.index("<h2>The answer"):page.index("<h2>", page.index("<h2>The answer") + 5)]
    assert "<b>Synthetic data hurt</b> in 1 of 1 mixed or augmented results" in section
    assert "adding 50 gan images to 50 real ones cost the equivalent of 9" in section
    assert "passes a lack-of-fit test" in section and "Model check: a monotone interpolation" in section

    bumped = resultsdir.write_results(tmp_path / "bumped", rows=power_rows(
        real_bump=0.05, groups=[("artificial", "none", 100, 1.0, lambda acc: acc(60))]))
    code, out, err = cli("study", "exchange", bumped)
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("real_test"))
    assert "[the curve fails a lack-of-fit test]" in line
    assert "Warning: the real learning curve fails a lack-of-fit test" in out
    code, _, err = cli("report", bumped)
    assert code == 0, err
    page = (bumped / "report" / "index.html").read_text()
    assert "<p class='warning'>The power law fails a lack-of-fit test (chi² = " in page
