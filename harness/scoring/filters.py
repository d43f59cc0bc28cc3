"""Answer-extraction filters for generated text, applied in the order the task lists them.

A task writes ``filters: [{regex: "#### (.*)"}, numeric]``: each step is a filter name or a
one-key mapping ``{name: argument}``. A filter returns the transformed text, or None when
there is nothing to extract (then the item counts as unanswered and scores 0, and the
extraction failure is recorded).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

from harness.core.errors import HarnessError
from harness.core.registry import Registry

Filter = Callable[[str], "str | None"]
FilterFactory = Callable[[Any], Filter]


def plugin_filter(value: object, name: str) -> FilterFactory:
    """A ``harness.filters`` entry point's object: a factory taking the step's argument (None for a bare name)."""
    if not callable(value):
        raise TypeError(f"expected a filter factory (argument -> filter function), got {type(value).__name__}")
    return cast(FilterFactory, value)  # its signature is the plugin's promise


FILTERS: Registry[FilterFactory] = Registry("filter", "harness.filters", plugin_filter)


def build_filter(step: str | dict[str, Any]) -> Filter:
    """Turn one ``filters:`` entry into a callable (validating its argument)."""
    if isinstance(step, str):
        return FILTERS.get(step, "filters")(None)
    if not isinstance(step, dict) or len(step) != 1:
        raise HarnessError(f"filters: each step is a name or a one-key mapping like {{regex: '...'}}, got {step!r}")
    (name, argument), = step.items()
    return FILTERS.get(name, "filters")(argument)


def apply_filters(filters: list[Filter], text: str) -> str | None:
    value: str | None = text
    for step in filters:
        if value is None:
            return None
        value = step(value)
    return value


def _no_argument(name: str, argument: Any) -> None:
    if argument is not None:
        raise HarnessError(f"filters: '{name}' takes no argument, got {argument!r}")


@FILTERS.register("regex")
def regex_filter(argument: Any) -> Filter:
    """``{regex: PATTERN}`` or ``{regex: {pattern: P, group: 1, select: first|last}}``.

    Takes group 1 when the pattern has a group (else the whole match) of the first match,
    or the last match with ``select: last`` (the usual 'final number' extraction).
    """
    options = {"pattern": argument} if isinstance(argument, str) else argument
    if not isinstance(options, dict) or not isinstance(options.get("pattern"), str):
        raise HarnessError(f"filters: regex needs a pattern string, got {argument!r}")
    unknown = set(options) - {"pattern", "group", "select"}
    if unknown:
        raise HarnessError(f"filters: regex has unknown option(s) {sorted(unknown)}; allowed: pattern, group, select")
    try:
        pattern = re.compile(options["pattern"])
    except re.error as exc:
        raise HarnessError(f"filters: invalid regex {options['pattern']!r}: {exc}") from None
    group = options.get("group", 1 if pattern.groups else 0)
    select = options.get("select", "first")
    if select not in ("first", "last") or not isinstance(group, int) or group > pattern.groups:
        raise HarnessError(f"filters: regex select must be first|last and group <= {pattern.groups}, got {options!r}")

    def extract(text: str) -> str | None:
        matches = list(pattern.finditer(text))
        if not matches:
            return None
        match = matches[0] if select == "first" else matches[-1]
        return match.group(group)

    return extract


@FILTERS.register("numeric")
def numeric_filter(argument: Any) -> Filter:
    """Normalise a number: drop commas, currency and trailing dots; '12.0' -> '12'."""
    _no_argument("numeric", argument)

    def normalise(text: str) -> str | None:
        cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
        try:
            value = float(cleaned)
        except ValueError:
            return None
        return str(int(value)) if value.is_integer() else repr(value)

    return normalise


@FILTERS.register("strip")
def strip_filter(argument: Any) -> Filter:
    _no_argument("strip", argument)
    return lambda text: text.strip()


@FILTERS.register("lower")
def lower_filter(argument: Any) -> Filter:
    _no_argument("lower", argument)
    return lambda text: text.lower()


@FILTERS.register("first_line")
def first_line_filter(argument: Any) -> Filter:
    """The first non-empty line (models often keep talking after the answer)."""
    _no_argument("first_line", argument)

    def first(text: str) -> str | None:
        for line in text.splitlines():
            if line.strip():
                return line.strip()
        return None

    return first


@FILTERS.register("first_of")
def first_of_filter(argument: Any) -> Filter:
    """``{first_of: [CHAIN, CHAIN, ...]}``: the result of the first chain that extracts something.

    Each chain is a list of filter steps (or one step). This is lm-eval's strict-then-flexible
    answer extraction, e.g. GSM8K: ``[[{regex: "#### (...)"}], [{regex: {pattern: ..., select: last}}]]``.
    """
    if not isinstance(argument, list) or not argument:
        raise HarnessError(f"filters: first_of needs a non-empty list of filter chains, got {argument!r}")
    chains = [[build_filter(step) for step in (chain if isinstance(chain, list) else [chain])] for chain in argument]

    def extract(text: str) -> str | None:
        for chain in chains:
            value = apply_filters(chain, text)
            if value is not None:
                return value
        return None

    return extract
