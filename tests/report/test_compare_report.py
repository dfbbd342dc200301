"""The comparison page of trained generators (report/compare.py), on run folders and findings
made by hand: the findings open the page, grids stand side by side per epoch (a missing one
says so), the quality curves carry the logged numbers, and the page keeps the report's rules
(escaped names, nothing read from outside a run, no foreign page replaced)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from synthworth.errors import SynthworthError
from synthworth.report.compare import build_compare_report
from synthworth.report.numbers import fmt
from synthworth.report.output import figures_dir

FLOOR = {"fid": 12.3, "kid": 0.0021, "precision": 0.81, "recall": 0.79}
CURVES = {  # model -> (grid epochs, epochs trained, eval epochs, FID per eval epoch, seconds per epoch)
    "dcgan": ([1, 2, 4, 6], 6, [2, 4, 6], [120.0, 80.5, 79.9], 1.5),
    "ddpm": ([1, 3, 6], 6, [2, 4, 6], [210.0, 150.0, 96.4], 6.0),
    "ldm": ([1, 2, 4], 4, [2, 4], [160.0, 70.25], 4.0),
}


def grid_png(path: Path, seed: int, *, scale: int = 2) -> None:
    """A 4x4 grid of 16-pixel 'faces' with 2-pixel padding, as save_grid draws them."""
    rng = np.random.default_rng(seed)
    side = 2 + 4 * 18
    img = np.full((side, side, 3), 255, np.uint8)
    for i in range(4):
        for j in range(4):
            tone = rng.integers(40, 220)
            yy, xx = np.mgrid[:16, :16]
            face = tone - 2 * np.hypot(yy - 7.5, xx - 7.5)
            img[2 + i * 18:18 + i * 18, 2 + j * 18:18 + j * 18] = np.clip(face, 0, 255)[..., None].astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).resize((side * scale, side * scale), Image.NEAREST).save(path)


def loss_png(path: Path, title: str) -> None:
    img = Image.new("RGB", (320, 200), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 5), title, fill="black")
    draw.line([(20, 40), (100, 120), (300, 170)], fill="blue", width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def eval_row(epoch: int, fid: float, train_s: float, floor: dict | None = None) -> dict:
    floor = floor or FLOOR
    return {"step": epoch * 10, "epoch": epoch, "kind": "eval", "train_s": train_s, "eval_s": 0.7, "samples": 64,
            "seed": 0, "features": "domain", "features_label": "domain features (offline, 128-d)",
            "real_split": "test", "real_images": 40, "fid": fid, "kid": fid / 10000, "kid_std": 0.001,
            "precision": 0.9 - fid / 500, "recall": 0.2 + epoch / 20, "density": 0.5, "coverage": 0.4,
            "fid_real_floor": floor["fid"], "kid_real_floor": floor["kid"],
            "precision_real_floor": floor["precision"], "recall_real_floor": floor["recall"], "n_half": 20,
            "brightness_outside": 0.1}


def make_run(root: Path, name: str, kind: str, *, dcgan_names: bool = False, train_s: bool = True,
             error_at: int | None = None, evaluate: bool = True, floor: dict | None = None) -> Path:
    grid_epochs, epochs, eval_epochs, fids, per_epoch = CURVES[kind]
    run = root / name
    rows = []
    for e in range(1, epochs + 1):
        rows += [json.dumps({"step": e * 10 - k, "epoch": e, "loss": 1.0 / e}) for k in (5, 0)]
        row = {"step": e * 10, "epoch": e, "kind": "epoch", "loss_mean": 1.0 / e, "elapsed_s": e * per_epoch + 3 * e}
        if train_s:
            row["train_s"] = e * per_epoch
        rows.append(json.dumps(row))
        if evaluate and e in eval_epochs:
            if e == error_at:
                rows.append(json.dumps({"step": e * 10, "epoch": e, "kind": "eval", "train_s": e * per_epoch,
                                        "error": "sampling ran out of memory <oom>"}))
            else:
                rows.append(json.dumps(eval_row(e, fids[eval_epochs.index(e)], e * per_epoch, floor)))
    rows.append('{"step": 99, "epoch": 9, "kind": "ep')  # a line cut short by a kill
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    for e in grid_epochs:
        grid_png(run / "samples" / (f"epoch-{e:03d}.png" if dcgan_names else f"grid-epoch-{e:03d}.png"), e)
    loss_png(run / "plots" / "losses.png", f"{name} loss per iteration")
    loss_png(run / "plots" / "epoch_losses.png", f"{name} loss per epoch")
    (run / "config.yaml").write_text(f"kind: {kind}\ntrain:\n  epochs: {epochs}\neval:\n  every: 2\n"
                                     + ("vae: ../vae\n" if kind == "ldm" else ""))
    return run


def stat(mean, low, high):
    return {"mean": mean, "low": low, "high": high, "values": [low, mean, high]}


def findings_for(names: dict[str, str]) -> dict:
    models = {}
    numbers = {"dcgan": (81.2, 0.081, 0.07), "ddpm": (97.5, 0.0099, 0.31), "ldm": (70.4, 0.0073, 0.18)}
    for name, kind in names.items():
        fid, kid, share = numbers[kind]
        models[name] = {
            "kind": kind, "run": f"/runs/{name}", "epochs": CURVES[kind][1], "steps": 60,
            "quality": {"fid": stat(fid, fid - 4.1, fid + 4.1), "kid": stat(kid, kid * 0.8, kid * 1.2),
                        "precision": stat(0.61, 0.58, 0.64), "recall": stat(0.33, 0.3, 0.36)},
            "plateau": {"metric": "fid", "status": "plateaued" if kind == "dcgan" else "improving",
                        "first_epoch": 2, "last_epoch": 6, "points": 3, "slope": -0.15 if kind == "dcgan" else -28.4,
                        "low": -1.2, "high": 0.9, "relative_change": -0.0075,
                        "statement": f"{name}: FID changed little over its last epochs"},
            "exposure": {"share": share, "low": None if kind == "dcgan" else share - 0.05,
                         "high": share + 0.05, "dark": share / 2, "bright": share / 2, "n": 256},
            "cost": {"train_seconds": CURVES[kind][4] * CURVES[kind][1], "extra_seconds": 12.0 if kind == "ldm" else None,
                     "extra_note": "the VAE's training" if kind == "ldm" else None,
                     "total_seconds": 28.0 if kind == "ldm" else CURVES[kind][4] * CURVES[kind][1],
                     "ratio": {"dcgan": 1.0, "ddpm": 4.0, "ldm": 3.11}[kind], "source": "train_s"},
            "sentences": {"quality": f"{name} quality sentence: FID {fmt(fid)} against the floor's 12.3.",
                          "plateau": f"{name} plateau sentence.",
                          "exposure": (f"{name} exposure sentence: no interval, as the draws were too few."
                                       if kind == "dcgan" else f"{name} exposure sentence."),
                          "cost": f"{name} cost sentence."}}
    return {"version": 1,
            "real": {"path": "/data/faces", "fingerprint": "abc", "train_split": "train", "train_images": 200,
                     "reference_split": "test", "reference_images": 40},
            "features": "domain", "features_label": "domain features (offline, 128-d)", "draws": 3, "samples": 64,
            "seed": 0,
            "floor": {"fid": stat(12.3, 11.0, 13.6), "kid": stat(0.0021, 0.001, 0.0032),
                      "precision": stat(0.81, 0.78, 0.84), "recall": stat(0.79, 0.75, 0.83), "images": 64,
                      "note": None},
            "exposure_range": {"low": 61.5, "high": 171.25, "coverage": 0.98, "from": "train", "heldout_share": 0.025,
                               "heldout_n": 40},
            "models": models, "closest": "ldm" if "ldm" in names else next(iter(names)),
            "summary": ["ldm is closest to the real faces (FID 70.4).", "dcgan has plateaued; the diffusion models "
                        "are still improving."]}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    runs = {"dcgan": make_run(root / "runs", "dcgan", "dcgan", dcgan_names=True),
            "ddpm": make_run(root / "runs", "ddpm", "ddpm", error_at=4),
            "ldm": make_run(root / "runs", "ldm", "ldm")}
    page = build_compare_report(findings_for({n: n for n in runs}), runs, root / "report" / "index.html",
                                title="faces: DCGAN vs diffusion", stage_seconds={"train dcgan": 9.5},
                                notes=["quick run: numbers are rough"])
    return page, page.read_text(encoding="utf-8"), runs


def curve_points(page: Path) -> list[dict]:
    with open(figures_dir(page) / "quality-curves.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_the_findings_open_the_page_with_sentences_and_numbers(built):
    page, text, _ = built
    findings = text.index("<table class='findings'>")
    assert findings < text.index("<table class='side'>") and findings < text.index("quality-fid-epoch.png")
    assert "Closest to the real images: <b>ldm</b>" in text and "dcgan has plateaued" in text
    for name in ("dcgan", "ddpm", "ldm"):
        for what in ("quality sentence", "plateau sentence", "exposure sentence", "cost sentence"):
            assert f"{name} {what}" in text
    table = text[findings:text.index("</table>", findings)]
    assert "FID <b>70.4</b> <span class='ci'>[66.3, 74.5]</span>" in table
    assert "KID <b>0.00730</b>" in table
    assert "features: domain features (offline, 128-d)" in table and "brightness outside [61.5, 171]" in table
    assert "real vs real" in table and "FID <b>12.3</b> <span class='ci'>[11.0, 13.6]</span>" in table
    assert "held-out: <b>2.50 %</b> of 40" in table and "nominal 2 %" in table
    assert "<b>18.0 %</b> <span class='ci'>[13.0 %, 23.0 %]</span>" in table  # ldm's exposure share
    # dcgan's exposure interval is null: the share stands without one, beside the sentence that says why
    assert "<b>7.00 %</b> of 256" in table and "no interval, as the draws were too few" in table
    assert "+ 12.0 s (the VAE&#x27;s training)" in table and "3.11× the cheapest" in table
    assert "slope −0.150 FID/epoch" in table and "<b>plateaued</b>" in table
    assert "domain features (offline, 128-d)" in text[:text.index("<table class='side'>")]
    assert "nan" not in text.lower().replace("nanosecond", "")


def test_grids_stand_side_by_side_per_epoch_and_a_missing_one_says_so(built):
    page, text, runs = built
    table = text[text.index("<table class='side'>"):]
    table = table[:table.index("</table>")]
    rows = table.split("<tr>")[2:]  # after the colgroup/header
    epochs = [int(r.split("<th>")[1].split("</th>")[0]) for r in rows]
    assert epochs == [1, 2, 3, 4, 6]  # the union of every run's grid epochs
    by_epoch = dict(zip(epochs, rows))
    assert by_epoch[1].count("<img") == 3
    assert "ddpm: no grid saved at this epoch" in by_epoch[2] and by_epoch[2].count("<img") == 2
    assert "ldm: not trained this far (4 epochs)" in by_epoch[6]
    assert "dcgan: no grid saved at this epoch" in by_epoch[3]
    # the DCGAN's epoch-NNN.png grids are shown, copied into the page's figures folder
    copied = figures_dir(page) / "grid-dcgan-epoch-004.png"
    assert copied.read_bytes() == (runs["dcgan"] / "samples" / "epoch-004.png").read_bytes()


def test_quality_curves_carry_the_logged_numbers(built):
    page, text, runs = built
    for name in ("quality-fid-epoch.png", "quality-fid-time.png", "quality-kid-precision-recall.png"):
        assert (figures_dir(page) / name).stat().st_size > 1000 and name in text
    points = curve_points(page)
    for name, kind in (("dcgan", "dcgan"), ("ldm", "ldm"), ("ddpm", "ddpm")):
        _, _, eval_epochs, fids, per_epoch = CURVES[kind]
        kept = [(e, f) for e, f in zip(eval_epochs, fids) if not (name == "ddpm" and e == 4)]  # the failed one
        by_epoch = [(float(p["x"]), float(p["y"])) for p in points
                    if p["panel"] == "fid vs epoch" and p["model"] == name and p["line"] == "model"]
        assert by_epoch == [(float(e), f) for e, f in kept]
        by_time = [(float(p["x"]), float(p["y"])) for p in points
                   if p["panel"] == "fid vs train_s" and p["model"] == name and p["line"] == "model"]
        assert by_time == [(e * per_epoch, f) for e, f in kept]
    recall = [float(p["y"]) for p in points if p["panel"] == "recall vs epoch" and p["model"] == "ldm"]
    assert recall == pytest.approx([0.3, 0.4])
    floors = [p for p in points if p["panel"] == "fid vs epoch" and p["line"] == "floor"]
    assert [(p["model"], float(p["y"])) for p in floors] == [("all models", 12.3)]  # equal floors: one line
    assert "ddpm, epoch 4: sampling ran out of memory &lt;oom&gt;" in text
    assert "Features: <b>domain features (offline, 128-d)</b>" in text
    last = text[text.index("The last evaluation of each run"):]
    last = last[:last.index("</table>")]
    assert "<th class='l'>ldm</th><td>4</td><td>16.0</td><td>70.2</td><td>0.00702</td>" in last


def test_loss_curves_configs_and_durations(built):
    page, text, _ = built
    losses = text[text.index("<h2>Loss curves</h2>"):text.index("<h2>What produced this</h2>")]
    assert losses.count("<img") == 6
    assert "training ldm</th><td class='l'>16.0 s (train_s: training alone)" in text
    assert "stage: train dcgan</th><td class='l'>9.50 s" in text
    assert "ldm: training config (config.yaml)" in text and "vae: ../vae" in text
    assert "quick run: numbers are rough" in text


def test_names_are_escaped_and_unevaluated_runs_say_why(tmp_path):
    odd = "<b>gan</b> & 'co'"
    drawn = "$\\alpha$ <i>ddpm</i>"  # drawn literally in the figures: no math text, no error on "$\\"
    runs = {odd: make_run(tmp_path, "odd", "dcgan", evaluate=False, train_s=False),
            drawn: make_run(tmp_path, "ddpm", "ddpm", floor={**FLOOR, "fid": 14.0}),
            "ldm": make_run(tmp_path, "ldm", "ldm")}
    findings = findings_for({"ddpm": "ddpm", "ldm": "ldm"})
    findings["models"][odd] = findings_for({"x": "dcgan"})["models"]["x"]
    page = build_compare_report(findings, runs, tmp_path / "page.html", title="<script>t</script>")
    text = page.read_text(encoding="utf-8")
    assert "<b>gan</b>" not in text and "<script>" not in text
    assert "&lt;b&gt;gan&lt;/b&gt; &amp; &#x27;co&#x27;" in text
    assert ("&lt;b&gt;gan&lt;/b&gt; &amp; &#x27;co&#x27;: no quality curve: it was trained without "
            "<code>eval.every</code>") in text
    assert "(elapsed_s: an older run without train_s" in text
    floors = [p for p in curve_points(page) if p["panel"] == "fid vs epoch" and p["line"] == "floor"]
    assert [(p["model"], float(p["y"])) for p in floors] == [(drawn, 14.0), ("ldm", 12.3)]  # one per model
    assert "&lt;i&gt;ddpm&lt;/i&gt;" in text and "<i>ddpm</i>" not in text


def test_a_metrics_file_linked_from_outside_the_run_is_not_read(tmp_path):
    run = make_run(tmp_path / "runs", "ddpm", "ddpm")
    elsewhere = tmp_path / "secret.jsonl"
    elsewhere.write_text(json.dumps(eval_row(2, 987.6, 5.0)) + "\n")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(elsewhere)
    outside_grid = tmp_path / "someone.png"
    grid_png(outside_grid, 99)
    (run / "samples" / "grid-epoch-003.png").unlink()
    (run / "samples" / "grid-epoch-003.png").symlink_to(outside_grid)
    page = build_compare_report(None, {"ddpm": run}, tmp_path / "page.html", title="t")
    text = page.read_text(encoding="utf-8")
    assert "987" not in text and not (figures_dir(page) / "quality-curves.csv").exists()
    assert "run ddpm: metrics.jsonl is not read (it points outside the run&#x27;s folder)" in text
    assert "ddpm: grid not shown (it points outside the run's folder)" in text
    assert not list(figures_dir(page).glob("*003*"))
    assert "The findings were not computed" in text and text.count("<img") == 2 + 2  # grids and loss plots


def test_findings_with_missing_or_odd_values_show_the_dash(tmp_path):
    run = make_run(tmp_path / "runs", "ldm", "ldm", evaluate=False)
    with open(run / "metrics.jsonl", "a") as fh:  # its one evaluation failed
        fh.write(json.dumps({"step": 40, "epoch": 4, "kind": "eval", "train_s": 16.0, "error": "no real images"}) + "\n")
    findings = findings_for({"ldm": "ldm"})
    findings["models"]["ldm"]["quality"]["fid"]["mean"] = float("nan")  # as json.load reads a NaN
    findings["models"]["ldm"]["plateau"] = {"status": "too few points", "slope": None, "relative_change": "x",
                                            "statement": "ldm: too few evaluations to tell (1 point)."}
    findings["models"]["ldm"]["cost"] = "not a dict"
    findings["floor"] = None
    findings["summary"] = "not a list"
    page = build_compare_report(findings, {"ldm": run}, tmp_path / "page.html", title="t")
    text = page.read_text(encoding="utf-8")
    table = text[text.index("<table class='findings'>"):]
    table = table[:table.index("</table>")]
    assert "FID <b>—</b>" in table and "slope — FID/epoch" in table and "change — over epochs —" in table
    assert "ldm: too few evaluations to tell (1 point)." in table and "training <b>— s</b>" in table
    assert "nan" not in text.lower()
    assert "ldm: no quality curve: every evaluation during its training failed" in text
    assert "ldm, epoch 4: no real images" in text


def test_a_foreign_page_is_refused(tmp_path):
    run = make_run(tmp_path / "runs", "dcgan", "dcgan", evaluate=False)
    page = tmp_path / "index.html"
    page.write_text("someone's page")
    with pytest.raises(SynthworthError, match="not a page synthworth wrote"):
        build_compare_report(None, {"dcgan": run}, page, title="faces")
    assert page.read_text() == "someone's page" and not figures_dir(page).exists()
    assert build_compare_report(None, {"dcgan": run}, tmp_path / "new.html", title="faces").is_file()


def test_quality_curves_use_a_log_axis_when_the_first_evaluation_dwarfs_the_rest(tmp_path, monkeypatch):
    """FID 300 at the first evaluation, then 20-30: on a linear axis every later point is flat."""
    import pandas as pd

    from synthworth.report import compare_figures, figures

    saved = []
    real_save = figures._save
    monkeypatch.setattr(compare_figures, "_save", lambda fig, path: (saved.append(fig), real_save(fig, path))[1])
    series = {"gan": pd.DataFrame({"epoch": [1, 2, 3], "fid": [300.0, 30.0, 22.0], "kid": [0.3, 0.02, 0.01]}),
              "ddpm": pd.DataFrame({"epoch": [1, 2, 3], "fid": [250.0, 40.0, 25.0], "kid": [0.2, 0.03, -0.001]})}
    style = compare_figures.colours(list(series))
    compare_figures.metric_against(series, "fid", "epoch", tmp_path / "fid.png", features="x", style=style)
    assert saved[-1].axes[0].get_yscale() == "log" and "log axis" in saved[-1].axes[0].get_ylabel()
    compare_figures.panels(series, tmp_path / "panels.png", features="x", style=style)
    kid, precision = saved[-1].axes[0], saved[-1].axes[1]
    assert kid.get_yscale() == "linear"   # a negative raw KID cannot go on a log axis
    assert precision.get_yscale() == "linear"
