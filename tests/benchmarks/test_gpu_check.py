"""benchmarks/gpu_check.py keeps working on a machine without a GPU: ``--tiny`` prints every row
of the table with a number (or, for the torch.compile rows only, "n/a (reason)"), writes it as
JSON / CSV and removes what it made; the full check refuses in one line. The Ray row (a study
whose cells ask for a share of a GPU) takes a local Ray cluster, too slow here: its code runs
below against a stand-in for Ray (``fake_ray``), and the real run is left to ``--tiny`` itself.
No figure is judged: speed is measured by the script, never asserted in a test."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
TRAIN = [f"train {m} {s}" for m in ("ddpm", "resnet34") for s in ("fp32", "bf16", "bf16-cl", "bf16-cl-compile")]
TINY_ROWS = TRAIN + ["t2i fp32 batch 1", "t2i fp32 batch 2", "accelerate launch", "ray study gpu share"]


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_check

    return gpu_check


def test_tiny_gives_every_row_a_number_or_a_reason(tmp_path):
    out, temp = tmp_path / "table.json", tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--rows", "ddpm,resnet34,t2i,launch",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    table = json.loads(out.read_text())
    assert table["mode"] == "tiny" and table["seconds"] > 0
    rows = {r["row"]: r for r in table["rows"]}
    assert list(rows) == TINY_ROWS
    printed = done.stdout.splitlines()
    for name, r in rows.items():
        assert any(line.startswith(name + " ") for line in printed), name
        assert r["measures"], name
        if name == "ray study gpu share":
            assert r["status"] == "n/a" and r["synthworth"] == "n/a (not selected (--rows))"
            continue
        if r["status"] == "n/a":  # only a compiler may fail softly, and it says why
            assert name.endswith("compile"), r
            assert any(isinstance(v, str) and v.startswith("n/a (") and len(v) > 8 for v in (r["synthworth"], r["plain"]))
            continue
        assert r["status"] == "ok", r
        assert isinstance(r["synthworth"], float) and r["synthworth"] > 0, r
        if r["unit"] == "images/s":
            assert isinstance(r["plain"], float) and r["plain"] > 0, r
            assert r["ratio"] == pytest.approx(r["synthworth"] / r["plain"])
        else:
            assert r["plain"] is None and r["ratio"] is None
    for name in TRAIN:
        assert "PARAMETERS DIFFER" not in rows[name]["notes"]  # both ways trained the same network
    assert "pass; device cpu, 1 process(es)" in rows["accelerate launch"]["notes"]
    assert list(temp.iterdir()) == []  # the temporary folder was removed


def test_the_ray_row_runs_a_study_whose_cells_ask_for_a_gpu_share(benchmarks, digits16, tmp_path, fake_ray):
    import _gpu_cluster

    ray = fake_ray({"CPU": 2.0, "GPU": 1.0})
    got = _gpu_cluster.ray_study(digits16.path, tmp_path, tiny=True, gpu_share=0.5)
    assert got["cells"] == got["planned"] == 2 and got["devices"] == ["cpu"] and got["seconds"] > 0
    assert {(r["num_gpus"], r["num_cpus"]) for r in ray.requests} == {(0.5, 1.0)}
    assert got["workers"] == 1 and got["at_once"] == 1  # the stand-in runs the cells one after another


def test_the_full_check_refuses_without_a_gpu_in_one_line(benchmarks, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert benchmarks.main([]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "no CUDA GPU" in err and "--tiny" in err and not captured.out


def test_out_names_a_json_or_csv_file(benchmarks, capsys):
    with pytest.raises(SystemExit):
        benchmarks.main(["--tiny", "--out", "table.txt"])
    assert "name a .json or .csv file" in capsys.readouterr().err


def test_the_table_is_written_as_csv(benchmarks, tmp_path):
    rows = benchmarks.planned_rows(tiny=False)
    benchmarks._fill(rows[0], 2.0, 4.0, "a note")
    benchmarks._fill(rows[3], 1.0, "n/a (RuntimeError: no compiler)")
    path = tmp_path / "table.csv"
    benchmarks.write(rows, path, {"mode": "full"})
    with path.open() as fh:
        read = list(csv.DictReader(fh))
    assert [r["row"] for r in read] == [r.row for r in rows]
    assert (read[0]["synthworth"], read[0]["plain"], read[0]["ratio"], read[0]["status"]) == ("2.0", "4.0", "0.5", "ok")
    assert read[3]["status"] == "n/a" and read[3]["plain"] == "n/a (RuntimeError: no compiler)"
    assert [r["row"] for r in read][-5:] == ["t2i fp16 batch 1", "t2i fp16 batch 8", "t2i fp16 batch 16",
                                            "accelerate launch", "ray study gpu share"]


def test_the_full_pipeline_has_stable_diffusion_1_5s_sizes(benchmarks):
    """Built on the meta device (no memory, no weights): the parameter counts of SD 1.5's UNet,
    VAE and CLIP text encoder (859.52 M, 83.65 M, 123.06 M)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    import _gpu_generate as gen

    with torch.device("meta"):
        parts = (UNet2DConditionModel(**gen.SD15_UNET), AutoencoderKL(**gen.SD15_VAE),
                 CLIPTextModel(CLIPTextConfig(**gen.SD15_TEXT)))
    assert [sum(p.numel() for p in m.parameters()) for m in parts] == [859_520_964, 83_653_863, 123_060_480]
