"""Checks of a viewer page in real headless Chromium (playwright), shared by the browser tests: the plots were drawn,
each fits its column with every title inside its drawing, and the page paints and is no wider than the window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.browser import read_png

TITLES = "g.role-axis-title text, g.role-legend-title text, g.role-title-text text, g.role-title-subtitle text"
GEOMETRY = """figure => {
  const svg = figure.querySelector('.vega-plot svg').getBoundingClientRect();
  const box = r => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom});
  return {svg: box(svg), figure: box(figure.getBoundingClientRect()),
          titles: Array.from(figure.querySelectorAll(arguments_titles)).map(t => ({text: t.textContent, ...box(t.getBoundingClientRect())}))};
}"""


def drawn(tab: Any) -> list[Any]:
    """The page's figures once vega-embed has drawn every one (each says so in data-rendered)."""
    tab.wait_for_function("document.querySelectorAll('figure.plot').length > 0 && "
                          "document.querySelectorAll('figure.plot:not([data-rendered])').length === 0", timeout=30_000)
    figures = tab.locator("figure.plot").all()
    assert [f.get_attribute("data-rendered") for f in figures] == ["yes"] * len(figures)
    return figures


def plot_fits(figure: Any, width: int, tmp: Path) -> Any:
    """The figure paints (its pixels vary), its SVG is within its column and no title is cut by the drawing's edge;
    returns the screenshot."""
    name = figure.get_attribute("data-plot")
    svg = figure.locator(".vega-plot svg")
    assert svg.count() == 1, name
    shot = tmp / f"{name}-{width}.png"
    svg.screenshot(path=str(shot))
    image = read_png(shot)
    assert len(set(map(tuple, image.reshape(-1, 3)[:: 7].tolist()))) > 10 and image.std() > 10, f"{name} is blank at {width} px"
    geometry = figure.evaluate(GEOMETRY.replace("arguments_titles", json.dumps(TITLES)))
    box, frame = geometry["svg"], geometry["figure"]
    titles = [t for t in geometry["titles"] if t["text"].strip()]
    assert len(titles) >= 3, f"{name}: its title and axis titles were not found"
    for t in titles:  # every title inside the drawing (not cut by its edge)
        assert (t["left"] >= box["left"] - 0.5 and t["right"] <= box["right"] + 0.5 and t["top"] >= box["top"] - 0.5
                and t["bottom"] <= box["bottom"] + 0.5), f"{name} at {width} px: '{t['text']}' is clipped ({t} outside {box})"
    assert box["left"] >= frame["left"] and box["right"] <= frame["right"] + 0.5, f"{name} is wider than its column at {width} px"
    return image


def page_fits(tab: Any, tmp: Path, width: int) -> None:
    """At ``width`` px the page paints (pixels vary) and nothing is wider than the window (no clipped labels)."""
    tab.set_viewport_size({"width": width, "height": 900})
    shot = tmp / f"shot-{width}.png"
    tab.screenshot(path=str(shot))
    image = read_png(shot)
    assert image.shape[1] == width and image.std() > 10, f"blank page at {width} px"
    assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def rows_full(figures: list[Any]) -> None:
    """Two plots a row and a lone last one across both: no row half empty."""
    boxes = [f.bounding_box() for f in figures]
    for i in range(0, len(boxes) - 1, 2):
        assert round(boxes[i]["y"]) == round(boxes[i + 1]["y"]), f"plots {i} and {i + 1} are not side by side"
    if len(boxes) % 2 == 1 and len(boxes) > 1:
        last, first = boxes[-1], boxes[0]
        assert last["width"] > 1.8 * first["width"], "a lone last plot leaves half its row empty"
