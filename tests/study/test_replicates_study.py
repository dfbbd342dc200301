"""A study over generator replicates: each seed draws its synthetic images from one replicate, so
the seeds' spread, and every interval read from it, hold the generator's retraining; Datasets
without replicates keep their cells, keys and wording."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from synthworth.cli import main
from synthworth.data.compose import balanced_counts, class_sizes, mix, subset
from synthworth.data.dataset import Dataset, atomic_folder, write_packed
from synthworth.errors import DataError
from synthworth.study.exchange import exchange_rates
from synthworth.study.inputs import replicate_counts, replicate_of
from synthworth.study.paired import BOOTSTRAP, UNITS, compare, two_way_bootstrap
from synthworth.study.plan import plan_study
from synthworth.study.replicates import EACH, clustered_variance, covers, deal, grouped
from synthworth.study.resample import BOTH, SEEDS, Sampler, seed_scale, spend_sentence
from synthworth.study.spec import StudySpec
from synthworth.study.stats import proportion_interval, summarise

NAMES = ["seed-0", "seed-1", "seed-2"]


def write_synthetic(path, digits16, replicates: list[str] | None, count: int = 450, trained_on: bool = False):
    """``count`` real train digits as a "generated" Dataset; with ``replicates``, image i is made by
    replicate i mod K (its record names it, the provenance lists them), as 'generate --from' writes."""
    part = subset(digits16.split("train"), count=count, seed=5)
    n = len(part)
    items = ([{"replicate": replicates[i % len(replicates)], "replicate_seed": i % len(replicates)} for i in range(n)]
             if replicates else [{} for _ in range(n)])
    seen = {"fingerprint": digits16.fingerprint, "path": str(digits16.path), "split": "train", "name": "digits"}
    prov = {"kind": "trained", "trained_on": seen if trained_on else None, "note": "test"}
    if replicates:
        prov["replicates"] = [{"name": r, "seed": i} for i, r in enumerate(replicates)]
    with atomic_folder(path, kind="dataset", replace=True) as tmp:
        write_packed(tmp, part.take(np.arange(n)), part.labels, np.full(n, "train"), part.class_names, items,
                     {"kind": "synthetic", "provenance": prov})
    return path


@pytest.fixture(scope="module")
def datasets(digits16, tmp_path_factory):
    root = tmp_path_factory.mktemp("replicated")
    return {"three": write_synthetic(root / "three", digits16, NAMES),
            "plain": write_synthetic(root / "plain", digits16, None)}


def plan(digits16, path, tmp_path, **keys):
    defaults = {"sizes": [40], "compositions": ["real", "artificial", "mixed", "subset_real", "augmented"]}
    spec = StudySpec(real=str(digits16.path), synthetic={"gen": {"path": str(path)}}, classifier_preset="tiny",
                     **{**defaults, **keys})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = plan_study(spec, tmp_path / "out")
    return made, [str(w.message) for w in caught]


def test_each_seed_draws_its_synthetic_images_from_its_own_replicate_alone(digits16, datasets, tmp_path):
    made, said = plan(digits16, datasets["three"], tmp_path, seeds=[4, 7, 9])
    assert not said   # three seeds, three replicates: each used once, nothing to warn about
    syn = made.inputs.synthetic["gen"]
    wanted = deal([4, 7, 9], NAMES)
    assert wanted == {4: "seed-0", 7: "seed-1", 9: "seed-2"}
    synthetic_cells = [p for p in made.cells if p.cell.generator]
    assert len(synthetic_cells) == 9
    for p in synthetic_cells:
        assert p.cell.synthetic_replicate == wanted[p.cell.seed] and "replicate seed-" in p.cell.label()
        # every synthetic image of the training set was made by the seed's replicate, and no other
        made_by = replicate_of(p.train_set, syn)
        n_synth = int((made_by != "").sum())
        assert n_synth > 0 and set(made_by[made_by != ""]) == {wanted[p.cell.seed]}
        assert replicate_counts(p.train_set, syn) == {wanted[p.cell.seed]: n_synth}
    for p in made.cells:
        if not p.cell.generator:
            assert p.cell.synthetic_replicate == ""
    # a mixture's real part is still exactly subset_real's (the replicate changes the synthetic part only)
    by = {(p.cell.composition, p.cell.seed): p.train_set for p in made.cells}
    for seed in (4, 7, 9):
        real_part = by[("mixed", seed)].select(np.flatnonzero(replicate_of(by[("mixed", seed)], syn) == ""))
        assert sorted(real_part.row) == sorted(by[("subset_real", seed)].row)


def test_fewer_or_uneven_seeds_and_pooled_are_warned_and_recorded(digits16, datasets, tmp_path):
    made, said = plan(digits16, datasets["three"], tmp_path, seeds=[0, 1])
    assert len(said) == 1 and "3 replicates but 2 seed(s): replicates seed-2 are unused" in said[0]
    assert said[0] in made.inputs.notes   # kept in inputs.json's notes
    assert {p.cell.synthetic_replicate for p in made.cells if p.cell.generator} == {"seed-0", "seed-1"}
    made, said = plan(digits16, datasets["three"], tmp_path, seeds=[0, 1, 2, 3])
    assert len(said) == 1 and "use them unevenly (seeds per replicate: seed-0: 2, seed-1: 1, seed-2: 1)" in said[0]
    assert "give a multiple of 3 seeds" in said[0]
    assert [p.cell.synthetic_replicate for p in made.cells if p.cell.composition == "artificial"] == \
        ["seed-0", "seed-1", "seed-2", "seed-0"]
    made, said = plan(digits16, datasets["three"], tmp_path, seeds=[0, 1, 2], replicates="pooled")
    assert len(said) == 1 and "no interval covers retraining the generator" in said[0]
    assert all(p.cell.synthetic_replicate == "" for p in made.cells)


def test_cells_of_a_dataset_without_replicates_keep_their_training_sets_and_keys(digits16, datasets, tmp_path):
    """The key hashes the training set's fingerprint: without replicates (or pooled) every
    synthetic cell draws from the whole pool exactly as before, so the fingerprint and key are
    those of the composition of the whole pool."""
    for path, keys in ((datasets["plain"], {}), (datasets["three"], {"replicates": "pooled"})):
        made, said = plan(digits16, path, tmp_path, seeds=[0, 1, 2], **keys)
        pool, real = made.inputs.synthetic["gen"].pool, made.inputs.pool
        for p in made.cells:
            assert p.cell.synthetic_replicate == "" and "replicate" not in p.cell.label()
            c = p.cell
            if c.composition == "artificial":
                direct = subset(pool, class_counts=balanced_counts(c.size, class_sizes(real)), seed=c.seed)
            elif c.composition == "mixed":
                direct = mix(real, pool, size=c.size, ratio=c.ratio, seed=c.seed)
            else:
                continue
            assert p.payload["train_set"] == direct.fingerprint
    plain, _ = plan(digits16, datasets["plain"], tmp_path, seeds=[0, 1, 2])
    per_seed, _ = plan(digits16, datasets["three"], tmp_path, seeds=[0, 1, 2])
    pooled, _ = plan(digits16, datasets["three"], tmp_path, seeds=[0, 1, 2], replicates="pooled")
    # the same images (the same draw of the digits): a real cell's key is shared by all three,
    # a synthetic cell's differs only where it draws from one replicate
    real = {p.key for p in plain.cells if not p.cell.generator}
    assert real == {p.key for p in per_seed.cells if not p.cell.generator}
    synthetic = {p.key for p in pooled.cells if p.cell.generator}
    assert synthetic == {p.key for p in plain.cells if p.cell.generator}
    assert not synthetic & {p.key for p in per_seed.cells if p.cell.generator}


def test_a_replicate_too_small_for_a_cell_says_to_generate_more_or_pool(digits16, datasets, tmp_path):
    with pytest.raises(DataError, match=r"replicate seed-\d.*generate more images, or set replicates: pooled"):
        plan(digits16, datasets["three"], tmp_path, seeds=[0, 1, 2], sizes=[200])
    plan(digits16, datasets["three"], tmp_path, seeds=[0, 1, 2], sizes=[200], replicates="pooled")


def test_a_filtered_cell_draws_the_filtered_images_of_its_own_replicate(digits16, tmp_path):
    """filters: [none, confidence] on a Dataset of 3 replicates: the filter ranks the whole pool,
    and each filtered cell draws only the kept images its seed's replicate made."""
    path = write_synthetic(tmp_path / "seen", digits16, NAMES, trained_on=True)
    made, _ = plan(digits16, path, tmp_path, seeds=[0, 1, 2], sizes=[20], compositions=["real", "artificial"],
                   filters=["none", "confidence"], filter_keep=0.8,
                   classifier={"train": {"epochs": 1, "batch_size": 64}})
    syn = made.inputs.synthetic["gen"]
    kept = syn.filtered["confidence"]
    filtered = [p for p in made.cells if p.cell.filter == "confidence"]
    assert len(filtered) == 3
    for p in filtered:
        mine = p.cell.synthetic_replicate
        assert p.train_set.arrays[0] is kept.arrays[0] and replicate_counts(p.train_set, syn) == {mine: 20}
        share = made.inputs.synthetic_pool("gen", "confidence", mine)
        assert set(replicate_of(share, syn)) == {mine} and set(p.train_set.row) <= set(share.row)
        assert len(share) == int((replicate_of(kept, syn) == mine).sum())


