"""The quick demo end to end, and the HTML report it writes (parsed, every reference checked)."""

from __future__ import annotations

import contextlib
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from synthworth.cli import main
from synthworth.errors import SynthworthError
from synthworth.report import build_report


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.scripts, self.tables, self.headings = [], [], 0, 0, []
        self._heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src"))
        elif tag in ("link", "a") and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self.tables += 1
        elif tag in ("h1", "h2", "h3"):
            self._heading = ""

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None


def parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@contextlib.contextmanager
def working_folder(folder: Path):
    """Commands typed in ``folder``, as a user types them: relative paths from there."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The quick demo as a newcomer runs it: from a fresh folder, its default (relative) output."""
    folder = tmp_path_factory.mktemp("fresh")
    with working_folder(folder):
        assert main(["demo", "--quick", "--quiet"]) == 0
    return folder / "synthworth-demo-quick"


def _not_read(page: Path) -> list[str]:
    """The page's own notes of files it refused to read (a run's files must never be among them)."""
    text = page.read_text(encoding="utf-8")
    return [line for line in text.split("<li>") if "is not read" in line or "points outside" in line]


def test_demo_report_shows_every_generator_from_a_relative_folder(demo):
    """The demo's default output is relative: every trained generator's section still has its
    per-epoch grids, its loss curves, and no run file is refused as lying outside its run."""
    page = demo / "report" / "index.html"
    assert not _not_read(page), _not_read(page)
    names = {Path(s).name for s in parse(page).images}
    for run in ("dcgan", "ddpm"):
        assert f"run-{run}-epoch-001.png" in names, run  # the quick demo trains one epoch
        assert any(n.startswith(f"run-{run}-loss") for n in names), run
    # the digits' quality numbers come from a small classifier's features: the page says they are weak
    assert "These features are weak" in page.read_text(encoding="utf-8")
    runs = json.loads((demo / "study" / "runs.json").read_text())
    assert all(not Path(p).is_absolute() and (demo / "study" / p).resolve() == (demo / "runs" / k).resolve()
               for k, p in runs.items()), runs


def test_report_and_compare_take_relative_run_folders(demo):
    """The README's own examples type relative folders for --run: they are read, not refused."""
    with working_folder(demo.parent):
        d = demo.name
        assert main(["report", f"{d}/study", "--out", "rel/index.html", "--run", f"gan={d}/runs/dcgan"]) == 0
        assert main(["compare", "--run", f"gan={d}/runs/dcgan", "--run", f"ddpm={d}/runs/ddpm", "--real",
                     f"{d}/data/digits16", "--draws", "2", "--samples", "40", "--cache", "cache", "--out", "cmp",
                     "--quiet"]) == 0
    page, cmp_page = demo.parent / "rel" / "index.html", demo.parent / "cmp" / "report" / "index.html"
    assert not _not_read(page), _not_read(page)
    assert "run-gan-epoch-001.png" in {Path(s).name for s in parse(page).images}
    assert not _not_read(cmp_page), _not_read(cmp_page)
    names = {Path(s).name for s in parse(cmp_page).images}
    assert any(n.startswith("grid-gan") for n in names) and any(n.startswith("grid-ddpm") for n in names), names


def test_quick_demo_runs_every_stage(demo):
    stages = json.loads((demo / "study" / "demo.json").read_text())["stage_seconds"]
    assert list(stages) == ["prepare", "train dcgan", "train ddpm", "generate dcgan", "generate ddpm",
                            "study", "report"]
    for run in ("dcgan", "ddpm"):
        assert (demo / "runs" / run / "model" / "synthworth.json").is_file()
        assert json.loads((demo / "synthetic" / run / "manifest.json").read_text())["num_images"] == 60
    results = pd.read_csv(demo / "study" / "results.csv")
    assert set(results["composition"]) == {"real", "artificial", "mixed", "subset_real"}
    assert set(results["generator"].fillna("")) == {"", "dcgan", "ddpm"}
    assert sorted(results["seed"].unique()) == [0, 1] and sorted(results["size"].unique()) == [20, 40]
    assert results["accuracy"].between(0, 1).all()
    assert (demo / "study" / "metrics.csv").is_file()


def test_report_is_offline_and_every_reference_exists(demo):
    page = demo / "report" / "index.html"
    parsed = parse(page)
    assert parsed.scripts == 0
    assert not [l for l in parsed.links if l.startswith(("http:", "https:", "//"))]
    assert parsed.images, "the report shows no figure"
    for src in parsed.images:
        assert not src.startswith(("http:", "https:", "data:")) and (page.parent / src).is_file(), src
    for heading in ("The source study's table", "The source study's figures", "Beyond the source study",
                    "Image quality per generator", "Trained generators: samples per epoch and loss curves",
                    "Sample grids of the Datasets", "What produced this"):
        assert heading in parsed.headings
    assert parsed.tables >= 5
    names = {Path(s).name for s in parsed.images}
    assert {"real_vs_artificial.png", "real_vs_mixed.png", "mixed_vs_subset_real.png", "generators_compared.png",
            "size_sweep.png", "paired_differences.png", "per_class.png", "dataset-real.png", "dataset-dcgan.png",
            "dataset-ddpm.png", "run-dcgan-epoch-001.png", "run-ddpm-epoch-001.png",
            "run-dcgan-loss_per_iteration.png", "run-ddpm-loss_per_epoch.png"} <= names


