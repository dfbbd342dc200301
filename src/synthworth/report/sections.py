"""Sections of the report's page that show pictures and image-quality numbers: the metrics
table, the generators' samples per epoch with their loss curves, and the Datasets' sample grids.

:class:`Sections` is a base of :class:`synthworth.report.page.Report`; it builds on
:class:`synthworth.report.base.ReportBase` (which holds the tables, the run folders and the helpers
``img``, ``target``, ``_copy``, ``_run_file``, ``_run_seconds``).

Sample grids carry their class names as HTML beside the picture (:func:`labelled_grid`): a grid
of ``k`` equal rows gets a column of ``k`` equal slots, one name each, stretched to the
picture's height, so the names stay on their rows at any page width. A run's grid is labelled
only when its picture has exactly one row per class of the run (checked on its pixel height).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from synthworth.generators.base import model_config_file
from synthworth.report.base import ReportBase
from synthworth.report.numbers import esc, fmt, num
from synthworth.safety import safe_names

QUALITY = [  # (column, name, what it is, higher is better)
    ("fid", "FID", "Fréchet distance between the feature distributions", False),
    ("kid", "KID", "kernel inception distance, raw (not ×1000 as some papers print it)", False),
    ("precision", "precision", "share of generated images inside the real images' manifold", True),
    ("recall", "recall", "share of real images inside the generated images' manifold", True),
    ("density", "density", "how densely generated images fill real neighbourhoods", True),
    ("coverage", "coverage", "share of real neighbourhoods holding a generated image", True),
]
MAX_CLASS_ROWS = 20  # classes shown in a Dataset's grid; the rest are named in a note
PER_CLASS = 10       # images per class row


def labelled_grid(img_html: str, labels: list[str]) -> str:
    """A grid picture with one class name per row beside it (escaped here)."""
    if not labels:
        return img_html
    names = "".join(f"<span>{esc(label)}</span>" for label in labels)
    return f"<div class='lgrid'><div class='rows'>{names}</div>{img_html}</div>"


def grid_rows(path: Path, resolution: int, scale: int) -> int | None:
    """How many rows of images a ``save_grid`` picture holds (2-pixel padding, then scaled), or
    None when its height fits no whole number of rows."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            height = im.height
    except (OSError, ValueError):
        return None
    cell = (resolution + 2) * scale
    rows, rest = divmod(height - 2 * scale, cell)
    return rows if rest == 0 and rows > 0 else None


# Features learned here from the study's own few images (a small classifier), not Inception or
# DINOv2: reproducible, but they can rank noise-like samples as close to the real images.
WEAK_FEATURES = {"domain", "file"}
WEAK_FEATURES_WARNING = (
    "<p class='warning'>These features are weak: the penultimate layer of a small classifier trained on this "
    "study's own real images. They separate what that classifier separates (its classes), not whether an image "
    "looks real, so samples that are visibly noise can still score well on every metric below. Read each number "
    "with the sample grids of the Datasets further down; with Inception or DINOv2 weights (the spec's "
    "<code>metrics: {features: inception, inception_weights: FILE}</code>, or <code>features: dinov2</code>) "
    "the same study gives standard numbers.</p>")