# ---------------------------------------------------------------------- statistics
def test_interval_covers_says_the_seeds_carry_their_generator_replicates():
    assert covers("seeds + test images", ["a", "b", "c"]) == f"{EACH} + test images"
    assert covers("seeds only", ["a", "b", "a"]) == f"{grouped(2)} only"
    assert covers("seeds + test images", ["", "", ""]) == "seeds + test images"   # no replicates: as before
    assert covers("seeds + test images", None) == "seeds + test images"
    assert covers("seeds + test images", ["a", "a"]) == "seeds + test images"     # one replicate: not covered
    row = {"var_share_seeds": 0.7, "var_share_images": 0.3, "narrower_2x_seeds": 0.2, "narrower_2x_images": 0.1,
           "interval_covers": f"{EACH} + test images"}
    assert spend_sentence(row).startswith("Seeds with their generator replicates account for 70 %")
    assert "doubling the seeds (each with a newly trained generator replicate) would narrow it most" in \
        spend_sentence(row)
    assert spend_sentence({**row, "interval_covers": "seeds + test images"}).startswith("Seeds account for 70 %")


def test_the_page_says_which_generators_intervals_cover_their_retraining():
    from synthworth.report.answer import covers_text
    from synthworth.study.exchange import Curve

    curve = Curve("real_test", [50, 100, 200], [0.5, 0.6, 0.7], [0.01] * 3, covers=BOTH, resamples=100)
    table = pd.DataFrame({"generator": ["ddpm", "gan"], "interval_covers": [f"{EACH} + test images", BOTH]})
    text = covers_text(curve, table)
    assert "For ddpm, each seed drew its synthetic images from its own trained generator replicate" in text
    assert "they do not cover retraining the other generators (each was trained once)" in text
    alone = covers_text(curve, table[table["generator"] == "gan"])
    assert "They do not cover retraining the generator (it was trained once)" in alone and "For " not in alone


