"""Exported and generated Datasets as Hugging Face dataset repositories (issue 13).

Both ways a `datasets` user loads a folder are checked, offline: ``load_dataset(FOLDER)`` (the
folder as a dataset repository: what the Hub does after an upload, reading the card) and
``load_dataset("imagefolder", data_dir=FOLDER)`` (no card). Each must give the real splits, a
``ClassLabel`` with the class names in the Dataset's order, and every image with its own label
(matched by pixels); torchvision's ``ImageFolder`` on each split folder must give the same
indices; ``Dataset.to_hf()`` must give the same ``DatasetDict``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from synthworth.cli import main
from synthworth.data.dataset import Dataset
from synthworth.data.hf import HF_ORDER, HF_SPLITS, provenance_facts
from synthworth.errors import DataError
from synthworth.safety import owned_kind

STYLES = ["repository", "imagefolder"]


@pytest.fixture
def prepared(tmp_path, class_tree, run_prepare) -> Dataset:
    """Three classes of distinct noise images with train, valid and test splits."""
    for seed, (split, n) in enumerate([("train", 4), ("val", 2), ("test", 2)]):
        class_tree(tmp_path / "src" / split, {"bird": n, "cat": n + 1, "dog": n}, noise=True, seed=100 * seed)
    ds = run_prepare(tmp_path / "ds", source="folder", path=tmp_path / "src", size=8)
    assert ds.split_names == ["train", "valid", "test"]
    return ds


def save_gan(folder: Path, classes=("b", "a", "c")) -> Path:
    """An untrained class-conditional DCGAN of a few hundred parameters: milliseconds per image."""
    import torch

    from synthworth.generators.dcgan import DCGAN, DCGANModelConfig

    torch.manual_seed(0)
    DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4, conditional=True, embed_dim=4), 16, 1,
          list(classes)).save(folder)
    return folder


@pytest.fixture
def generated(tmp_path) -> Dataset:
    gan = save_gan(tmp_path / "gan")
    out = tmp_path / "gen"
    assert main(["generate", "--from", str(gan), "--per-class", "4", "--test-fraction", "0.25",
                 "--out", str(out), "-q"]) == 0
    return Dataset.open(out)


def export(ds: Dataset, out: Path, *extra: str) -> Path:
    assert main(["data", "export", str(ds.path), "--out", str(out), "-q", *extra]) == 0
    return out


def expected(ds: Dataset) -> dict[str, dict[bytes, int]]:
    """{HF split: {pixel bytes: label}} of a Dataset whose images are all distinct."""
    out: dict[str, dict[bytes, int]] = {}
    images = ds.take(np.arange(len(ds)))
    for image, label, split in zip(images, ds.labels, ds.splits):
        pixels = image[:, :, 0] if image.shape[2] == 1 else image
        out.setdefault(HF_SPLITS[str(split)], {})[pixels.tobytes()] = int(label)
    assert sum(map(len, out.values())) == len(ds), "test images must be distinct"
    return {split: out[split] for split in HF_ORDER if split in out}


def check_loaded(loaded, ds: Dataset) -> None:
    """Splits, sizes, ClassLabel names and every image's label, matched by its pixels."""
    want = expected(ds)
    assert list(loaded) == list(want)  # train, validation, test: in that order, no other
    for split, table in want.items():
        part = loaded[split]
        assert len(part) == len(table)
        label = part.features["label"]
        assert type(label).__name__ == "ClassLabel" and label.names == ds.class_names
        got = {np.asarray(row["image"]).tobytes(): row["label"] for row in part}
        assert got == table


@pytest.mark.parametrize("style", STYLES)
def test_an_export_loads_with_its_splits_and_class_names(prepared, tmp_path, hf, style):
    out = export(prepared, tmp_path / "export")
    loaded = hf(out, style)
    assert list(loaded) == ["train", "validation", "test"]
    check_loaded(loaded, prepared)


