"""``synthworth generate --plan``: exactly the planned images per class, resumable, and a plan
naming other classes than the generator's refused (tiny DCGAN of conftest.py)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from synthworth.cli import main
from synthworth.data.dataset import Dataset
from synthworth.generate import GenerateConfig, generate
from synthworth.generate.planfile import FORMAT, KIND, read_plan
from synthworth.generate.sources import _Trained

COUNTS = {"0": 5, "1": 0, "2": 1, "3": 3, "4": 0, "5": 0, "6": 2, "7": 0, "8": 0, "9": 1}


def write_plan(path, counts=COUNTS, **extra):
    path.write_text(json.dumps({"kind": KIND, "format": FORMAT, "generator": "g", "class_counts": counts, **extra}))
    return path


def per_class(ds: Dataset) -> dict[str, int]:
    found = Counter(ds.class_names[int(c)] for c in ds.labels)
    return {name: found.get(name, 0) for name in ds.class_names}


def test_generate_writes_exactly_the_planned_counts_and_resumes(dcgan_run, tmp_path, monkeypatch, capsys):
    plan = write_plan(tmp_path / "plan.json")
    whole = tmp_path / "whole"
    assert main(["generate", "--from", str(dcgan_run), "--plan", str(plan), "--out", str(whole), "--batch-size",
                 "4", "-q"]) == 0
    ds = Dataset.open(whole)
    assert per_class(ds) == COUNTS and len(ds) == 12
    saved = json.loads((whole / "generate.json").read_text())
    assert saved["class_counts"] == COUNTS and saved["count"] == 12
    # classes take turns while they have images left: the first round holds every class with one
    seeds = {r["seed"]: r["class_name"] for r in (json.loads(line) for line in
                                                  (whole / "metadata.jsonl").read_text().splitlines())}
    assert [seeds[i] for i in range(5)] == ["0", "2", "3", "6", "9"]

    # Killed after the first block: the same command finishes it, to the same files.
    killed = tmp_path / "killed"
    render, calls = _Trained.render, []

    def dies_on_the_second_block(self, subjects, seeds):
        calls.append(seeds)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render(self, subjects, seeds)

    monkeypatch.setattr(_Trained, "render", dies_on_the_second_block)
    config = GenerateConfig(from_run=str(dcgan_run), class_counts=read_plan(plan), batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        generate(config, killed, progress=False)
    assert not (killed / "manifest.json").exists() and len(list(killed.glob("*/*.png"))) == 4
    monkeypatch.setattr(_Trained, "render", render)
    report = generate(config, killed, progress=False)
    assert (report.generated, report.skipped) == (8, 4)
    assert per_class(report.dataset) == COUNTS
    assert report.dataset.fingerprint == ds.fingerprint

    # Another plan for a started folder is refused, as any other option is.
    other = write_plan(tmp_path / "other.json", {**COUNTS, "1": 2})
    capsys.readouterr()
    assert main(["generate", "--from", str(dcgan_run), "--plan", str(other), "--out", str(killed), "-q"]) == 2
    assert "other options" in capsys.readouterr().err


def test_a_plan_with_other_classes_or_a_bad_file_is_refused(dcgan_run, tmp_path, capsys):
    def refused(plan, *more) -> str:
        capsys.readouterr()
        assert main(["generate", "--from", str(dcgan_run), "--plan", str(plan), "--out", str(tmp_path / "o"),
                     "-q", *more]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
        return err

    counts = {k: v for k, v in COUNTS.items() if k != "9"} | {"cat": 3}
    err = refused(write_plan(tmp_path / "cat.json", counts))
    assert "do not match the generator's" in err and "['9']" in err and "['cat']" in err
    assert "not a plan written by 'synthworth plan'" in refused(write_plan(tmp_path / "k.json", kind="x"))
    assert "whole number" in refused(write_plan(tmp_path / "neg.json", {**COUNTS, "0": -1}))
    assert "no such file" in refused(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    assert "not a readable JSON file" in refused(tmp_path / "bad.json")
    assert "one of --count, --per-class or --plan" in refused(write_plan(tmp_path / "p.json"), "--per-class", "2")
