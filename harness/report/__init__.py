"""What a person reads: terminal tables, the plots as Vega-Lite specs (drawn by ``harness view`` and its file export,
``harness report``), the A/B report, the exports for other tools, shared number formatting.

The names below are imported on first use, not with the package: a verb that prints one table
(``harness tasks``) imports ``harness.report.terminal`` without the analysis stack the A/B and
HTML reports stand on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.lazy import lazy_names

if TYPE_CHECKING:
    from harness.report.ab import print_ab
    from harness.report.numbers import p_value, percent
    from harness.report.sensitivity import print_tables
    from harness.report.terminal import comparison_tables, console, print_json

_WHERE = {
    "print_ab": "ab", "p_value": "numbers", "percent": "numbers",
    "print_tables": "sensitivity", "comparison_tables": "terminal", "console": "terminal", "print_json": "terminal",
}

__all__ = [
    "comparison_tables", "console", "p_value", "percent", "print_ab", "print_json", "print_tables",
]

__getattr__ = lazy_names(__name__, _WHERE)