@pytest.mark.parametrize("style", STYLES)
def test_a_generated_folder_loads_with_its_splits_and_class_names(generated, hf, style):
    assert generated.class_names == ["a", "b", "c"] and generated.split_names == ["train", "test"]
    loaded = hf(generated.path, style)
    assert {k: len(v) for k, v in loaded.items()} == {"train": 9, "test": 3}
    check_loaded(loaded, generated)


def test_image_folder_reads_each_split_with_the_same_indices(prepared, generated, tmp_path):
    from torchvision.datasets import ImageFolder

    for ds, folder in ((prepared, export(prepared, tmp_path / "export")), (generated, generated.path)):
        for split, table in expected(ds).items():
            reader = ImageFolder(str(folder / split), allow_empty=True)
            assert len(reader.classes) == len(ds.class_names) and len(reader) == len(table)
            for path, target in reader.samples:
                pixels = np.asarray(reader.loader(path))
                pixels = pixels[:, :, 0] if ds.channels == 1 else pixels
                assert table[pixels.tobytes()] == target


def card_header(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert match, text[:200]
    return yaml.safe_load(match[1]), match[2]


@pytest.mark.parametrize("which", ["export", "generated"])
def test_the_card_describes_features_splits_and_provenance(prepared, generated, tmp_path, hf, which):
    from huggingface_hub import DatasetCard

    ds = generated if which == "generated" else prepared
    folder = generated.path if which == "generated" else export(prepared, tmp_path / "export")
    header, body = card_header(folder)
    datasets = hf.datasets
    features = datasets.Features._from_yaml_list(header["dataset_info"]["features"])
    assert list(features)[:2] == ["image", "label"] and features["image"] == datasets.Image()
    assert features["label"] == datasets.ClassLabel(names=ds.class_names)
    # Each image's plain facts are columns too: its source file, or its generator and seed.
    facts = {"generator", "seed"} if which == "generated" else {"source_file"}
    assert set(features) - {"image", "label"} >= facts and "class_name" not in features
    counts = {name: len(t) for name, t in expected(ds).items()}
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]} == counts
    assert header["configs"][0]["data_files"] == [{"split": s, "path": f"{s}/**"} for s in counts]
    assert "license" not in header and "# license: fill in" in (folder / "README.md").read_text()
    # The Hub's own reader of cards agrees, and loading the folder gives these features.
    assert DatasetCard.load(folder / "README.md").data.to_dict()["dataset_info"] == header["dataset_info"]
    assert hf(folder, "repository")["train"].features == features
    assert "## Provenance" in body and "synthworth" in body
    if which == "generated":
        assert "generator: ` gan `" in body and "seeds: ` 0 to 11 (image i has seed 0 + i) `" in body
        assert "real data the generator saw" in body
    else:
        # A published card names the source folder, never where it lies on this machine.
        source = Path(prepared.manifest["source"]["path"])
        assert source.is_absolute() and str(source) not in body and f'"path": "{source.name}"' in body


@pytest.mark.parametrize("which", ["export", "generated"])
def test_to_hf_equals_the_loaded_folder(prepared, generated, tmp_path, hf, which):
    ds = generated if which == "generated" else prepared
    folder = generated.path if which == "generated" else export(prepared, tmp_path / "export")
    direct, loaded = ds.to_hf(), hf(folder, "repository")
    assert list(direct) == list(loaded)
    for split in loaded:
        assert direct[split].features == loaded[split].features
        assert [r["label"] for r in direct[split]] == [r["label"] for r in loaded[split]]
        assert [np.asarray(r["image"]).tobytes() for r in direct[split]] == \
               [np.asarray(r["image"]).tobytes() for r in loaded[split]]
        others = [k for k in loaded[split].features if k != "image"]
        assert others and direct[split].select_columns(others).to_list() == \
               loaded[split].select_columns(others).to_list()


