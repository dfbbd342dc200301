"""A generated Dataset records the seconds its sampling took, on which device, for how many images."""

from __future__ import annotations

import json
import time

import pytest

from synthworth.cli import main
from synthworth.data import timing
from synthworth.data.dataset import Dataset
from synthworth.generate import GenerateConfig, generate
from synthworth.generate import blocks as blocks_module
from synthworth.generate.sources import _Trained, device_name

SAMPLE_DELAY = 0.05   # added to each sampling call
WRITE_DELAY = 0.1     # added to each PNG written: must not be counted as sampling


def timing_rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "generation.jsonl").read_text().splitlines()]


def test_sampling_seconds_device_and_images_are_recorded_and_read_back(dcgan_run, tmp_path, monkeypatch, capsys):
    render, write_png = _Trained.render, blocks_module._write_png

    def slow_render(self, subjects, seeds):
        time.sleep(SAMPLE_DELAY)
        return render(self, subjects, seeds)

    def slow_write(*args):
        time.sleep(WRITE_DELAY)
        return write_png(*args)

    monkeypatch.setattr(_Trained, "render", slow_render)
    monkeypatch.setattr(blocks_module, "_write_png", slow_write)
    out = tmp_path / "timed"
    generate(GenerateConfig(from_run=str(dcgan_run), count=6, batch_size=3), out, progress=False)
    rows = timing_rows(out)
    assert [r["images"] for r in rows] == [3, 3]
    for row in rows:
        # the sampling call alone: at least the delay put into it, and none of the 3 writes' delays
        assert row["sample_seconds"] >= SAMPLE_DELAY
        assert row["seconds"] - row["sample_seconds"] >= 3 * WRITE_DELAY
        assert row["device_name"] == device_name("cpu")
    name = device_name("cpu")
    assert name.startswith("cpu: ") and name.endswith(" threads)")

    ds = Dataset.open(out)   # read back from the manifest on disk
    recorded = timing.read(ds.manifest)
    assert recorded["images"] == 6
    assert recorded["seconds"] == pytest.approx(sum(r["sample_seconds"] for r in rows), abs=1e-3)
    assert recorded["seconds_per_image"] == pytest.approx(recorded["seconds"] / 6)
    assert recorded["images_per_second"] == pytest.approx(6 / recorded["seconds"])
    assert recorded["devices"] == [{"device": name, "images": 6, "seconds": pytest.approx(recorded["seconds"]),
                                    "blocks": 2}]
    assert (recorded["blocks_timed"], recorded["blocks_untimed"]) == (2, 0)
    # the generated Dataset names the run it came from, where its training time is
    assert ds.manifest["provenance"]["run"] == str(dcgan_run.resolve())
    assert main(["data", "info", str(out)]) == 0
    assert "s per image" in capsys.readouterr().out and name in timing.describe(ds.manifest)


def test_a_resumed_generation_sums_the_blocks_of_both_runs(dcgan_run, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    render = _Trained.render
    calls = []

    def dies_on_the_second_block(self, subjects, seeds):
        calls.append(seeds)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render(self, subjects, seeds)

    config = GenerateConfig(from_run=str(dcgan_run), count=9, batch_size=3)
    monkeypatch.setattr(_Trained, "render", dies_on_the_second_block)
    with pytest.raises(KeyboardInterrupt):
        generate(config, out, progress=False)
    monkeypatch.setattr(_Trained, "render", render)
    assert len(timing_rows(out)) == 1
    ds = generate(config, out, progress=False).dataset
    rows = timing_rows(out)
    assert len({r["session"] for r in rows}) == 2 and sorted(r["block"] for r in rows) == [0, 1, 2]
    recorded = timing.read(ds.manifest)
    assert recorded["images"] == 9 and recorded["blocks_timed"] == 3
    assert recorded["seconds"] == pytest.approx(sum(r["sample_seconds"] for r in rows), abs=1e-3)
    assert recorded["seconds_per_image"] == pytest.approx(recorded["seconds"] / 9)


def test_a_dataset_without_timing_still_loads_and_says_it_lacks_it(dcgan_run, tmp_path, capsys):
    out = tmp_path / "old"
    generate(GenerateConfig(from_run=str(dcgan_run), count=3, batch_size=3), out, progress=False)
    manifest_file = out / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["generation"]["sampling"]   # as a synthworth that did not time sampling wrote it
    manifest_file.write_text(json.dumps(manifest))
    ds = Dataset.open(out)
    assert len(ds) == 3 and timing.read(ds.manifest) is None
    assert "not recorded" in timing.lacking(ds.manifest)
    assert main(["data", "info", str(out)]) == 0
    assert "generation   generation time not recorded" in capsys.readouterr().out
    # rows of such a synthworth (no sample_seconds) give no sampling entry, and are counted as untimed
    assert timing.summarise([{"images": 3, "seconds": 1.0}]) is None
    mixed = timing.summarise([{"images": 3, "seconds": 1.0}, {"images": 2, "sample_seconds": 0.5, "device_name": "x"}])
    assert (mixed["images"], mixed["seconds_per_image"], mixed["blocks_untimed"]) == (2, 0.25, 1)
    assert "not made by synthworth generate" in timing.lacking({"kind": "prepared"})