def test_the_clustered_variance_is_the_seeds_when_each_has_its_own_replicate():
    v = np.array([0.8, 0.7, 0.75, 0.9])
    var, g = clustered_variance(v, np.array(["a", "b", "c", "d"]))
    assert g == 4 and var == pytest.approx(v.var(ddof=1) / 4)
    # equal units: the variance of the replicates' means over their number
    var, g = clustered_variance(v, np.array(["a", "b", "a", "b"]))
    means = np.array([(0.8 + 0.75) / 2, (0.7 + 0.9) / 2])
    assert g == 2 and var == pytest.approx(means.var(ddof=1) / 2)


A, B, C = 2.0, 0.5, 0.05   # the true real learning curve: err(n) = a n^-b + c
TRUE_WORTH = 150           # real images the recipe's images are worth (its mean over retrainings)


def _accuracy(n):
    return 1 - (A * np.power(float(n), -B) + C)


def _simulated_study(rng, seeds: int, replicates: int, tagged: bool, seed_sd=0.01, generator_sd=0.035):
    """A results table: real cells at 3 sizes on the true curve plus seed noise; 400 synthetic
    images whose generator (a fresh retrain per replicate) shifts the accuracy by N(0, generator_sd);
    seed i uses replicate i mod K. ``tagged``: the rows say which replicate (what a study writes)."""
    rows = [{"composition": "real", "generator": "", "size": n, "ratio": 0.0, "seed": s,
             "accuracy": _accuracy(n) + rng.normal(0, seed_sd), "synthetic_replicate": ""}
            for n in (50, 200, 800) for s in range(seeds)]
    shift = rng.normal(0, generator_sd, replicates)
    rows += [{"composition": "artificial", "generator": "g", "size": 400, "ratio": 1.0, "seed": s,
              "accuracy": _accuracy(TRUE_WORTH) + shift[s % replicates] + rng.normal(0, seed_sd),
              "synthetic_replicate": f"seed-{s % replicates}" if tagged else ""} for s in range(seeds)]
    return pd.DataFrame(rows)


