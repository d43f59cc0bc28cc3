"""Number formatting shared by every report, so the terminal, HTML and SVG print the same digits."""

from __future__ import annotations

import math


def percent(value: float | None) -> str:
    """A 0-1 score as percentage points with one decimal; a dash for a missing or NaN value."""
    return "—" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def p_value(value: float | None, missing: str = "—", below: str = "<0.001") -> str:
    """A p-value to three decimals, ``below`` under 0.001 (HTML passes an escaped one), ``missing`` for none/NaN."""
    return missing if value is None or value != value else (below if value < 0.001 else f"{value:.3f}")
