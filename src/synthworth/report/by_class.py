"""The report's per-class section: which classes a generator's images serve well, poorly or not at all.

The numbers are ``exchange_rates_by_class.csv`` of the results folder
(:mod:`synthworth.study.by_class`: each class's own real learning curve, read as the overall
rate is), or the same computed from results.csv and the cells' predictions where the study
wrote no such table (an older synthworth). The section shows one size: the headline size where
the table has it, else the largest size it has. One figure (a panel per generator, filter and
composition: each class's rate with its 95 % interval, sorted), a short text and a table.

Nothing is drawn as a number that is not one: a result outside a class's measured range is a
bound (an arrow), a class whose synthetic images are worth nothing measurable is marked as such,
and a class whose real curve could not be read, or that has no row at all, keeps its line in
every panel with the words "not readable" or "no data". Every value printed is escaped; every
name drawn goes through :func:`figures.literal`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from synthworth.report import figures
from synthworth.report.base import ReportBase
from synthworth.report.load import ResultsError
from synthworth.report.numbers import esc, fmt, num
from synthworth.study.exchange import OK, SYNTHETIC_COMPOSITIONS, has_sweep, provenance_of
from synthworth.study.exchange_text import WORSE, series_name

FILE = "exchange_rates_by_class.csv"
NEEDED = ("class", "class_name", "generator", "composition", "size", "n_real", "n_synthetic", "rate", "rate_ci_low",
          "rate_ci_high", "status", "bound", "curve_status", "fit_min_size", "fit_max_size")
NUMBERS = ("class", "class_images", "size", "ratio", "augment_factor", "n_real", "n_synthetic", "rate", "rate_ci_low",
           "rate_ci_high", "n_eff", "fit_min_size", "fit_max_size")
# How a class's result reads, in the order a panel lists them.
ABOVE, NUMBER, BELOW, NOTHING, UNREAD, MISSING = "above", "number", "below", "nothing", "unreadable", "no data"
KINDS = (ABOVE, NUMBER, BELOW, NOTHING, UNREAD, MISSING)
COLOURS = {ABOVE: "#2ca02c", NUMBER: "#1f77b4", BELOW: "#ff7f0e", NOTHING: "#d62728", UNREAD: "#7f7f7f",
           MISSING: "#7f7f7f"}
MAX_PANELS = 9


def table_of(report: ReportBase) -> tuple[pd.DataFrame | None, str]:
    """(the per-class table, where it came from); (None, why) when there is none to show."""
    path = Path(report.results) / FILE
    if path.is_file():
        try:
            table = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
            raise ResultsError(f"{path} is not a readable CSV table ({' '.join(str(exc).split())[:80]}); delete "
                               "it to compute the per-class rates from results.csv") from None
        missing = [c for c in NEEDED if c not in table.columns]
        if missing and len(table.columns) > 1:
            raise ResultsError(f"{path} lacks the column(s) {', '.join(missing)}; delete it to compute the "
                               "per-class rates from results.csv")
        for col in NUMBERS:
            if col not in table.columns:
                continue
            values = pd.to_numeric(table[col], errors="coerce")
            bad = (table[col].notna() & values.isna()) | values.isin([math.inf, -math.inf])
            if bad.any():
                raise ResultsError(f"{path}: column {col!r} must hold finite numbers, row {int(bad.idxmax()) + 2} "
                                   "does not; delete the file to compute the per-class rates from results.csv")
            table[col] = values
        return table, f"read from {FILE}"
    results = report.all_results
    if not has_sweep(results) or not results["composition"].isin(SYNTHETIC_COMPOSITIONS).any():
        return None, ""
    from synthworth.report.answer import predictions_of
    from synthworth.study.by_class import exchange_rates_by_class

    table, _ = exchange_rates_by_class(results, predictions=predictions_of(report), class_names=report.class_names,
                                       provenance=provenance_of(report.inputs), grid=report.scope or "complete")
    return table, f"computed from results.csv (the study wrote no {FILE})"


def reading(r) -> tuple[str, float]:
    """(how a row reads, its rate or the bound on it): a number (with the row's interval), a bound
    above or below the class's measured range, worth nothing measurable, or not readable."""
    status, bound = str(r["status"]), str(r.get("bound") or "")
    mixture = r["composition"] != "artificial"
    m, n_real = float(r["n_synthetic"]), float(r["n_real"]) if mixture else 0.0
    if status.startswith(OK) and math.isfinite(r["rate"]):
        return NUMBER, float(r["rate"])
    if status.startswith("above range"):   # worth more than the largest size: a rate below this
        gain = float(r["fit_max_size"]) - n_real
        return ABOVE, m / gain if gain > 0 else math.nan
    if status.startswith("below range") and bound.startswith("worth fewer"):   # a rate above this
        gain = float(r["fit_min_size"]) - n_real
        return (BELOW, m / gain) if gain > 0 else (NOTHING, math.nan)
    if status.startswith(("below range", "worth nothing measurable", WORSE)):
        return NOTHING, math.nan
    return UNREAD, math.nan


def panels(table: pd.DataFrame, size: int) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) of each generator / filter / composition (/ ratio, / k) at ``size``."""
    part = table[table["size"] == size]
    if "filter" not in part.columns:
        part = part.assign(filter="")
    out = []
    keys = ["generator", "filter", "composition", "ratio", "augment_factor"]
    part = part.assign(**{k: part[k] if k in part.columns else math.nan for k in keys})
    for (gen, filt, comp, ratio, af), rows in part.groupby(keys, sort=True, dropna=False):
        extra = (f", ratio {fmt(ratio)}" if comp == "ratio_sweep" else
                 f", k = {fmt(af)}" if comp == "augmented" and pd.notna(af) else "")
        out.append((f"{series_name(str(gen), filt)}: {comp}{extra}", rows))
    return out


def classes(table: pd.DataFrame, names: list[str]) -> list[tuple[int, str]]:
    """Every class the study has (inputs.json's names, else the table's), in class order."""
    known = {int(c): str(n) for c, n in zip(table["class"], table["class_name"])}
    return [(i, known.get(i, n)) for i, n in enumerate(names)] if names else sorted(known.items())


def ordered(rows: pd.DataFrame, every: list[tuple[int, str]]) -> list[tuple[str, str, float, float, float]]:
    """(class name, kind, x, low, high) of each class in one panel, best served first."""
    by_class = {int(r["class"]): r for _, r in rows.iterrows()}
    out = []
    for c, name in every:
        r = by_class.get(c)
        if r is None:
            out.append((name, MISSING, math.nan, math.nan, math.nan))
            continue
        kind, x = reading(r)
        lo, hi = (r["rate_ci_low"], r["rate_ci_high"]) if kind == NUMBER else (math.nan, math.nan)
        out.append((name, kind, x, lo, hi))
    return sorted(out, key=lambda t: (KINDS.index(t[1]), t[2] if math.isfinite(t[2]) else 0.0))


def plot(table: pd.DataFrame, size: int, every: list[tuple[int, str]], path: Path, scope: str = "") -> Path | None:
    """The per-class figure: one panel per series at ``size``, each class's rate on a log axis
    (lower: its synthetic images stand in for more real ones), sorted, with the classes that have
    no number marked in words."""
    shown = panels(table, size)[:MAX_PANELS]
    if not shown or not every:
        return None
    lines = [ordered(rows, every) for _, rows in shown]
    values = [v for panel in lines for t in panel for v in t[2:] if math.isfinite(v) and v > 0] + [1.0]
    lo, hi = min(values) / 2.5, max(values) * 2.5
    cols = min(len(shown), 3)
    nrows = math.ceil(len(shown) / cols)
    fig, axes = figures._plt().subplots(nrows, cols, squeeze=False, layout="constrained",
                                        figsize=(4.2 * cols, (0.3 * len(every) + 1.3) * nrows + 0.6))
    for ax, (title, _), panel in zip(axes.flat, shown, lines):
        y = np.arange(len(panel))[::-1]
        for yi, (name, kind, x, low, high) in zip(y, panel):
            colour = COLOURS[kind]
            if kind == NUMBER:
                left, right = (low if math.isfinite(low) else lo), (high if math.isfinite(high) else hi)
                ax.plot([left, right], [yi, yi], color=colour, lw=1.4)
                ax.plot([x], [yi], "o", color=colour, ms=5)
                for end, open_, marker in ((lo, not math.isfinite(low), "<"), (hi, not math.isfinite(high), ">")):
                    if open_:   # the interval runs past the class's measured range
                        ax.plot([end], [yi], marker, color=colour, ms=6, clip_on=False)
            elif kind in (ABOVE, BELOW) and math.isfinite(x):
                end = lo if kind == ABOVE else hi
                ax.plot([x, end], [yi, yi], color=colour, lw=1.0, ls=":")
                ax.plot([x], [yi], "<" if kind == ABOVE else ">", color=colour, ms=7)
            elif kind == NOTHING:
                ax.plot([hi], [yi], "X", color=colour, ms=7, clip_on=False)
                ax.text(hi / 1.3, yi, "worth nothing measurable", ha="right", va="center", fontsize=7, color=colour)
            else:
                ax.text(math.sqrt(lo * hi), yi, "not readable" if kind == UNREAD else "no data", ha="center",
                        va="center", fontsize=7, color=colour, style="italic")
        ax.axvline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ticks = [t for t in (k * 10.0 ** e for e in range(-4, 5) for k in (1, 2, 5)) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(-0.7, len(panel) - 0.3)
        ax.set_yticks(y, [figures.literal(t[0], 24) for t in panel], fontsize=7)
        for tick, t in zip(ax.get_yticklabels(), panel):
            tick.set_color(COLOURS[t[1]] if t[1] in (NOTHING, UNREAD, MISSING) else "black")
        ax.set_title(figures.literal(title, 60), fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    drawn = {t[1] for panel in lines for t in panel}
    keys = [(NUMBER, "o", "rate, 95 % interval"), (ABOVE, "<", "bound: worth more than the class's largest size"),
            (BELOW, ">", "bound: worth less than its smallest size"), (NOTHING, "X", "worth nothing measurable")]
    handles = [Line2D([], [], color=COLOURS[k], marker=m, ls="none", label=text) for k, m, text in keys if k in drawn]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("synthetic images per real image (log; dashed: 1)", fontsize=7)
    full = (f"[{figures.literal(scope, 80)}] " if scope else "") + \
        f"Rate per class at {fmt(size, 'count')} training images (95 % CI; arrows: bounds or open ends)"
    fig.suptitle(full, fontsize=9, color="#b00020" if scope else "black")
    return figures._save(fig, path)


def cell(r) -> str:
    """A table cell: the rate and its interval, else what the row says instead (escaped)."""
    kind, x = reading(r)
    if kind == NUMBER:
        ends = (fmt(r["rate_ci_low"]) if math.isfinite(r["rate_ci_low"]) else "open",
                fmt(r["rate_ci_high"]) if math.isfinite(r["rate_ci_high"]) else "open")
        return f"{num(x)} <span class='note ci'>[{esc(ends[0])}, {esc(ends[1])}]</span>"
    if kind in (ABOVE, BELOW):
        return f"{'&lt;' if kind == ABOVE else '&gt;'} {num(x)} <span class='note'>({esc(r['bound'])})</span>"
    if str(r["curve_status"]) != OK:   # its reason is listed once, above the table
        return "<span class='note'>no rate: this class's real curve cannot be read (see above)</span>"
    return f"<span class='note'>{esc(r['status'])}</span>"


def sentence(title: str, panel: list[tuple[str, str, float, float, float]]) -> str:
    """One panel in words: best and least served classes with their rates, and the others by kind."""
    said = {k: [t for t in panel if t[1] == k] for k in KINDS}
    read = said[ABOVE] + said[NUMBER] + said[BELOW]
    parts = []
    if read:
        def one(t):
            what = {ABOVE: f"rate below {fmt(t[2])}", BELOW: f"rate above {fmt(t[2])}"}.get(t[1], f"rate {fmt(t[2])}")
            return f"{t[0]} ({what})"
        best, rest = read[:3], read[3:]
        parts.append("served best: " + ", ".join(one(t) for t in best))
        if rest:
            parts.append("least: " + ", ".join(one(t) for t in rest[-3:]))
    for kind, words in ((NOTHING, "worth nothing measurable for"), (UNREAD, "no rate for"), (MISSING, "no data for")):
        if said[kind]:
            parts.append(f"{words} {', '.join(t[0] for t in said[kind])}")
    return f"<li><b>{esc(title)}</b>: {esc('; '.join(parts))}.</li>"


def section(report: ReportBase) -> str:
    """The per-class section's HTML ("" when the study has no per-class rates to show)."""
    table, source = table_of(report)
    if table is None or table.empty or not set(NEEDED) <= set(table.columns):
        return ""
    table = table[table["composition"].isin(SYNTHETIC_COMPOSITIONS)]
    if table.empty:
        return ""
    sizes = sorted(int(s) for s in table["size"].dropna().unique())
    size = report.headline if report.headline in sizes else sizes[-1]
    every = classes(table, list(report.class_names))
    shown = panels(table, size)
    if len(shown) > MAX_PANELS:
        report.notes.append(f"the per-class figure shows the first {MAX_PANELS} of {len(shown)} series at "
                            f"{size} images; the table below and {FILE} hold them all")
    scope = f"<span class='scope'>[{esc(report.scope)}]</span> " if report.scope else ""
    parts = ["<h2>Per class: which classes a generator serves</h2>",
             f"<p class='note'>{scope}Each class gets its own real learning curve: the <code>real</code> cells' "
             "recall on that class's real test images against the real training-set size, fitted and read as the "
             "overall rate is (weighted power law, the same statuses), with 95 % intervals from the same bootstrap "
             "over seeds and test images (the class's own images resampled). A synthetic result's rate is its "
             "synthetic images per real training image (all classes) that give the class the same recall; "
             "lower is better, 1 is as good as real. Chance for a class's recall is 1 / classes. "
             f"Numbers {esc(source)}; every size is in <code>{esc(FILE)}</code>.</p>"]
    unread = table[table["curve_status"].astype(str) != OK].drop_duplicates("class")
    if len(unread):
        items = "".join(f"<li>{esc(r['class_name'])}: {esc(str(r['curve_status']).removeprefix('no rate: '))}</li>"
                        for _, r in unread.sort_values("class").iterrows())
        parts.append(f"<p class='warning'>No rate for {len(unread)} of {len(every)} classes: their real learning "
                     f"curve could not be read.</p><ul class='note'>{items}</ul>")
    missing = [n for c, n in every if c not in set(table["class"].astype(int))]
    if missing:
        parts.append(f"<p class='warning'>No per-class result at all for {esc(', '.join(missing))} (no recall "
                     "recorded for them).</p>")
    lines = [ordered(rows, every) for _, rows in shown]
    parts.append(f"<p>At {num(size, 'count')} training images:</p><ul>"
                 + "".join(sentence(t, p) for (t, _), p in zip(shown, lines)) + "</ul>")
    path = plot(table, size, every, report.target("exchange_by_class.png"), scope=report.scope)
    parts.append(report.figure(path, f"Synthetic images per real image, class by class, at {fmt(size, 'count')} "
                                     "training images (dot: the rate; bar: its 95 % interval, an arrowhead where it "
                                     "runs past the class's measured range; a lone arrow: a bound, the result lies "
                                     "outside that range; red: worth nothing measurable; grey: not readable or no "
                                     "data). Each panel is sorted, best served at the top."))
    head = "".join(f"<th>{esc(t)}</th>" for t, _ in shown)
    rows = []
    for c, name in every:
        cells = []
        for _, part in shown:
            hit = part[part["class"].astype(int) == c]
            cells.append(f"<td>{cell(hit.iloc[0]) if len(hit) else 'no data'}</td>")
        rows.append(f"<tr><th class='l'>{esc(name)}</th>{''.join(cells)}</tr>")
    parts.append(f"<h3>Rate per class at {num(size, 'count')} training images{report.table_scope()}</h3>"
                 "<p class='note'>Synthetic images per real image, [95 % CI] (open: beyond the class's measured "
                 "range); &lt; / &gt;: a bound.</p>"
                 f"<div class='wide'><table><tr><th class='l'>class</th>{head}</tr>{''.join(rows)}</table></div>")
    return "\n".join(parts)
