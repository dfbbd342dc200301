"""The opening of the comparison page: the four findings per model, in sentences with their
numbers (``findings.json``, written by ``synthworth compare``: CONTRACT14 §4).

The findings are read as untrusted data: a missing key, a null or a non-number shows as the
project's dash ("—", :func:`synthworth.report.numbers.fmt`), next to the sentence that says why;
every text is escaped.
"""

from __future__ import annotations

import math
from typing import Any

from synthworth.metrics.findings_text import fid_title
from synthworth.report.numbers import esc, fmt, num

QUALITY = [("fid", "FID", "lower is better"), ("kid", "KID", "lower is better"),
           ("precision", "precision", "higher is better"), ("recall", "recall", "higher is better")]
NOMINAL = "2 %"  # the share of real faces outside their own 98 % range, by construction


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def pct(value: Any) -> str:
    """A share (0..1) as a percentage by the page's number rule; "—" when missing."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return esc(fmt(None if value is None else value))
    return "—" if not math.isfinite(x) else f"{num(100 * x)} %"


def ci(stat: dict, writer=num) -> str:
    """``[low, high]``, or nothing when the interval is missing."""
    low, high = stat.get("low"), stat.get("high")
    if fmt(low) == "—" or fmt(high) == "—":
        return ""
    return f" <span class='ci'>[{writer(low)}, {writer(high)}]</span>"


def quality_numbers(quality: dict) -> str:
    lines = []
    for key, name, _ in QUALITY:
        stat = _d(quality.get(key))
        lines.append(f"{esc(name)} <b>{num(stat.get('mean'))}</b>{ci(stat)}")
    return "<div class='nums'>" + "<br>".join(lines) + "</div>"


def cell(sentence: Any, numbers: str) -> str:
    text = esc(sentence) if isinstance(sentence, str) and sentence else "<span class='note'>(no sentence)</span>"
    return f"<td class='l'><p>{text}</p>{numbers}</td>"


def plateau_numbers(p: dict) -> str:
    status = esc(p.get("status") or "—")
    metric = esc(str(p.get("metric") or "fid").upper())
    slope = f"slope {num(p.get('slope'), 'signed')} {metric}/epoch{ci(p, lambda v: num(v, 'signed'))}"
    rel = p.get("relative_change")
    change = "—" if fmt(rel) == "—" or not isinstance(rel, (int, float)) else f"{num(100 * rel, 'signed')} %"
    first, last = p.get("first_epoch"), p.get("last_epoch")
    window = (f"epochs {num(first, 'count')}–{num(last, 'count')}" if fmt(first) != "—" and fmt(last) != "—"
              else "epochs —")
    runs = p.get("runs")
    basis = (f"{num(runs, 'count')} runs, each one observation" if isinstance(runs, int) and runs > 1 else
             f"one run; neighbouring evaluations correlated up to {num(p.get('correlation'))} allowed for"
             if fmt(p.get("correlation")) != "—" else "")
    draws = f", {num(p.get('draws'), 'count')} draws each" if isinstance(p.get("draws"), int) and p["draws"] > 1 else ""
    return (f"<div class='nums'><b>{status}</b><br>{slope}<br>change {change} over {window} "
            f"({num(p.get('points'), 'count')} points{draws})" + (f"<br><span class='note'>{esc(basis)}</span>"
                                                                   if basis else "") + "</div>")


def exposure_numbers(e: dict, heldout: dict) -> str:
    v = _d(e.get("versus_heldout"))
    versus = ""
    if isinstance(v.get("difference"), (int, float)) and fmt(v["difference"]) != "—":
        versus = (f"<br>difference from held-out: <b>{_points(v['difference'])} points</b>"
                  f"{ci({'low': v.get('difference_low'), 'high': v.get('difference_high')}, _points)}, "
                  f"Fisher p {num(v.get('p_value'))}<br><span class='note'>{esc(v.get('verdict') or '—')}</span>")
    return (f"<div class='nums'>outside the real range: <b>{pct(e.get('share'))}</b>{ci(e, pct)} of "
            f"{num(e.get('n'), 'count')} samples<br>dark {pct(e.get('dark'))}, bright {pct(e.get('bright'))}<br>"
            f"held-out real images: {pct(heldout.get('heldout_share'))} of {num(heldout.get('heldout_n'), 'count')};"
            f" nominal {NOMINAL}{versus}</div>")


def _points(value) -> str:
    """A difference of shares in percentage points, signed."""
    return num(100 * value, "signed") if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def coverage_numbers(check: dict) -> str:
    """The range's coverage on the held-out real images (:func:`synthworth.metrics.exposure.range_coverage`)."""
    if fmt(check.get("binomial_p")) == "—":
        return ""
    verdict = ("off: not a 98 % range for them" if check.get("off") is True else "consistent with the nominal share")
    return (f"<br>binomial p against {NOMINAL}: {num(check.get('binomial_p'))} ({esc(verdict)})<br>expected from "
            f"{num(check.get('train_n'), 'count')} training images: {pct(check.get('expected_share'))} "
            f"(re-splitting p {num(check.get('permutation_p'))})")