def _coverage(seeds, replicates, tagged, studies=100, seed=7):
    rng, hits, said = np.random.default_rng(seed), 0, set()
    for _ in range(studies):
        row = exchange_rates(_simulated_study(rng, seeds, replicates, tagged), resamples=120)[0].iloc[0]
        low = row["n_eff_ci_low"] if math.isfinite(row["n_eff_ci_low"]) else -math.inf   # open below the range
        high = row["n_eff_ci_high"] if math.isfinite(row["n_eff_ci_high"]) else math.inf
        hits += low <= TRUE_WORTH <= high
        said.add(row["interval_covers"])
    return hits / studies, said


def test_per_seed_replicates_cover_the_recipes_worth_and_one_replicate_does_not():
    """Generators of one recipe differ (between-replicate sd 0.035 in accuracy, seeds 0.01): 100
    simulated studies each, the worth's 95 % interval from exchange_rates. Measured: 3 seeds on
    3 replicates cover the recipe's true worth in 95 %; 3 seeds on one trained generator in 57 %
    (its interval is about that one network); 6 seeds sharing 3 replicates, the replicate as the
    unit (2 degrees of freedom), 92 %; the same rows taken as 6 independent seeds 78 %."""
    per_seed, said = _coverage(3, 3, tagged=True)
    assert said == {f"{EACH} only"} and per_seed >= 0.88
    one, said = _coverage(3, 1, tagged=False)
    assert said == {SEEDS} and one <= 0.75 and per_seed - one >= 0.2
    shared, said = _coverage(6, 3, tagged=True)
    assert said == {f"{grouped(3)} only"} and shared >= 0.88
    naive, _ = _coverage(6, 3, tagged=False)
    assert naive <= shared - 0.08


def test_with_predictions_seeds_sharing_a_replicate_are_one_unit():
    """Six seeds, two per replicate, the replicates far apart: the two-way draws take the
    replicate as the unit, close to the draws of the three replicates' mean rows taken as three
    seeds, and far wider than the six rows taken as independent seeds."""
    rng = np.random.default_rng(3)
    images = 300
    difficulty = rng.normal(0, 1.0, images)
    level = {"a": 1.0, "b": 1.6, "c": 2.2}   # each replicate's logit level
    names = ["a", "a", "b", "b", "c", "c"]
    x = np.stack([rng.random(images) < 1 / (1 + np.exp(-(level[r] + difficulty + rng.normal(0, 0.05))))
                  for r in names]).astype(float)
    part = pd.DataFrame({"synthetic_replicate": names})

    def width(frame, matrix):
        draws = Sampler(frame, matrix, 4000, np.random.default_rng(1)).draws(
            frame.index, matrix.mean(axis=1), np.random.default_rng(2))
        return {m: float(np.subtract(*np.percentile(draws[m], [97.5, 2.5]))) for m in (BOTH, SEEDS)}

    clustered = width(part, x)
    merged = x.reshape(3, 2, images).mean(axis=1)
    as_three = width(pd.DataFrame(index=range(3)), merged)
    independent = width(part.assign(synthetic_replicate=""), x)
    assert clustered[BOTH] == pytest.approx(as_three[BOTH], rel=0.15)
    assert clustered[SEEDS] == pytest.approx(as_three[SEEDS], rel=0.15)
    assert clustered[BOTH] > 2 * independent[BOTH]
    assert seed_scale(merged) > 0