def test_to_hf_without_datasets_names_the_install(prepared, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    with pytest.raises(DataError, match="pip install datasets"):
        prepared.to_hf()


def test_one_split_exported_alone(prepared, tmp_path, hf):
    out = export(prepared, tmp_path / "valid-only", "--split", "valid")
    assert sorted(p.name for p in out.iterdir()) == [".synthworth", "README.md", "metadata.jsonl", "validation"]
    for style in STYLES:
        loaded = hf(out, style)
        assert list(loaded) == ["validation"]
        check_loaded(loaded, prepared.split("valid"))


def test_generated_folder_stays_resumable_and_replaceable(generated, tmp_path, capsys):
    out = generated.path
    assert owned_kind(out) == "generation"  # the split folders and card are listed in its marker
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.png")}
    gan = tmp_path / "gan"
    args = ["generate", "--from", str(gan), "--per-class", "4", "--test-fraction", "0.25", "--out", str(out), "-q"]
    assert main(args) == 0  # finished: reused as it is
    assert main([*args, "--overwrite"]) == 0  # its own folder: replaced
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.png")}
    assert after == before and owned_kind(out) == "generation"
    # Split folders hold the same files as the class folders (hard links, or copies).
    rows = [r for r in Dataset.open(out).items()]
    assert all((out / r["file_name"]).is_file() for r in rows)
    assert len([p for p in out.glob("train/*/*.png")]) + len([p for p in out.glob("test/*/*.png")]) == len(rows)


def test_provenance_reads_the_theme_template_sampler_and_training_data():
    plan = {"name": "sd", "seed": 5, "count": 3,
            "generator": {"source": "text2image", "pipeline": {"id": "tiny"},
                          "theme": {"name": "pets", "template": "A photo of a {subject}"},
                          "sampling": {"scheduler": "ddim", "steps": 2}}}
    trained_on = {"fingerprint": "f", "name": "cats", "path": "/d", "split": "train", "images": 10}
    facts = dict(provenance_facts({"plan": plan, "synthworth_version": "0.1.0", "provenance": {
        "kind": "filtered", "filter": {}, "parent": {"kind": "trained", "trained_on": trained_on, "note": ""}}}))
    assert facts["theme"] == "pets" and facts["prompt template"] == "A photo of a {subject}"
    assert facts["seeds"].startswith("5 to 7") and facts["sampler"] == {"scheduler": "ddim", "steps": 2}
    assert facts["real data the generator saw"] == {k: v for k, v in trained_on.items() if k != "path"}
    assert "not recorded" in dict(provenance_facts({"plan": plan}))["real data the generator saw"]


def test_classes_named_like_synthworths_own_files_generate_and_export(tmp_path, hf):
    """A class called ``manifest.json`` (or README.md, metadata.parquet, images.npy, ...) gets a
    folder of its own, ``(manifest.json)``, never the place of the file synthworth writes there:
    generation and export finish, and the real names come back from both load styles."""
    classes = ("metadata.parquet", "README.md", "manifest.json", "images.npy", "Generate.JSON", "cat")
    gan = save_gan(tmp_path / "gan", classes=classes)
    out = tmp_path / "gen"
    assert main(["generate", "--from", str(gan), "--per-class", "2", "--test-fraction", "0.5",
                 "--out", str(out), "-q"]) == 0
    ds = Dataset.open(out)
    assert sorted(ds.class_names) == sorted(classes) and np.bincount(ds.labels).tolist() == [2] * 6
    assert (out / "manifest.json").is_file() and (out / "README.md").is_file() and (out / "(manifest.json)").is_dir()
    assert (out / "train" / "metadata.parquet").is_file() and (out / "generate.json").is_file()
    assert (out / "(Generate.JSON)").is_dir()  # the same entry as generate.json on a case-insensitive disk
    exported = export(ds, tmp_path / "export")
    assert (exported / "train" / "metadata.parquet").is_file() and (exported / "README.md").is_file()
    for folder in (out, exported):
        for style in STYLES:
            check_loaded(hf(folder, style), ds)
    # The rule covers every file a generation folder or an export split folder holds beside its
    # class folders, not only the ones named above.
    from synthworth.data.hf import OWN_FILES
    from synthworth.generate.folder import PACKED, PLAN_FILE, TIMING_FILE

    assert {n.casefold() for n in (*PACKED, PLAN_FILE, TIMING_FILE, "README.md", "metadata.parquet")} <= OWN_FILES
