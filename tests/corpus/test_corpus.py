"""The hostile-input corpus (issue 19): every case in tests/corpus/cases/*.yaml, each run in a forked child of
this process (the CLI imported once) under a time and memory limit. A case passes when a malformed input gets
one clean error (exit 2, naming its file, line or field, bounded) and a good one is accepted, with nothing left
half-written. See tests/corpus/runner.py for the case format."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpus.runner import OUTCOMES, Case, load_cases, run_case

CASES = load_cases()


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 200


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path) -> None:
    outcome = run_case(case, tmp_path)
    OUTCOMES.append(outcome)
    assert outcome.good, outcome.describe()
