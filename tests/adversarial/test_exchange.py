"""``synthbench study exchange`` (and the report's answer) on bad results folders.

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
    demo = tmp_path / "synthbench demo"
    sweep_folder(demo / "study")
    before = snapshot(tmp_path)
    line = refused("study", "exchange", demo, match=(f"its study's results are in {demo / 'study'}",
                                                     "run: synthbench study exchange "))
    assert snapshot(tmp_path) == before
    import shlex
    command = shlex.split(line.split("run: ", 1)[1])
    assert command[:3] == ["synthbench", "study", "exchange"]
    code, out, err = cli(*command[1:])
    assert code == 0 and "computed from" in out, err
