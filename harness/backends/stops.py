"""Stop sequences: where a generation ends, the same for every backend that cuts text itself."""

from __future__ import annotations

from collections.abc import Sequence


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut at the earliest stop sequence (the stop itself is not part of the answer)."""
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True
