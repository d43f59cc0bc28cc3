"""SVG plot primitives for the HTML reports: axes with round ticks, bounds, the figure frame, escaping."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

LABEL_W, PLOT_W, ROW_H, PAD = 340, 420, 22, 28
MAX_LABEL = 52


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def short_label(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def ticks(low: float, high: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [low, high]."""
    raw = (high - low) / max(target - 1, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 0.01
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def axis(low: float, high: float, x0: float, width: float, y: float, height: float, percent: bool = True) -> tuple[str, Callable[[float], float]]:
    """Gridlines with tick labels; returns the SVG and the value -> x mapping."""
    span = high - low or 1.0

    def x(v: float) -> float:
        return x0 + (v - low) / span * width

    parts = []
    for v in ticks(low, high):
        parts.append(f'<line x1="{x(v):.1f}" y1="{y}" x2="{x(v):.1f}" y2="{y + height}" class="grid"/>')
        label = f"{100 * v:.0f}" if percent else f"{v:.2f}"
        parts.append(f'<text x="{x(v):.1f}" y="{y + height + 14}" class="tick">{label}</text>')
    return "".join(parts), x


def bounds(values: Sequence[float], pad: float = 0.05, clamp: tuple[float, float] | None = (0.0, 1.0)) -> tuple[float, float]:
    clean = [v for v in values if v == v]
    if not clean:
        return (0.0, 1.0)
    low, high = min(clean) - pad, max(clean) + pad
    if clamp:
        low, high = max(clamp[0], low), min(clamp[1], high)
    return (low, high) if high > low else (low - 0.05, high + 0.05)


def figure(css_class: str, label: str, height: float, body: str, axis_title: str) -> str:
    width, total = LABEL_W + PLOT_W + 30, height + PAD + 34
    title = f'<text x="{LABEL_W + PLOT_W / 2}" y="14" class="axis-title">{escape(axis_title)}</text>'
    return (f'<svg class="{css_class}" role="img" aria-label="{escape(label)}" width="{width}" height="{total}" '
            f'viewBox="0 0 {width} {total}" xmlns="http://www.w3.org/2000/svg">{title}{body}</svg>')
