"""The training budget of a study's cells (spec key ``budget``), through the CLI: ``steps`` (the
default) gives every size the same optimizer steps, ``converge`` stops early on a validation split
of the cell's own training set and records what it used, ``epochs`` (the default of earlier
versions, set explicitly) keeps the keys of results stored before budgets existed."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from synthworth.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


def results(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])


def old_cell_key(payload: dict) -> str:
    """Cell keys as computed before budgets existed (synthworth.study.grid.cell_key of 0.x main):
    BLAKE2b-80 of exactly these five entries."""
    assert set(payload) == {"classifier", "train_set", "test_set", "threads", "synthworth_version"}
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest()


def test_steps_budget_gives_every_size_the_same_optimizer_steps(write_spec, tmp_path):
    spec = write_spec(compositions=["real"], sizes=[20, 80], seeds=[0])
    out = tmp_path / "spec-results"
    # epochs (explicit): the larger set runs more steps (2 epochs of 16-image batches: 4 and 10)
    assert main(["study", "run", str(spec), "-q", "budget=epochs"]) == 0
    epochs = results(out).set_index("size")
    assert list(epochs["budget"]) == ["epochs", "epochs"]
    assert epochs.loc[20, "optimizer_steps"] == 4 and epochs.loc[80, "optimizer_steps"] == 10
    # steps, derived from the largest size: 10 steps for both (5 epochs of 20 images, 2 of 80)
    assert main(["study", "run", str(spec), "-q", "budget=steps"]) == 0
    steps = results(out).set_index("size")
    assert list(steps["budget"]) == ["steps", "steps"]
    assert list(steps["optimizer_steps"]) == [10, 10] and list(steps["budget_steps"]) == [10, 10]
    assert steps.loc[20, "epochs_run"] == 5 and steps.loc[80, "epochs_run"] == 2
    assert set(steps["key"]).isdisjoint(epochs["key"])  # another budget, other cells
    # an explicit count, not a multiple of an epoch: the last epoch is cut short
    assert main(["study", "run", str(spec), "-q", "budget=steps", "budget_steps=7"]) == 0
    seven = results(out).set_index("size")
    assert list(seven["optimizer_steps"]) == [7, 7]
    assert seven.loc[80, "epochs_run"] == pytest.approx(7 / 5)


def test_converge_stops_early_and_records_what_it_used(write_spec, tmp_path):
    spec = write_spec(compositions=["real"], sizes=[40], seeds=[0], budget="converge", budget_steps=300,
                      budget_patience=1)
    out = tmp_path / "spec-results"
    assert main(["study", "run", str(spec), "-q"]) == 0
    row = results(out).iloc[0]
    assert row["budget"] == "converge" and row["budget_steps"] == 300
    # 40 images, 4 per class: one of each class held out, 30 trained on in 2 batches an epoch
    assert row["n_validation"] == 10
    assert row["optimizer_steps"] < 300  # stopped before the cap ...
    assert row["epochs_run"] == row["optimizer_steps"] / 2
    # ... one epoch (the patience) after the best, whose weights were kept
    assert row["best_epoch"] == row["epochs_run"] - 1 and row["steps_at_best"] == row["best_epoch"] * 2
    cell = json.loads((out / "cells" / row["key"] / "cell.json").read_text())
    assert cell["hashed"]["budget"] == {"mode": "converge", "steps": 300, "patience": 1, "validation": 0.2}
    log = (out / "cells" / row["key"] / "run" / "log.txt").read_text()
    assert f"finished after {int(row['optimizer_steps'])} steps" in log


def test_a_spec_without_budget_gives_every_size_the_same_optimizer_steps(write_spec, tmp_path):
    """The default budget is steps: every size and composition trains as many optimizer steps as
    the largest size does under its epochs (2 epochs of 80 images in batches of 16: 10 steps), so
    the learning curve measures data, not compute."""
    spec = write_spec(compositions=["real", "mixed", "subset_real"], sizes=[20, 40, 80], seeds=[0])
    out = tmp_path / "spec-results"
    assert main(["study", "run", str(spec), "-q"]) == 0
    rows = results(out)
    assert len(rows) == 3 * (1 + 2 + 1)  # per size: real, mixed per generator (2), subset_real
    assert set(rows["budget"]) == {"steps"}
    assert list(rows["optimizer_steps"]) == [10] * len(rows) and list(rows["budget_steps"]) == [10] * len(rows)
    small = rows[(rows["composition"] == "real") & (rows["size"] == 20)].iloc[0]
    assert small["epochs_run"] == 5  # 20 images: 2 batches an epoch, so 5 epochs for 10 steps
    cell = json.loads((out / "cells" / small["key"] / "cell.json").read_text())
    assert cell["hashed"]["budget"] == {"mode": "steps", "steps": 10}


def test_epochs_budget_keeps_the_keys_of_results_stored_before_budgets(write_spec, tmp_path, capsys):
    spec = write_spec(compositions=["real", "mixed"], sizes=[20], seeds=[0], budget="epochs")
    out = tmp_path / "spec-results"
    assert main(["study", "run", str(spec), "-q"]) == 0
    before = results(out)
    assert set(before["budget"]) == {"epochs"}
    for key in before["key"]:
        cell = json.loads((out / "cells" / key / "cell.json").read_text())
        assert old_cell_key(cell["hashed"]) == key
    capsys.readouterr()
    # budget: epochs given again on the command line is the same study: every cell already complete
    assert main(["study", "run", str(spec), "-q", "budget=epochs"]) == 0
    assert "0 cell(s) trained, 3 already complete" in capsys.readouterr().out
    assert list(results(out)["key"]) == list(before["key"])
    # the same spec without budget is another study (steps): its cells are trained anew
    spec = write_spec(compositions=["real", "mixed"], sizes=[20], seeds=[0])
    assert main(["study", "run", str(spec), "-q"]) == 0
    assert "3 cell(s) trained, 0 already complete" in capsys.readouterr().out
    assert set(results(out)["key"]).isdisjoint(before["key"])


def test_budget_steps_without_a_steps_budget_is_refused(write_spec, capsys):
    spec = write_spec(compositions=["real"], seeds=[0], budget="epochs", budget_steps=50)
    assert main(["study", "run", str(spec), "-q"]) != 0
    err = capsys.readouterr().err
    assert "budget_steps 50 applies to budget: steps or converge" in err
