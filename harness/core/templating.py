"""The one Jinja environment harness uses: sandboxed, StrictUndefined, bounded, errors with places.

Task YAML expressions (``input``, ``choices``, ``target``...) and prompt template files are
user-written code run over data rows, so both go through a SandboxedEnvironment (no access
to Python internals such as ``''.__class__``) with StrictUndefined (a misspelled field is an
error, never an empty string silently scored).

The sandbox also has limits, because a task folder written by someone else must not be able to
hang or exhaust the machine: ``range`` refuses more than 100,000 steps; ``**``, ``*``, ``+``,
``%``, ``~``, string formatting, the amplifying string and list methods and filters (``center``,
``replace``, ``join``, ``indent``, ``wordwrap``, ``batch``...) refuse a result over the size limit
before they build it; every rendering (an item's prompt, one macro call, one expression) has a
time limit, checked at every loop step, call, attribute or item access and output chunk, and a
limit on the characters it outputs; calls nest at most ``MAX_DEPTH`` deep. A limit passed is a
``LimitExceeded`` (a sandbox error), which callers report as a template error with the line.
``HARNESS_TEMPLATE_SECONDS`` and ``HARNESS_TEMPLATE_MAX_CHARS`` raise the limits (long-context
prompts over a million characters).
"""

from __future__ import annotations

import os
import re
import time
import traceback
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, Sequence, ValuesView
from collections.abc import Set as AbstractSet
from contextlib import nullcontext
from contextvars import ContextVar, Token
from dataclasses import dataclass
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.environment import TemplateModule
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup

from harness.core.choice_labels import choice_key, choice_label
from harness.core.errors import HarnessError

SECONDS_ENV = "HARNESS_TEMPLATE_SECONDS"
MAX_CHARS_ENV = "HARNESS_TEMPLATE_MAX_CHARS"
MAX_RANGE = 100_000  # Jinja's own safe_range limit
MAX_INT_BITS = 100_000  # an integer made by ** or * (about 30,000 digits)
MAX_DEPTH = 100  # calls (macros, recursive loops) nested inside one rendering
BUILT_FACTOR = 10  # all strings, lists and numbers one rendering builds, together: this many times its character limit


@dataclass(frozen=True)
class Limits:
    """One rendering's limits: seconds of work, and characters (of its output, and of any one string or list it makes)."""

    seconds: float = 5.0
    chars: int = 1_000_000


def current_limits() -> Limits:
    """The default limits, or the ones set in the environment."""
    return _limits(os.environ.get(SECONDS_ENV, ""), os.environ.get(MAX_CHARS_ENV, ""))


@lru_cache(maxsize=16)
def _limits(seconds: str, chars: str) -> Limits:
    return Limits(seconds=_env_number(SECONDS_ENV, seconds, Limits.seconds), chars=int(_env_number(MAX_CHARS_ENV, chars, Limits.chars)))


def _env_number(name: str, raw: str, default: float) -> float:
    raw = raw.strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HarnessError(f"{name}={raw[:40]!r}: expected a positive number") from None
    if not value > 0:
        raise HarnessError(f"{name}={raw[:40]!r}: expected a positive number")
    return value


