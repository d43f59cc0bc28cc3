"""The pages' templates (beside this module), for the app and for a file export alike: Jinja2 with autoescaping
(every prompt, output and name is text) and StrictUndefined (a missing value is an error, not an empty cell).

``static`` is the one difference: the app's pages link to each other and draw their plots in the browser with the
vendored vega-embed; an export (``harness report``) inlines the stylesheet, renders each plot to SVG on the server
and shows links as text, so the file opens anywhere with no server, script or network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup

HERE = Path(__file__).resolve().parent
COLUMN_PX = 640  # a plot's width in an export: one column of the page's two at 1400 px (static/view.css)
ROW_PX = 1320  # a lone last plot spans both columns


def environment(static: bool = False, svg: Callable[[Any, bool], str] | None = None, **globals_: Any) -> jinja2.Environment:
    """The templates' environment; a static one needs ``svg(plot, wide)``, the plot's SVG document."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "allow_nan": False}  # tojson (the plots' specs): strict JSON or an error
    env.filters["query"] = lambda params: urlencode({k: v for k, v in params.items() if v not in (None, "", False)})
    env.globals["static"] = static
    if static:
        if svg is None:
            raise ValueError("a static environment renders plots to SVG: pass svg")
        draw = svg
        env.globals["svg"] = lambda plot, wide: Markup(draw(plot, wide))  # vl-convert's SVG: every text in it is XML-escaped
    env.globals.update(globals_)
    return env


def stylesheet() -> Markup:
    """The app's stylesheet, for an export's <style>: our own file, inlined as it is (HTML does not decode entities inside
    <style>, so escaping its quotes would break every rule that names a font)."""
    css = (HERE / "static" / "view.css").read_text(encoding="utf-8")
    if "</" in css:
        raise ValueError("harness/view/static/view.css must not contain '</' (it is inlined in a <style> element)")
    return Markup(css)
