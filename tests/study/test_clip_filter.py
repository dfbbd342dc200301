"""``filters: [none, confidence, clip]``: the clip filter keeps, per class, the images whose CLIP
embedding agrees best with their class's prompts. A tiny randomly initialised CLIP, saved as a
user's would be (CLIPModel and CLIPProcessor save_pretrained, a tokenizer built from a vocab.json
and merges.txt written here), is loaded from its folder: scores, ranking, provenance, the
embedding cache, the keys of the other cells, the CLI and report, and the missing-model advice."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from synthworth.cli import main
from synthworth.data import provenance as provenance_module
from synthworth.data.compose import subset
from synthworth.data.dataset import Dataset, atomic_folder, write_packed
from synthworth.data.provenance import pretrained
from synthworth.errors import ConfigError
from synthworth.study import clip_filter, plan_study
from synthworth.study.filtering import kept_count
from synthworth.study.spec import load_spec
from synthworth.themes import Theme

pytestmark = pytest.mark.usefixtures("single_thread")
CLASSIFIER = {"train": {"epochs": 2, "batch_size": 16}}
THEME = {"name": "digits", "template": "a {distance} photo of the digit {subject}",
         "subjects": [str(d) for d in range(10)], "subject_words": {"7": "seven"},
         "distances": ["close", "far"]}


def save_tiny_clip(folder, seed: int = 0):
    """A CLIP with 8-d embeddings and one layer per tower, for 32 px images, randomly initialised,
    and its processor (a byte-pair tokenizer over single characters), as save_pretrained writes them."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789,")
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=32)
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32, "bos_token_id": bos,
                     "eos_token_id": eos, "pad_token_id": eos},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 1, "num_attention_heads": 2}, projection_dim=8)
    CLIPModel(config).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def packed(path, view: Dataset, manifest: dict) -> Dataset:
    with atomic_folder(path, kind="dataset", replace=True) as tmp:
        write_packed(tmp, view.take(np.arange(len(view))), view.labels, view.splits, view.class_names,
                     [{} for _ in range(len(view))], manifest)
    return Dataset.open(path)


@pytest.fixture(scope="module")
def seen(digits16, tmp_path_factory):
    """The generator's real data (for the confidence filter): 8 digits per class, its own Dataset."""
    part = subset(digits16.split("train"), per_class=8, seed=5)
    return packed(tmp_path_factory.mktemp("seen") / "scarce", part, {"kind": "prepared"})


@pytest.fixture(scope="module")
def synthetic(digits16, seen, tmp_path_factory):
    """A "generator" of 150 noisy real digits whose provenance names ``seen`` and no theme."""
    part = subset(digits16.split("train"), count=150, seed=9)
    pixels = part.take(np.arange(len(part))).astype(int)
    pixels += np.random.default_rng(0).integers(-90, 91, pixels.shape)
    noisy = Dataset.from_arrays(np.clip(pixels, 0, 255).astype(np.uint8), part.labels, part.class_names)
    prov = {"kind": "trained", "note": "a test generator",
            "trained_on": {"fingerprint": seen.fingerprint, "name": seen.path.name, "path": str(seen.path),
                           "split": "train", "images": len(seen)}}
    return packed(tmp_path_factory.mktemp("gen") / "gen", noisy, {"kind": "synthetic", "provenance": prov})


@pytest.fixture(scope="module")
def text2image(synthetic, tmp_path_factory):
    """The same images as if a pretrained pipeline had made them with the digits theme."""
    generator = {"source": "text2image", "theme": Theme(**THEME).model_dump()}
    manifest = {"kind": "synthetic", "provenance": pretrained("sd-test"),
                "plan": {"name": "sd-test", "generator": generator}}
    return packed(tmp_path_factory.mktemp("t2i") / "t2i", Dataset.open(synthetic.path), manifest)


