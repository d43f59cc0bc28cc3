"""Jinja written for a plain environment (PromptSource's, lm-eval's), run inside harness's.

Harness's environment trims block lines (``trim_blocks``, ``lstrip_blocks``) and is sandboxed with
StrictUndefined; the foreign templates were written without trimming and read the row's fields as
bare names. ``keep_whitespace`` marks their block tags so no trimming applies; ``row_scope`` gives
them their names from a row ``r`` inside a macro, so the same text renders an item or any of its
demonstrations.
"""

from __future__ import annotations

import re

import jinja2
import jinja2.meta

from harness.core.errors import HarnessError
from harness.core.templating import environment


def keep_whitespace(jinja: str) -> str:
    """Foreign templates render without trim_blocks/lstrip_blocks; harness's environment has both:
    mark every block tag so they do not apply to it."""
    jinja = re.sub(r"\{%(?![-+])", "{%+", jinja)
    return re.sub(r"(?<![-+])%\}", "+%}", jinja)


def template_variables(source: str) -> list[str]:
    env = environment()
    try:
        names = jinja2.meta.find_undeclared_variables(env.parse(source))
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"syntax error (line {exc.lineno}): {exc.message}") from None
    except RecursionError:
        raise HarnessError("template error: nested too deeply to parse") from None
    return sorted(n for n in names if n not in env.globals and n != "answer_choices")  # PromptSource gives answer_choices itself


def row_scope(names: list[str], fields: dict[str, str]) -> tuple[str, str]:
    """Opening and closing ``with`` tags that give the template its variables from the row ``r``:
    a field of the same name, or the expression ``fields`` maps the name to (over the row's fields:
    ``text`` = ``Title ~ '. ' ~ Description``)."""
    used = sorted({v for n in names if n in fields for v in template_variables(f"{{{{ {fields[n]} }}}}")})
    inner = ", ".join(f"{n}=({fields[n]})" if n in fields else f"{n}=r[{n!r}]" for n in names)
    opening = (f"{{% with {', '.join(f'{v}=r[{v!r}]' for v in used)} +%}}" if used else "{% with +%}") + f"{{% with {inner} +%}}"
    return opening, "{%+ endwith %}{%+ endwith %}"  # +%} / {%+: no trimming next to the original text
