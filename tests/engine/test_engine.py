"""The shared training engine: run folders, checkpoints, exact resume, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synthworth.engine import checkpoint as ckpt
from synthworth.engine.loop import EpochBatchSampler, TrainingDiverged
from synthworth.errors import SynthworthError
from synthworth.generators.dcgan import DCGANTask
from synthworth.train import train_dcgan

TINY = ["train.epochs=2", "train.batch_size=16", "train.checkpoint_every=3", "model.conditional=true"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "generator.safetensors"))


def metric_rows(run: Path) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_holds_config_log_metrics_checkpoints_samples_plots(digits_small, tmp_path):
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=TINY)
    assert (run / "config.yaml").is_file() and "dcgan" in (run / "config.yaml").read_text()
    assert "finished after 20 steps" in (run / "log.txt").read_text()
    rows = metric_rows(run)
    steps = [r for r in rows if r.get("kind") != "epoch"]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 21))  # 160 images / 16 = 10 per epoch
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(steps[0])
    kept = ckpt.complete_checkpoints(run / "checkpoints")
    assert [p.name for p in kept] == ["step-00000018", "step-00000020"]  # pruned to keep=2
    for name in ("model.safetensors", "model_1.safetensors", "optimizer.bin", "random_states_0.pkl"):
        assert (kept[-1] / name).is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch-001.png", "epoch-002.png"]
    assert {p.name for p in (run / "plots").iterdir()} >= {"loss_per_iteration.png", "loss_per_epoch.png",
                                                           "discriminator_outputs.png"}


def test_interrupted_and_resumed_run_ends_with_identical_weights(digits_small, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_dcgan(digits_small.path, straight, preset="tiny", overrides=TINY)

    broken = tmp_path / "broken"
    real_step = DCGANTask.step

    def dying_step(self, batch, ctx):
        if ctx.global_step == 13:  # mid-epoch 2, after the checkpoint at step 12
            raise KeyboardInterrupt
        return real_step(self, batch, ctx)

    monkeypatch.setattr(DCGANTask, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_dcgan(digits_small.path, broken, preset="tiny", overrides=TINY)
    assert not (broken / "model").exists()
    assert ckpt.latest_checkpoint(broken / "checkpoints").name == "step-00000012"
    monkeypatch.setattr(DCGANTask, "step", real_step)
    train_dcgan(digits_small.path, broken, resume=True)

    a, b = weights(straight), weights(broken)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    timings = ("elapsed_s", "train_s", "train_cpu_s")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timings} for r in rows]
    assert strip(metric_rows(straight)) == strip(metric_rows(broken))


def test_killed_process_resumes_to_the_same_weights(digits_small, tmp_path):
    """A real SIGKILL of the CLI mid-run, then --resume: same weights as a run never killed."""
    exe = Path(sys.executable).with_name("synthworth")
    args = ["train", "dcgan", "--data", str(digits_small.path), "--preset", "tiny",
            "train.epochs=3", "train.batch_size=16", "train.checkpoint_every=2", "train.keep_checkpoints=50"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([str(exe), *args, "--out", str(straight)], check=True, capture_output=True)

    proc = subprocess.Popen([str(exe), *args, "--out", str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(ckpt.complete_checkpoints(killed / "checkpoints")) < 4:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = ckpt.complete_checkpoints(killed / "checkpoints")
    assert done and not (killed / "model").exists(), "the run finished before it could be killed"
    result = subprocess.run([str(exe), "train", "dcgan", "--data", str(digits_small.path),
                             "--out", str(killed), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    a, b = weights(straight), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_partial_checkpoint_is_ignored_and_removed(digits_small, tmp_path):
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=TINY + ["train.max_steps=6"])
    fake = run / "checkpoints" / "step-00000099.tmp"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"half")
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000006"
    train_dcgan(digits_small.path, run, resume=True, overrides=["train.max_steps=8"])
    assert not fake.exists()
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000008"


def test_resume_errors_before_training(digits_small, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(SynthworthError, match="does not exist; start the run without --resume"):
        train_dcgan(digits_small.path, run, resume=True)
    assert not run.exists()
    train_dcgan(digits_small.path, run, preset="tiny", overrides=TINY + ["train.max_steps=2"])
    with pytest.raises(SynthworthError, match="already holds a training run.*add --resume"):
        train_dcgan(digits_small.path, run, preset="tiny", overrides=TINY)
    with pytest.raises(SynthworthError, match="other settings.*model.base_channels was 4, now 8"):
        train_dcgan(digits_small.path, run, resume=True, overrides=["model.base_channels=8"])
    for p in ckpt.complete_checkpoints(run / "checkpoints"):
        import shutil
        shutil.rmtree(p)
    # No checkpoint at all: nothing to resume, so --resume starts the run again in place (a
    # requeued cluster job passes --resume every time; tests/engine/test_resume.py has the CLI).
    train_dcgan(digits_small.path, run, resume=True, overrides=["train.max_steps=2"])
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000002"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(digits_small, tmp_path, monkeypatch):
    real_step = DCGANTask.step

    def nan_step(self, batch, ctx):
        logs = real_step(self, batch, ctx)
        if ctx.global_step == 4:
            logs["loss_g"] = float("nan")
        return logs

    monkeypatch.setattr(DCGANTask, "step", nan_step)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="loss_g is not finite.*step-00000003.*--resume optim.lr=0.0002"):
        train_dcgan(digits_small.path, run, preset="tiny", overrides=TINY)
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000003"
    assert "diverged" in (run / "log.txt").read_text()


def test_epoch_batch_sampler_is_seeded_and_resumable():
    s = EpochBatchSampler(50, 8, seed=3)
    s.set_position(2, 0)
    full = list(s)
    assert len(full) == 6 and all(len(b) == 8 for b in full)  # drop_last
    assert len({i for b in full for i in b}) == 48
    s.set_position(2, 4)
    assert list(s) == full[4:] and len(s) == 2
    s.set_position(3, 0)
    assert list(s) != full


def test_flatten_state_roundtrip_keeps_tensors_and_values(tmp_path):
    state = {"decay": 0.999, "step": 7, "shadow": [torch.arange(3.0), torch.ones(2, 2)], "name": None}
    ckpt.save_extra(tmp_path, state)
    back = ckpt.load_extra(tmp_path)
    assert back["decay"] == 0.999 and back["step"] == 7 and back["name"] is None
    assert torch.equal(back["shadow"][0], torch.arange(3.0)) and back["shadow"][1].shape == (2, 2)
    with pytest.raises(TypeError):
        ckpt.flatten_state({"bad": object()})


def test_divergence_after_following_the_advice_says_to_start_again_and_that_works(digits_small, tmp_path,
                                                                                    monkeypatch, capsys):
    """Through the CLI: the loss turns NaN from step 5 on (the weights of step-00000003 are
    already damaged), so resuming it with the lower rate diverges again before the next
    checkpoint. The second advice must not send the user back to the same checkpoint (a loop)
    but give a command that starts again from the beginning; that command works."""
    import shlex

    from synthworth.cli import main

    real_step = DCGANTask.step

    def nan_from_step_5(self, batch, ctx):
        logs = real_step(self, batch, ctx)
        if ctx.global_step >= 4:
            logs["loss_g"] = float("nan")
        return logs

    run = tmp_path / "run"
    argv = ["train", "dcgan", "--data", str(digits_small.path), "--out", str(run)]
    monkeypatch.setattr(DCGANTask, "step", nan_from_step_5)
    assert main([*argv, "--preset", "tiny", *TINY]) == 2
    first = capsys.readouterr().err
    assert "step-00000003" in first and "--resume optim.lr=0.0002" in first
    assert main([*argv, "--resume", "optim.lr=0.0002"]) == 2          # the advice, followed
    second = capsys.readouterr().err
    assert "diverged again" in second and "start again from the beginning" in second
    assert "--resume" not in second
    command = shlex.split(second.split("in a new folder: ", 1)[1].strip())
    assert command[:3] == ["synthworth", "train", "dcgan"] and "optim.lr=0.0002" in command
    monkeypatch.setattr(DCGANTask, "step", real_step)
    assert main(command[1:]) == 0, capsys.readouterr().err             # that command works
    new = Path(command[command.index("--out") + 1])
    assert (new / "model" / "generator.safetensors").is_file()
    saved = (new / "config.yaml").read_text()
    assert "lr: 0.0002" in saved and "conditional: true" in saved     # the run's settings, the lower rate