class LimitExceeded(jinja2.exceptions.SecurityError):
    """A rendering passed one of the sandbox's limits (time, size, range, nesting)."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(message)
        self.lineno = lineno


@dataclass
class _Budget:
    limits: Limits
    deadline: float
    depth: int = 0
    output: int = 0
    built: int = 0
    ticks: int = 0

    def tick(self) -> None:
        """Check the clock (every 16th tick: between two ticks there is at most one operation under the size limit)."""
        self.ticks += 1
        if not self.ticks & 15:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(
                f"the rendering ran past its time limit of {self.limits.seconds:g} s (a loop or recursion too long?; "
                f"{SECONDS_ENV} raises the limit)"
            )


_BUDGET: ContextVar[_Budget | None] = ContextVar("harness_template_budget", default=None)


def _tick() -> _Budget | None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()
    return budget


def _made(value: Any) -> Any:
    """Count what a rendering builds (results of operators, calls, filters, slices, joins), so that many results each
    under the size limit (``text.split()`` in a loop, kept in a list) cannot add up to exhaust the memory."""
    budget = _BUDGET.get()
    if budget is not None:
        if isinstance(value, (str, bytes, list, tuple, dict, AbstractSet)):
            budget.built += len(value)
        elif isinstance(value, int):
            budget.built += value.bit_length() // 8
        if budget.built > BUILT_FACTOR * budget.limits.chars:
            raise LimitExceeded(f"the rendering built more than {BUILT_FACTOR * budget.limits.chars:,} characters or items in all "
                                f"(strings, lists and numbers), the limit on one rendering ({MAX_CHARS_ENV} raises it)")
    return value


def _chars() -> int:
    budget = _BUDGET.get()
    return budget.limits.chars if budget is not None else current_limits().chars


class limited:  # noqa: N801 (used as a function: ``with limited():``)
    """Put one rendering under the limits; a rendering nested in another (a macro called while rendering) shares its
    budget. A class, not a generator: task loading enters one per expression per row."""

    def __enter__(self) -> None:
        self._token: Token[_Budget | None] | None = None
        if _BUDGET.get() is None:
            limits = current_limits()
            self._token = _BUDGET.set(_Budget(limits, time.monotonic() + limits.seconds))

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _BUDGET.reset(self._token)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else f"<a {value.bit_length()}-bit integer>"
    return text if len(text) <= 40 else text[:37] + "..."


def _too_big(what: str, size: int, limit: int) -> LimitExceeded:
    return LimitExceeded(f"{what} would be {size:,} characters or items, over the limit of {limit:,} ({MAX_CHARS_ENV} raises it)")


def _check_size(size: int, what: str) -> None:
    limit = _chars()
    if size > limit:
        raise _too_big(what, size, limit)


def text_size(value: Any, budget: int) -> int:
    """About how long ``str(value)`` is (a string nested in a list counts once per reference to it), counted only
    until it passes ``budget``, so the count stays cheap for a huge value."""
    total, stack = 0, [value]
    while stack and total <= budget:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item) + (0 if item is value else 3)
        elif isinstance(item, Namespace):
            total += 14
            stack.append(item._Namespace__attrs)
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, AbstractSet, KeysView, ValuesView, ItemsView)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        else:
            total += 24
    return total


def _check_text(value: Any, what: str) -> None:
    limit = _chars()
    size = text_size(value, limit)
    if size > limit:
        raise _too_big(what, size, limit)


def guard_iter(iterable: Any) -> Iterator[Any]:
    """Iterate with the time limit checked at every step (every for loop and every consuming filter goes through it)."""
    iterator = iter(iterable)

    def steps() -> Iterator[Any]:
        for value in iterator:
            _tick()
            yield value

    return steps()


class BoundedRange(Sequence[int]):
    """``range`` for templates: at most ``MAX_RANGE`` steps (as Jinja's safe_range), the time limit checked at each."""

    def __init__(self, *args: int) -> None:
        self._range = range(*args)
        try:
            length = len(self._range)
        except OverflowError:
            length = MAX_RANGE + 1
        if length > MAX_RANGE:
            raise LimitExceeded(f"range({', '.join(map(_short, args))}) has more than {MAX_RANGE:,} steps, the most a template may loop over")

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: Any) -> Any:
        return self._range[index]

    def __iter__(self) -> Iterator[int]:
        return guard_iter(self._range)

    def __contains__(self, value: object) -> bool:
        return value in self._range

    def __eq__(self, other: object) -> bool:
        return self._range == (other._range if isinstance(other, BoundedRange) else other)

    def __hash__(self) -> int:
        return hash(self._range)

    def __repr__(self) -> str:
        return repr(self._range)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 (Jinja's own names)
    if n * max > 100_000:
        raise LimitExceeded(f"lipsum(n={_short(n)}, max={_short(max)}) asks for more than 100,000 words")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


# --- operators ------------------------------------------------------------------------------------

_SIZED = (str, bytes, list, tuple)
# a %-format conversion; possessive quantifiers, so a hostile format string cannot make the regex backtrack
_PERCENT = re.compile(r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*+(?P<width>\*|\d++)?+(?:\.(?P<precision>\*|\d++))?+[hlL]?(?P<type>.)", re.DOTALL)


def _number(text: str) -> int:
    return int(text) if len(text) <= 9 else 10**9


def _percent_size(text: str, args: Any, what: str) -> None:
    """Refuse ``text % args`` when its result would pass the size limit: widths and precisions (``*`` ones too) and each
    value's text, counted before anything is formatted."""
    values = list(args) if isinstance(args, tuple) else [args]
    total, position, limit = len(text), 0, _chars()
    for match in _PERCENT.finditer(text):
        if match["type"] == "%":
            continue
        for part in (match["width"], match["precision"]):
            if part == "*":
                star = values[position] if position < len(values) else 0
                position += 1
                total += abs(star) if isinstance(star, int) else 0
            elif part:
                total += _number(part)
        if match["key"] is not None and isinstance(args, Mapping):
            value = args.get(match["key"])
        else:
            value = values[position] if position < len(values) else None
            position += 1
        total += text_size(value, limit)
        if total > limit:
            raise _too_big(what, total, limit)


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1 and right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
        raise LimitExceeded(f"{_short(left)} ** {_short(right)} would be a number of more than {MAX_INT_BITS:,} bits")
    return left**right


def _times(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, _SIZED) and isinstance(count, int):
            _check_size(len(sequence) * count, f"a {type(sequence).__name__} of length {len(sequence):,} repeated {count:,} times")
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"{_short(left)} * {_short(right)} would be a number of more than {MAX_INT_BITS:,} bits")
    return left * right


def _plus(left: Any, right: Any) -> Any:
    if isinstance(left, _SIZED) and isinstance(right, _SIZED):
        _check_size(len(left) + len(right), f"adding a {type(left).__name__} and a {type(right).__name__}")
    return left + right


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _percent_size(left, right, f"formatting {_short(left)} with %")
    return left % right


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {"**": _power, "*": _times, "+": _plus, "%": _modulo}


# --- methods --------------------------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    if not isinstance(text, (str, bytes)) or not isinstance(old, type(text)) or not isinstance(new, type(text)):
        return 0
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _joined(separator: Any, iterable: Any) -> tuple[Any, int]:
    """The parts of a join, taken with the time limit checked, and the size of the joined text."""
    parts = _materialized(iterable)
    limit = _chars()
    size = len(separator) * max(len(parts) - 1, 0) if isinstance(separator, _SIZED) else 0
    if isinstance(parts, str):
        return parts, size + len(parts)
    for part in parts:
        if size > limit:
            break
        size += text_size(part, limit)
    return parts, size


def _materialized(iterable: Any) -> Any:
    """A sequence as it is; anything else (a generator) taken into a list with the time limit checked."""
    return iterable if isinstance(iterable, (str, list, tuple)) else list(guard_iter(iterable))


def _checked_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of an amplifying str/bytes/list method whose result would pass the size limit; the (possibly
    materialised) arguments to call it with."""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    what = f"{type(owner).__name__}.{name}()"
    if isinstance(owner, (str, bytes)):
        if name in ("center", "ljust", "rjust", "zfill"):
            width = _arg(args, kwargs, 0, "width", 0)
            if isinstance(width, int):
                _check_size(width, what)
        elif name == "expandtabs":
            tabsize = _arg(args, kwargs, 0, "tabsize", 8)
            tab = "\t" if isinstance(owner, str) else b"\t"
            if isinstance(tabsize, int):
                _check_size(len(owner) + owner.count(tab) * tabsize, what)  # type: ignore[arg-type]
        elif name == "replace":
            _check_size(_replaced_size(owner, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"), _arg(args, kwargs, 2, "count", -1)), what)
        elif name == "join" and args:
            parts, size = _joined(owner, args[0])
            _check_size(size, what)
            return (parts, *args[1:])
        elif name == "translate" and isinstance(owner, str) and isinstance(_arg(args, kwargs, 0, "table"), Mapping):
            table = _arg(args, kwargs, 0, "table")
            longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
            _check_size(len(owner) * max(longest, 1), what)
    elif isinstance(owner, list):
        if name == "extend" and args:
            extra = args[0] if isinstance(args[0], (list, tuple, str, dict)) else list(guard_iter(args[0]))
            _check_size(len(owner) + len(extra), what)
            return (extra, *args[1:])
        if name in ("append", "insert"):
            _check_size(len(owner) + 1, what)
    return args


# --- filters --------------------------------------------------------------------------------------

# filters that turn their input into text, and filters that consume an iterable
_STRINGIFYING = frozenset({"capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "pprint", "replace", "safe",
                           "string", "striptags", "title", "tojson", "trim", "truncate", "upper", "urlencode", "urlize", "wordcount",
                           "wordwrap", "xmlattr"})
_CONSUMING = frozenset({"batch", "groupby", "list", "map", "max", "min", "reject", "rejectattr", "select", "selectattr", "slice", "sort",
                        "sum", "unique"})


def _check_center(value: Any, width: Any = 80) -> None:
    if isinstance(width, int):
        _check_size(width, "the 'center' filter")


def _check_indent(value: Any, width: Any = 4, first: bool = False, blank: bool = False) -> None:
    text = str(value)
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    _check_size(len(text) + (text.count("\n") + 1) * step, "the 'indent' filter")


def _check_wordwrap(value: Any, width: Any = 79, break_long_words: bool = True, wrapstring: Any = None, break_on_hyphens: bool = True) -> None:
    text = str(value)
    lines = len(text) // max(width // 2, 1) + text.count("\n") + 1 if isinstance(width, int) else 1
    _check_size(len(text) + lines * len(str(wrapstring or "\n")), "the 'wordwrap' filter")


def _check_replace(value: Any, old: Any, new: Any, count: Any = None) -> None:
    _check_size(_replaced_size(str(value), str(old), str(new), count), "the 'replace' filter")


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _percent_size(str(value), kwargs or args, "the 'format' filter")


def _check_batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
    if isinstance(linecount, int):
        _check_size(linecount, "the 'batch' filter")


def _check_slice(value: Any, slices: Any, fill_with: Any = None) -> None:
    if isinstance(slices, int):
        _check_size(slices, "the 'slice' filter")


_FILTER_CHECKS: dict[str, Callable[..., None]] = {"center": _check_center, "indent": _check_indent, "wordwrap": _check_wordwrap,
                                                  "replace": _check_replace, "format": _check_format, "batch": _check_batch,
                                                  "slice": _check_slice}


def _sized_parts(parts: list[Any]) -> int:
    limit = _chars()
    size = 0
    for part in parts:
        size += len(part) if isinstance(part, _SIZED) else 0
        if size > limit:
            break
    return size


def _limited_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter with the limits: the time checked, a consumed iterable guarded, text inputs and amplifying
    parameters checked before the filter builds anything."""
    offset = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
    check = _FILTER_CHECKS.get(name)

    @wraps(function)
    def limited_filter(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if len(args) <= offset:
            return function(*args, **kwargs)
        values = list(args)
        if name in _STRINGIFYING:
            _check_text(values[offset], f"the {name!r} filter's input")
        if name in _CONSUMING or name == "join":
            values[offset] = _materialized(values[offset]) if name in ("join", "sum") else guard_iter(values[offset])
        if name == "join":
            separator = _arg(tuple(values[offset + 1:]), kwargs, 0, "d", "")
            _check_size(_joined(separator, values[offset])[1], "the 'join' filter")
        elif name == "sum":
            _check_size(_sized_parts(values[offset]) + (len(kwargs["start"]) if isinstance(kwargs.get("start"), _SIZED) else 0), "the 'sum' filter")
        elif check is not None:
            try:
                check(*values[offset:], **kwargs)
            except TypeError:
                pass  # wrong arguments: the filter itself says so
        return _made(function(*values, **kwargs))

    return limited_filter


# --- the environment ------------------------------------------------------------------------------


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator with every for loop's iterable passed through ``guard_iter`` (the time limit at every
    step, even in a loop that calls nothing) and every ``~`` through ``guard_concat`` (doubling a string stops)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_iterables: set[int] = set()

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_iterables.add(id(node.iter))  # Jinja allows no custom node type, so the iterable is marked by identity
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) not in self._loop_iterables:
            return super().visit(node, *args, **kwargs)
        self.write("environment.guard_iter(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):  # the sandbox's getitem hook
            super().visit_Getitem(node, frame)
            return
        self.write("environment.made(")  # a slice is a Python subscript, no hook: count the copy it makes
        super().visit_Getitem(node, frame)
        self.write(")")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        else:
            join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
        self.write(f"environment.guard_concat({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _BoundedFields:
    """str.format with the limits: a field's width and the text of all fields together."""

    _total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        _tick()
        limit = _chars()
        widths = sum(_number(d) for d in re.findall(r"\d+", format_spec))
        self._total += widths + text_size(value, limit)
        if self._total > limit:
            raise _too_big("str.format()", self._total, limit)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _Formatter(_BoundedFields, SandboxedFormatter):
    pass


class _EscapeFormatter(_BoundedFields, SandboxedEscapeFormatter):
    pass


class LimitedEnvironment(SandboxedEnvironment):
    """The sandbox with limits (see the module docstring); each hook checks the time limit first."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset(_BINOPS)

    @staticmethod
    def guard_iter(iterable: Any) -> Iterator[Any]:
        return guard_iter(iterable)

    @staticmethod
    def made(value: Any) -> Any:
        _tick()
        return _made(value)

    @staticmethod
    def guard_concat(join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        _tick()
        limit, size = _chars(), 0
        for part in parts:
            size += text_size(part, limit)
            if size > limit:
                raise _too_big("joining text with '~'", size, limit)
        return _made(join(parts))

    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        """The text of a macro, a block ``set``, a ``call`` or ``filter`` block: bounded like an output."""
        pieces = parts if isinstance(parts, list) else list(parts)
        _check_size(sum(map(len, pieces)), "the text of a macro or block")
        return _made("".join(pieces))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        return _made(_BINOPS[operator](left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = _tick()
        args = _checked_method(obj, args, kwargs)
        if budget is None:
            return super().call(context, obj, *args, **kwargs)
        if budget.depth >= MAX_DEPTH:
            raise LimitExceeded(f"calls nested more than {MAX_DEPTH} deep (a macro or recursive loop that calls itself without end?)")
        budget.depth += 1
        try:
            return _made(super().call(context, obj, *args, **kwargs))
        finally:
            budget.depth -= 1

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """Refuse an unsafe attribute where it is reached. Jinja returns an undefined that fails only when used, so a
        further access on it (``x|attr('__class__')|attr('__mro__')``, ``'{0.__class__.__init__}'.format(x)``) failed as
        a plain undefined attribute of 'StrictUndefined', the escape attempt and its attribute unnamed."""
        raise jinja2.exceptions.SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """The sandbox's own str.format wrapper, with a bounded formatter."""
        if getattr(value, "__name__", None) not in ("format", "format_map") or not isinstance(getattr(value, "__self__", None), str):
            return None
        owner: str = value.__self__
        formatter: SandboxedFormatter = _EscapeFormatter(self, escape=owner.escape) if isinstance(owner, Markup) else _Formatter(self)
        is_format_map = value.__name__ == "format_map"

        @wraps(value)
        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument and no keyword arguments")
                kwargs, args = args[0], ()
            formatter._total = 0  # type: ignore[attr-defined]
            return type(owner)(formatter.vformat(owner, args, kwargs))

        return wrapper


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` output: its text must fit the size limit before it is made (``{{ [text] * 100000 }}``); a string
    is already made, and counted as output (or by ``concat`` inside a macro or block)."""
    if not isinstance(value, str):
        _check_text(value, "an output")
    return value


@lru_cache(maxsize=1)
def environment() -> LimitedEnvironment:
    env = LimitedEnvironment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
        finalize=_finalize,
    )
    env.filters.update({name: _limited_filter(name, function) for name, function in env.filters.items()})
    env.globals.update(enumerate=enumerate, zip=zip, len=len, range=BoundedRange, lipsum=_lipsum, letters="ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                       choice_label=choice_label, choice_key=choice_key)  # label styles: see choice_labels.py
    return env


# --- errors ---------------------------------------------------------------------------------------


def template_line(exc: BaseException, filename: str, template: jinja2.Template | None = None) -> int | None:
    """The template line a Jinja failure happened on, when we can find it."""
    line = getattr(exc, "lineno", None)
    if line is None and template is not None:
        # Frames of the compiled template carry Python line numbers; map them back.
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == filename and frame.lineno is not None:
                line = template.get_corresponding_lineno(frame.lineno)
                break
    return line if isinstance(line, int) else None


def explain(exc: BaseException, filename: str, template: jinja2.Template | None = None) -> str:
    """A one-line reason for a Jinja failure, with the template line when we can find it."""
    line = template_line(exc, filename, template)
    where = f" (line {line})" if line else ""
    if isinstance(exc, LimitExceeded):
        return f"template error{where}: {exc}"
    if isinstance(exc, RecursionError):
        return f"template error{where}: recursion too deep (a macro or loop calling itself without end, or a value nested too deeply?)"
    if isinstance(exc, MemoryError):
        return f"template error{where}: out of memory"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"blocked by the sandbox{where}: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable{where}: {exc}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error{where}: {exc.message}"
    if isinstance(exc, TypeError) and str(exc) == "no loader for this environment specified":
        return f"template error{where}: include, import and extends are not supported; a prompt template is one self-contained file"
    return f"{type(exc).__name__}{where}: {str(exc)[:300]}"


JINJA_ERRORS = (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError, ArithmeticError, RecursionError,
                MemoryError)
# what compiling a hostile template can raise besides a syntax error: nesting too deep for Jinja's parser or Python's compiler
_COMPILE_ERRORS = (RecursionError, MemoryError, SyntaxError)


def _nesting(filename: str, exc: BaseException) -> HarnessError:
    why = exc.msg if isinstance(exc, SyntaxError) else "out of memory" if isinstance(exc, MemoryError) else "brackets, operators or blocks nested hundreds deep"
    return HarnessError(f"{filename}: template error: nested too deeply to compile ({why})")


def compile_template(source: str, filename: str) -> jinja2.Template:
    env = environment()
    try:
        code = env.compile(source, name=filename, filename=filename)
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"{filename}: {explain(exc, filename)}") from None
    except _COMPILE_ERRORS as exc:
        raise _nesting(filename, exc) from None
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def render_module(template: jinja2.Template, variables: Mapping[str, Any]) -> TemplateModule:
    """Render ``template`` under the limits: its text is ``str(module)``, its macros are attributes. The output is
    taken chunk by chunk, so a rendering stops as soon as it passes the output limit or its time."""
    with limited():
        budget = _BUDGET.get()
        assert budget is not None
        context = template.new_context(dict(variables))
        stream = template.root_render_func(context)
        body: list[str] = []
        limit = budget.limits.chars
        for chunk in stream:
            budget.output += len(chunk)
            try:
                if budget.output > limit:
                    raise LimitExceeded(f"the output passed {limit:,} characters, the limit on one rendering ({MAX_CHARS_ENV} raises it)")
                budget.tick()
            except LimitExceeded as exc:
                frame = getattr(stream, "gi_frame", None)
                exc.lineno = template.get_corresponding_lineno(frame.f_lineno) if frame is not None else None
                raise
            body.append(chunk)
        return TemplateModule(template, context, body)


def call_limited(function: Callable[..., Any], *args: Any) -> str:
    """Call a template's macro (outside a rendering) under the limits; its text."""
    with limited():
        return str(function(*args))


Expression = Callable[[Mapping[str, Any]], Any]


def compile_expression(text: str, where: str) -> Expression:
    """Compile a task-YAML expression; ``{{ x }}`` and bare ``x`` are the same thing.

    Returns the native Python value (a list stays a list), unlike rendering to text; evaluating it has the limits
    of a rendering, and a value whose text would pass the size limit is refused.
    """
    source = text.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2].strip()
    if "{{" in source or "{%" in source:
        raise HarnessError(f"{where}: expected one Jinja expression such as '{{{{ question }}}}', got {_short(text)}")
    try:
        compiled = environment().compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"{where}: invalid expression {_short(text)}: {exc.message}") from None
    except _COMPILE_ERRORS as exc:
        raise _nesting(where, exc) from None

    budget = limited if not _is_lookup(source) else nullcontext

    def evaluate(row: Mapping[str, Any]) -> Any:
        with budget():
            value = compiled(**row)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            if not isinstance(value, str):
                _check_text(value, "the expression's value")
        return value

    return evaluate


_LOOKUP_NODES = (nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Const, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair)


def _is_lookup(source: str) -> bool:
    """Whether an expression only looks fields up (``question``, ``[a, b]``, ``row['x'].y``): bounded by its source,
    so evaluating it needs no budget (most task-YAML expressions; saves a clock read per row and field)."""
    expression = Parser(environment(), source, state="variable").parse_expression()
    return all(isinstance(node, _LOOKUP_NODES) for node in (expression, *expression.find_all(nodes.Node)))


def reads_variable(source: str, name: str, filename: str) -> bool:
    """Whether a template reads the context variable ``name`` anywhere (top level, loops, macros, even a macro
    it never calls), found with ``jinja2.meta`` on its AST; a variable it sets itself does not count. A template
    that includes, imports or extends another cannot be checked here and counts as reading it."""
    try:
        ast = environment().parse(source, name=filename, filename=filename)
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"{filename}: {explain(exc, filename)}") from None
    except _COMPILE_ERRORS as exc:
        raise _nesting(filename, exc) from None
    if any(True for _ in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends))):
        return True
    return name in meta.find_undeclared_variables(ast)


def read_template_text(path: Path, what: str = "template") -> str:
    """A template file's text: UTF-8, or an error naming the byte, its offset and line (never a traceback)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    return decode_utf8(data, str(path), what)


def decode_utf8(data: bytes, where: str, what: str) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark, as Windows editors write, is not part of it), or an error
    naming the first bad byte, its offset and its line."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise HarnessError(f"{where}: the {what} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
                           "save it as UTF-8") from None
