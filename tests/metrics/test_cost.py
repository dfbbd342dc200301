"""The cost finding (:mod:`synthworth.metrics.cost`): models compared by the training process's
CPU time when every one has it (a model slowed by a neighbour is not called dearer), by wall
time otherwise and said so, the spread over runs, and the engine's CPU clock over a resume."""

from __future__ import annotations

import json

import pytest

from synthworth.metrics.cost import cost_of_runs, cost_ratios, sentence, training_cost


def fake_run(folder, rows, kind="dcgan"):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"kind: {kind}\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def epoch(wall, cpu=None, device="cpu", n=3):
    row = {"step": 10 * n, "epoch": n, "kind": "epoch", "elapsed_s": wall + 1, "train_s": wall}
    if cpu is not None:
        row["train_cpu_s"] = cpu
    if device is not None:
        row["device"] = device
    return row


def model(run, epochs=3):
    return {"run": str(run), "epochs": epochs, "cost": cost_of_runs([run])}


def test_the_same_model_slowed_by_a_neighbour_is_not_called_dearer_by_cpu_time(tmp_path):
    """The issue's case: one DCGAN trained beside another lane (12.3 s wall) and alone (3.5 s):
    by wall time a 3.5x ratio between identical models, by CPU time about 1."""
    beside = model(fake_run(tmp_path / "lane", [epoch(12.3, cpu=3.6)]))
    alone = model(fake_run(tmp_path / "alone", [epoch(3.5, cpu=3.4)]))
    assert cost_ratios({"beside": beside["cost"], "alone": alone["cost"]}) == "cpu"
    assert beside["cost"]["ratio"] == pytest.approx(3.6 / 3.4) and alone["cost"]["ratio"] == 1.0
    text = sentence(beside, "alone")
    assert text.startswith("trained 3 epochs in 3.6 s of CPU time (the training process's CPU seconds over all "
                           "its threads, which other processes sharing the cores do not inflate; wall clock 12 s)")
    assert text.endswith("; 1.1× the CPU time of alone")


@pytest.mark.parametrize("other", [epoch(3.5, cpu=None), epoch(3.5, cpu=3.4, device="cuda"), epoch(3.5, device=None)],
                         ids=["no-cpu-clock", "gpu", "older-run"])
def test_wall_time_when_one_model_has_no_cpu_clock_or_trained_on_a_gpu(tmp_path, other):
    a = model(fake_run(tmp_path / "a", [epoch(12.3, cpu=3.6)]))
    b = model(fake_run(tmp_path / "b", [other]))
    assert cost_ratios({"a": a["cost"], "b": b["cost"]}) == "wall"
    assert a["cost"]["ratio"] == pytest.approx(12.3 / 3.5) and a["cost"]["seconds"] == 12.3
    text = sentence(a, "b")
    assert "in 12 s of wall-clock time, which grows when other processes share the machine" in text
    assert text.endswith("3.5× the wall-clock time of b")


def test_several_runs_cost_their_mean_with_the_lowest_and_highest(tmp_path):
    runs = [fake_run(tmp_path / f"seed-{k}", [epoch(w, cpu=c)]) for k, (w, c) in enumerate([(4, 3.0), (9, 3.3),
                                                                                            (5, 3.9)])]
    cost = cost_of_runs(runs)
    assert cost["runs"] == 3 and cost["cpu_seconds"] == pytest.approx(3.4) and cost["train_seconds"] == 6
    cheap = {"run": "x", "epochs": 3, "cost": cost_of_runs([fake_run(tmp_path / "one", [epoch(2, cpu=1.7)])])}
    three = {"run": str(tmp_path), "epochs": 3, "cost": cost}
    cost_ratios({"three": three["cost"], "one": cheap["cost"]})
    assert (cost["seconds_min"], cost["seconds_max"]) == (3.0, 3.9)
    assert cheap["cost"]["seconds_min"] is None  # one run: no spread
    assert "; the mean of 3 runs, from 3 s to 3.9 s" in sentence(three, "one")
    assert cost["ratio"] == pytest.approx(2.0)


def test_a_latent_models_cpu_time_counts_its_vae_and_is_unknown_when_the_vae_has_none(tmp_path):
    vae = fake_run(tmp_path / "vae", [epoch(40.0, cpu=30.0)], kind="vae")
    (vae / "model").mkdir()
    (vae / "run.json").write_text(json.dumps({"kind": "vae"}))
    ldm = fake_run(tmp_path / "ldm", [epoch(100.0, cpu=80.0)], kind="ldm")
    (ldm / "config.yaml").write_text(f"kind: ldm\nvae: {vae / 'model'}\n")
    cost = training_cost(ldm)
    assert (cost["total_seconds"], cost["total_cpu_seconds"]) == (140.0, 110.0)
    assert "(30 s of CPU time)" in cost["extra_note"]
    (vae / "metrics.jsonl").write_text(json.dumps(epoch(40.0)) + "\n")  # an older VAE run: no CPU clock
    assert training_cost(ldm)["total_cpu_seconds"] is None


def test_latent_replicates_sharing_one_vae_give_their_spread_beside_the_total_it_is_of(tmp_path):
    """The spread over runs is of each run's total, its VAE's included: said after that total,
    never beside the UNet's own seconds it is not a spread of."""
    vae = fake_run(tmp_path / "vae", [epoch(40.0, cpu=30.0)], kind="vae")
    (vae / "model").mkdir()
    runs = []
    for k, cpu in enumerate((28.0, 30.0)):
        ldm = fake_run(tmp_path / f"seed-{k}", [epoch(50.0, cpu=cpu)], kind="ldm")
        (ldm / "config.yaml").write_text(f"kind: ldm\nvae: {vae / 'model'}\n")
        runs.append(ldm)
    latent = {"run": str(tmp_path), "epochs": 3, "cost": cost_of_runs(runs)}
    cost_ratios({"latent": latent["cost"]})
    text = sentence(latent, "latent")
    assert "in 29 s of CPU time" in text and "; the mean of 2 runs; its VAE" in text
    assert ", 59 s in all (from 58 s to 60 s over the runs)" in text


def test_a_run_resumed_from_a_checkpoint_without_the_cpu_clock_records_none(digits_small, tmp_path):
    """The engine's CPU clock: cumulative in each epoch row; a run resumed from a checkpoint of
    an engine that did not keep it cannot know its earlier CPU seconds and records none."""
    from synthworth.engine import checkpoint as ckpt
    from synthworth.train import train_dcgan

    run = tmp_path / "run"
    tiny = ["train.batch_size=16", "train.checkpoint_every=100"]
    train_dcgan(digits_small.path, run, preset="tiny", overrides=[*tiny, "train.epochs=1"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_cpu_s"] > 0 for r in rows if r.get("kind") == "epoch"] == [True]
    last = ckpt.complete_checkpoints(run / "checkpoints")[-1]
    state = json.loads((last / ckpt.STATE_FILE).read_text())
    assert state["train_cpu_seconds"] > 0
    del state["train_cpu_seconds"]
    (last / ckpt.STATE_FILE).write_text(json.dumps(state))
    train_dcgan(digits_small.path, run, resume=True, overrides=[*tiny, "train.epochs=2"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and "train_cpu_s" not in epochs[-1]
    assert training_cost(run)["cpu_seconds"] is None and training_cost(run)["train_seconds"] > 0