def spec_file(tmp_path, digits16, synthetic_path, clip_model, **keys):
    (tmp_path / "digits-theme.yaml").write_text(yaml.safe_dump(THEME))
    spec = {"name": "clip", "real": str(digits16.path), "synthetic": {"gen": str(synthetic_path)},
            "compositions": ["artificial"], "sizes": [20], "seeds": [0], "classifier_preset": "tiny",
            "classifier": CLASSIFIER, "filters": ["none", "clip"], "filter_keep": 0.5,
            "clip_model": str(clip_model), "clip_theme": "digits-theme.yaml", **keys}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def clip_folder(out) -> Dataset:
    (folder,) = [p for p in (out / "filtered").iterdir()
                 if not p.name.startswith(".") and p.name != clip_filter.EMBEDDINGS
                 and Dataset.open(p).manifest["provenance"]["filter"]["method"] == "clip"]
    return Dataset.open(folder)


def expected_prompts(theme: dict) -> dict[str, list[str]]:
    words = {d: theme["subject_words"].get(d, d) for d in theme["subjects"]}
    return {d: [f"a {x} photo of the digit {words[d]}" for x in theme["distances"]] for d in theme["subjects"]}


def reference_scores(folder, pool: Dataset, prompts: dict[str, list[str]]) -> np.ndarray:
    """The scores straight from transformers: cosine of each image's embedding and the unit mean of
    its class's prompt embeddings."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    pixels = np.repeat(pool.take(np.arange(len(pool))), 3, axis=-1)
    with torch.no_grad():
        out = model.get_image_features(**processor(images=list(pixels), return_tensors="pt"))
        image = torch.nn.functional.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)
        classes = []
        for name in pool.class_names:
            tokens = processor.tokenizer(prompts[name], padding=True, return_tensors="pt")
            out = model.get_text_features(**tokens)
            text = torch.nn.functional.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)
            classes.append(torch.nn.functional.normalize(text.mean(0), dim=0))
    return (image * torch.stack(classes)[torch.from_numpy(pool.labels)]).sum(-1).numpy()


# ------------------------------------------------------------------------------ what it keeps
def test_all_prompts_are_every_prompt_the_theme_makes_for_a_subject():
    theme = Theme(**THEME, angles=["above", "below"]).model_copy(update={"template": "a {distance} {subject}, {angle}"})
    prompts = theme.all_prompts("7")
    assert prompts == ["a close seven, above", "a close seven, below", "a far seven, above", "a far seven, below"]
    assert {theme.prompt("7", seed) for seed in range(50)} == set(prompts)
    assert Theme(name="t", template="{subject}", subjects=["cat"]).all_prompts("cat") == ["cat"]


def test_with_controlled_scores_it_keeps_the_top_share_of_each_class(tmp_path, digits16, synthetic, tiny_clip,
                                                                    monkeypatch):
    rng = np.random.default_rng(3)
    given = {}

    def scores(model, pool, prompts, cache):
        given["prompts"] = prompts
        given["scores"] = rng.permutation(len(pool)).astype(float)  # distinct, known
        return given["scores"]

    monkeypatch.setattr(clip_filter, "clip_scores", scores)
    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path, tiny_clip, filter_keep=0.3))
    plan = plan_study(spec)
    pool = plan.inputs.synthetic["gen"].pool
    kept = clip_folder(plan.out)
    assert given["prompts"] == expected_prompts(THEME)
    items = [json.loads(line) for line in (kept.path / "items.jsonl").read_text().splitlines()]
    chosen = np.array([i["pool_index"] for i in items])
    for label in range(10):
        members = np.flatnonzero(pool.labels == label)
        mine = chosen[pool.labels[chosen] == label]
        assert len(mine) == kept_count(len(members), 0.3) == int(np.floor(0.3 * len(members) + 0.5))
        top = members[np.argsort(-given["scores"][members])][:len(mine)]
        assert sorted(mine) == sorted(top)
    assert np.array_equal(kept.take(np.arange(len(kept))), pool.take(chosen))
    assert np.array_equal(kept.labels, pool.labels[chosen])
    assert [i["clip_score"] for i in items] == given["scores"][chosen].tolist()
    assert plan.inputs.synthetic["gen"].filtered["clip"].fingerprint == kept.fingerprint


def test_with_a_real_tiny_clip_the_scores_are_transformers_own_and_the_best_are_kept(
        tmp_path, digits16, synthetic, tiny_clip):
    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path, tiny_clip))
    plan = plan_study(spec)
    pool = plan.inputs.synthetic["gen"].pool
    kept = clip_folder(plan.out)
    want = reference_scores(tiny_clip, pool, expected_prompts(THEME))
    stored = np.load(kept.path / clip_filter.SCORES_FILE)
    np.testing.assert_allclose(stored, want, atol=1e-5)
    items = [json.loads(line) for line in (kept.path / "items.jsonl").read_text().splitlines()]
    chosen = [i["pool_index"] for i in items]
    assert len(kept) == sum(kept_count(int(n), 0.5) for n in np.bincount(pool.labels))
    for label in range(10):
        members = np.flatnonzero(pool.labels == label)
        mine = [i for i in chosen if pool.labels[i] == label]
        dropped = [i for i in members if i not in mine]
        assert len(mine) == kept_count(len(members), 0.5)
        assert want[mine].min() >= want[dropped].max() - 1e-6
    cells = {p.cell.filter: p for p in plan.cells}
    assert set(cells) == {"none", "clip"} and cells["clip"].key != cells["none"].key
    assert set(np.unique(cells["clip"].train_set.row)) <= set(range(len(kept)))


def test_the_provenance_names_the_model_prompts_and_share_and_reads_back(tmp_path, digits16, synthetic, tiny_clip):
    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path, tiny_clip))
    plan = plan_study(spec)
    kept = clip_folder(plan.out)
    prov = provenance_module.read(Dataset.open(kept.path).manifest)   # well formed, read as any Dataset's
    f = prov["filter"]
    weights = hashlib.sha256((tiny_clip / "model.safetensors").read_bytes()).hexdigest()
    assert (f["method"], f["keep"], f["kept"], f["of"]) == ("clip", 0.5, len(kept), 120)
    assert f["model"]["sha256"] == weights and f["model"]["path"] == str(tiny_clip) and f["model"]["hub_id"] is None
    assert len(f["model"]["fingerprint"]) == 32 and f["model"]["architecture"]["projection_dim"] == 8
    assert f["prompts"] == expected_prompts(THEME)
    assert f["prompt_source"] == f"clip_theme {tmp_path / 'digits-theme.yaml'}"
    pool = plan.inputs.synthetic["gen"].pool
    scores = np.load(kept.path / clip_filter.SCORES_FILE)
    for label, name in enumerate(pool.class_names):
        row = f["per_class"][name]
        members = pool.labels == label
        assert row["of"] == members.sum() and row["kept"] == kept_count(int(members.sum()), 0.5)
        assert row["threshold"] == pytest.approx(float(np.sort(scores[members])[::-1][row["kept"] - 1]), abs=1e-6)
    assert prov["parent"]["kind"] == "trained" and prov["trained_on"] == prov["parent"]["trained_on"]
    assert provenance_module.describe(prov).startswith("clip filter (keep 0.5) of a generator trained on 80")
    # inputs.json lists the filtered pool; an exported card names CLIP and no local path.
    from synthworth.study.runner import _write_description

    _write_description(plan)
    described = json.loads((plan.out / "inputs.json").read_text())["synthetic"]["gen"]["filtered"]
    assert described["clip"]["fingerprint"] == kept.fingerprint
    assert main(["data", "export", str(kept.path), "--out", str(tmp_path / "hub"), "--quiet"]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    assert '"kind": "clip"' in card and weights in card and "external data" in card
    assert str(tmp_path) not in card


def test_text2image_images_are_scored_with_their_own_theme_and_need_no_real_data(
        tmp_path, digits16, text2image, tiny_clip):
    """A pretrained pipeline's Dataset (which confidence refuses) is filtered by clip, with the
    prompts of the theme it records, not the spec's clip_theme."""
    path = spec_file(tmp_path, digits16, text2image.path, tiny_clip)
    with pytest.raises(ConfigError, match="pretrained pipeline"):
        plan_study(load_spec(path, ["filters=[none, confidence]"])[0])
    other = {**THEME, "template": "a {distance} picture of {subject}"}
    (tmp_path / "digits-theme.yaml").write_text(yaml.safe_dump(other))
    plan = plan_study(load_spec(path)[0])
    f = clip_folder(plan.out).manifest["provenance"]["filter"]
    assert f["prompts"] == expected_prompts(THEME)
    assert f["prompt_source"] == "the theme 'digits' its images were generated with"