def test_summary_and_comparisons_take_the_replicate_as_the_unit_where_seeds_share_one():
    rng = np.random.default_rng(0)
    rows = []
    for s in range(6):
        rows.append({"composition": "real", "generator": "", "filter": "none", "size": 40, "per_class": None,
                     "ratio": 0.0, "augment_factor": np.nan, "seed": s, "accuracy": 0.8 + rng.normal(0, 0.01),
                     "n_test": 300, "synthetic_replicate": ""})
        rows.append({"composition": "artificial", "generator": "g", "filter": "none", "size": 40, "per_class": None,
                     "ratio": 1.0, "augment_factor": np.nan, "seed": s, "n_test": 300,
                     "accuracy": 0.6 + 0.05 * (s % 3) + rng.normal(0, 0.01), "synthetic_replicate": NAMES[s % 3]})
    results = pd.DataFrame(rows)
    art = results[results["composition"] == "artificial"]
    row = summarise(results, metrics=["accuracy"])
    row = row[row["composition"] == "artificial"].iloc[0]
    means = art.groupby("synthetic_replicate")["accuracy"].mean().to_numpy()
    assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == pytest.approx(proportion_interval(means, 300)[2:])
    assert row["accuracy_mean"] == pytest.approx(art["accuracy"].mean())
    table = compare(results, [("real", "artificial")])
    got = table.iloc[0]
    assert got["n"] == 6 and got["interval_covers"] == f"{grouped(3)} (conditional on this test set)"
    assert "the replicate is the unit" in got["method"]
    real = results[results["composition"] == "real"].set_index("seed")["accuracy"]
    diffs = (real - art.set_index("seed")["accuracy"]).groupby(np.arange(6) % 3).mean()
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    # with per-image predictions: the two-way bootstrap of the replicates' mean rows
    images = 200
    right = {(c, s): rng.random(images) < acc for c, s, acc in
             zip(results["composition"], results["seed"], results["accuracy"])}
    predictions = pd.concat([pd.DataFrame({"test_set": "real_test", "composition": c, "generator": g, "filter": "none",
                                           "size": 40, "seed": s, "index": np.arange(images), "label": 1,
                                           "predicted": right[(c, s)].astype(int)})
                             for c, g, s in zip(results["composition"], results["generator"], results["seed"])])
    got = compare(results, [("real", "artificial")], predictions=predictions).iloc[0]
    assert got["method"] == f"{BOOTSTRAP} ({UNITS})" and got["interval_covers"] == f"{grouped(3)}, test images"
    rows = {c: np.stack([right[(c, s)] for s in range(6)]).astype(float).reshape(2, 3, images).mean(axis=0)
            for c in ("real", "artificial")}   # seeds s and s + 3 share replicate s: their mean row
    boot = two_way_bootstrap(rows["real"], rows["artificial"])
    assert (got["ci_low"], got["ci_high"], got["p_value"]) == (boot["ci_low"], boot["ci_high"], boot["p_value"])


# ---------------------------------------------------------------------- end to end
def test_a_study_of_a_dataset_generated_from_two_replicates(digits16, tmp_path, capsys):
    """Two tiny conditional DCGANs in a replicates folder -> 'generate --from' -> a CLI study:
    each seed's synthetic cell draws from its own replicate (recorded per cell and per row), and
    the paired comparison's interval says it covers the generator's retraining."""
    import torch

    from synthworth.engine.replicates import ReplicatesFolder
    from synthworth.generators.dcgan import DCGAN, DCGANModelConfig

    folder = tmp_path / "gan"
    ReplicatesFolder(folder).write("dcgan", {"train": {}}, digits16.fingerprint, [0, 1])
    for seed in (0, 1):
        torch.manual_seed(seed)
        DCGAN(DCGANModelConfig(latent_dim=8, base_channels=4, conditional=True, embed_dim=4), 16, 1,
              digits16.class_names).save(folder / f"seed-{seed}" / "model")
    generated = tmp_path / "syn"
    assert main(["generate", "--from", str(folder), "--per-class", "10", "--out", str(generated), "-q"]) == 0
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"name": "rep", "real": str(digits16.path), "synthetic": {"gan": str(generated)},
                                "sizes": [20], "seeds": [0, 1], "compositions": ["real", "artificial"],
                                "comparisons": [["real", "artificial"]], "budget": "epochs",
                                "classifier_preset": "tiny", "classifier": {"train": {"epochs": 1, "batch_size": 16}}}))
    out = tmp_path / "out"
    assert main(["study", "run", str(spec), "--out", str(out), "-q"]) == 0
    results = pd.read_csv(out / "results.csv", keep_default_na=False)
    art = results[results["composition"] == "artificial"].set_index("seed")
    assert art["synthetic_replicate"].to_dict() == {0: "seed-0", 1: "seed-1"}
    assert set(results.loc[results["composition"] == "real", "synthetic_replicate"]) == {""}
    for seed, key in art["key"].items():
        stored = json.loads((out / "cells" / key / "result.json").read_text())
        assert stored["cell"]["synthetic_replicate"] == f"seed-{seed}"
        assert stored["synthetic_replicates"] == {f"seed-{seed}": 20}   # its 20 images, all from its replicate
    inputs = json.loads((out / "inputs.json").read_text())["synthetic"]["gan"]
    assert inputs["replicates"] == ["seed-0", "seed-1"] and inputs["replicate_of_seed"] == {"0": "seed-0", "1": "seed-1"}
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert list(comparisons["interval_covers"]) == [f"{EACH}, test images"]
    assert main(["report", str(out)]) == 0
    page = (out / "report" / "index.html").read_text()
    assert "drew from their own trained replicate" in page
