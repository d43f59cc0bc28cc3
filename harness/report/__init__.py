"""What a person reads: terminal tables, HTML reports with SVG plots, the A/B report, shared number formatting.

The names below are imported on first use, not with the package: a verb that prints one table
(``harness tasks``) imports ``harness.report.terminal`` without the analysis stack the A/B and
HTML reports stand on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.report.ab import print_ab
    from harness.report.html import write_ab_report, write_report
    from harness.report.numbers import p_value, percent
    from harness.report.sensitivity import print_tables
    from harness.report.terminal import comparison_tables, console, print_json
    from harness.report.tune import write_tuning_report

_WHERE = {
    "print_ab": "ab", "write_ab_report": "html", "write_report": "html", "p_value": "numbers", "percent": "numbers",
    "print_tables": "sensitivity", "comparison_tables": "terminal", "console": "terminal", "print_json": "terminal",
    "write_tuning_report": "tune",
}

__all__ = [
    "comparison_tables", "console", "p_value", "percent", "print_ab", "print_json", "print_tables",
    "write_ab_report", "write_report", "write_tuning_report",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'harness.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"harness.report.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