def test_a_dataset_without_a_theme_needs_clip_theme_and_the_advice_works(tmp_path, digits16, synthetic, tiny_clip):
    path = spec_file(tmp_path, digits16, synthetic.path, tiny_clip)
    with pytest.raises(ConfigError, match="records no prompt theme.*set clip_theme in the spec to a shipped theme"):
        plan_study(load_spec(path, ["clip_theme=null"])[0])
    assert not (tmp_path / "spec-results").exists()   # refused before anything was written
    plan = plan_study(load_spec(path, ["clip_theme=animals"])[0])   # a shipped theme, as advised
    f = clip_folder(plan.out).manifest["provenance"]["filter"]
    assert f["prompts"]["3"] == [f"A {d} picture of a 3, looking from {a}" for d in
                                 ["close-up", "far away", "medium distance"]
                                 for a in ["straight on", "slightly to the right", "slightly to the left",
                                           "slightly from above", "the left", "the right"]]


# ------------------------------------------------------------------------------ cache and keys
def test_a_rerun_embeds_nothing_again_and_another_keep_reuses_the_embeddings(
        tmp_path, digits16, synthetic, tiny_clip, monkeypatch):
    from synthworth.metrics.clip import ClipEmbedder

    spec, _ = load_spec(spec_file(tmp_path, digits16, synthetic.path, tiny_clip))
    first = plan_study(spec).inputs.synthetic["gen"].filtered["clip"]
    cache = first.path.parent / clip_filter.EMBEDDINGS
    (stored,) = cache.glob("*.npy")
    assert stored.name.startswith(plan_study(spec).inputs.synthetic["gen"].pool.fingerprint + "-")

    def never(*args, **kwargs):
        raise AssertionError("an image was embedded again")

    monkeypatch.setattr(ClipEmbedder, "images", never)
    monkeypatch.setattr(ClipEmbedder, "texts", never)
    again = plan_study(spec).inputs.synthetic["gen"].filtered["clip"]
    assert again.path == first.path and again.fingerprint == first.fingerprint
    monkeypatch.undo()
    monkeypatch.setattr(ClipEmbedder, "images", never)   # the texts are embedded, the images read back
    other = plan_study(spec.model_copy(update={"filter_keep": 0.25})).inputs.synthetic["gen"].filtered["clip"]
    assert other.path != first.path and len(other) == 30
    np.testing.assert_allclose(np.load(other.path / clip_filter.SCORES_FILE)[np.argsort(np.load(
        first.path / clip_filter.SCORES_FILE))], np.sort(np.load(first.path / clip_filter.SCORES_FILE)))


