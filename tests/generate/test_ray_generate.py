"""``generate --executor ray``: blocks spread over Ray actors make the files one process makes."""

from __future__ import annotations

import hashlib


from synthbench.cli import main
from synthbench.data.dataset import Dataset


def digest(folder) -> dict[str, str]:
    """Every file of a generated Dataset but the timing log, hashed (PNG bytes hold their metadata)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in {"generation.jsonl", "manifest.json"}
            and not p.name.startswith(".")}


def test_generation_through_ray_gives_the_same_files(dcgan_run, tmp_path, ray_cluster):
    common = ["generate", "--from", str(dcgan_run), "--count", "23", "--batch-size", "4", "-q"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2"]) == 0
    one, spread = digest(tmp_path / "one"), digest(tmp_path / "ray")
    # The split folders (train/, test/) hold the same images again, as hard links: the HF layout.
    assert sum(name.endswith(".png") and name.split("/")[0] not in ("train", "test") for name in one) == 23
    assert "metadata.jsonl" in one and "README.md" in one
    assert any(name.endswith(".npy") for name in one), sorted(one)
    assert spread == one
    assert Dataset.open(tmp_path / "ray").fingerprint == Dataset.open(tmp_path / "one").fingerprint
    # Every block was logged once, by an actor of the Ray run.
    rows = (tmp_path / "ray" / "generation.jsonl").read_text().splitlines()
    assert len(rows) == 6 and Dataset.open(tmp_path / "ray").manifest["generation"]["images_generated"] == 23
