"""The report's "worth per compute" section: real-image equivalents per hour of generation.

Read from the study's ``worth_per_compute.csv`` (:mod:`synthworth.study.compute` says how it is
computed); like every file of a results folder it is untrusted: numbers are read as numbers
(anything else shows as missing) and every text is escaped. A study written before the table
existed shows no section.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from synthworth.report.numbers import MISSING, esc, fmt, num

FILE = "worth_per_compute.csv"
NEEDED = ("generator", "n_synthetic", "n_eff", "device", "generation_seconds", "n_eff_per_generation_hour",
          "timing", "training")
NUMBERS = ("n_synthetic", "n_eff", "n_eff_ci_low", "n_eff_ci_high", "seconds_per_image", "generation_seconds",
           "n_eff_per_generation_hour", "n_eff_per_generation_hour_ci_low", "n_eff_per_generation_hour_ci_high",
           "train_seconds", "train_seconds_share", "n_eff_per_hour_amortised", "n_eff_per_hour_amortised_ci_low",
           "n_eff_per_hour_amortised_ci_high")
TEXTS = ("generator", "device", "timing", "training", "exchange_status", "bound", "interval_covers", "test_leakage")


def duration(seconds) -> str:
    """A time for the table: seconds, minutes or hours, 3 significant digits."""
    x = _value(seconds)
    if not math.isfinite(x):
        return MISSING
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if x >= size:
            return f"{fmt(x / size)} {unit}"
    return f"{fmt(x)} s"


def _value(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _with_interval(row, column: str, kind: str = "value") -> str:
    """A value and its 95 % interval; an end the exchange rates left open is shown as open."""
    low, high = _value(row.get(f"{column}_ci_low")), _value(row.get(f"{column}_ci_high"))
    if math.isnan(low) and math.isnan(high):
        ci = "no interval"
    else:
        ci = (f"{'[' + num(low, kind) if math.isfinite(low) else '(open'}, "
              f"{num(high, kind) + ']' if math.isfinite(high) else 'open)'}")
    return f"{num(row.get(column), kind)} <span class='note ci'>{esc(ci)}</span>"


def read(folder: Path) -> tuple[pd.DataFrame | None, str]:
    """(the table, "") or (None, why it cannot be shown); (None, "") when the study wrote none."""
    path = Path(folder) / FILE
    if not path.is_file():
        return None, ""
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        return None, f"{FILE} is not a readable CSV table ({' '.join(str(exc).split())[:120]})"
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        return None, f"{FILE} lacks the column(s) {', '.join(missing)}"
    for col in NUMBERS:
        if col in table.columns:
            table[col] = pd.to_numeric(table[col], errors="coerce")
    for col in TEXTS:
        if col in table.columns:
            table[col] = table[col].astype(object).where(table[col].notna(), "").astype(str)
    return table, ""


def section(report) -> str:
    """The section's HTML ("" when the study wrote no table or it has no row)."""
    table, problem = read(Path(report.results))
    head = "<h2>Worth per compute: real-image equivalents per generation-hour</h2>"
    if problem:
        return f"{head}<p class='warning'>Not shown: {esc(problem)}; run the study again to rewrite it.</p>"
    if table is None or table.empty:
        return ""
    scope = f"<span class='scope'>[{esc(report.scope)}]</span> " if getattr(report, "scope", "") else ""
    table = table.sort_values("n_eff_per_generation_hour", ascending=False, na_position="last")
    rows = []
    for _, r in table.iterrows():
        notes = [r["timing"], r["training"]]
        if not math.isfinite(_value(r["n_eff"])):
            notes.append(f"no n_eff: {r.get('exchange_status', '')} {r.get('bound', '')}".strip())
        if str(r.get("test_leakage", "") or "") not in ("", "0", "0.0"):
            notes.append(f"its generator saw {r['test_leakage']} real test image(s)")
        note = "<br>".join(esc(n) for n in notes if str(n).strip())
        rows.append(
            f"<tr><td class='l'>{esc(r['generator'])}</td><td class='l'>{esc(r['device'] or MISSING)}</td>"
            f"<td>{num(r['n_synthetic'], 'count')}</td><td>{esc(duration(r['generation_seconds']))}</td>"
            f"<td>{_with_interval(r, 'n_eff')}</td><td>{_with_interval(r, 'n_eff_per_generation_hour')}</td>"
            f"<td>{_with_interval(r, 'n_eff_per_hour_amortised') if 'n_eff_per_hour_amortised' in r else MISSING}"
            f"</td><td class='l note'>{note}</td></tr>")
    return (f"{head}<p class='note'>{scope}For each generator's largest <code>artificial</code> result on the real "
            "test images: the real images its m synthetic images are worth (n_eff, from the exchange rates above), "
            "per hour of sampling those m images on the device named (the Dataset's recorded seconds per image × m; "
            "sampling calls only, not loading the model or writing files). The last value column adds the "
            "generator's training time from its run, amortised over the images of its generated Dataset; a "
            "pretrained pipeline has no known training cost. The intervals are n_eff's 95 % interval divided by "
            "the time: the time is measured once and taken as fixed. Devices differ between generators, so "
            "compare rates on one device. The numbers are in <code>worth_per_compute.csv</code>.</p>"
            "<div class='wide'><table><tr><th class='l'>generator</th><th class='l'>sampling device</th>"
            "<th>m images</th><th>sampling time for m</th><th>n_eff [95 % CI]</th><th>n_eff per generation-hour</th>"
            "<th>n_eff per hour, training amortised</th><th class='l'>notes</th></tr>"
            + "".join(rows) + "</table></div>")