def cost_numbers(c: dict) -> str:
    """The training time in the measure the models are compared by (CPU or wall clock), the
    other clock beside it, the VAE, the ratio and the spread over runs."""
    cpu = c.get("measure") == "cpu"
    extra = ""
    if fmt(c.get("extra_cpu_seconds" if cpu else "extra_seconds")) != "—" or c.get("extra_note"):
        note = f" ({esc(c.get('extra_note'))})" if c.get("extra_note") else ""
        extra = f"<br>+ {num(c.get('extra_cpu_seconds' if cpu else 'extra_seconds'))} s{note}"
    source = c.get("source")
    timed = {"train_s": "wall clock: train_s (training alone)",
             "elapsed_s": "wall clock: elapsed_s (an older run: includes evaluation and grids)"}.get(source,
                                                                                                 "wall clock —")
    if cpu:
        timed = (f"compared by CPU time: the training process's CPU seconds over all its threads (not inflated by "
                 f"processes sharing the cores); {timed} {num(c.get('train_seconds'))} s")
    elif c.get("measure") == "wall":
        timed = f"compared by wall-clock time (inflated when runs share a machine); {timed}"
    if fmt(c.get("seconds_min")) != "—":
        timed += f"; over {num(c.get('runs'), 'count')} runs: {num(c.get('seconds_min'))}–{num(c.get('seconds_max'))} s"
    ratio = c.get("ratio")
    ratio_text = f"{num(ratio)}× the cheapest" if fmt(ratio) != "—" else "ratio —"
    total = f"total {num(c.get('seconds') if 'measure' in c else c.get('total_seconds'))} s, " if extra else ""
    head = f"CPU <b>{num(c.get('cpu_seconds'))} s</b>" if cpu else f"training <b>{num(c.get('train_seconds'))} s</b>"
    return (f"<div class='nums'>{head}{extra}<br>{total}"
            f"<b>{ratio_text}</b><br><span class='note'>{esc(timed)}</span></div>")


def intervals_text(models: dict) -> str:
    """What the brackets are: over runs for a model of several runs, over draws for one of one."""
    runs = [_d(m).get("runs") if isinstance(_d(m).get("runs"), int) else 1 for m in models.values()]
    several = "a model of several runs (replicates, differing only in seed) shows the mean over its runs with " \
              "the 95 % Student-t interval over the runs in brackets (each run's value the mean of its draws, so " \
              "the interval holds both the spread between runs and between draws)"
    one = "a model of one run shows the mean over its draws with their 95 % Student-t interval in brackets, " \
          "which covers the sampling of images only: retrained, the same recipe may land elsewhere"
    if all(k > 1 for k in runs):
        return esc(several[0].upper() + several[1:]) + "."
    if all(k <= 1 for k in runs):
        return esc(one[0].upper() + one[1:]) + "."
    return esc(f"{several[0].upper() + several[1:]}; {one}.")


def lead_html(closest: Any, test: Any, metric: str = "FID") -> str:
    """The line above the table: the closest model as far as the test over runs shows it."""
    test = _d(test)
    claim = test.get("claim")
    if not closest:
        return "<p class='warning'>No model could be named the closest (see the quality column).</p>"
    if claim == "not shown":
        tied = ", ".join(str(t) for t in test.get("tied") or [])
        return (f"<p class='warning'>No model is shown to be the closest to the real images: <b>{esc(closest)}</b> "
                f"has the lowest mean, but a test over the runs cannot tell it apart from {esc(tied)} (see the "
                "summary).</p>")
    if claim == "untested":
        return (f"<p class='warning'>Lowest {esc(metric)}: <b>{esc(closest)}</b>, not tested: a model with one run says "
                "nothing of a retrain, so the ranking may not survive one. Train replicates (<code>synthworth "
                "train ... --replicates 3</code>) to test it.</p>")
    shown = " (shown by a test over runs, see the summary)" if claim == "backed" else ""
    return f"<p class='complete'>Closest to the real images: <b>{esc(closest)}</b>{esc(shown)}.</p>"