def test_adding_clip_keeps_the_keys_of_the_none_and_confidence_cells(tmp_path, digits16, synthetic, tiny_clip):
    path = spec_file(tmp_path, digits16, synthetic.path, tiny_clip, compositions=["real", "artificial", "mixed"])
    before = plan_study(load_spec(path, ["filters=[none, confidence]"])[0])
    after = plan_study(load_spec(path, ["filters=[none, confidence, clip]"])[0])
    keys = {p.cell.label(): p.key for p in before.cells}
    assert keys == {p.cell.label(): p.key for p in after.cells if p.cell.filter != "clip"}
    assert len(after.cells) == len(before.cells) + 2
    assert not set(keys.values()) & {p.key for p in after.cells if p.cell.filter == "clip"}


# ------------------------------------------------------------------------------ CLI and report
def test_none_confidence_and_clip_end_to_end_through_the_cli_and_the_report(
        tmp_path, digits16, synthetic, tiny_clip, capsys):
    path = spec_file(tmp_path, digits16, synthetic.path, tiny_clip, seeds=[0, 1],
                     filters=["none", "confidence", "clip"])
    assert main(["study", "run", str(path), "-q"]) == 0, capsys.readouterr().err
    out = tmp_path / "spec-results"
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["filter"]) == ["clip", "clip", "confidence", "confidence", "none", "none"]
    clipped = table[table["filter"] == "clip"]
    assert set(clipped["synthetic_pool_fingerprint"]) == {clip_folder(out).fingerprint}
    comparisons = pd.read_csv(out / "comparisons.csv", keep_default_na=False)
    rows = comparisons[comparisons["kind"] == "filter"]
    assert sorted(zip(rows["filter_a"], rows["filter_b"])) == [("clip", "none"), ("confidence", "none")]
    assert main(["study", "status", str(path)]) == 0   # finds both filtered pools made, trains nothing
    assert "6 of 6" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "report" / "index.html")]) == 0, capsys.readouterr().err
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<h2>Filtering synthetic data</h2>" in page
    assert "artificial (gen) filtered: clip" in page and "artificial (gen) filtered: confidence" in page
    assert "The clip filter kept 0.5 of each class" in page and "The confidence filter kept 0.5" in page