def test_the_page_says_how_long_each_classifier_trained(demo):
    """The budget decides whether the curve measures data or compute: the page says which, with
    the optimizer steps results.csv records (the quick demo: the default, equal steps)."""
    results = pd.read_csv(demo / "study" / "results.csv")
    assert set(results["budget"]) == {"steps"} and results["optimizer_steps"].nunique() == 1
    text = (demo / "report" / "index.html").read_text(encoding="utf-8")
    steps = int(results["optimizer_steps"].iloc[0])
    assert ("Training budget, steps: the same number of optimizer steps for every classifier, so the learning "
            f"curve measures data, not compute ({steps} optimizer steps per classifier).") in text
    assert "for paired differences a Student-t interval." not in text   # the comparisons use a bootstrap


def test_report_table_cells_match_the_summary(demo):
    summary = pd.read_csv(demo / "study" / "summary.csv")
    real = summary[(summary["composition"] == "real") & (summary["size"] == 20)].iloc[0]
    text = (demo / "report" / "index.html").read_text()
    assert f"{real['accuracy_mean']:.3f}" in text


def test_second_run_reuses_everything(demo):
    assert main(["demo", "--quick", "--out", str(demo), "--quiet"]) == 0
    stages = json.loads((demo / "study" / "demo.json").read_text())["stage_seconds"]
    assert stages["train dcgan"] < 1 and stages["train ddpm"] < 1 and stages["generate ddpm"] < 3


def test_report_cli_and_bad_input(demo, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(demo / "study"), "--out", str(out), "--run", f"gan={demo / 'runs' / 'dcgan'}"]) == 0
    assert out.is_file() and "gan" in parse(out).headings
    assert main(["report", str(tmp_path)]) == 2
    assert "not a study results folder" in capsys.readouterr().err
    assert main(["report", str(demo / "study"), "--run", "nonsense"]) == 2
    with pytest.raises(SynthworthError):
        build_report(tmp_path / "missing")


def test_quick_faces_demo_measures_all_three_models(tmp_path):
    """DCGAN, pixel DDPM and latent diffusion (its autoencoder trained first) on the bundled
    faces, evaluated during training, then the four findings leading the report."""
    import json

    with working_folder(tmp_path):  # as a newcomer types it: the default, relative output folder
        assert main(["demo", "--faces", "--quick", "--quiet"]) == 0
    out = tmp_path / "synthworth-faces-demo-quick"
    # the autoencoder is a run of its own (one, shared), and every latent replicate was trained on its latents
    assert (out / "runs" / "vae" / "model" / "config.json").is_file()
    for seed in (0, 1):
        assert str(out / "runs" / "vae") in (out / "runs" / "ldm" / f"seed-{seed}" / "config.yaml").read_text()
    for kind in ("dcgan", "ddpm", "ldm"):  # each generator: a replicates folder of one run per seed
        manifest = json.loads((out / "runs" / kind / "replicates.json").read_text())
        assert manifest["kind"] == kind and [r["seed"] for r in manifest["runs"]] == [0, 1], kind
        for seed in (0, 1):
            run = out / "runs" / kind / f"seed-{seed}"
            assert (run / "model").is_dir() and f"seed: {seed}" in (run / "config.yaml").read_text(), (kind, seed)
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            evals = [r for r in rows if r.get("kind") == "eval"]
            assert [r["epoch"] for r in evals] == [1, 2, 3] and all("fid" in r for r in evals), kind
            assert evals[0]["features"] == "file" and evals[0]["real_split"] == "test"
    findings = json.loads((out / "findings" / "findings.json").read_text())
    assert set(findings["models"]) == {"DCGAN", "pixel DDPM", "latent diffusion"}
    assert findings["real"]["train_images"] == 70 and findings["real"]["reference_images"] == 30
    # intervals over the replicates, and the test between models over runs
    test = findings["closest_test"]
    assert test["best"] == findings["closest"] and set(test["tests"]) == set(findings["models"]) - {test["best"]}
    for name, model in findings["models"].items():
        assert model["runs"] == 2 and model["seeds"] == [0, 1], name
        fid = model["quality"]["fid"]
        assert fid["covers"] == "runs" and len(fid["per_run"]) == 2, name
        assert fid["low"] <= fid["mean"] <= fid["high"], name
        assert "over its 2 runs (seeds 0, 1)" in model["sentences"]["quality"], name
        assert model["plateau"]["points"] == 3 and model["plateau"]["status"] != "too few points", name
        assert model["exposure"]["n"] == 2 * findings["draws"] * findings["samples"]
        assert model["cost"]["train_seconds"] > 0 and model["cost"]["ratio"] >= 1
        assert all(model["sentences"][k] for k in ("quality", "plateau", "exposure", "cost"))
    assert findings["models"]["latent diffusion"]["cost"]["extra_seconds"] > 0  # its autoencoder
    # the autoencoder's diagnostics: its held-out reconstructions measured
    recon = findings["models"]["latent diffusion"]["autoencoder"]["reconstruction"]
    assert recon["images"] == 30 and recon["psnr"] > 0 and recon["recon_fid"] >= 0
    page = out / "report" / "index.html"
    parsed = parse(page)
    from urllib.parse import unquote

    images = [unquote(src) for src in parsed.images]  # model names with spaces are %20 in the page
    assert parsed.scripts == 0 and all((page.parent / src).is_file() for src in images)
    assert parsed.headings[1].startswith("Findings")  # the page opens with them, before any grid
    text = page.read_text()
    assert not _not_read(page), _not_read(page)
    assert "no run evaluated itself during training" not in text
    for name in findings["models"]:
        assert findings["models"][name]["sentences"]["plateau"].split(":")[0] in text
    names = {Path(s).name for s in images}
    assert {"quality-fid-epoch.png", "quality-fid-time.png"} <= names
    for name in ("DCGAN", "pixel DDPM", "latent diffusion"):
        assert any(n.startswith("grid-") and name in n and n.endswith("epoch-003.png") for n in names), name


