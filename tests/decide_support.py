"""Support for the compare / ab / rescore / report tests: a backend with a known skill.

``skilled:<p>`` answers the toy task of tests/helpers.write_task correctly on a
deterministic share of about p of the items (coin per model and item), so tests know
which cells must differ significantly and which must not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from harness.backends import BACKENDS
from harness.backends.scripted import ScriptedBackend
from harness.prompts.messages import prompt_text
from harness.requests import LoglikelihoodRequest, LoglikelihoodResult
from tests.helpers import write_task

QUESTION = re.compile(r"Q: t question (\d+)\?")


def unit(*parts: str) -> float:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big") / 2**64


class Skilled(ScriptedBackend):
    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        skill = float(self.spec.model)
        index = int(QUESTION.findall(prompt_text(request.context))[-1])
        correct = " " + [f"yes {index}", f"no {index}", "maybe"][index % 3]
        right = unit(self.spec.model, str(index), prompt_text(request.context)[:6]) < skill
        if request.continuation == correct:
            value = -1.0 if right else -6.0
        else:
            value = -3.0 - unit(request.continuation) if right else -1.0 - unit(request.continuation)
        return LoglikelihoodResult(logprob=value, is_greedy=value > -2, n_tokens=2)


class Constant(ScriptedBackend):
    """Always prefers the first choice: a degenerate model (the same answer on every item)."""

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        first = request.continuation.startswith(" yes")
        return LoglikelihoodResult(logprob=-1.0 if first else -5.0 - unit(request.continuation), is_greedy=first, n_tokens=2)


if "skilled" not in BACKENDS:
    BACKENDS.add("skilled", lambda: Skilled)
if "first_choice" not in BACKENDS:
    BACKENDS.add("first_choice", lambda: Constant)


def toy_task(root: Path, rows: int = 120, name: str = "toy", metrics: Sequence[str] = ("acc", "acc_norm")) -> Path:
    """The toy multiple-choice task with two prompt variants."""
    second = "{% macro answer(choice, index) %} {{ choice }}{% endmacro %}Answer the question.\n" \
             "{% for s in shots %}Q: {{ s.input }}\nA:{{ s.answer }}\n\n{% endfor %}Q: {{ input }}\nA:"
    from tests.helpers import MC_TEMPLATE

    return write_task(root, name, rows=rows, spec={"prompts": ["plain", "polite"], "metrics": list(metrics)},
                      templates={"plain": MC_TEMPLATE, "polite": second})
