"""The findings of :func:`synthworth.metrics.findings.compare_generators` in words: one sentence
per finding and model, a short summary, a terminal table and the flat CSV rows.

Every number a sentence states comes from the findings dict; a number that could not be
measured (None) is never shown as a number: the sentence says why instead.
"""

from __future__ import annotations

import csv
import io
from typing import Any

QUALITY = ("fid", "kid", "precision", "recall")
TITLES = {"fid": "FID", "kid": "KID", "precision": "precision", "recall": "recall"}


def fid_title(findings: dict[str, Any]) -> str:
    """On DINOv2 features the Fréchet distance is FD_DINOv2 (Stein et al. 2023); the key stays "fid"."""
    return "FD_DINOv2" if findings.get("features") == "dinov2" else "FID"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _ci(stat: dict[str, Any]) -> str:
    if stat.get("mean") is None:
        return "n/a"
    if stat.get("low") is None:
        return _num(stat["mean"])
    return f"{_num(stat['mean'])} (95 % CI {_num(stat['low'])}–{_num(stat['high'])})"


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


# ------------------------------------------------------------------------------ sentences
def quality_sentence(name: str, model: dict[str, Any], findings: dict[str, Any]) -> str:
    q, floor = model["quality"], findings["floor"]
    fid = fid_title(findings)
    parts = ", ".join(f"{fid if m == 'fid' else TITLES[m]} {_ci(q[m])}" for m in QUALITY)
    text = (f"over {findings['draws']} draws of {findings['samples']} samples: {parts}; the real-vs-real floor "
            f"(real training images against the held-out ones) is {fid} {_ci(floor['fid'])}")
    if model.get("labels"):
        text += f"; labels drawn {model['labels']}"
    if q["fid"]["mean"] is None:
        return text + f"; its {fid} could not be computed, so it is not ranked"
    if findings.get("closest") == name:
        return text + f"; the closest to the real images by {fid}"
    return text


def exposure_sentence(model: dict[str, Any], findings: dict[str, Any]) -> str:
    e, r = model["exposure"], findings["exposure_range"]
    if e["share"] is None:
        return "no samples, so no exposure share"
    return (f"{_share(e['share'])} of its {e['n']} samples (95 % CI {_share(e['low'])}–{_share(e['high'])}) lie "
            f"outside the brightness range {r['low']:.1f}–{r['high']:.1f} that holds {r['coverage'] * 100:.0f} % of "
            f"{r['from']}: {_share(e['dark'])} too dark, {_share(e['bright'])} too bright; the held-out real "
            f"images: {_share(r['heldout_share'])} of {r['heldout_n']}")


def seconds(value: float) -> str:
    """Seconds for a sentence: whole ones from 10 s up, else two significant digits (a run of a
    quarter second is not '0 s' beside a ratio of 6×)."""
    return f"{value:.0f} s" if value >= 10 else f"{value:.2g} s"


def cost_sentence(model: dict[str, Any], cheapest: str | None) -> str:
    c = model["cost"]
    if c["train_seconds"] is None:
        return f"no training time in {model['run']}/metrics.jsonl: its cost is unknown"
    n = model.get("epochs")
    epochs = "its epochs" if n is None else f"{n} epoch" + ("" if n == 1 else "s")
    text = f"trained {epochs} in {seconds(c['train_seconds'])}"
    if c["source"] == "elapsed_s":
        text += (" (wall-clock time including evaluation and checkpoints: the run predates the train_s "
                 "record of training time alone)")
    if c["extra_note"]:
        text += f"; {c['extra_note']}"
    if c["extra_seconds"] is not None:
        text += f", {seconds(c['total_seconds'])} in all"
    if c["ratio"] is not None and cheapest is not None:
        text += ("; the cheapest model" if c["ratio"] == 1 else f"; {c['ratio']:.1f}× the cost of {cheapest}")
    return text


def add_sentences(findings: dict[str, Any]) -> None:
    """Fill ``models[NAME]["sentences"]`` and ``summary`` in place."""
    models = findings["models"]
    costs = {n: m["cost"]["total_seconds"] for n, m in models.items() if m["cost"]["total_seconds"]}
    cheapest = min(costs, key=costs.get) if costs else None
    for name, m in models.items():
        m["sentences"] = {"quality": quality_sentence(name, m, findings), "plateau": m["plateau"]["statement"],
                          "exposure": exposure_sentence(m, findings), "cost": cost_sentence(m, cheapest)}
    findings["summary"] = [s for s in (_closest(findings), *(f"{n}: {m['plateau']['statement']}" for n, m in
                                                               models.items()),
                                       _exposure_summary(findings), _cost_summary(models, cheapest)) if s]


def _closest(findings: dict[str, Any]) -> str:
    models, best = findings["models"], findings.get("closest")
    if best is None:
        return f"no model's {fid_title(findings)} could be computed, so none is named closest to the real images"
    fid = models[best]["quality"]["fid"]
    floor = findings["floor"]["fid"]["mean"]
    others = [(n, m["quality"]["fid"]) for n, m in models.items() if n != best and m["quality"]["fid"]["mean"] is not None]
    text = f"{best} is closest to the real images by {fid_title(findings)} ({_ci(fid)}"
    text += "".join(f"; {n} {_num(f['mean'])}" for n, f in others) + ")"
    if others and fid["high"] is not None:
        close = [n for n, f in others if f["low"] is None or fid["high"] >= f["low"]]
        text += (": its interval lies below every other model's" if not close else
                 f": but its interval overlaps {' and '.join(close)}'s, so the lead over "
                 f"{'them' if len(close) > 1 else 'it'} is not clear at this sample size")
    if floor is not None and floor > 0:
        text += f"; the real-vs-real floor is {_num(floor)}"
    return text