def test_report_of_the_demos_folder_points_at_its_study(demo, capsys):
    """`report DEMO_FOLDER` (the folder the demo printed) names the study folder inside it, and
    following the advice works."""
    assert main(["report", str(demo), "--out", str(demo.parent / "r2" / "index.html")]) == 2
    err = capsys.readouterr().err
    assert f"holds one in {demo / 'study'}" in err and "give that folder instead" in err
    assert main(["report", str(demo / "study"), "--out", str(demo.parent / "r2" / "index.html")]) == 0


def _as_written_before_the_rename(folder: Path) -> None:
    """Turn a demo folder into what synthworth wrote while it was still called synthbench: its
    markers, model configs, version keys and page tags under the old name."""
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        if path.name in (".synthworth", ".synthworth.lock", "synthworth.json"):
            path.rename(path.with_name(path.name.replace("synthworth", "synthbench")))
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", "") and path.stat().st_size < 5_000_000:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            old = text.replace("synthworth_version", "synthbench_version").replace(
                "content='synthworth", "content='synthbench")
            if old != text:
                path.write_text(old, encoding="utf-8")
    # A generation plan holds a content hash of its model folder, file names included: the old
    # code hashed the folder as it lay then, under the old names.
    from synthworth.generate.sources import _folder_digest

    for plan in folder.glob("synthetic/*/generate.json"):
        data = json.loads(plan.read_text())
        data["generator"]["weights"] = _folder_digest(folder / "runs" / plan.parent.name / "model")
        plan.write_text(json.dumps(data, indent=1))


def test_a_demo_folder_written_under_the_old_name_is_recognised_and_continued(demo, tmp_path):
    """Datasets, runs, generated Datasets, study results and the page written before the rename
    (markers .synthbench, model synthbench.json) are synthworth's own: the demo continues the
    folder, reusing every stage, and rewrites its page."""
    import shutil

    old = tmp_path / "old-demo"
    shutil.copytree(demo, old, symlinks=True)
    _as_written_before_the_rename(old)
    assert (old / ".synthbench").is_file() and (old / "runs" / "dcgan" / "model" / "synthbench.json").is_file()
    assert not list(old.rglob(".synthworth")) and not list(old.rglob("synthworth.json"))
    assert main(["demo", "--quick", "--out", str(old), "--quiet"]) == 0
    stages = json.loads((old / "study" / "demo.json").read_text())["stage_seconds"]
    assert stages["train dcgan"] < 1 and stages["train ddpm"] < 1 and stages["generate ddpm"] < 3
    assert main(["data", "info", str(old / "synthetic" / "ddpm")]) == 0
    page = old / "report" / "index.html"
    assert "content='synthworth" in page.read_text(encoding="utf-8")
    assert "run-dcgan-epoch-001.png" in {Path(s).name for s in parse(page).images}


def test_a_bare_demo_marker_does_not_open_the_parent_folder(demo, tmp_path):
    """runs.json is followed into the demo's folder only when the results folder is that demo's
    `study` and its marker lists what the demo wrote; a marker file with just the kind does not
    let a results folder reach its neighbours."""
    import shutil

    copy = tmp_path / "unpacked"
    shutil.copytree(demo / "study", copy / "study")
    shutil.copytree(demo / "runs", copy / "runs")
    (copy / ".synthworth").write_text(json.dumps({"kind": "demo"}))
    assert main(["report", str(copy / "study"), "--out", str(tmp_path / "page" / "index.html")]) == 0
    notes = _not_read(tmp_path / "page" / "index.html")
    for run in ("dcgan", "ddpm"):   # ../runs/NAME lies inside the copy, but outside its results folder
        assert any(n.startswith(f"run {run}: ") and "named in runs.json" in n for n in notes), notes
