"""What a person reads: terminal tables, HTML reports with SVG plots, the A/B report, shared number formatting."""

from harness.report.ab import print_ab
from harness.report.html import write_ab_report, write_report
from harness.report.numbers import p_value, percent
from harness.report.sensitivity import print_tables
from harness.report.terminal import comparison_tables, console, print_json
from harness.report.tune import write_tuning_report

__all__ = [
    "comparison_tables", "console", "p_value", "percent", "print_ab", "print_json", "print_tables",
    "write_ab_report", "write_report", "write_tuning_report",
]
