"""User-facing errors: one exception type the CLI turns into a clean message and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """A problem with the user's input or environment (never a bug): printed without a traceback."""


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """' Did you mean 'x'?' when a close match exists, else ''."""
    options = list(options)
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not close:  # 'accuracy' -> 'acc': a shared prefix is a good hint too
        close = [o for o in options if len(o) >= 3 and (name.startswith(o) or o.startswith(name))][:1]
    return f" Did you mean '{close[0]}'?" if close else ""