def section(findings: dict | None) -> str:
    """The findings table (or a warning that the findings were not computed)."""
    head = "<h2>Findings: the four questions, measured</h2>"
    if not isinstance(findings, dict):
        return (head + "<p class='warning'>The findings were not computed for this page (no findings from "
                "<code>synthworth compare</code>): the sample grids, quality curves and loss curves below are "
                "shown without them.</p>")
    models = _d(findings.get("models"))
    real, floor, rng = _d(findings.get("real")), _d(findings.get("floor")), _d(findings.get("exposure_range"))
    label = findings.get("features_label") or findings.get("features") or "—"
    intro = (f"<p>Features: <b>{esc(label)}</b>. Each model: {num(findings.get('draws'), 'count')} draws of "
             f"{num(findings.get('samples'), 'count')} samples (seeds from {num(findings.get('seed'), 'count')}), "
             f"each scored against the {num(real.get('reference_images'), 'count')} held-out real images "
             f"({esc(real.get('reference_split') or '—')} split of {esc(real.get('path') or '—')}); "
             f"{intervals_text(models)} The floor row is the same "
             f"measure for {num(floor.get('images'), 'count')} real training images against the same held-out "
             "images: what a generator cannot be expected to beat. Exposure: a sample is outside when its "
             f"brightness (mean pixel value) lies outside [{num(rng.get('low'))}, {num(rng.get('high'))}], the range "
             f"holding 98 % of the real images it was drawn from ({esc(rng.get('from') or 'training')}).</p>")
    closest = findings.get("closest")
    claim = _d(findings.get("closest_test")).get("claim")
    lead = lead_html(closest, findings.get("closest_test"), fid_title(findings))
    summary = findings.get("summary")
    items = "".join(f"<li>{esc(s)}</li>" for s in summary if isinstance(s, str)) if isinstance(summary, list) else ""
    summary_html = f"<ul>{items}</ul>" if items else ""
    heads = ("<tr><th class='l'>model</th><th class='l'>1. closeness to the real images<br><span class='note'>"
             f"features: {esc(label)}</span></th><th class='l'>2. still improving or plateaued?</th>"
             "<th class='l'>3. exposure failures<br><span class='note'>brightness outside "
             f"[{num(rng.get('low'))}, {num(rng.get('high'))}]</span></th><th class='l'>4. training cost</th></tr>")
    floor_note = esc(floor.get("note")) if floor.get("note") else ""
    rows = [f"<tr class='floor'><th class='l'>real vs real<br><span class='note'>(the floor)</span></th>"
            f"<td class='l'><p>{floor_note or 'Real training images scored like a model.'}</p>"
            f"{quality_numbers(floor)}</td><td class='l'>—</td>"
            f"<td class='l'><p>Held-out real images outside the range drawn from the training images (on the "
            f"training images themselves, {NOMINAL} by construction).</p><div class='nums'>held-out: "
            f"<b>{pct(rng.get('heldout_share'))}</b> of {num(rng.get('heldout_n'), 'count')}<br>"
            f"nominal {NOMINAL}{coverage_numbers(_d(rng.get('check')))}</div></td><td class='l'>—</td></tr>"]
    for name, m in models.items():
        m = _d(m)
        s = _d(m.get("sentences"))
        p = _d(m.get("plateau"))
        mark = ("" if name != closest else " <span class='best'>closest</span>" if claim in ("backed", "alone", None)
                else " <span class='best' style='background:#777'>lowest</span>")
        runs = m.get("runs") if isinstance(m.get("runs"), int) else 1
        who = (f"<th class='l'>{esc(name)}{mark}<br><span class='note'>{esc(m.get('kind') or '')}, "
               f"{num(m.get('epochs'), 'count')} epochs, {num(runs, 'count')} run{'s' if runs != 1 else ''}"
               "</span></th>")
        plateau_text = s.get("plateau")
        statement = p.get("statement")
        extra = (f"<p>{esc(statement)}</p>" if isinstance(statement, str) and statement and statement != plateau_text
                 else "")
        rows.append(f"<tr>{who}{cell(s.get('quality'), quality_numbers(_d(m.get('quality'))))}"
                    f"{cell(plateau_text, extra + plateau_numbers(p))}"
                    f"{cell(s.get('exposure'), exposure_numbers(_d(m.get('exposure')), rng))}"
                    f"{cell(s.get('cost'), cost_numbers(_d(m.get('cost'))))}</tr>")
    cols = "<colgroup><col style='width:9%'><col style='width:24%'><col style='width:22%'><col style='width:24%'>" \
        "<col style='width:21%'></colgroup>"
    table = f"<div class='wide'><table class='findings'>{cols}{heads}{''.join(rows)}</table></div>"
    return head + lead + summary_html + table + intro
