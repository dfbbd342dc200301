"""worth_per_compute: real-image equivalents per generation-hour, from the exchange rates and the
generators' recorded sampling and training time."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from synthworth.data import timing
from synthworth.data.dataset import Dataset, atomic_folder, write_packed
from synthworth.study.compute import COLUMNS, record, worth_per_compute
from synthworth.study.exchange import exchange_rates

SIZES = [20, 40, 80, 160, 320]
DEVICE = "cuda: NVIDIA H100 80GB HBM3"


def accuracy(n):
    return 1 - (0.6 * np.asarray(n, float) ** -0.5 + 0.05)


def results_rows() -> list[dict]:
    """Real cells on a known power law (5 seeds), and artificial cells of three generators: each
    reaches the accuracy of 100 real images at its largest size, 160 synthetic images."""
    rng = np.random.default_rng(0)
    rows = []
    for size in SIZES:
        for seed in range(5):
            rows.append({"composition": "real", "generator": "", "size": size, "ratio": 0.0, "seed": seed,
                         "n_real": size, "n_synthetic": 0, "accuracy": float(accuracy(size) + rng.normal(0, 0.004))})
    for gen in ("gan", "sd", "old"):
        for size, worth in ((80, 60), (160, 100)):
            for seed in range(5):
                rows.append({"composition": "artificial", "generator": gen, "size": size, "ratio": 1.0, "seed": seed,
                             "n_real": 0, "n_synthetic": size,
                             "accuracy": float(accuracy(worth) + rng.normal(0, 0.004))})
    return rows


def generated(path, sampling_rows, provenance, images=None, labels=None, class_names=("a", "b")) -> Dataset:
    """A Dataset (by default 200 blank images) whose manifest says what a generation recorded."""
    images = np.zeros((200, 4, 4, 1), np.uint8) if images is None else images
    labels = np.arange(len(images)) % 2 if labels is None else labels
    manifest = {"kind": "synthetic", "provenance": provenance,
                "generation": {"sampling": timing.summarise(sampling_rows)} if sampling_rows is not None else {}}
    with atomic_folder(path, kind="dataset") as tmp:
        write_packed(tmp, images, labels, np.full(len(images), "train"), list(class_names), [{}] * len(images),
                     manifest)
    return Dataset.open(path)


def test_n_eff_per_hour_is_n_eff_times_3600_over_the_seconds_of_the_images_used(tmp_path):
    # the generator's training run, as the engine logs it
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"kind": "epoch", "epoch": e, "step": 10 * e,
                                                             "train_s": 60.0 * e}) for e in (1, 2)) + "\n")
    blocks = [{"images": 5, "sample_seconds": 0.5, "device_name": DEVICE},
              {"images": 5, "sample_seconds": 0.3, "device_name": DEVICE}]   # two runs of a resumed generation
    gan = generated(tmp_path / "gan", blocks, {"kind": "trained", "trained_on": None, "note": "", "run": str(run)})
    sd = generated(tmp_path / "sd", [{"images": 10, "sample_seconds": 20.0, "device_name": "cpu: X (2 threads)"}],
                   {"kind": "pretrained", "trained_on": None, "note": "trained on external data (sd)"})
    old = generated(tmp_path / "old", None, None)   # made before generation time was recorded

    # the constructed results folder: exchange_rates.csv and inputs.json, as the study writes them
    folder = tmp_path / "results"
    folder.mkdir()
    rates, _ = exchange_rates(pd.DataFrame(results_rows()), resamples=200)
    rates.to_csv(folder / "exchange_rates.csv", index=False)
    inputs = {"synthetic": {name: {"path": str(ds.path), "compute": record(ds.manifest, ds.manifest.get("provenance"))}
                            for name, ds in (("gan", gan), ("sd", sd), ("old", old))}}
    (folder / "inputs.json").write_text(json.dumps(inputs))

    table = worth_per_compute(pd.read_csv(folder / "exchange_rates.csv", keep_default_na=False, na_values=[""]),
                              json.loads((folder / "inputs.json").read_text()))
    assert list(table.columns) == COLUMNS and sorted(table["generator"]) == ["gan", "old", "sd"]
    row = {r["generator"]: r for _, r in table.iterrows()}

    g = row["gan"]
    assert g["size"] == 160 and g["n_synthetic"] == 160   # the largest artificial row
    source = rates[(rates["generator"] == "gan") & (rates["size"] == 160)].iloc[0]
    assert math.isfinite(g["n_eff"]) and g["n_eff"] == pytest.approx(source["n_eff"])
    spi = (0.5 + 0.3) / 10                                 # both runs' blocks summed
    assert g["seconds_per_image"] == pytest.approx(spi) and g["generation_seconds"] == pytest.approx(160 * spi)
    assert g["n_eff_per_generation_hour"] == pytest.approx(g["n_eff"] * 3600 / (160 * spi))
    for end in ("_ci_low", "_ci_high"):   # n_eff's interval over the fixed time
        assert g[f"n_eff_per_generation_hour{end}"] == pytest.approx(source[f"n_eff{end}"] * 3600 / (160 * spi))
    assert g["n_eff_per_generation_hour_ci_low"] < g["n_eff_per_generation_hour"] < g["n_eff_per_generation_hour_ci_high"]
    assert g["device"] == DEVICE
    # training: the run's last train_s (120 s), amortised over the Dataset's 200 images, 160 of them drawn
    assert g["train_seconds"] == 120.0 and g["dataset_images"] == 200
    assert g["train_seconds_share"] == pytest.approx(120.0 * 160 / 200)
    assert g["n_eff_per_hour_amortised"] == pytest.approx(g["n_eff"] * 3600 / (160 * spi + 96.0))
    assert "train_s" in g["training"] and "amortised over the 200 images" in g["training"]
    assert "taken as fixed" in g["interval"]

    s = row["sd"]   # a pretrained pipeline: generation time only
    assert s["n_eff_per_generation_hour"] == pytest.approx(s["n_eff"] * 3600 / (160 * 2.0))
    assert math.isnan(s["n_eff_per_hour_amortised"]) and "no training cost is known" in s["training"]
    assert s["device"] == "cpu: X (2 threads)"

    o = row["old"]   # no timing: the row says so and gives no rate
    assert math.isfinite(o["n_eff"]) and math.isnan(o["n_eff_per_generation_hour"]) and o["device"] == ""
    assert "generation time not recorded" in o["timing"] and "training time unknown" in o["training"]


def test_a_study_from_before_the_records_and_rows_without_n_eff_say_so():
    rates = pd.DataFrame([{"test_set": "real_test", "filter": "none", "generator": "gan", "composition": "artificial",
                           "size": 500, "n_synthetic": 500, "n_eff": math.nan, "n_eff_ci_low": 320.0,
                           "n_eff_ci_high": math.nan, "status": "above the measured range", "bound": "more than 320",
                           "grid": "complete"},
                          {"test_set": "real_test", "filter": "confidence", "generator": "gan",
                           "composition": "artificial", "size": 900, "n_synthetic": 900, "n_eff": 10.0}])
    inputs = {"synthetic": {"gan": {"compute": {"sampling": {"seconds_per_image": 0.5, "images": 4,
                                                             "devices": [{"device": "cpu: X", "images": 4}]},
                                                "train_seconds": None, "training": "t", "dataset_images": 4}}}}
    row = worth_per_compute(rates, inputs).iloc[0]   # the filtered pool is left out
    assert row["n_synthetic"] == 500 and math.isnan(row["n_eff_per_generation_hour"])
    assert row["n_eff_per_generation_hour_ci_low"] == pytest.approx(320 * 3600 / 250)   # the open bound's end
    assert row["bound"] == "more than 320"
    before = worth_per_compute(rates, {"synthetic": {"gan": {"path": "x"}}}).iloc[0]
    assert "run the study again" in before["timing"] and math.isnan(before["n_eff_per_generation_hour"])


def test_a_study_run_records_the_costs_and_writes_the_table_beside_the_exchange_rates(digits16, tmp_path):
    """Through the runner: inputs.json records the Dataset's sampling time, and the table is
    written where exchange_rates.csv is (whatever the tiny curve gives, the row carries the time)."""
    import torch
    import yaml

    from synthworth.data.compose import subset
    from synthworth.study.runner import run_study

    part = subset(digits16.split("train"), count=200, seed=3)
    blocks = [{"images": 100, "sample_seconds": 2.0, "device_name": DEVICE}] * 2
    generated(tmp_path / "gan", blocks, {"kind": "pretrained", "trained_on": None, "note": "x"},
              images=part.take(np.arange(len(part))), labels=part.labels, class_names=part.class_names)
    spec = {"name": "compute", "real": str(digits16.path), "synthetic": {"gan": str(tmp_path / "gan")},
            "sizes": [20, 40, 80], "seeds": [0, 1], "compositions": ["real", "artificial"],
            "budget_steps": 4, "classifier_preset": "tiny", "classifier": {"train": {"epochs": 1, "batch_size": 16}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_study(tmp_path / "spec.yaml", out=tmp_path / "out", progress=False)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "out"
    recorded = json.loads((out / "inputs.json").read_text())["synthetic"]["gan"]["compute"]
    assert recorded["sampling"]["seconds_per_image"] == pytest.approx(0.02) and recorded["dataset_images"] == 200
    assert (out / "exchange_rates.csv").is_file() and (out / "worth_per_compute.parquet").is_file()
    table = pd.read_csv(out / "worth_per_compute.csv", keep_default_na=False, na_values=[""])
    row = table.iloc[0]
    assert len(table) == 1 and (row["generator"], row["n_synthetic"], row["device"]) == ("gan", 80, DEVICE)
    assert row["generation_seconds"] == pytest.approx(80 * 0.02)
    # NaN where the tiny curve gives no n_eff (4 steps a cell: its status says why, and it is carried)
    assert row["n_eff_per_generation_hour"] == pytest.approx(row["n_eff"] * 3600 / 1.6, nan_ok=True)
    assert math.isfinite(row["n_eff"]) or row["exchange_status"].startswith("no rate")
    assert "no training cost is known" in row["training"] and row["test_leakage"] == 0
