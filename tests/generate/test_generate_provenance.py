"""Every generated Dataset records what its generator saw (``manifest["provenance"]``)."""

from __future__ import annotations

import json

import pytest

from synthworth.cli import main
from synthworth.data import provenance
from synthworth.data.dataset import Dataset
from synthworth.errors import DataError
from synthworth.generate import GenerateConfig, Shard, generate, merge


def test_a_trained_generator_records_the_real_dataset_of_its_run(dcgan_run, tmp_path, capsys):
    small = Dataset.open(dcgan_run.parent / "small")
    for source in (dcgan_run, dcgan_run / "model"):  # a run folder, or its exported model
        out = tmp_path / source.name
        ds = generate(GenerateConfig(from_run=str(source), per_class=1), out, progress=False).dataset
        prov = ds.manifest["provenance"]
        assert prov["kind"] == "trained"
        assert prov["trained_on"] == {"fingerprint": small.fingerprint, "name": "small",
                                      "path": str(small.path.resolve()), "split": "train", "images": 100}
        assert "100 real images" in prov["note"]
    # the run itself recorded the count and split it trained on
    assert json.loads((dcgan_run / "run.json").read_text())["data"]["images"] == 100
    assert main(["data", "info", str(out)]) == 0
    assert "provenance   trained on 100 real images (small, train split" in capsys.readouterr().out


def test_a_generator_without_its_run_says_it_does_not_know(dcgan_run, tmp_path):
    import shutil

    alone = tmp_path / "copied-model"
    shutil.copytree(dcgan_run / "model", alone)
    ds = generate(GenerateConfig(from_run=str(alone), per_class=1), tmp_path / "out", progress=False).dataset
    prov = ds.manifest["provenance"]
    assert prov["kind"] == "trained" and prov["trained_on"] is None and "did not record" in prov["note"]


def test_a_pretrained_pipeline_is_marked_as_trained_on_external_data(tiny_pipeline, tmp_path):
    config = GenerateConfig(pipeline=str(tiny_pipeline), theme="fruits", count=5, batch_size=5, steps=2,
                            size=8, cpu=True)
    ds = generate(config, tmp_path / "fruits", progress=False).dataset
    assert ds.manifest["provenance"] == {"kind": "pretrained", "trained_on": None,
                                         "note": f"trained on external data ({tiny_pipeline})"}


def test_merged_shards_keep_the_provenance(dcgan_run, tmp_path):
    config = GenerateConfig(from_run=str(dcgan_run), per_class=2, batch_size=5)
    parts = [tmp_path / f"part{i}" for i in range(2)]
    for i, part in enumerate(parts):
        generate(config, part, shard=Shard(i, 2), progress=False)
    merged = merge(tmp_path / "merged", parts, progress=False)
    whole = generate(config, tmp_path / "whole", progress=False).dataset
    assert merged.manifest["provenance"] == whole.manifest["provenance"]
    assert merged.manifest["provenance"]["trained_on"]["images"] == 100


def test_a_folder_begun_before_provenance_still_finishes(dcgan_run, tmp_path):
    """Provenance is a record, not a setting: a plan without it is the same plan."""
    config = GenerateConfig(from_run=str(dcgan_run), per_class=2, batch_size=5)
    out = tmp_path / "old"
    generate(config, out, shard=Shard(0, 2), progress=False)
    plan = json.loads((out / "generate.json").read_text())
    del plan["provenance"]
    (out / "generate.json").write_text(json.dumps(plan))
    ds = generate(config, out, shard=Shard(1, 2), progress=False)
    assert ds.generated > 0
    finished = merge(out, progress=False)
    assert "provenance" not in finished.manifest
    assert provenance.read(finished.manifest) is None
    assert provenance.describe(None).startswith("unknown")


@pytest.mark.parametrize("bad", [[1], {"kind": "magic"}, {"kind": "trained", "trained_on": {"path": "x"}},
                                 {"kind": "trained", "trained_on": {"fingerprint": "f", "images": -3}}])
