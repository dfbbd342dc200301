"""The study's ``precision`` (fp32 or bf16): passed to every classifier it trains, part of a cell's
key only when it is bf16 (fp32 keeps the keys of results stored before precisions existed), and
recorded in results.csv with whether the CPU computes bf16 natively."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from synthworth.cli import main
from synthworth.engine import precision

pytestmark = pytest.mark.usefixtures("single_thread")


def results(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])


def hashed(out, key: str) -> dict:
    return json.loads((out / "cells" / key / "cell.json").read_text())["hashed"]


def test_bf16_cells_are_other_cells_and_fp32_keeps_the_keys_of_before(write_spec, tmp_path, capsys, monkeypatch):
    spec = write_spec(compositions=["real"], seeds=[0], budget="epochs")
    out = tmp_path / "spec-results"
    assert main(["study", "run", str(spec), "-q"]) == 0
    fp32 = results(out).iloc[0]
    payload = hashed(out, fp32["key"])
    # The key of before: BLAKE2b-80 of exactly the five entries, the classifier in fp32.
    assert set(payload) == {"classifier", "train_set", "test_set", "threads", "synthworth_version"}
    assert payload["classifier"]["train"]["mixed_precision"] == "no"
    assert hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=10).hexdigest() == fp32["key"]
    assert fp32["precision"] == "fp32" and fp32["native_bf16"] in (True, False)
    capsys.readouterr()
    assert main(["study", "run", str(spec), "-q", "precision=fp32"]) == 0  # said explicitly: the same cells
    assert "0 cell(s) trained, 1 already complete" in capsys.readouterr().out
    # bf16: another cell, trained in bf16 (the classifier's mixed_precision), and a warning line
    # for the study when the CPU only emulates bf16.
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)
    assert main(["study", "run", str(spec), "-q", "precision=bf16"]) == 0
    captured = capsys.readouterr()
    assert "1 cell(s) trained, 0 already complete" in captured.out
    warned = [line for line in captured.err.splitlines() if "native bf16" in line]
    assert warned == ["synthworth: warning: precision: bf16: this CPU has no native bf16 (neither AMX nor "
                      "AVX-512 BF16), so bf16 is emulated and usually slower than fp32; leave it out to compute "
                      "in fp32"]
    bf16 = results(out).iloc[0]
    assert bf16["key"] != fp32["key"] and (bf16["precision"], bf16["native_bf16"]) == ("bf16", False)
    assert bf16["classifier.train.mixed_precision"] == "bf16"
    payload = hashed(out, bf16["key"])
    assert payload["precision"] == "bf16" and payload["classifier"]["train"]["mixed_precision"] == "bf16"
    history = json.loads((out / "cells" / bf16["key"] / "run" / "run.json").read_text())["history"]
    assert history[0]["precision"]["mixed_precision"] == "bf16"


@pytest.mark.parametrize("keys,message", [
    ({"precision": "fp16"}, "precision"),
    ({"classifier": {"train": {"epochs": 2, "batch_size": 16, "mixed_precision": "bf16"}}},
     "classifier.train.mixed_precision bf16 disagrees with precision fp32: a study's classifiers train in fp32 "
     "or bf16, set by the spec key precision (e.g. precision: bf16); remove classifier.train.mixed_precision"),
])
def test_a_bad_precision_is_refused_in_one_line(write_spec, capsys, keys, message):
    spec = write_spec(compositions=["real"], seeds=[0], **keys)
    assert main(["study", "run", str(spec), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    if keys.get("precision") == "fp16":
        assert "'fp32'" in err[0] and "'bf16'" in err[0]
