"""``harness run --until-decided`` on the command line: the racing flags into the experiment's ``race:`` field."""

from __future__ import annotations

import argparse
from typing import Any

from harness.core.errors import HarnessError

# flag -> (attribute of the parsed arguments, field of the experiment file's race:)
RACE_FLAGS = {"--alpha": ("alpha", "alpha"), "--margin": ("margin", "margin"), "--round": ("race_round", "round"),
              "--budget-items": ("budget_items", "items"), "--budget-requests": ("budget_requests", "requests"),
              "--budget-tokens": ("budget_tokens", "tokens")}


def race_fields(args: argparse.Namespace, raw: dict[str, Any], where: str) -> None:
    """Set ``raw['race']`` from --until-decided and its flags (over the file's ``race:``); refuse a racing flag without a race."""
    given = {field: getattr(args, attr) for attr, field in RACE_FLAGS.values() if getattr(args, attr, None) is not None}
    in_file = raw.get("race")
    if not args.until_decided and in_file is None:
        if given:
            flags = [flag for flag, (attr, _) in RACE_FLAGS.items() if getattr(args, attr, None) is not None]
            raise HarnessError(f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} only to a race: add --until-decided "
                               "(or a 'race:' field in the experiment file)")
        return
    if in_file is not None and not isinstance(in_file, dict):
        raise HarnessError(f"{where}: field 'race' must be a mapping of alpha, margin, round, items, requests, tokens (or {{}} for the "
                           f"defaults), got {in_file!r}")
    for flag, (attr, field) in RACE_FLAGS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        if field == "alpha" and not 0 < value < 1:
            raise HarnessError(f"{flag} must be between 0 and 1 (the race's error probability, e.g. 0.05), got {value:g}")
        if field == "margin" and not value > 0:
            raise HarnessError(f"{flag} must be positive (a difference that does not matter, in metric units, e.g. 0.02), got {value:g}")
        if field not in ("alpha", "margin") and value < 1:
            raise HarnessError(f"{flag} must be at least 1, got {value}")
    raw["race"] = {**(in_file or {}), **given}
