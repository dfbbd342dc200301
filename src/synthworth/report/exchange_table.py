"""``synthworth study exchange RESULTS``: the exchange-rate table of a results folder (read from
``exchange_rates.csv``, or computed from ``results.csv`` where the study wrote none) and its
layout for a terminal. The method itself is in :mod:`synthworth.study.exchange`."""

from __future__ import annotations

import math
import shlex

import pandas as pd

from synthworth.errors import SynthworthError
from synthworth.safety import one_line
from synthworth.study.exchange import exchange_rates, has_sweep, provenance_of, study_frame
from synthworth.study.leakage import COLUMN as LEAKAGE, leaks_of, mark, warning_lines


# ------------------------------------------------------------------------------ a results folder
def from_folder(folder) -> tuple[pd.DataFrame, str]:
    """(the exchange-rate table of a results folder, where it came from): ``exchange_rates.csv``
    when the study wrote one, else computed from ``results.csv`` (checked as the report checks it)."""
    from pathlib import Path

    from synthworth.report.load import ResultsError, load

    folder = Path(folder)
    nested = folder / "study"
    if not (folder / "results.csv").exists() and (nested / "results.csv").is_file():
        # The demo's folder (data, runs, synthetic, study, report): its study's results are one level down.
        raise ResultsError(f"{folder} is not a results folder itself, but its study's results are in {nested} (as "
                           f"in the demo's folder); run: synthworth study exchange {shlex.quote(str(nested))}")
    data = load(folder)   # one-line errors for a folder that is not a results folder, bad numbers
    table, source = _table(folder, data)
    leaks = leaks_of(data.inputs)
    if LEAKAGE not in table.columns:  # a table written before the column existed
        table = mark(table, leaks)
    table.attrs[LEAKAGE] = leaks  # format_table's warnings name what each generator saw
    return table, source


def _table(folder, data) -> tuple[pd.DataFrame, str]:
    from synthworth.report import completeness
    from synthworth.report.load import ResultsError

    results = data.tables["results"]
    if not has_sweep(results):
        sizes = sorted(int(s) for s in results.loc[results["composition"] == "real", "size"].unique())
        raise ResultsError(f"{folder}: exchange rates need real cells at 3 or more sizes; this study has "
                           f"sizes {sizes} (add sizes to the spec's 'sizes' and run it again)")
    path = folder / "exchange_rates.csv"
    if path.is_file():
        try:
            table = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
            raise ResultsError(f"{path} is not a readable CSV table ({exc}); delete it to compute the "
                               "rates from results.csv") from None
        missing = [c for c in ("generator", "composition", "size", "status", "statement") if c not in table.columns]
        if missing:
            raise ResultsError(f"{path} lacks the column(s) {', '.join(missing)}; delete it to compute the "
                               "rates from results.csv")
        return table, f"read from {path}"
    grid = completeness.read(folder, results)
    evaluations = folder / "evaluations.csv"
    evals = None
    if evaluations.is_file():
        try:
            evals = pd.read_csv(evaluations, keep_default_na=False, na_values=[""])
            evals["accuracy"] = pd.to_numeric(evals["accuracy"], errors="coerce")
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError, KeyError):
            evals = None
    try:   # the test images' part of the interval; an older folder without predictions: seeds only
        from synthworth.study.predictions import read_predictions
        predictions = read_predictions(folder, warn=False)
    except (SynthworthError, OSError, ValueError, KeyError):
        predictions = None
    table, _ = exchange_rates(study_frame(results, evals), provenance=provenance_of(data.inputs), predictions=predictions,
                              grid=grid.scope or "complete")
    return table, f"computed from {folder / 'results.csv'} (no exchange_rates.csv)"


def format_table(table: pd.DataFrame) -> str:
    """The table for a terminal: one line per cell group, then its sentence."""
    def num(v, fmt="{:.0f}"):
        try:
            v = float(v)
        except (TypeError, ValueError):
            return "-"
        return fmt.format(v) if math.isfinite(v) else "-"

    def interval(point, low, high, fmt):
        ends = (num(low, fmt), num(high, fmt))
        if ends == ("-", "-"):
            return num(point, fmt)
        return f"{num(point, fmt)} ({ends[0].replace('-', '?')} to {ends[1].replace('-', '?')})"

    leaked = _leaked(table)
    lines = warning_lines(leaked)
    head = f"{'test set':<20} {'generator':<12} {'composition':<11} {'size':>5} {'real':>5} {'synth':>5} " \
           f"{'seeds':>5} {'acc':>6} {'n_eff (95% CI)':>20} {'rate (95% CI)':>20}  status"
    lines.append(head)
    # Name the filter only where the study filtered something, as the report does.
    filtered = "filter" in table.columns and bool(set(table["filter"].fillna("").astype(str)) - {"", "none"})
    for _, r in table.iterrows():
        gen = "_".join("".join(c if c.isprintable() else " " for c in str(r["generator"])).split())[:12]
        filt = f" [filter: {one_line(r['filter'])}]" if filtered and str(r.get("filter") or "") else ""
        filt += _leak_mark(r)
        if str(r.get("curve_fit") or "").startswith("fails"):   # beside every number read off that curve
            filt += " [the curve fails a lack-of-fit test]"
        n_eff = interval(r.get("n_eff"), r.get("n_eff_ci_low"), r.get("n_eff_ci_high"), "{:.0f}")
        rate = interval(r.get("rate"), r.get("rate_ci_low"), r.get("rate_ci_high"), "{:.2f}")
        lines.append(f"{one_line(r.get('test_set', 'real_test'))[:20]:<20} {gen:<12} {str(r['composition'])[:11]:<11} "
                     f"{num(r['size']):>5} {num(r.get('n_real')):>5} {num(r.get('n_synthetic')):>5} {num(r.get('n_seeds')):>5} "
                     f"{num(r.get('accuracy_mean'), '{:.3f}'):>6} {n_eff:>20} {rate:>20}  {one_line(r['status'])}{filt}")
    lines.append("")
    # Every text from the table printed on one line each (a name with a line break, read from a
    # CSV written by anyone, would otherwise forge a line of its own).
    for _, r in table.iterrows():
        prov = f" Generator: {one_line(r['provenance'])}." if str(r.get("provenance") or "") else ""
        grid = one_line(r.get("grid") or "")
        scope = f" [{grid}]" if grid and grid != "complete" else ""
        lines.append(f"- [{one_line(r.get('test_set', 'real_test'))}]{scope}{_leak_mark(r)} {one_line(r['statement'])}{prov}")
    return "\n".join(lines)


def _leak_mark(row) -> str:
    n = pd.to_numeric(row.get(LEAKAGE), errors="coerce")
    return f" [TEST LEAKAGE: its generator saw {int(n)} real test images]" if pd.notna(n) and n > 0 else ""


def _leaked(table: pd.DataFrame) -> dict:
    """{generator: leak record} of the generators whose rows are marked (the records from
    inputs.json where known, else the counts of the column)."""
    known = dict(table.attrs.get(LEAKAGE) or {})
    if LEAKAGE in table.columns:
        counts = pd.to_numeric(table[LEAKAGE], errors="coerce").fillna(0)
        for gen, n in zip(table["generator"].fillna("").astype(str), counts):
            if n > 0 and gen not in known:
                known[gen] = {"images": int(n), "of": "?", "sources": ["see inputs.json"]}
    return known
