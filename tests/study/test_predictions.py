"""Per-image predictions kept in every cell folder, read back for a whole study, and old cells
without them: loaded, named as lacking, and given them by the next run without retraining."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthworth.cli import main
from synthworth.errors import SynthworthError
from synthworth.study import StudyWarning, plan_study, read_predictions
from synthworth.study.spec import load_spec

pytestmark = pytest.mark.usefixtures("single_thread")

COMPOSITIONS = ["real", "artificial", "mixed"]


def _run(spec, capsys) -> str:
    assert main(["study", "run", str(spec), "-q", "--workers", "1"]) == 0
    return capsys.readouterr().out


def _parquet(path) -> pd.DataFrame:
    return pd.read_parquet(path)


@pytest.fixture
def study(write_spec, tmp_path, capsys):
    """A tiny study run through the CLI: real, artificial and mixed cells, 2 generators, 1 seed."""
    spec = write_spec(compositions=COMPOSITIONS, seeds=[0])
    out_text = _run(spec, capsys)
    assert "5 cell(s) trained" in out_text
    return spec, tmp_path / "spec-results"


def test_every_cell_keeps_its_predictions_and_they_give_its_accuracy_exactly(study):
    spec, out = study
    plan = plan_study(load_spec(spec)[0])
    test = plan.inputs.test
    results = pd.read_parquet(out / "results.parquet")
    evals = pd.read_parquet(out / "evaluations.parquet")
    assert len(results) == 5
    for row in results.itertuples():
        folder = out / "cells" / row.key
        real = _parquet(folder / "predictions-real_test.parquet")
        assert len(real) == len(test) == row.n_test == 360
        assert real["index"].tolist() == list(range(360)) and (real["label"].to_numpy() == test.labels).all()
        assert float((real["predicted"] == real["label"]).mean()) == row.accuracy  # exactly, not approx
        assert real["p_true"].between(0, 1).all()
        right = real[real["predicted"] == real["label"]]
        assert (right["p_true"] >= 1 / 10 - 1e-6).all()  # the predicted class has the largest probability
        meta = json.loads(pq.read_metadata(folder / "predictions-real_test.parquet").metadata[b"synthworth"])
        assert meta["key"] == row.key and meta["test_fingerprint"] == test.fingerprint
        # The synthetic test split: a synthetic cell on its generator's, a real cell on every generator's.
        scored = evals[(evals["key"] == row.key) & (evals["test_set"] == "synthetic_test")]
        gens = [row.generator] if row.composition != "real" else ["ddpm", "gan"]
        assert sorted(scored["test_generator"]) == sorted(gens)
        for ev in scored.itertuples():
            synth = _parquet(folder / f"predictions-synthetic_test-{ev.test_generator}.parquet")
            assert len(synth) == ev.n == len(plan.inputs.synthetic[ev.test_generator].test) == 40
            assert float((synth["predicted"] == synth["label"]).mean()) == ev.accuracy
        if row.composition != "real":
            assert scored["accuracy"].iloc[0] == row.synthetic_accuracy

    frame = read_predictions(out)
    assert frame.attrs["lacking"].empty
    assert len(frame) == int(evals["n"].sum()) == 5 * 360 + 6 * 40
    assert {"key", "composition", "generator", "size", "seed", "test_set", "test_generator", "index", "label",
            "predicted", "p_true"} <= set(frame.columns)
    recomputed = (frame.assign(right=frame["predicted"] == frame["label"])
                  .groupby(["key", "test_set", "test_generator"])["right"].mean())
    stored = evals.assign(test_generator=evals["test_generator"].fillna("")) \
        .set_index(["key", "test_set", "test_generator"])["accuracy"]
    assert (recomputed.sort_index() == stored.sort_index()).all()
    mixed = frame[(frame["composition"] == "mixed") & (frame["test_set"] == "real_test")]
    assert set(mixed["generator"]) == {"ddpm", "gan"} and set(mixed["size"]) == {40} and set(mixed["seed"]) == {0}
    (out / "evaluations.parquet").unlink()  # an older folder with the CSV table only reads the same
    from_csv = read_predictions(out)
    assert from_csv.attrs["lacking"].empty and len(from_csv) == len(frame)
    assert (from_csv["p_true"].to_numpy() == frame["p_true"].to_numpy()).all()


def test_an_old_cell_without_predictions_loads_says_so_and_the_next_run_adds_them(study, capsys):
    spec, out = study
    results = pd.read_parquet(out / "results.parquet")
    real_key = results[results["composition"] == "real"]["key"].iloc[0]
    mixed_key = results[(results["composition"] == "mixed") & (results["generator"] == "gan")]["key"].iloc[0]
    # A cell folder as synthworth wrote it before predictions were kept.
    for key in (real_key, mixed_key):
        for path in (out / "cells" / key).glob("predictions-*.parquet"):
            path.unlink()
        result = json.loads((out / "cells" / key / "result.json").read_text())
        result.pop("synthetic_test_fingerprint")
        (out / "cells" / key / "result.json").write_text(json.dumps(result))
    models = {k: (out / "cells" / k / "run" / "model" / "model.safetensors").stat().st_mtime_ns
              for k in (real_key, mixed_key)}

    with pytest.warns(StudyWarning, match=r"5 of 11 cell evaluations .* \(2 cell\(s\)\) have no current per-image "
                                          r"predictions.*synthworth study run SPEC' again"):
        frame = read_predictions(out)
    lacking = frame.attrs["lacking"]
    assert set(lacking["key"]) == {real_key, mixed_key} and len(lacking) == 5  # real: 3 test sets, mixed: 2
    assert lacking["reason"].str.startswith("no predictions").all()
    assert len(frame) == 3 * 360 + 3 * 40 and not frame["key"].isin([real_key, mixed_key]).any()

    assert main(["study", "status", str(spec)]) == 0
    status = capsys.readouterr().out
    assert "5 of 5 finished" in status and "2 of 5 complete cell(s) lack per-image predictions" in status
    assert "synthworth study run SPEC' again" in status

    # The advice works: the next run trains nothing and scores the saved models again.
    text = _run(spec, capsys)
    assert "0 cell(s) trained, 5 already complete" in text
    assert "2 finished cell(s) given per-image predictions by their saved models" in text
    for key, mtime in models.items():
        assert (out / "cells" / key / "run" / "model" / "model.safetensors").stat().st_mtime_ns == mtime
    with warnings.catch_warnings():
        warnings.simplefilter("error", StudyWarning)
        again = read_predictions(out)
    assert again.attrs["lacking"].empty and len(again) == 5 * 360 + 6 * 40
    assert pd.read_parquet(out / "results.parquet")["key"].tolist() == results["key"].tolist()  # same keys
    assert main(["study", "status", str(spec)]) == 0
    assert "lack per-image predictions" not in capsys.readouterr().out
    assert "given per-image predictions" not in _run(spec, capsys)  # nothing left to add


def test_predictions_that_disagree_with_the_cell_are_not_used(study, capsys):
    spec, out = study
    key = pd.read_parquet(out / "results.parquet")["key"].iloc[0]
    path = out / "cells" / key / "predictions-real_test.parquet"
    table = pq.read_table(path)
    predicted, label = table.column("predicted").to_numpy().copy(), table.column("label").to_numpy()
    # One image's prediction edited, from wrong to right or right to wrong: the accuracy no longer holds.
    predicted[0] = label[0] if predicted[0] != label[0] else (label[0] + 1) % 10
    table = table.set_column(table.schema.get_field_index("predicted"), "predicted", pa.array(predicted))
    pq.write_table(table, path)
    with pytest.warns(StudyWarning, match="1 of 11"):
        lacking = read_predictions(out).attrs["lacking"]
    assert lacking["key"].tolist() == [key] and lacking["reason"].iloc[0] == \
        "predictions that do not match the cell's scores"

    # A saved model that no longer gives the stored scores: said, and no predictions are made up.
    path.unlink()
    result_file = out / "cells" / key / "result.json"
    result = json.loads(result_file.read_text())
    result["real_test"]["accuracy"] = 0.999
    result_file.write_text(json.dumps(result))
    assert main(["study", "run", str(spec), "-q", "--workers", "1"]) == 0
    said = capsys.readouterr()
    assert "gives accuracy" in said.err and "not the stored 0.999" in said.err and "to retrain it" in said.err
    assert "given per-image predictions" not in said.out and not path.exists()


def test_a_folder_without_an_evaluations_table_is_one_clear_error(tmp_path):
    (tmp_path / "cells").mkdir()
    with pytest.raises(SynthworthError, match="has no readable evaluations table"):
        read_predictions(tmp_path)