# ------------------------------------------------------------------------------ missing model
def test_offline_a_missing_clip_model_is_one_line_whose_advice_works(
        offline_hub, tmp_path, digits16, synthetic, tiny_clip, monkeypatch, capsys):
    monkeypatch.delenv("SYNTHWORTH_CLIP_WEIGHTS", raising=False)
    path = spec_file(tmp_path, digits16, synthetic.path, "null")
    spec = yaml.safe_load(path.read_text())
    spec["clip_model"] = None
    path.write_text(yaml.safe_dump(spec))
    assert main(["study", "run", str(path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "CLIP model openai/clip-vit-base-patch32 is neither a folder here nor in the local Hugging Face cache" in err
    assert ("CLIPModel.from_pretrained(m).save_pretrained('DIR'); CLIPProcessor.from_pretrained(m)"
            ".save_pretrained('DIR')" in err and "set clip_model: DIR in the study spec" in err)
    assert not (tmp_path / "spec-results").exists()
    # The advice followed: DIR is what CLIPModel and CLIPProcessor save_pretrained write (as the
    # tiny model here was made), named in the spec relative to it.
    import shutil

    shutil.copytree(tiny_clip, tmp_path / "DIR")
    assert main(["study", "run", str(path), "-q", "clip_model=DIR"]) == 0, capsys.readouterr().err
    assert clip_folder(tmp_path / "spec-results").manifest["provenance"]["filter"]["model"]["path"] == \
        str(tmp_path / "DIR")


def test_a_folder_that_is_not_a_usable_clip_is_refused_with_the_advice(tmp_path, tiny_clip):
    import shutil

    from synthworth.metrics.clip import resolve_clip

    advice = "set clip_model: DIR in the study spec"
    bin_only = shutil.copytree(tiny_clip, tmp_path / "bin-only")
    (bin_only / "model.safetensors").rename(bin_only / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"has no model.safetensors \(it has pytorch_model.bin: pickled"):
        resolve_clip(bin_only)
    no_tokenizer = shutil.copytree(tiny_clip, tmp_path / "no-tokenizer")
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="has no tokenizer") as info:
        resolve_clip(no_tokenizer)
    assert advice in str(info.value)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    with pytest.raises(ConfigError, match="holds a dinov2 model, not CLIP"):
        resolve_clip(other)
    assert resolve_clip(tiny_clip) == (tiny_clip, None)


def test_offline_a_cached_hub_id_loads_from_the_cache(offline_hub, tiny_clip, monkeypatch):
    import shutil

    from synthworth.metrics.clip import ENV_CLIP, ClipEmbedder, resolve_clip

    repo = offline_hub / "models--someone--tiny-clip"
    shutil.copytree(tiny_clip, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv(ENV_CLIP, "someone/tiny-clip")   # named by the variable, as the spec's null says
    folder, hub_id = resolve_clip(None)
    assert (folder, hub_id) == (repo / "snapshots" / "0123abcd", "someone/tiny-clip")
    embedder = ClipEmbedder(folder, hub_id, device="cpu")
    assert embedder.identity["model"] == "someone/tiny-clip"
    images = embedder.images(np.zeros((3, 16, 16, 1), np.uint8))
    assert images.shape == (3, 8) and np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
