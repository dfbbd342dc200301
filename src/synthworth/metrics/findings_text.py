"""The findings of :func:`synthworth.metrics.findings.compare_generators` in words: one sentence
per finding and model, a short summary, a terminal table and the flat CSV rows.

Every number a sentence states comes from the findings dict; a number that could not be
measured (None) is never shown as a number: the sentence says why instead.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from synthworth.metrics.cost import seconds  # noqa: F401 (also the API of this module's sentences)

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
    runs = model.get("runs") or 1
    if runs > 1:
        spread = q["fid"]
        text = (f"over its {runs} runs (seeds {', '.join(map(str, model.get('seeds') or []))}), each scored on "
                f"{findings['draws']} draws of {findings['samples']} samples, the mean of the runs with the 95 % "
                f"interval over runs: {parts}")
        if spread.get("between_sd") is not None and spread.get("within_sd") is not None:
            text += (f"; {fid} varies by {_num(spread['between_sd'])} (sd) between runs and by "
                     f"{_num(spread['within_sd'])} between draws of one run")
    else:
        text = (f"over {findings['draws']} draws of {findings['samples']} samples of its one run: {parts} (the "
                f"interval covers the sampling of images only: {ONE_RUN})")
    text += (f"; the real-vs-real floor (real training images against the held-out ones) is {fid} "
             f"{_ci(floor['fid'])}")
    if model.get("labels"):
        text += f"; labels drawn {model['labels']}"
    if q["fid"]["mean"] is None:
        return text + f"; its {fid} could not be computed, so it is not ranked"
    test = findings.get("closest_test") or {}
    if findings.get("closest") == name:
        return text + "; " + {"backed": f"the closest to the real images by {fid}, shown by a test over runs",
                              "alone": "the only model compared",
                              "not shown": f"the lowest {fid}, but not shown to be closer than "
                                           f"{' and '.join(test.get('tied') or [])} (see the summary)",
                              }.get(test.get("claim"), f"the lowest {fid}, a ranking not tested (see the summary)")
    return text


# What one run cannot say (printed wherever a model has a single run).
ONE_RUN = ("one trained run, so the ranking may not survive a retrain; train replicates "
           "('synthworth train ... --replicates 3') to put an interval over runs and test it")


def exposure_sentence(model: dict[str, Any], findings: dict[str, Any]) -> str:
    """The comparison with held-out real images (:func:`synthworth.metrics.exposure.sentence`)."""
    from synthworth.metrics.exposure import sentence

    return sentence(model, findings["exposure_range"])


def cost_sentence(model: dict[str, Any], cheapest: str | None) -> str:
    """In the measure the models are compared by (:func:`synthworth.metrics.cost.sentence`)."""
    from synthworth.metrics.cost import sentence

    return sentence(model, cheapest)


def _cost(model: dict[str, Any]) -> float | None:
    """The seconds models are compared by: ``seconds`` in the chosen measure, else wall time."""
    c = model["cost"]
    return c.get("seconds") if "measure" in c else c["total_seconds"]


def add_sentences(findings: dict[str, Any]) -> None:
    """Fill ``models[NAME]["sentences"]`` and ``summary`` in place."""
    models = findings["models"]
    costs = {n: _cost(m) for n, m in models.items() if _cost(m)}
    cheapest = min(costs, key=costs.get) if costs else None
    for name, m in models.items():
        m["sentences"] = {"quality": quality_sentence(name, m, findings), "plateau": m["plateau"]["statement"],
                          "exposure": exposure_sentence(m, findings), "cost": cost_sentence(m, cheapest)}
    findings["summary"] = [s for s in (_closest(findings), *(f"{n}: {m['plateau']['statement']}" for n, m in
                                                               models.items()),
                                       _exposure_summary(findings), _cost_summary(models, cheapest)) if s]


def _closest(findings: dict[str, Any]) -> str:
    """The summary's first sentence: which model is closest, as far as the test over runs shows
    (:func:`synthworth.metrics.over_runs.closest`); never read off overlapping intervals."""
    models, best = findings["models"], findings.get("closest")
    fid_name = fid_title(findings)
    if best is None:
        return f"no model's {fid_name} could be computed, so none is named closest to the real images"
    test = findings.get("closest_test") or {}
    fid = models[best]["quality"]["fid"]
    floor = findings["floor"]["fid"]["mean"]
    others = [(n, m["quality"]["fid"]) for n, m in models.items() if n != best and m["quality"]["fid"]["mean"] is not None]
    listing = "".join(f"; {n} {_num(f['mean'])}" for n, f in others)
    claim = test.get("claim")
    if claim == "backed":
        text = (f"{best} is closest to the real images by {fid_name} ({_ci(fid)}{listing}): over runs it is "
                "lower than " + "; ".join(_test_words(n, t, fid_name) for n, t in test["tests"].items()))
    elif claim == "not shown":
        shown = [n for n, t in test["tests"].items() if t["different"]]
        text = (f"{best} has the lowest mean {fid_name} ({_ci(fid)}{listing}), but the runs cannot tell it apart "
                f"from {' and '.join(test['tied'])}: " + "; ".join(_test_words(n, test["tests"][n], fid_name)
                                                            for n in test["tied"]))
        text += ("" if not shown else f"; it is lower than {' and '.join(shown)}: "
                 + "; ".join(_test_words(n, test["tests"][n], fid_name) for n in shown))
        text += "; so no model is shown to be the closest"
    elif claim == "untested":
        single = [n for n in [best, *test.get("untested", [])] if (models[n].get("runs") or 1) < 2]
        text = (f"{best} has the lowest {fid_name} ({_ci(fid)}{listing}), a ranking not tested: "
                f"{' and '.join(single)} {'has' if len(single) == 1 else 'have'} {ONE_RUN}")
    elif others:  # findings without the test (written by an earlier synthworth)
        text = f"{best} has the lowest {fid_name} ({_ci(fid)}{listing}), a ranking not tested over runs"
    else:
        text = f"{best} is the only model: {fid_name} {_ci(fid)}"
    notes = sorted({t["note"] for t in (test.get("tests") or {}).values() if t.get("note")})
    text += "".join(f"; {n}" for n in notes)
    if floor is not None and floor > 0:
        text += f"; the real-vs-real floor is {_num(floor)}"
    return text


def _test_words(name: str, test: dict[str, Any], fid_name: str) -> str:
    """One test of the closest model against ``name``, in words with its numbers."""
    if test.get("method") is None:
        return f"against {name} no test: {test.get('reason')}"
    p = test.get("p")
    interval = (f", 95 % CI {_num(test['low'])} to {_num(test['high'])}" if test.get("low") is not None else "")
    runs = test.get("runs") or ["?", "?"]
    return (f"{name} (difference in {fid_name} {_num(test['difference'])}{interval}; {runs[0]} vs {runs[1]} runs, "
            f"{test['method']}, p = {_num(p)}{' ≤' if test['different'] else ' >'} {test['alpha']:g})")


def _exposure_summary(findings: dict[str, Any]) -> str | None:
    from synthworth.metrics.exposure import summary

    return summary(findings)


def _cost_summary(models: dict[str, Any], cheapest: str | None) -> str | None:
    if cheapest is None:
        return None
    ratios = [f"{n} {m['cost']['ratio']:.1f}×" for n, m in models.items()
              if m["cost"]["ratio"] is not None and n != cheapest]
    what = {"cpu": " by CPU time", "wall": " by wall-clock time"}.get(models[cheapest]["cost"].get("measure"), "")
    base = f"cost{what}: {cheapest} is the cheapest ({seconds(_cost(models[cheapest]))})"
    return base + (f"; relative to it: {', '.join(ratios)}" if ratios else "")


# ------------------------------------------------------------------------------ table
def _clock(findings: dict[str, Any]) -> str:
    measures = {m["cost"].get("measure") for m in findings["models"].values()}
    return "cpu s" if measures == {"cpu"} else "train s"


def format_table(findings: dict[str, Any]) -> str:
    real = findings["real"]
    runs = {n: m.get("runs") or 1 for n, m in findings["models"].items()}
    lines = [f"features   {findings['features_label']}",
             f"real       {real['path']}: {real['train_images']} {real['train_split']!r} images (brightness range, "
             f"floor), {real['reference_images']} {real['reference_split']!r} images (reference)",
             f"draws      {findings['draws']} of {findings['samples']} samples each (seed {findings['seed']})",
             "runs       " + ", ".join(f"{n} {k}" for n, k in runs.items()) + " (intervals: over runs where a model has "
             "2 or more, else over its draws: sampling only)", ""]
    fid_head = fid_title(findings) + " [95% CI]"
    head = (f"{'model':12s} {'kind':6s} {fid_head:>24s} {'KID':>9s} {'prec.':>6s} {'recall':>6s} {'plateau':>14s}"
            f" {'outside':>8s} {_clock(findings):>8s} {'ratio':>6s}")
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
                     f"{_num(_cost(m)):>8s} {ratio:>6s}")
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
        test = (findings.get("closest_test") or {}).get("tests", {}).get(name) or {}
        row: dict[str, Any] = {"model": name, "kind": m["kind"], "run": m["run"], "runs": m.get("runs") or 1,
                               "epochs": m["epochs"],
                               "steps": m["steps"], "closest": name == findings.get("closest"),
                               "features": findings["features"], "draws": findings["draws"],
                               "samples": findings["samples"]}
        for metric, stat in m["quality"].items():
            row.update({f"{metric}_{k}": stat[k] for k in ("mean", "low", "high")})
        row.update({f"fid_{k}": m["quality"]["fid"].get(k) for k in ("covers", "between_sd", "within_sd")})
        row.update({"closest_claim": (findings.get("closest_test") or {}).get("claim"),
                    "test_vs_closest_p": test.get("p"), "test_vs_closest_method": test.get("method")})
        for metric in QUALITY:
            row.update({f"floor_{metric}_{k}": findings["floor"][metric][k] for k in ("mean", "low", "high")})
        row.update({f"plateau_{k}": v for k, v in m["plateau"].items() if k not in ("metric", "statement")})
        row.update({f"exposure_{k}": v for k, v in m["exposure"].items() if not isinstance(v, dict)})
        row.update({f"exposure_vs_heldout_{k}": v for k, v in (m["exposure"].get("versus_heldout") or {}).items()})
        row["exposure_heldout_share"] = findings["exposure_range"]["heldout_share"]
        row.update({f"cost_{k}": v for k, v in m["cost"].items() if k != "extra_note" and not isinstance(v, list)})
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
