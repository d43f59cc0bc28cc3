"""The sandbox's limits: every hostile template or task-YAML expression below ends within seconds with a template
error naming the file, the line and the row, while ordinary templates render as before.

The hostile cases run in one child process with a time-out and a memory cap, so a regression that hangs or
exhausts memory fails these tests instead of the test run."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.core import templating
from harness.core.errors import HarnessError
from harness.core.templating import BoundedRange, compile_expression, compile_template, current_limits, render_module, text_size
from harness.prompts.template import load_prompt
from harness.tasks.task import load_task
from tests.helpers import write_task

ROOT = Path(__file__).resolve().parents[2]
BIG = "'x' * 100000"  # a 100,000-character string

# (id, template line, what the error says); each template is "Q: {{ input }}" then this line, so the error is on line 2
TEMPLATE_BOMBS: list[tuple[str, str, str]] = [
    ("range_huge", "{% for i in range(10**9) %}x{% endfor %}", "more than 100,000 steps"),
    ("range_overflow", "{% for i in range(10**30) %}x{% endfor %}", "more than 100,000 steps"),
    ("power", "{{ 9**(9**9) }}", "more than 100,000 bits"),
    ("power_chain", "{{ (2**64)**(2**20) }}", "more than 100,000 bits"),
    ("repeat_str", "{{ 'x' * 10**10 }}", "over the limit"),
    ("repeat_str_left", "{{ 10**10 * 'x' }}", "over the limit"),
    ("repeat_list", "{{ [0] * 10**10 }}", "over the limit"),
    ("repeat_tuple", "{{ (0,) * 10**10 }}", "over the limit"),
    ("repeat_bytes", "{{ 'x'.encode() * 10**10 }}", "over the limit"),
    ("nested_loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "time limit"),
    ("loops_in_macro", "{% macro m(s) %}{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}{% endmacro %}"
                       "{{ m('x' * 100000) }}", "time limit"),
    ("append_loop", "{% set l = [] %}{% for i in range(100000) %}{% for j in range(100000) %}{{ l.append(j) }}{% endfor %}{% endfor %}",
     "limit"),
    ("map_sum", "{{ ([[0] * 100000] * 100000)|map('sum')|list }}", "time limit"),
    ("recursive_macro", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested more than 100 deep"),
    ("recursive_macro_growing", "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}", "over the limit"),
    ("recursive_loop", "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "nested more than 100 deep"),
    ("double_concat", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "over the limit"),
    ("double_plus", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "over the limit"),
    ("double_list", "{% set ns = namespace(s=[0]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "over the limit"),
    ("double_block_set", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}"
                         "{% set ns.s = t %}{% endfor %}", "over the limit"),
    ("double_percent", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = '%s%s' % (ns.s, ns.s) %}{% endfor %}",
     "over the limit"),
    ("double_format", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = '{0}{0}'.format(ns.s) %}{% endfor %}",
     "over the limit"),
    ("double_join", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}", "over the limit"),
    ("double_extend", "{% set l = [1] %}{% for i in range(64) %}{{ l.extend(l) }}{% endfor %}", "over the limit"),
    ("square_int", "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}", "more than 100,000 bits"),
    ("output_loop", f"{{% for i in range(100000) %}}{{{{ {BIG} }}}}{{% endfor %}}", "the output passed 1,000,000 characters"),
    ("output_list", f"{{{{ [{BIG}] * 1000000 }}}}", "over the limit"),
    ("string_filter", f"{{{{ ([{BIG}] * 1000000)|string }}}}", "over the limit"),
    ("tojson_filter", f"{{{{ ([{BIG}] * 1000000)|tojson }}}}", "over the limit"),
    ("pprint_filter", f"{{{{ ([{BIG}] * 1000000)|pprint }}}}", "over the limit"),
    ("upper_filter_list", f"{{{{ ([{BIG}] * 1000000)|upper }}}}", "over the limit"),
    ("join_filter", f"{{{{ ([{BIG}] * 1000)|join }}}}", "over the limit"),
    ("join_method", f"{{{{ ''.join([{BIG}] * 1000) }}}}", "over the limit"),
    ("join_separator", "{{ ('x' * 1000000).join('x' * 1000000) }}", "over the limit"),
    ("center_filter", "{{ 'x'|center(10**9) }}", "over the limit"),
    ("center_method", "{{ 'x'.center(10**9) }}", "over the limit"),
    ("ljust", "{{ 'x'.ljust(10**9) }}", "over the limit"),
    ("rjust", "{{ 'x'.rjust(10**9, '-') }}", "over the limit"),
    ("zfill", "{{ '1'.zfill(10**9) }}", "over the limit"),
    ("expandtabs", "{{ ('\\t' * 1000000).expandtabs(1000) }}", "over the limit"),
    ("replace_filter", "{{ ('x' * 1000000)|replace('x', 'x' * 1000000) }}", "over the limit"),
    ("replace_method", "{{ ('x' * 1000000).replace('x', 'x' * 1000000) }}", "over the limit"),
    ("replace_empty", "{{ ('x' * 1000000).replace('', 'yy') }}", "over the limit"),
    ("translate", "{{ ('x' * 1000000).translate({120: 'y' * 1000000}) }}", "over the limit"),
    ("indent_width", "{{ ('a\\n' * 500000)|indent(1000000) }}", "over the limit"),
    ("indent_string", "{{ ('a\\n' * 500000)|indent('y' * 1000) }}", "over the limit"),
    ("wordwrap", "{{ ('a ' * 500000)|wordwrap(1, wrapstring='x' * 1000000) }}", "over the limit"),
    ("format_width", "{{ '{:>1000000000}'.format(1) }}", "over the limit"),
    ("format_nested_width", "{{ '{0:{1}}'.format('x', 10**9) }}", "over the limit"),
    ("format_precision", "{{ '{:.1000000000f}'.format(1.5) }}", "over the limit"),
    ("format_fields", f"{{{{ ('{{0}}' * 100000).format({BIG}) }}}}", "over the limit"),
    ("format_map", "{{ '{a:>1000000000}'.format_map({'a': 1}) }}", "over the limit"),
    ("format_markup", "{{ ('{:>1000000000}'|safe).format(1) }}", "over the limit"),
    ("percent_width", "{{ '%1000000000d' % 1 }}", "over the limit"),
    ("percent_star", "{{ '%*d' % (10**9, 1) }}", "over the limit"),
    ("percent_precision", "{{ '%.1000000000f' % 1.0 }}", "over the limit"),
    ("percent_many", f"{{{{ ('%s' * 100000) % (({BIG},) * 100000) }}}}", "over the limit"),
    ("percent_mapping", "{{ '%(a)s%(a)s' % {'a': 'x' * 900000} }}", "over the limit"),
    ("format_filter_width", "{{ '%1000000000s'|format('x') }}", "over the limit"),
    ("format_filter_many", f"{{{{ ('%s' * 1000)|format(*([{BIG}] * 1000)) }}}}", "over the limit"),
    ("batch_fill", "{{ [1]|batch(10**9, 'x')|list }}", "over the limit"),
    ("slice_many", "{{ [1]|slice(10**9)|list }}", "over the limit"),
    ("sum_lists", "{{ ([[0] * 1000000] * 1000)|sum(start=[]) }}", "over the limit"),
    ("lipsum_many", "{{ lipsum(10**9) }}", "more than 100,000 words"),
    ("lipsum_long", "{{ lipsum(1, min=10**7, max=10**7 + 1) }}", "more than 100,000 words"),
    ("split_kept", "{% set l = [] %}{% for i in range(100000) %}{{ l.append(('x ' * 500000).split()) }}{% endfor %}", "built more than"),
    ("slice_kept", f"{{% set s = {BIG} * 10 %}}{{% set l = [] %}}{{% for i in range(100000) %}}{{{{ l.append(s[1:]) }}}}{{% endfor %}}",
     "built more than"),
    ("center_kept", "{{ range(100000)|map('string')|map('center', 1000000)|list|length }}", "built more than"),
    ("deep_value", "{% set ns = namespace(l=1) %}{% for i in range(5000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}", "recursion too deep"),
    ("float_overflow", "{{ 10.0 ** 400 }}", "OverflowError"),
    ("chr_overflow", "{{ '%c' % 1114112 }}", "OverflowError"),
    ("int_of_infinity", "{{ (1e308 * 10)|int }}", "OverflowError"),
    ("huge_int_text", "{{ 10**5000 }}", "ValueError"),
    ("dict_fromkeys", "{{ dict.fromkeys(range(100000), 'x' * 100000) }}", "over the limit"),
    ("recursive_block", "{% block a %}{{ self.a() }}{% endblock %}", "nested more than 100 deep"),
    ("include", "{% include 'other.jinja' %}", "include, import and extends are not supported"),
    ("zero_division", "{{ 1 // 0 }}", "ZeroDivisionError"),
]

# (id, template, what the error says): refused when the template is compiled, before any row
COMPILE_BOMBS: list[tuple[str, str, str]] = [
    ("deep_brackets", "{{ " + "(" * 10000 + "1" + ")" * 10000 + " }}", "nested too deeply to compile"),
    ("deep_lists", "{{ " + "[" * 10000 + "]" * 10000 + " }}", "nested too deeply to compile"),
    ("deep_minus", "{{ " + "-" * 100000 + "1 }}", "nested too deeply to compile"),
    ("deep_loops", "{% for i in range(1) %}" * 30 + "x" + "{% endfor %}" * 30, "too many statically nested blocks"),
]

# (id, task.yaml 'input' expression, what the error says)
EXPRESSION_BOMBS: list[tuple[str, str, str]] = [
    ("expr_repeat", "{{ question * 10**10 }}", "over the limit"),
    ("expr_power", "{{ 9**(9**9) }}", "more than 100,000 bits"),
    ("expr_range", "{{ range(10**9)|list }}", "more than 100,000 steps"),
    ("expr_value", "{{ [question] * 1000000 }}", "the expression's value"),
    ("expr_time", "{{ ([[0] * 100000] * 100000)|map('sum')|list }}", "time limit"),
    ("expr_format", "{{ '{:>1000000000}'.format(question) }}", "over the limit"),
    ("expr_deep", "{{ " + "(" * 10000 + "question" + ")" * 10000 + " }}", "nested too deeply to compile"),
]


def run_cases(root: str) -> None:
    """In the child process: each case from stdin, one JSON line of outcome per case as it ends."""
    folder = Path(root)
    task = load_task(write_task(folder, templates={"plain": "{{ input }}"}))
    item = task.items("test")[0]
    for case in json.load(sys.stdin):
        sys.setrecursionlimit(case.get("recursionlimit", 1000))
        start = time.perf_counter()
        try:
            if case["kind"] == "expression":
                load_task(write_task(folder / "expressions", name=case["id"], spec={"input": case["source"]})).items("test")
            else:
                path = folder / f"b_{case['id']}.jinja"
                path.write_text(case["source"], encoding="utf-8")
                load_prompt(task, str(path)).render(task, item, [])
            outcome, message = "accepted", ""
        except HarnessError as exc:
            outcome, message = "error", str(exc)
        except BaseException as exc:  # noqa: BLE001 (a traceback is what the test reports)
            outcome, message = "traceback", f"{type(exc).__name__}: {str(exc)[:300]}"
        sys.setrecursionlimit(1000)
        print(json.dumps({"id": case["id"], "outcome": outcome, "message": message[:2000], "seconds": time.perf_counter() - start}), flush=True)


def _memory_cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    cases = [{"id": i, "kind": "template", "source": "Q: {{ input }}\n" + s} for i, s, _ in TEMPLATE_BOMBS + COMPILE_BOMBS]
    cases += [{"id": i, "kind": "expression", "source": s} for i, s, _ in EXPRESSION_BOMBS]
    cases.append({"id": "recursive_macro_high_limit", "kind": "template", "recursionlimit": 100_000,
                  "source": "Q: {{ input }}\n{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"})
    env = {**os.environ, "HARNESS_TEMPLATE_SECONDS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("HARNESS_TEMPLATE_MAX_CHARS", None)
    command = [sys.executable, "-c", "import sys; from tests.core.test_templating import run_cases; run_cases(sys.argv[1])",
               str(tmp_path_factory.mktemp("bombs"))]
    try:
        done = subprocess.run(command, input=json.dumps(cases), capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
                              preexec_fn=_memory_cap)
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr = "timed out"
    results = {r["id"]: r for r in map(json.loads, stdout.splitlines()) if r}
    results["_stderr"] = {"message": stderr[-2000:]}
    return results


def _outcome(outcomes: dict[str, dict[str, Any]], case_id: str) -> dict[str, Any]:
    result = outcomes.get(case_id)
    assert result is not None, f"{case_id}: no outcome (the child hung, ran out of memory or crashed): {outcomes['_stderr']['message']}"
    assert result["outcome"] == "error", result
    assert result["seconds"] < 5, result
    return result


@pytest.mark.parametrize(("case_id", "source", "says"), TEMPLATE_BOMBS, ids=[c[0] for c in TEMPLATE_BOMBS])
def test_hostile_template_ends_quickly_with_a_template_error(outcomes: dict[str, dict[str, Any]], case_id: str, source: str, says: str) -> None:
    message = _outcome(outcomes, case_id)["message"]
    assert f"b_{case_id}.jinja: item 't0': " in message and "(line 2)" in message and says in message, message


@pytest.mark.parametrize(("case_id", "source", "says"), COMPILE_BOMBS, ids=[c[0] for c in COMPILE_BOMBS])
def test_template_nested_too_deeply_is_refused_when_compiled(outcomes: dict[str, dict[str, Any]], case_id: str, source: str, says: str) -> None:
    message = _outcome(outcomes, case_id)["message"]
    assert f"b_{case_id}.jinja: template error: " in message and says in message, message


@pytest.mark.parametrize(("case_id", "source", "says"), EXPRESSION_BOMBS, ids=[c[0] for c in EXPRESSION_BOMBS])
def test_hostile_task_expression_names_the_field_and_row(outcomes: dict[str, dict[str, Any]], case_id: str, source: str, says: str) -> None:
    message = _outcome(outcomes, case_id)["message"]
    assert f"{case_id}/task.yaml: field 'input'" in message and says in message, message
    assert "compile" in says or "test.jsonl line 1" in message, message


def test_recursion_stops_at_the_call_depth_even_with_a_high_recursion_limit(outcomes: dict[str, dict[str, Any]]) -> None:
    message = _outcome(outcomes, "recursive_macro_high_limit")["message"]
    assert "(line 2)" in message and "nested more than 100 deep" in message, message


# --- ordinary templates keep rendering -----------------------------------------------------------

LEGIT: list[tuple[str, str]] = [
    ("{% for i in range(3) %}{{ i }},{% endfor %}", "0,1,2,"),
    ("{{ 'a' ~ 'b' ~ x }}", "abhi"),
    ("{{ '%s-%03d' % ('a', 3) }} {{ '%(k)s' % {'k': 1} }} {{ '100%%' % () }}", "a-003 1 100%"),
    ("{{ '{}: {:>5}'.format('a', 3) }}|{{ '{k}'.format_map({'k': 2}) }}", "a:     3|2"),
    ("{{ [1, 2]|join(', ') }} {{ range(5)|list }} {{ range(5)|length }} {{ range(2, 10, 3)|list }} {{ 3 in range(5) }}",
     "1, 2 [0, 1, 2, 3, 4] 5 [2, 5, 8] True"),
    ("{{ 'ab'|center(6) }}|{{ x|upper }}|{{ x|replace('h', 'H') }}|{{ 'a\nb'|indent(2, true) }}", "  ab  |HI|Hi|  a\n  b"),
    ("{% set ns = namespace(n=0) %}{% for c in 'abc' %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", "3"),
    ("{{ 2**10 }} {{ 3 * 4 }} {{ 'ab' * 3 }} {{ [1] * 3 }} {{ 7 % 3 }} {{ 10.5 % 3 }} {{ 2**-1 }}", "1024 12 ababab [1, 1, 1] 1 1.5 0.5"),
    ("{% macro m(a) %}<{{ a }}>{% endmacro %}{{ m(1) }}{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}c{% endcall %}", "<1>[c]"),
    ("{{ [3, 1, 2]|sort|first }} {{ [1, 2, 3]|sum }} {{ ['a', 'b']|map('upper')|join }} {{ [1, 2, 3]|select('odd')|list }}", "1 6 AB [1, 3]"),
    ("{% for a, b in [(1, 2)] %}{{ a }}{{ b }}{% endfor %}{% for x in [] %}{% else %}empty{% endfor %}", "12empty"),
    ("{% for i in range(3) %}{{ loop.index }}{{ loop.last }}{% endfor %}", "1False2False3True"),
    ("{% for c in ['a', 'b', 'c'] if c != 'b' %}{{ c }}{% endfor %}", "ac"),
    ("{% for x in [[1, [2]]] recursive %}{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}{% endif %}{% endfor %}", "12"),
    ("{{ ','.join(['a', 'b']) }} {{ 'x'.ljust(3, '.') }} {{ 'a-b'.split('-') }}", "a,b x.. ['a', 'b']"),
    ("{% set l = [] %}{{ l.append(1) }}{{ l }}{% filter upper %}hi{% endfilter %}{% set b %}blk{% endset %}{{ b }}", "None[1]HIblk"),
    ("{{ x[1:] }}{{ x[::-1] }}{{ [1, 2, 3][1:] }}", "iih[2, 3]"),
    ("{{ '%s!'|format(1) }} {{ 'ab'|list }} {{ [1, 2, 3, 4]|batch(2)|list }} {{ lipsum(1, html=false)[:3] }}", "1! ['a', 'b'] [[1, 2], [3, 4]] "),
    ("{{ 'x' * 1000000 }}", "x" * 1_000_000),
]


@pytest.mark.parametrize(("source", "expected"), LEGIT)
def test_ordinary_templates_render_as_before(source: str, expected: str) -> None:
    text = str(render_module(compile_template(source, "ok.jinja"), {"x": "hi"}))
    assert text.startswith(expected) if "lipsum" in source else text == expected


def test_expressions_keep_their_native_values() -> None:
    assert compile_expression("{{ [a, b] }}", "f")({"a": 1, "b": "x"}) == [1, "x"]
    assert compile_expression("a * 3", "f")({"a": 2}) == 6
    assert compile_expression("range(3)|list", "f")({}) == [0, 1, 2]


def test_bounded_range_acts_like_range() -> None:
    bounded = BoundedRange(1, 10, 2)
    assert list(bounded) == [1, 3, 5, 7, 9] and len(bounded) == 5 and bounded[1] == 3 and bounded[-1] == 9
    assert 5 in bounded and 4 not in bounded and bounded == range(1, 10, 2) and repr(bounded) == "range(1, 10, 2)"
    assert len(BoundedRange(100_000)) == 100_000
    with pytest.raises(templating.LimitExceeded, match="more than 100,000 steps"):
        BoundedRange(100_001)


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_TEMPLATE_SECONDS", "0.5")
    monkeypatch.setenv("HARNESS_TEMPLATE_MAX_CHARS", "10")
    assert current_limits() == templating.Limits(seconds=0.5, chars=10)
    with pytest.raises(templating.LimitExceeded, match="the output passed 10 characters"):
        render_module(compile_template("{{ 'x' * 5 }}{{ 'y' * 6 }}", "small.jinja"), {})
    monkeypatch.setenv("HARNESS_TEMPLATE_SECONDS", "soon")
    with pytest.raises(HarnessError, match="HARNESS_TEMPLATE_SECONDS='soon': expected a positive number"):
        current_limits()


def test_default_limits() -> None:
    assert templating.Limits() == templating.Limits(seconds=5.0, chars=1_000_000)


def test_output_limit_names_the_line_it_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_TEMPLATE_MAX_CHARS", "100")
    template = compile_template("a\n{% for i in range(10) %}\n{{ 'x' * 20 }}\n{% endfor %}", "lines.jinja")
    with pytest.raises(templating.LimitExceeded) as info:
        render_module(template, {})
    assert templating.explain(info.value, "lines.jinja", template).startswith("template error (line 3): the output passed 100 characters")


def test_text_size_of_a_huge_shared_value_is_cheap() -> None:
    huge = ["x" * 1000] * 10**7
    start = time.perf_counter()
    assert text_size(huge, 1_000_000) > 1_000_000
    assert time.perf_counter() - start < 1
    assert text_size("abc", 10) == 3


def test_percent_format_with_a_hostile_width_is_checked_in_linear_time() -> None:
    template = compile_template("{{ ('%' ~ '0' * 500000 ~ 'd') % 1 }}|{{ ('%' ~ '0' * 500000) % () }}", "zeros.jinja")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="incomplete format"):
        render_module(template, {})
    assert time.perf_counter() - start < 2


def test_read_template_text_names_the_byte_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.jinja"
    path.write_bytes(b"Q: {{ input }}\nA: caf" + b"\xe9\n")
    with pytest.raises(HarnessError) as info:
        templating.read_template_text(path)
    assert str(info.value) == f"{path}: the template is not UTF-8 text: byte 0xe9 at offset 21 (line 2); save it as UTF-8"
    with pytest.raises(HarnessError, match="cannot read the template"):
        templating.read_template_text(tmp_path / "missing.jinja")