def test_malformed_provenance_is_refused_by_readers(bad):
    with pytest.raises(DataError, match="provenance is malformed"):
        provenance.read({"provenance": bad})


def test_describe_quotes_what_the_generator_saw():
    prov = {"kind": "trained", "trained_on": {"fingerprint": "abcdef0123456789", "name": "digits16",
                                              "path": "/x/digits16", "split": "train", "images": 1437}}
    assert provenance.describe(prov) == "trained on 1437 real images (digits16, train split; fingerprint abcdef012345)"
    assert provenance.describe(provenance.pretrained("sd21")) == "trained on external data (sd21)"


@pytest.mark.parametrize("images", [True, -3, 2.5])
def test_a_run_json_with_an_odd_image_count_still_gives_provenance_its_reader_accepts(images):
    """What generate records must be what read() accepts: else every study refuses the Dataset
    with "generate the Dataset again", which would write the same record again."""
    from synthworth.data import provenance

    prov = provenance.trained({"data": {"fingerprint": "f" * 16, "path": None, "split": "train", "images": images}},
                              where="gen")
    assert provenance.problem(prov) is None, prov
    assert prov["trained_on"]["images"] is None


def test_a_latent_model_names_its_autoencoders_data_too(digits16, digits_small, tmp_path, capsys, single_thread):
    """Its VAE saw other images than the UNet: a generated Dataset's provenance, data info, the
    exchange table's provenance, its card and the comparison page say both (not only the UNet's)."""
    import torch

    from synthworth.classifiers.models import build_classifier
    from synthworth.classifiers.task import ClassifierModelConfig, save_classifier
    from synthworth.study.exchange import provenance_text

    vae, ldm, out = tmp_path / "vae", tmp_path / "ldm", tmp_path / "generated"
    assert main(["train", "vae", "--data", str(digits_small.path), "--out", str(vae), "--preset", "tiny",
                 "train.max_steps=2"]) == 0
    assert main(["train", "ldm", "--data", str(digits16.path), "--out", str(ldm), "--preset", "tiny",
                 f"vae={vae}", "train.max_steps=2"]) == 0
    assert main(["generate", "--from", str(ldm), "--count", "4", "--out", str(out), "--quiet"]) == 0
    prov = Dataset.open(out).manifest["provenance"]
    assert prov["trained_on"]["images"] == 1437 and prov["trained_on"]["fingerprint"] == digits16.fingerprint
    assert prov["autoencoder"]["trained_on"] == {"fingerprint": digits_small.fingerprint, "name": "ds",
                                                 "path": str(digits_small.path.resolve()), "split": "train",
                                                 "images": 160}
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    said = ("trained on 1437 real images (digits16, train split", "; its autoencoder trained on 160 real images (ds, "
            "train split")
    line = capsys.readouterr().out
    assert all(s in line for s in said), line
    assert "its autoencoder trained on 160 real images (ds, split train" in provenance_text(prov)
    card = (out / "README.md").read_text()
    assert '- real data its autoencoder saw: ` {"fingerprint": "' + digits_small.fingerprint in card
    # The comparison page says what each run saw.
    torch.manual_seed(0)
    model = ClassifierModelConfig(name="small_cnn", resolution=None, width=4)
    save_classifier(build_classifier("small_cnn", 10, 1, 16, width=4), tmp_path / "clf", model, digits16.class_names)
    assert main(["compare", "--run", f"ldm={ldm}", "--real", str(digits16.path), "--features", str(tmp_path / "clf"),
                 "--draws", "2", "--samples", "8", "--out", str(tmp_path / "cmp"), "-q", "kid_subsets=5"]) == 0
    page = (tmp_path / "cmp" / "report" / "index.html").read_text()
    assert "Real data each generator saw" in page and all(s in page for s in said)
