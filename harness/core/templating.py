"""The one Jinja environment harness uses: sandboxed, StrictUndefined, errors with places.

Task YAML expressions (``input``, ``choices``, ``target``...) and prompt template files are
user-written code run over data rows, so both go through a SandboxedEnvironment (no access
to Python internals such as ``''.__class__``) with StrictUndefined (a misspelled field is an
error, never an empty string silently scored).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from harness.core.choice_labels import choice_key, choice_label
from harness.core.errors import HarnessError


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )

    env.globals.update(enumerate=enumerate, zip=zip, len=len, range=range, letters="ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                       choice_label=choice_label, choice_key=choice_key)  # label styles: see choice_labels.py
    return env


def explain(exc: Exception, filename: str, template: jinja2.Template | None = None) -> str:
    """A one-line reason for a Jinja failure, with the template line when we can find it."""
    line = getattr(exc, "lineno", None)
    if line is None and template is not None:
        # Frames of the compiled template carry Python line numbers; map them back.
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == filename and frame.lineno is not None:
                line = template.get_corresponding_lineno(frame.lineno)
                break
    where = f" (line {line})" if line else ""
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"blocked by the sandbox{where}: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable{where}: {exc}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error{where}: {exc.message}"
    return f"{type(exc).__name__}{where}: {exc}"


JINJA_ERRORS = (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError)


def compile_template(source: str, filename: str) -> jinja2.Template:
    env = environment()
    try:
        code = env.compile(source, name=filename, filename=filename)
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"{filename}: {explain(exc, filename)}") from None
    return env.template_class.from_code(env, code, env.make_globals(None), None)


Expression = Callable[[Mapping[str, Any]], Any]


def compile_expression(text: str, where: str) -> Expression:
    """Compile a task-YAML expression; ``{{ x }}`` and bare ``x`` are the same thing.

    Returns the native Python value (a list stays a list), unlike rendering to text.
    """
    source = text.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2].strip()
    if "{{" in source or "{%" in source:
        raise HarnessError(f"{where}: expected one Jinja expression such as '{{{{ question }}}}', got {text!r}")
    try:
        compiled = environment().compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"{where}: invalid expression {text!r}: {exc.message}") from None

    def evaluate(row: Mapping[str, Any]) -> Any:
        value = compiled(**row)
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return value

    return evaluate


def reads_variable(source: str, name: str, filename: str) -> bool:
    """Whether a template reads the context variable ``name`` anywhere (top level, loops, macros, even a macro
    it never calls), found with ``jinja2.meta`` on its AST; a variable it sets itself does not count. A template
    that includes, imports or extends another cannot be checked here and counts as reading it."""
    try:
        ast = environment().parse(source, name=filename, filename=filename)
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"{filename}: {explain(exc, filename)}") from None
    if any(True for _ in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends))):
        return True
    return name in meta.find_undeclared_variables(ast)
