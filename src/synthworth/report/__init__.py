"""The HTML report of a study: tables, figures and sample grids, read from saved results only."""

from synthworth.report.compare import build_compare_report
from synthworth.report.page import build_report

__all__ = ["build_compare_report", "build_report"]