class Sections(ReportBase):
    """The sections of :class:`~synthworth.report.page.Report` showing pictures and quality numbers."""

    # ---------------------------------------------------------------- image quality
    def quality(self) -> str:
        m = self.t["metrics"]
        missing = self.grid.metrics_missing if self.grid is not None else []
        if m.empty and not missing:
            return ""
        gap = (f"<p class='warning'>Image-quality metrics missing for: {esc(', '.join(missing))} (the study did not "
               "finish them).</p>" if missing else "")
        if m.empty:
            return "<h2>Image quality per generator</h2>" + gap
        records = m.to_dict("records")
        gens = [str(r["generator"]) for r in records]
        head = "<tr><th class='l'>metric</th><th>real-vs-real floor</th>" + "".join(
            f"<th>{esc(g)}</th>" for g in gens) + "</tr>"
        rows = []
        for col, name, what, higher in QUALITY:
            if col not in m.columns:
                continue
            floor = records[0].get(f"{col}_real_floor")
            cells = "".join(f"<td>{self._quality_cell(r, col)}</td>" for r in records)
            better = "higher is better" if higher else "lower is better"
            rows.append(f"<tr><th class='l'>{esc(name)} <span class='note'>({esc(better)})</span></th>"
                        f"<td>{self._quality_cell(records[0], col + '_real_floor') if pd.notna(floor) else '—'}</td>"
                        f"{cells}</tr>")
        if "fid_half_n" in m.columns and m["fid_half_n"].notna().any():
            cells = "".join(f"<td>{num(r.get('fid_half_n'))}</td>" for r in records)
            rows.append("<tr><th class='l'>FID at the floor's sample size <span class='note'>(n_half generated vs "
                        "one real half)</span></th><td>—</td>" + cells + "</tr>")
        if "cas" in m.columns and m["cas"].notna().any():
            cells = "".join(f"<td>{num(r.get('cas'))} <span class='note'>"
                            f"{self._interval(r.get('cas_ci_low'), r.get('cas_ci_high'))} at "
                            f"{num(r.get('cas_size'), 'count')}</span></td>" for r in records)
            rows.append("<tr><th class='l'>CAS <span class='note'>(higher is better)</span></th><td>—</td>"
                        + cells + "</tr>")
        label = esc(records[0].get("features_label") or records[0].get("features") or "—")
        kinds = {str(r.get("features")) for r in records}
        if kinds & WEAK_FEATURES:
            gap += WEAK_FEATURES_WARNING
        what = "".join(f"<li><b>{esc(name)}</b>: {esc(text)}</li>" for col, name, text, _ in QUALITY if col in m.columns)
        return ("<h2>Image quality per generator</h2>" + gap +
                f"<p class='note'>Features: {label}. Each generator's number stands next to the real-vs-real floor: "
                "the same metric between two disjoint random halves of the real images, which a generated set "
                "cannot be expected to beat. KID is the raw value (not multiplied by 1,000); its ± is the "
                "standard deviation over the random subsets KID averages, not a confidence interval. FID, "
                "precision, recall, density and coverage are single numbers: the metrics step computes no "
                "interval for them. CAS = classification accuracy score (train on generated, test on real) = the "
                "<i>artificial</i> composition above, with its 95 % CI over seeds at the largest size.</p>"
                f"<div class='wide'><table>{head}{''.join(rows)}</table></div><ul class='note'>{what}</ul>")

    @staticmethod
    def _interval(low, high) -> str:
        if fmt(low) == "—" or fmt(high) == "—":
            return "(no interval)"
        return f"[{num(low)}, {num(high)}]"

    @staticmethod
    def _quality_cell(record: dict, col: str) -> str:
        """A metric's value; KID with its ± standard deviation over subsets when there is one."""
        text = num(record.get(col))
        if col.startswith("kid"):
            sd = record.get(col.replace("kid", "kid_std", 1))
            if fmt(sd) != "—":
                text += f" <span class='note'>± {num(sd)} sd</span>"
        return text

    # ---------------------------------------------------------------- generators
    def _run_class_names(self, name: str) -> tuple[list[str], int]:
        """The run's class names and image resolution from its model/synthworth.json ([] and 0
        when it has none or it is unreadable: the grids then go unlabelled)."""
        run = self.runs[name][0]
        found = self._run_file(name, model_config_file(run / "model"))
        if found is None:
            return [], 0
        try:
            info = json.loads(found.read_text(encoding="utf-8"))
            names, resolution = info.get("class_names"), info.get("resolution")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return [], 0
        if not (isinstance(names, list) and isinstance(resolution, int) and resolution > 0):
            return [], 0
        return [str(n) for n in names], resolution

    def generators(self) -> str:
        if not self.runs:
            return ""
        parts = ["<h2>Trained generators: samples per epoch and loss curves</h2>",
                 "<p class='note'>As in the source project: the same fixed noise after chosen epochs (one row per "
                 "class where the generator is class-conditional), and the training losses per iteration and per "
                 "epoch. Each generator shows the epochs it saved a grid for.</p>"]
        for name, (run, _) in self.runs.items():
            grids = sorted((run / "samples").glob("grid-epoch-*.png")) or sorted((run / "samples").glob("epoch-*.png"))
            per_epoch = {int(p.stem.split("-")[-1]): p for p in grids if p.stem.split("-")[-1].isdigit()}
            classes, resolution = self._run_class_names(name)
            last = max(per_epoch) if per_epoch else None
            cells = []
            for e, source in sorted(per_epoch.items()):
                target = self._copy(name, source, f"run-{self.run_files[name]}-epoch-{e:03d}.png")
                if target is None:
                    continue
                labels = []
                if classes and resolution:
                    scale = max(1, 64 // resolution)
                    if grid_rows(target, resolution, scale) == len(classes):
                        labels = classes
                picture = labelled_grid(self.img(target, f"{name} epoch {e}"), labels)
                cells.append(f"<figure>{picture}<figcaption>{esc(name)}: epoch {num(e, 'count')}"
                             f"{' (last saved)' if e == last else ''}</figcaption></figure>")
            imgs = []
            for plot in sorted((run / "plots").glob("*.png")):
                target = self._copy(name, plot, f"run-{self.run_files[name]}-{plot.name}")
                if target:
                    imgs.append(f"<figure>{self.img(target, f'{name} {plot.stem}')}"
                                f"<figcaption>{esc(name)}: {esc(plot.stem.replace('_', ' '))}</figcaption></figure>")
            seconds = self._run_seconds(name)
            note = f"<p class='note'>{esc(name)}: run folder {esc(run)}"
            note += f", {num(seconds)} s of training" if seconds else ""
            note += "</p>"
            if cells or imgs or (run / "log.txt").is_file():
                strip = f"<div class='strip'>{''.join(cells)}</div>" if cells else ""
                parts.append(f"<h3>{esc(name)}</h3>{note}{strip}<div class='grids'>{''.join(imgs)}</div>")
        return "\n".join(parts)

    # ---------------------------------------------------------------- Datasets
    def datasets_section(self) -> str:
        """Sample grids of the study's Datasets: those named with --dataset, and those inputs.json
        names that lie inside the results folder; any other is named in a note, never opened."""
        from synthworth.report.load import inside

        synthetic = self.inputs.get("synthetic", {})
        real = self.inputs.get("real", {})
        known = {"real": real, **synthetic} if real or synthetic else {}
        chosen: dict[str, tuple[Path, str | None]] = {}
        for name, info in known.items():
            stored = info.get("path")
            if name in self.datasets:
                continue
            found = inside(Path(self.results).absolute() / stored, self.home) if stored else None
            if found is None or not found.is_dir():
                if stored:
                    self.notes.append(f"Dataset {name}: {stored} (named in inputs.json) is not read, as it lies "
                                      f"outside the results folder or is missing; pass --dataset {name}=PATH to show it")
                continue
            chosen[name] = (found, info.get("fingerprint"))
        for name, path in self.datasets.items():
            info = known.get(name, {})
            chosen[name] = (path, info.get("fingerprint"))
        if not chosen:
            return ""
        from synthworth.data.dataset import Dataset
        from synthworth.engine.plots import save_grid

        parts = ["<h2>Sample grids of the Datasets</h2><p class='note'>One row per class (its name on the left), "
                 f"the first {PER_CLASS} images of each; a class with fewer images leaves the rest of its row "
                 "blank.</p>", "<div class='grids'>"]
        for (name, (path, fingerprint)), file_name in zip(chosen.items(), safe_names(chosen, fallback="dataset")):
            try:
                ds = Dataset.open(path)
                images, labels, left = class_rows(ds, PER_CLASS)
                if not len(images):
                    continue
                target = save_grid(images, self.target(f"dataset-{file_name}.png"), nrow=PER_CLASS,
                                   scale=max(1, 48 // ds.resolution))
            except Exception as exc:  # a moved, damaged or foreign Dataset only loses its picture
                self.notes.append(f"Dataset {name}: {path} could not be shown ({' '.join(str(exc).split())[:160]})")
                continue
            differs = (f" — not the Dataset the study used (fingerprint {ds.fingerprint}, the study's {fingerprint})"
                       if fingerprint and ds.fingerprint != fingerprint else "")
            more = f"; {fmt(left, 'count')} more classes not shown" if left else ""
            parts.append(f"<figure>{labelled_grid(self.img(target, f'{name} samples'), labels)}"
                         f"<figcaption>{esc(name)}: {esc(path)} ({num(len(ds), 'count')} images{esc(more)})"
                         f"{esc(differs)}</figcaption></figure>")
        parts.append("</div>")
        return "\n".join(parts)


def class_rows(ds, per_class: int) -> tuple[np.ndarray, list[str], int]:
    """Images for a grid of one row per class (``per_class`` wide, blank-padded), the row
    labels and how many classes were left out (beyond MAX_CLASS_ROWS). An unlabelled Dataset:
    its first images, no labels."""
    if not ds.labelled:
        picks = np.arange(min(len(ds), per_class * 4))
        return (ds.take(picks) if len(picks) else np.zeros((0,) + tuple(ds.shape), np.uint8)), [], 0
    shown = min(ds.num_classes, MAX_CLASS_ROWS)
    rows, labels = [], []
    for c in range(shown):
        picks = np.flatnonzero(ds.labels == c)[:per_class]
        row = ds.take(picks) if len(picks) else np.zeros((0,) + tuple(ds.shape), np.uint8)
        blank = np.full((per_class - len(row),) + tuple(ds.shape), 255, np.uint8)
        rows.append(np.concatenate([row.astype(np.uint8), blank]))
        labels.append(str(ds.class_names[c]))
    return np.concatenate(rows), labels, ds.num_classes - shown
