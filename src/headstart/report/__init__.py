"""The run report: a self-contained HTML page from the report dict (see ``report_schema.md``).

Example:
    >>> from headstart.report import write_report
    >>> write_report(report, "runs/animals/report.html")  # doctest: +SKIP
"""

from __future__ import annotations

from headstart.report.html import REPORT_SECTIONS, render_html, write_report

__all__ = ["REPORT_SECTIONS", "render_html", "write_report"]
