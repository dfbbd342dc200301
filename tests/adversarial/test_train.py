"""``synthworth train``: bad outputs, wrong resumes, kills, damage, concurrency and faults.

Each test runs the real CLI (tiny presets, a few steps on 160 digit images) and asserts what a
user needs: their files untouched, one clear error line (exit 2) whose advice works when
followed, and a run that continues exactly where it can.
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

import pytest

from synthworth import safety
from synthworth.engine import checkpoint as ckpt


from adversarial_helpers import snapshot  # noqa: E402  (see conftest.py)
FAST = ["train.max_steps=2", "train.checkpoint_every=2"]


@pytest.fixture
def data(digits_small, tmp_path) -> Path:
    """A private copy of the 160-image digits Dataset."""
    return Path(shutil.copytree(digits_small.path, tmp_path / "data"))


def train_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", model, "--data", str(data), "--out", str(out), "--preset", "tiny", *FAST, *extra]


def checkpoints(run: Path) -> list[str]:
    return [p.name for p in ckpt.complete_checkpoints(run / "checkpoints")]


# ---------------------------------------------------------------------------- where --out points
@pytest.mark.parametrize("where", ["the_data", "contains_data", "inside_data"])
def test_out_overlapping_the_data_is_refused_and_the_data_untouched(cli, refused, data, tmp_path, where):
    out = {"the_data": data, "contains_data": tmp_path, "inside_data": data / "run"}[where]
    before = snapshot(tmp_path)
    refused(*train_args("dcgan", data, out), match=("--out", "choose"))
    assert snapshot(tmp_path) == before


def test_out_holding_another_dataset_is_refused(refused, data, digits16, tmp_path):
    other = Path(shutil.copytree(digits16.path, tmp_path / "other"))
    before = snapshot(other)
    refused(*train_args("dcgan", data, other), match=("synthworth dataset", "not a run", "other-2"))
    assert snapshot(other) == before


def test_out_holding_the_users_files_is_refused(refused, data, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("chapter 1")
    (mine / "config.yaml").write_text("kind: dcgan\n")  # even one that looks like a run's
    before = snapshot(mine)
    refused(*train_args("dcgan", data, mine), match=("not written by synthworth", "mine-2"))
    refused(*train_args("dcgan", data, mine, "--resume"), match="mine")
    assert snapshot(mine) == before


def test_out_that_is_a_file_is_refused(refused, data, tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("a,b\n")
    refused(*train_args("dcgan", data, target), match="is a file")
    assert target.read_text() == "a,b\n"


@pytest.mark.parametrize("seed", ["train.seed=-1", f"train.seed={2**32}", "train.seed=1e30", "grid_seed=-5",
                                  f"grid_seed={2**70}"])
def test_bad_seed_is_one_config_error_and_writes_nothing(refused, data, tmp_path, seed):
    out = tmp_path / "run"
    refused(*train_args("dcgan", data, out, seed), match=seed.split("=")[0])
    assert not out.exists()


# ---------------------------------------------------------------------------- restarts and resumes
def test_run_killed_before_its_first_checkpoint_restarts_with_the_same_command(cli, data, tmp_path,
                                                                              monkeypatch):
    from synthworth.generators.dcgan import DCGANTask

    out = tmp_path / "run"
    args = train_args("dcgan", data, out)
    real_step = DCGANTask.step
    monkeypatch.setattr(DCGANTask, "step", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli(*args)[0] == 130
    assert out.is_dir() and not checkpoints(out)
    monkeypatch.setattr(DCGANTask, "step", real_step)
    code, _, err = cli(*args)
    assert code == 0, err
    assert checkpoints(out) == ["step-00000002"] and (out / "model").is_dir()


def test_original_command_with_resume_added_is_accepted(cli, data, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "mine.yaml"
    config.write_text("optim:\n  lr: 0.001\n")
    args = ["train", "dcgan", "--data", str(data), "--out", str(out), "--config", str(config),
            "train.batch_size=16", "train.checkpoint_every=2", "train.max_steps=2"]
    assert cli(*args)[0] == 0
    code, _, err = cli(*args, "--resume", "train.max_steps=4")
    assert code == 0, err
    assert checkpoints(out)[-1] == "step-00000004"


def test_ddpm_resumed_with_its_preset_and_a_lower_learning_rate(cli, data, tmp_path):
    import torch

    out = tmp_path / "run"
    assert cli(*train_args("ddpm", data, out))[0] == 0
    code, _, err = cli(*train_args("ddpm", data, out, "--resume", "optim.lr=1e-4", "train.max_steps=4"))
    assert code == 0, err
    state = torch.load(out / "checkpoints" / "step-00000004" / "optimizer.bin", weights_only=True)
    assert [g["lr"] for g in state["param_groups"]] == [pytest.approx(1e-4)]


def test_divergence_advice_works_when_followed(cli, data, tmp_path, monkeypatch):
    from synthworth.generators.dcgan import DCGANTask

    real_step = DCGANTask.step

    def unstable(self, batch, ctx):  # diverges at the preset's lr (2e-3), not at a tenth of it
        logs = real_step(self, batch, ctx)
        if self.config.optim.lr > 1e-3 and ctx.global_step >= 2:
            logs["loss_g"] = float("nan")
        return logs

    monkeypatch.setattr(DCGANTask, "step", unstable)
    out = tmp_path / "run"
    args = train_args("dcgan", data, out, "train.max_steps=6")
    code, _, err = cli(*args)
    err = [line for line in err if "is given twice" not in line]  # train.max_steps=6 after FAST's, named
    assert code == 2 and len(err) == 1 and "not finite" in err[0], err
    advice = re.search(r"the same command with (--resume \S+)$", err[0])
    assert advice, err[0]
    code, _, err = cli(*args, *advice.group(1).split())
    assert code == 0, err
    assert checkpoints(out)[-1] == "step-00000006"


def test_resume_on_another_dataset_is_refused_naming_both_fingerprints(cli, refused, data, digits16,
                                                                       digits_small, tmp_path):
    out = tmp_path / "run"
    assert cli(*train_args("dcgan", data, out))[0] == 0
    before = snapshot(out, skip=(safety.LOCK,))
    refused(*train_args("dcgan", digits16.path, out, "--resume"),
            match=(digits_small.fingerprint, digits16.fingerprint, f"--data {data.resolve()}"))
    assert snapshot(out, skip=(safety.LOCK,)) == before


def test_resume_with_a_changed_architecture_is_refused_naming_the_key(cli, refused, data, tmp_path):
    out = tmp_path / "run"
    assert cli(*train_args("dcgan", data, out))[0] == 0
    refused(*train_args("dcgan", data, out, "--resume", "model.latent_dim=16"),
            match="model.latent_dim was 8, now 16")
    refused("train", "ddpm", "--data", data, "--out", out, "--resume", match="a run of dcgan")


def test_damaged_newest_checkpoint_is_named_and_the_previous_one_used(cli, data, tmp_path):
    out = tmp_path / "run"
    assert cli(*train_args("dcgan", data, out, "train.max_steps=4", "train.keep_checkpoints=3"))[0] == 0
    newest = out / "checkpoints" / "step-00000004" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    code, _, err = cli(*train_args("dcgan", data, out, "--resume", "train.max_steps=4",
                                   "train.keep_checkpoints=3"))
    assert code == 0, err
    warnings = [line for line in err if "warning" in line and "is given twice" not in line]
    assert len(warnings) == 1 and "step-00000004" in warnings[0] and "model.safetensors" in warnings[0]
    assert ckpt.damage(out / "checkpoints" / "step-00000004") is None


def test_unreadable_only_checkpoint_is_refused_with_advice_that_works(cli, refused, data, tmp_path):
    out = tmp_path / "run"
    args = train_args("dcgan", data, out)
    assert cli(*args)[0] == 0
    (out / "checkpoints" / "step-00000002" / ckpt.STATE_FILE).write_text("\x00garbage")
    line = refused(*args, "--resume", match=("no usable checkpoint", "engine_state.json"))
    assert "the same command without --resume" in line
    code, _, err = cli(*args)
    assert code == 0, err


# ---------------------------------------------------------------------------- concurrency and faults
def test_second_train_into_a_locked_run_is_refused_naming_the_holder(refused, data, tmp_path, lock_holder):
    out = tmp_path / "run"
    out.mkdir()
    holder = lock_holder(out)
    refused(*train_args("dcgan", data, out), match=("in use", f"pid {holder.pid}"))
    holder.kill()
    holder.wait()
    assert {p.name for p in out.iterdir()} == {safety.LOCK}


def test_disk_full_while_checkpointing_is_one_line_and_nothing_looks_complete(cli, refused, data, tmp_path,
                                                                               monkeypatch):
    from accelerate import Accelerator

    out = tmp_path / "run"
    real_save = Accelerator.save_state

    def full(self, output_dir=None, **kwargs):
        real_save(self, output_dir, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", output_dir)

    monkeypatch.setattr(Accelerator, "save_state", full)
    refused(*train_args("dcgan", data, out), match=("No space left", "run the same command again"))
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
    assert not (out / "model").exists()
    monkeypatch.setattr(Accelerator, "save_state", real_save)
    assert cli(*train_args("dcgan", data, out))[0] == 0  # the advice works


def test_read_only_run_folder_is_one_line(refused, data, tmp_path, monkeypatch):
    from synthworth.engine.run import RunFolder

    out = tmp_path / "run"

    def read_only(self, *args, **kwargs):  # what a read-only mount answers (the tests run as root)
        raise OSError(errno.EROFS, "Read-only file system", str(self.config_file))

    monkeypatch.setattr(RunFolder, "create", read_only)
    refused(*train_args("dcgan", data, out), match=("Read-only file system", "writable"))
