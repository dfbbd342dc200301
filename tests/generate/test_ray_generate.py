"""``generate --executor ray``: blocks spread over Ray actors make the files one process makes."""

from __future__ import annotations

import hashlib
import json


from synthworth.cli import main
from synthworth.data.dataset import Dataset


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
    # each actor timed its sampling calls and named its own device; the manifest sums them
    assert all(json.loads(r)["sample_seconds"] > 0 and json.loads(r)["device_name"].startswith("cpu: ") for r in rows)
    assert Dataset.open(tmp_path / "ray").manifest["generation"]["sampling"]["images"] == 23


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in err and len(lines[0]) < 1000, err  # a flattened traceback is several KB
    return lines[0]


def test_a_bad_sampler_is_one_line_before_ray_starts(tmp_path, capsys, ray_cluster):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_generate_trained import save_ddpm

    folder = save_ddpm(tmp_path / "ddpm")
    out = tmp_path / "out"
    assert main(["generate", "--from", str(folder), "--count", "2", "--sampler", "euler", "--out", str(out),
                 "--executor", "ray", "--workers", "1", "-q"]) == 2
    assert _one_error_line(capsys) == "synthworth: error: unknown sampler 'euler'; choose one of ddpm, ddim, dpmsolver++"
    assert not out.exists()


def test_an_error_on_a_ray_worker_is_one_line(tiny_pipeline, tmp_path, capsys, ray_cluster, offline_hub):
    """Weights damaged on disk are found only where the pipeline is loaded: on the Ray worker. Its
    error reaches the user as the one line the same failure gives without Ray."""
    import shutil

    pipe = tmp_path / "sd"
    shutil.copytree(tiny_pipeline, pipe)
    weights = pipe / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    args = ["generate", "--pipeline", str(pipe), "--theme", "animals", "--count", "2", "--cpu", "-q"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 2
    local = _one_error_line(capsys)
    assert main([*args, "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "1"]) == 2
    assert _one_error_line(capsys) == local and "cannot load pipeline sd" in local