def _exposure_summary(findings: dict[str, Any]) -> str | None:
    shares = {n: m["exposure"]["share"] for n, m in findings["models"].items() if m["exposure"]["share"] is not None}
    if not shares:
        return None
    worst = max(shares, key=shares.get)
    if shares[worst] == 0:
        return (f"exposure: no model's samples fall outside the real brightness range (the held-out real images: "
                f"{_share(findings['exposure_range']['heldout_share'])})")
    return (f"exposure: {worst} has the largest share of samples outside the real brightness range "
            f"({_share(shares[worst])}), against {_share(findings['exposure_range']['heldout_share'])} of the "
            f"held-out real images")


def _cost_summary(models: dict[str, Any], cheapest: str | None) -> str | None:
    if cheapest is None:
        return None
    ratios = [f"{n} {m['cost']['ratio']:.1f}×" for n, m in models.items()
              if m["cost"]["ratio"] is not None and n != cheapest]
    base = f"cost: {cheapest} is the cheapest ({seconds(models[cheapest]['cost']['total_seconds'])})"
    return base + (f"; relative to it: {', '.join(ratios)}" if ratios else "")


# ------------------------------------------------------------------------------ table
def format_table(findings: dict[str, Any]) -> str:
    real = findings["real"]
    lines = [f"features   {findings['features_label']}",
             f"real       {real['path']}: {real['train_images']} {real['train_split']!r} images (brightness range, "
             f"floor), {real['reference_images']} {real['reference_split']!r} images (reference)",
             f"draws      {findings['draws']} of {findings['samples']} samples each (seed {findings['seed']})", ""]
    fid_head = fid_title(findings) + " [95% CI]"
    head = (f"{'model':12s} {'kind':6s} {fid_head:>24s} {'KID':>9s} {'prec.':>6s} {'recall':>6s} {'plateau':>14s}"
            f" {'outside':>8s} {'train s':>8s} {'ratio':>6s}")
    lines += [head, "-" * len(head)]

    def fid(stat):
        if stat["mean"] is None:
            return "n/a"
        return f"{stat['mean']:.3g}" + (f" [{stat['low']:.3g}, {stat['high']:.3g}]" if stat["low"] is not None else "")

    for name, m in findings["models"].items():
        q, c = m["quality"], m["cost"]
        ratio = f"{c['ratio']:.1f}" if c["ratio"] is not None else "n/a"
        lines.append(f"{name[:12]:12s} {m['kind']:6s} {fid(q['fid']):>24s} {_num(q['kid']['mean']):>9s} "
                     f"{_num(q['precision']['mean']):>6s} {_num(q['recall']['mean']):>6s} "
                     f"{m['plateau']['status']:>14s} {_share(m['exposure']['share']):>8s} "
                     f"{_num(c['total_seconds']):>8s} {ratio:>6s}")
    f = findings["floor"]
    lines.append(f"{'real floor':12s} {'':6s} {fid(f['fid']):>24s} {_num(f['kid']['mean']):>9s} "
                 f"{_num(f['precision']['mean']):>6s} {_num(f['recall']['mean']):>6s} {'':>14s} "
                 f"{_share(findings['exposure_range']['heldout_share']):>8s}")
    if f.get("note"):
        lines.append(f"(floor: {f['note']})")
    lines.append("")
    for name, m in findings["models"].items():
        lines.append(f"{name}:")
        lines += [f"  {key}: {text}" for key, text in m["sentences"].items()]
    lines += ["", "summary:"] + [f"  {s}" for s in findings["summary"]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ csv
def csv_rows(findings: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per model (the values of each draw and the sentences stay in the JSON)."""
    rows = []
    for name, m in findings["models"].items():
        row: dict[str, Any] = {"model": name, "kind": m["kind"], "run": m["run"], "epochs": m["epochs"],
                               "steps": m["steps"], "closest": name == findings.get("closest"),
                               "features": findings["features"], "draws": findings["draws"],
                               "samples": findings["samples"]}
        for metric, stat in m["quality"].items():
            row.update({f"{metric}_{k}": stat[k] for k in ("mean", "low", "high")})
        for metric in QUALITY:
            row.update({f"floor_{metric}_{k}": findings["floor"][metric][k] for k in ("mean", "low", "high")})
        row.update({f"plateau_{k}": v for k, v in m["plateau"].items() if k not in ("metric", "statement")})
        row.update({f"exposure_{k}": v for k, v in m["exposure"].items()})
        row["exposure_heldout_share"] = findings["exposure_range"]["heldout_share"]
        row.update({f"cost_{k}": v for k, v in m["cost"].items() if k != "extra_note"})
        rows.append(row)
    return rows


def csv_text(findings: dict[str, Any]) -> str:
    rows = csv_rows(findings)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()
