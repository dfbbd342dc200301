"""What keys a study's stored results: the feature weights' contents (not their path) key the
metrics, the torch thread count keys each cell, and a mistyped feature extractor is refused when
the spec is read, before any cell trains."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from synthworth.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

METRICS = {"enabled": True, "kid_subsets": 5, "kid_subset_size": 20, "max_images": 60, "floor": False}


def results(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])


def _classifier(data, out, seed: int):
    assert main(["train", "classifier", "--data", str(data), "--out", str(out), "--preset", "tiny",
                 "train.epochs=1", f"train.seed={seed}", "train.progress=false"]) == 0
    return out / "model"


def test_features_retrained_in_place_make_the_stored_metrics_stale(write_spec, tmp_path, digits16, capsys):
    features = _classifier(digits16.path, tmp_path / "clf", seed=0)
    spec = write_spec(compositions=["real"], seeds=[0], metrics={**METRICS, "features": str(features)})
    out = tmp_path / "spec-results"
    assert main(["study", "run", str(spec), "-q"]) == 0
    assert "metrics for ddpm, gan" in capsys.readouterr().out
    before = json.loads((out / "metrics" / "gan.json").read_text())
    assert main(["study", "run", str(spec), "-q"]) == 0  # the same weights: nothing to do
    assert "0 cell(s) trained, 1 already complete in" in capsys.readouterr().out
    # The classifier is trained again into the same folder (here: another seed's model copied over it).
    other = _classifier(digits16.path, tmp_path / "clf-2", seed=1)
    for name in ("model.safetensors", "config.json"):
        shutil.copy(other / name, features / name)
    capsys.readouterr()
    assert main(["study", "run", str(spec), "-q"]) == 0
    assert "0 cell(s) trained, 1 already complete, metrics for ddpm, gan" in capsys.readouterr().out
    after = json.loads((out / "metrics" / "gan.json").read_text())
    assert after["key"] != before["key"] and after["fid"] != before["fid"]


def test_the_thread_count_keys_each_cell_and_is_recorded_in_its_row(write_spec, tmp_path, capsys):
    spec = write_spec(compositions=["real"], seeds=[0])
    out = tmp_path / "spec-results"
    assert main(["study", "run", str(spec), "-q"]) == 0
    one = results(out)
    assert list(one["threads"]) == [1]
    cell = json.loads((out / "cells" / one["key"][0] / "cell.json").read_text())
    assert cell["hashed"]["threads"] == 1
    # Another thread count is another cell (its numbers differ): trained, never the 1-thread result.
    capsys.readouterr()
    assert main(["study", "run", str(spec), "-q", "threads=2"]) == 0
    assert "1 cell(s) trained, 0 already complete" in capsys.readouterr().out
    two = results(out)
    assert list(two["threads"]) == [2] and two["key"][0] != one["key"][0]
    # Local worker processes run their cells with the spec's count too: the same key, the same row.
    pool = write_spec("pool", compositions=["real"], seeds=[0, 1], threads=2)
    assert main(["study", "run", str(pool), "-q", "--workers", "2"]) == 0
    rows = results(tmp_path / "pool-results").set_index("seed")
    assert list(rows["threads"]) == [2, 2] and rows.loc[0, "key"] == two["key"][0]
    assert rows.loc[0, "accuracy"] == two["accuracy"][0]


@pytest.mark.parametrize("given, match", [
    ("incepton", ("key 'metrics.features'", "did you mean 'inception'?")),
    ("Domain", ("key 'metrics.features'", "did you mean 'domain'?")),
    ("runs/nothing/model", ("key 'metrics.features'", "'runs/nothing/model' is no feature extractor")),
])
def test_a_mistyped_feature_extractor_is_refused_before_any_cell_trains(write_spec, tmp_path, capsys, given, match):
    spec = write_spec(compositions=["real"], seeds=[0], metrics={**METRICS, "features": given})
    assert main(["study", "run", str(spec), "-q"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in match:
        assert needle in errors[0], (needle, errors[0])
    assert not (tmp_path / "spec-results").exists()  # refused before anything is written


def test_a_saved_classifier_as_features_is_relative_to_the_spec(write_spec, tmp_path, digits16, capsys):
    _classifier(digits16.path, tmp_path / "clf", seed=0)
    spec = write_spec(compositions=["real"], seeds=[0], metrics={**METRICS, "features": "clf/model"})
    assert main(["study", "run", str(spec), "-q"]) == 0
    assert "metrics for ddpm, gan" in capsys.readouterr().out
    assert main(["study", "run", str(spec), "-q", "metrics.features=clf/modle"]) == 2
    assert "key 'metrics.features': 'clf/modle' is no feature extractor" in capsys.readouterr().err


def test_an_inception_weights_file_is_keyed_by_its_contents(tmp_path):
    """The same key for 'auto' and 'inception' on one file; new contents at the same path, a new key."""
    from synthworth.metrics import MetricsConfig
    from synthworth.metrics.features import weights_key

    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"old weights")
    old = weights_key(MetricsConfig(features="inception", inception_weights=str(weights)))
    assert old == weights_key(MetricsConfig(features="auto", inception_weights=str(weights)))
    weights.write_bytes(b"retrained weights")
    assert weights_key(MetricsConfig(features="inception", inception_weights=str(weights))) not in (old, None)
