"""Resuming and restarting runs: what may change, other data, damaged checkpoints, locks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from synthworth import safety
from synthworth.engine import checkpoint as ckpt
from synthworth.engine.resume import scale_learning_rate
from synthworth.errors import SynthworthError
from synthworth.generators.dcgan import DCGANTask
from synthworth.train import train_dcgan

SHORT = ["train.batch_size=16", "train.checkpoint_every=2", "train.keep_checkpoints=5"]


def optimizer_lrs(checkpoint: Path) -> list[float]:
    state = torch.load(checkpoint / "optimizer.bin", weights_only=True)
    return [g["lr"] for g in state["param_groups"]]


def test_learning_rate_changed_on_resume_is_applied_and_recorded(digits_small, tmp_path):
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    assert optimizer_lrs(run / "checkpoints" / "step-00000002") == [2e-3]
    train_dcgan(digits_small.path, run, resume=True, overrides=["optim.lr=1e-4", "train.max_steps=4"])
    # The optimizer state loaded from the checkpoint carried 2e-3: the new rate must win.
    assert optimizer_lrs(run / "checkpoints" / "step-00000004") == [1e-4]
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == 1e-4
    resumes = [e for e in json.loads((run / "run.json").read_text())["history"] if e["event"] == "resume"]
    assert resumes[-1]["changes"]["optim.lr"] == {"was": 2e-3, "now": 1e-4}
    assert "optim.lr 0.002 -> 0.0001" in (run / "log.txt").read_text()
    # A later plain --resume keeps the lowered rate (the saved config is the base).
    train_dcgan(digits_small.path, run, resume=True, overrides=["train.max_steps=6"])
    assert optimizer_lrs(run / "checkpoints" / "step-00000006") == [1e-4]


def test_scale_learning_rate_keeps_a_schedule_shape():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))  # warm-up
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(4e-4)
    scale_learning_rate({"opt": opt}, {"lr": sched}, 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-4)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4 * 0.5)  # warm-up continues at half height


def test_resume_on_another_dataset_is_refused_naming_both_fingerprints(digits_small, digits16, tmp_path):
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    recorded = json.loads((run / "run.json").read_text())["data"]
    assert recorded == {"path": str(digits_small.path.resolve()), "fingerprint": digits_small.fingerprint,
                        "split": "train", "images": int((digits_small.splits == "train").sum())}
    with pytest.raises(SynthworthError) as err:
        train_dcgan(digits16.path, run, resume=True, overrides=["train.max_steps=4"])
    message = str(err.value)
    assert digits_small.fingerprint in message and digits16.fingerprint in message
    assert f"--data {digits_small.path.resolve()}" in message
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000002"


def test_batch_size_or_seed_change_on_resume_is_refused(digits_small, tmp_path):
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    with pytest.raises(SynthworthError, match="train.batch_size was 16, now 8"):
        train_dcgan(digits_small.path, run, resume=True, overrides=["train.batch_size=8"])
    with pytest.raises(SynthworthError, match="train.seed was 0, now 5"):
        train_dcgan(digits_small.path, run, resume=True, overrides=["train.seed=5"])


@pytest.mark.parametrize("damage", ["truncate", "garbage_state", "missing_file", "truncate_optimizer"])
def test_damage_is_detected_and_named(digits_small, tmp_path, damage):
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    point = run / "checkpoints" / "step-00000002"
    assert ckpt.damage(point) is None
    if damage == "truncate":
        data = (point / "model.safetensors").read_bytes()
        (point / "model.safetensors").write_bytes(data[: len(data) // 2])
        expected = "model.safetensors"
    elif damage == "garbage_state":
        (point / ckpt.STATE_FILE).write_text("{not json")
        expected = ckpt.STATE_FILE
    elif damage == "missing_file":
        (point / "model_1.safetensors").unlink()
        expected = "model_1.safetensors is missing"
    else:
        data = (point / "optimizer.bin").read_bytes()
        (point / "optimizer.bin").write_bytes(data[:100])
        expected = "optimizer.bin"
    assert expected in ckpt.damage(point)


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(digits_small, tmp_path, capfd):
    straight = tmp_path / "straight"
    train_dcgan(digits_small.path, straight, preset="tiny", overrides=SHORT + ["train.max_steps=6"])
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=4"])
    newest = run / "checkpoints" / "step-00000004"
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    capfd.readouterr()
    train_dcgan(digits_small.path, run, resume=True, overrides=["train.max_steps=6"])
    warnings = [l for l in capfd.readouterr().err.splitlines() if "warning" in l]
    assert len(warnings) == 1 and "step-00000004" in warnings[0] and "model.safetensors" in warnings[0]
    assert "resuming from step-00000002" in warnings[0]
    a = load_file(str(straight / "model" / "generator.safetensors"))
    b = load_file(str(run / "model" / "generator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # steps 3-4 were trained again, exactly
    assert ckpt.damage(run / "checkpoints" / "step-00000004") is None  # rewritten whole


def test_no_usable_checkpoint_says_how_to_start_again_and_that_works(digits_small, tmp_path):
    run = tmp_path / "run"
    args = dict(preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    train_dcgan(digits_small.path, run, **args)
    (run / "checkpoints" / "step-00000002" / ckpt.STATE_FILE).write_text("garbage")
    with pytest.raises(SynthworthError, match="no usable checkpoint.*step-00000002.*the same command without --resume"):
        train_dcgan(digits_small.path, run, resume=True)
    train_dcgan(digits_small.path, run, **args)
    assert ckpt.damage(run / "checkpoints" / "step-00000002") is None


def test_run_killed_before_its_first_checkpoint_restarts_with_the_same_command(digits_small, tmp_path,
                                                                              monkeypatch):
    run = tmp_path / "run"
    args = dict(preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    real_step = DCGANTask.step

    def interrupted(self, batch, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(DCGANTask, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_dcgan(digits_small.path, run, **args)
    assert (run / "config.yaml").is_file() and not ckpt.complete_checkpoints(run / "checkpoints")
    assert safety.owned_kind(run) == "run"
    monkeypatch.setattr(DCGANTask, "step", real_step)
    train_dcgan(digits_small.path, run, **args)
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000002"
    assert [e["event"] for e in json.loads((run / "run.json").read_text())["history"]] == ["restart"]


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_and_says_so(digits_small, tmp_path,
                                                                                  monkeypatch, capsys):
    """Through the CLI: a requeued cluster job passes --resume every time; a run of synthworth's
    own that stopped before its first checkpoint is started from the beginning, with a line saying
    so. A folder also holding a user's file is still refused, the file kept."""
    from synthworth.cli import main

    run = tmp_path / "run"
    argv = ["train", "dcgan", "--data", str(digits_small.path), "--out", str(run), "--preset", "tiny",
            *SHORT, "train.max_steps=2"]
    real_step = DCGANTask.step
    monkeypatch.setattr(DCGANTask, "step", lambda self, batch, ctx: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(argv) == 130
    assert (run / "config.yaml").is_file() and not ckpt.complete_checkpoints(run / "checkpoints")
    monkeypatch.setattr(DCGANTask, "step", real_step)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "never saved a usable checkpoint (nothing to resume); starting it again from the beginning" in err
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000002"
    assert [e["event"] for e in json.loads((run / "run.json").read_text())["history"]] == ["restart"]

    other = tmp_path / "other"
    monkeypatch.setattr(DCGANTask, "step", lambda self, batch, ctx: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main([*argv[:5], str(other), *argv[6:]]) == 130
    (other / "notes.txt").write_text("mine")
    assert main([*argv[:5], str(other), *argv[6:], "--resume"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine" and (other / "config.yaml").is_file()


def test_never_checkpointed_run_holding_a_users_file_is_not_restarted(digits_small, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(DCGANTask, "step", lambda self, batch, ctx: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT)
    (run / "notes.txt").write_text("mine")
    with pytest.raises(SynthworthError, match="notes.txt"):
        train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT)
    assert (run / "notes.txt").read_text() == "mine"


def test_a_second_process_on_the_run_folder_is_refused_naming_the_holder(digits_small, tmp_path, lock_holder):
    run = tmp_path / "run"
    run.mkdir()
    holder = lock_holder(run)
    with pytest.raises(SynthworthError, match=f"in use by another synthworth process.*pid {holder.pid}"):
        train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    holder.kill()
    holder.wait()
    assert {p.name for p in run.iterdir()} == {safety.LOCK}  # nothing written by the refused run
    train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=2"])


def test_full_disk_while_checkpointing_leaves_nothing_that_looks_complete(digits_small, tmp_path,
                                                                           monkeypatch):
    import errno

    from accelerate import Accelerator

    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    real_save = Accelerator.save_state

    def full(self, output_dir=None, **kwargs):
        real_save(self, output_dir, **kwargs)  # half the files are written, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device", output_dir)

    monkeypatch.setattr(Accelerator, "save_state", full)
    with pytest.raises(SynthworthError, match="No space left on device.*last complete checkpoint is .*step-00000002"):
        train_dcgan(digits_small.path, run, resume=True, overrides=["train.max_steps=4"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002"]
    monkeypatch.setattr(Accelerator, "save_state", real_save)
    train_dcgan(digits_small.path, run, resume=True, overrides=["train.max_steps=4"])  # the advice works
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000004"


def test_metrics_line_cut_by_a_kill_does_not_break_resume(digits_small, tmp_path):
    run = tmp_path / "run"
    train_dcgan(digits_small.path, run, preset="tiny", overrides=SHORT + ["train.max_steps=2"])
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "loss_d"')  # half a row
    train_dcgan(digits_small.path, run, resume=True, overrides=["train.max_steps=4"])
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
