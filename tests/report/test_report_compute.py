"""The report's worth-per-compute section: shown from worth_per_compute.csv, every text escaped."""

from __future__ import annotations

import math

import pandas as pd
from resultsdir import write_results

from synthworth.report.compute import duration
from synthworth.report.page import build_report
from synthworth.study.compute import worth_per_compute

DEVICE = 'cuda: <b>GPU</b> & "Co" <script>x</script>'


def rates() -> pd.DataFrame:
    rows = []
    for gen, n_eff in (("gan", 100.0), ("old", 80.0)):
        rows.append({"test_set": "real_test", "filter": "none", "generator": gen, "composition": "artificial",
                     "size": 40, "n_synthetic": 40, "n_eff": n_eff, "n_eff_ci_low": n_eff - 10,
                     "n_eff_ci_high": n_eff + 10, "status": "in range", "bound": "", "grid": "complete"})
    return pd.DataFrame(rows)


def test_the_section_shows_each_generator_escapes_the_device_and_says_what_is_missing(tmp_path):
    folder = write_results(tmp_path / "results", generators=("gan", "old"))
    inputs = {"synthetic": {
        "gan": {"compute": {"sampling": {"seconds_per_image": 0.9, "images": 10,
                                         "devices": [{"device": DEVICE, "images": 10}]},
                            "train_seconds": None, "training": "a pretrained pipeline: no training cost is known",
                            "dataset_images": 10}},
        "old": {"compute": {"sampling": None, "timing": "generation time not recorded (generated before <v2>)",
                            "train_seconds": None, "training": "training time unknown", "dataset_images": 10}}}}
    table = worth_per_compute(rates(), inputs)
    table.to_csv(folder / "worth_per_compute.csv", index=False)
    gan = table[table["generator"] == "gan"].iloc[0]
    assert gan["n_eff_per_generation_hour"] == 100.0 * 3600 / (40 * 0.9)   # 10,000 per hour

    page = build_report(folder, tmp_path / "report" / "index.html").read_text()
    start = page.index("<h2>Worth per compute")
    section = page[start:page.index("<h2>", start + 1)]
    assert "&lt;b&gt;GPU&lt;/b&gt; &amp; &quot;Co&quot; &lt;script&gt;" in section
    assert "<script>" not in page and "<b>GPU" not in page
    assert "10,000" in section and "[9,000, 11,000]" in section   # the rate and n_eff's interval over the time
    assert "36.0 s" in section                                    # 40 images at 0.9 s
    assert "generation time not recorded (generated before &lt;v2&gt;)" in section
    assert "taken as fixed" in section
    # rows in order of the rate; the one without timing last
    assert section.index("gan") < section.index("<td class='l'>old")


def test_a_study_without_the_table_has_no_section_and_a_damaged_one_says_so(tmp_path):
    folder = write_results(tmp_path / "results")
    assert "Worth per compute" not in build_report(folder, tmp_path / "a.html").read_text()
    (folder / "worth_per_compute.csv").write_text("generator,n_eff\ngan,1\n")
    page = build_report(folder, tmp_path / "b.html").read_text()
    assert "Not shown: worth_per_compute.csv lacks the column(s) n_synthetic, device" in page


def test_durations_read_in_the_largest_unit():
    assert (duration(36.0), duration(90.0), duration(7200.0)) == ("36.0 s", "1.50 min", "2.00 h")
    assert duration(math.nan) == "—"
