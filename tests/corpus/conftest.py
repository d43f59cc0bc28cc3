"""Collects every corpus case's outcome and prints the totals line at the end of the session."""

from __future__ import annotations

import pytest

from tests.corpus.runner import GOOD, OUTCOMES, totals_line


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    terminalreporter.section("hostile-input corpus")
    for outcome in sorted(OUTCOMES, key=lambda o: (o.case.owner, o.case.name)):
        if outcome.verdict not in GOOD:
            terminalreporter.write_line(f"{outcome.verdict:>16}  {outcome.case.name} [{outcome.case.owner}]: {outcome.first_line()}")
    slowest = max(OUTCOMES, key=lambda o: o.seconds)
    terminalreporter.write_line(f"slowest: {slowest.case.name} {slowest.seconds:.1f} s; all cases: {sum(o.seconds for o in OUTCOMES):.1f} s")
    terminalreporter.write_line(totals_line(OUTCOMES))
