"""Choice-label styles ("A." / "(a)" / "1)") as one template vocabulary, and the rewrite
that lets a format perturbation change them consistently.

A lettered multiple-choice template shows its label twice: in the choice list
(``A. Paris``) and as the scored answer (``Answer: A``, the ``answer`` macro, which also
fills every demonstration's ``shot.answer``). Changing one without the other scores a
continuation the prompt never showed, so a style is a single value and both places derive
from it through two template globals:

``choice_label(index, style="A.")``  the label as listed: ``A.``, ``(a)``, ``1)`` ...
``choice_key(index, style="A.")``    the bare key, i.e. what the answer is: ``A``, ``a``, ``1``

A style is a string with exactly one marker, ``A`` (capital letters), ``a`` (small
letters) or ``1`` (numbers from 1), plus its decoration. ``relabel`` rewrites a template's
known label idioms — ``{{ letters[i] }}`` or ``{{ "ABCD"[i] }}`` followed by ``.``/``)``/``:``
(optionally preceded by ``(``) in literal text is a listed label, without decoration it is
a key — and existing ``choice_label``/``choice_key`` calls, into calls with one style.
"""

from __future__ import annotations

import re

from harness.core.errors import HarnessError

LABEL_STYLES = ("A.", "A)", "(A)", "a.", "a)", "(a)", "1.", "1)")
DEFAULT_STYLE = "A."
_MARKERS = "Aa1"
_TAG = re.compile(r"({{.*?}}|{%.*?%}|{#.*?#})", re.DOTALL)
_LETTERS = re.compile(r"""^{{-?\s*(?:letters|"[A-Za-z]{2,}"|'[A-Za-z]{2,}')\[(?P<index>[^\]]+)\]\s*-?}}$""")
_CALL = re.compile(r"""^{{-?\s*choice_(?P<kind>label|key)\((?P<index>[^,()]+)(?:,\s*(?P<q>["'])(?P<style>[^"']*)(?P=q))?\)\s*-?}}$""")
_DECORATIONS = ".):"


def _marker(style: str) -> str:
    found = [m for m in _MARKERS if m in style]
    if len(found) != 1 or style.count(found[0]) != 1:
        raise HarnessError(f"choice-label style {style!r}: needs exactly one marker, A (letters), a (small letters) or 1 (numbers)")
    return found[0]


def choice_key(index: int, style: str = DEFAULT_STYLE) -> str:
    """The bare key of choice ``index``: what a lettered answer is ('A', 'a', '1')."""
    marker = _marker(style)
    if marker == "1":
        return str(index + 1)
    if not 0 <= index < 26:
        raise HarnessError(f"choice-label style {style!r}: no letter for choice {index} (26 at most)")
    letter = chr(ord("A") + index)
    return letter if marker == "A" else letter.lower()


def choice_label(index: int, style: str = DEFAULT_STYLE) -> str:
    """The label as listed before a choice: the style with its marker replaced by the key."""
    return style.replace(_marker(style), choice_key(index, style))


def _idioms(source: str) -> list[tuple[int, str, str, str | None]]:
    """(part position, kind 'label'|'key', index expression, decoration or written style) per idiom."""
    parts = _TAG.split(source)
    found = []
    for i in range(1, len(parts), 2):
        call = _CALL.match(parts[i])
        if call:
            found.append((i, call["kind"], call["index"].strip(), call["style"] or DEFAULT_STYLE))
            continue
        letters = _LETTERS.match(parts[i])
        if letters:
            after = parts[i + 1] if i + 1 < len(parts) else ""
            decoration = after[:1] if after[:1] and after[:1] in _DECORATIONS else None
            found.append((i, "label" if decoration else "key", letters["index"].strip(), decoration))
    return found


def has_labels(source: str) -> bool:
    return bool(_idioms(source))


def written_style(source: str) -> str | None:
    """The style the template itself uses ('A.' for ``{{ letters[i] }}. {{ c }}``), if it lists labels."""
    parts = _TAG.split(source)
    for i, kind, _, extra in _idioms(source):
        if kind != "label":
            continue
        if _CALL.match(parts[i]):
            return extra
        opened = parts[i - 1].endswith("(") and extra == ")"
        return f"({DEFAULT_STYLE[0]})" if opened else f"{DEFAULT_STYLE[0]}{extra}"
    return None


def relabel(source: str, style: str) -> str:
    """``source`` with every label idiom written as a ``choice_label``/``choice_key`` call in ``style``.

    A listed label swallows its literal decoration (and a ``(`` right before a ``)``), which
    the style now supplies; keys (the answer macro) become ``choice_key`` in the same
    style, so demonstrations, listed choices and scored continuations agree.
    """
    _marker(style)
    parts = _TAG.split(source)
    for i, kind, index, extra in _idioms(source):
        if kind == "label" and not _CALL.match(parts[i]):
            parts[i + 1] = parts[i + 1][1:]  # the decoration, supplied by the style from now on
            if extra == ")" and parts[i - 1].endswith("("):
                parts[i - 1] = parts[i - 1][:-1]
        parts[i] = f'{{{{ choice_{kind}({index}, "{style}") }}}}'
    return "".join(parts)
