"""The advice a finished shard prints: a ``synthworth data merge`` command naming every shard folder."""

from __future__ import annotations

import re
import shlex

from synthworth.cli import main
from synthworth.data.dataset import Dataset


def _advice(err: str) -> str:
    found = re.findall(r"when every shard is, run: (.*)$", err, flags=re.M)
    assert len(found) == 1, err
    return found[0]


def test_shards_in_folders_of_their_own_get_a_merge_command_naming_every_folder(dcgan_run, tmp_path, capsys):
    """Three shards, each into its own folder (``--out part$ID`` in a SLURM array): the advice
    used to name only the shard's own folder, and that merge stopped at the missing images of the
    others. The last shard's advice names all three, and following it gives the whole set."""
    args = ["generate", "--from", str(dcgan_run), "--count", "8", "--batch-size", "2"]
    parts = [tmp_path / f"part{i}" for i in range(3)]
    assert main([*args, "--out", str(parts[0]), "--shard", "0/3"]) == 0
    first = _advice(capsys.readouterr().err)
    assert first.startswith(f"synthworth data merge --out {parts[0]} OTHER_SHARD_FOLDER...")  # the others not begun
    assert main([*args, "--out", str(parts[1]), "--shard", "1/3"]) == 0
    capsys.readouterr()
    assert main([*args, "--out", str(parts[2]), "--shard", "2/3"]) == 0
    last = shlex.split(_advice(capsys.readouterr().err))
    assert last[:4] == ["synthworth", "data", "merge", "--out"]
    assert sorted(last[4:]) == [str(p) for p in parts]
    assert main(last[1:]) == 0, capsys.readouterr().err
    assert len(Dataset.open(last[4])) == 8


def test_shards_sharing_one_folder_get_the_merge_of_that_folder(dcgan_run, tmp_path, capsys):
    args = ["generate", "--from", str(dcgan_run), "--count", "6", "--batch-size", "2", "--out", str(tmp_path / "shared")]
    assert main([*args, "--shard", "0/2"]) == 0
    capsys.readouterr()
    assert main([*args, "--shard", "1/2"]) == 0
    assert _advice(capsys.readouterr().err) == f"synthworth data merge --out {tmp_path / 'shared'}"
