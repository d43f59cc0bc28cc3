"""Third-party plugins through entry points (issue item 3), and the one registry behind them.

A backend and a metric, each in its own tiny package installed for real with pip, work from
``harness run`` and ``harness compare`` without any change to harness; a selector comes from a
dist-info written on sys.path; broken and clashing plugins are refused with their entry point and
distribution named, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from harness.backends import BACKENDS
from harness.cli.app import HELP_ORDER, build_parser
from harness.cli.verbs import VERBS
from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.fewshot.selectors import SELECTORS
from harness.scoring import FILTERS, METRICS, get_metric
from tests.helpers import cli as run_cli
from tests.helpers import write_task

ROOT = Path(__file__).resolve().parents[2]
REGISTRIES: tuple[Registry[object], ...] = (BACKENDS, METRICS, SELECTORS, FILTERS)  # type: ignore[assignment]

ECHO_BACKEND = '''
"""A harness backend that answers every prompt with the prompt itself, so answers differ per request."""
from harness.backends import Backend
from harness.prompts.messages import prompt_text
from harness.requests import GenerateResult


class EchoBackend(Backend):
    supports_loglikelihood = False

    def loglikelihood(self, requests):
        raise NotImplementedError("echo only generates")

    def generate(self, requests):
        return [GenerateResult(text="echo:" + prompt_text(r.prompt), n_tokens=1) for r in requests]
'''

ECHO_METRIC = '''
"""A harness metric: the length of the extracted answer in characters."""
from harness.scoring import Metric


def _chars(outcome):
    return float(len(outcome.extracted or ""))


answer_chars = Metric("answer_chars", "characters in the extracted answer", True, "continuous", ("generate",), _chars)
'''


def _stored(db: Path, query: str, *params: str) -> list[dict[str, Any]]:
    """Rows of the results file as plain dicts (the columns, not the store's record types)."""
    with closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        return [dict(row) for row in con.execute(query, params)]


def cli(*args: object) -> int:
    return run_cli(*map(str, args))


QUESTIONS = ["a", "bb", "ccc", "dddd", "e f", "ggggggg", "hi", "jjjjjjjjjj"]


def _package(root: Path, dist: str, module: str, source: str, group: str, entry: str) -> Path:
    """A one-module setuptools project declaring one entry point."""
    folder = root / dist
    folder.mkdir(parents=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.1.0"

        [project.entry-points."{group}"]
        {entry}

        [tool.setuptools]
        py-modules = ["{module}"]
        """))
    return folder


def _echo_task(root: Path) -> Path:
    folder = root / "tasks" / "echo_task"
    (folder / "prompts").mkdir(parents=True)
    (folder / "task.yaml").write_text(json.dumps({
        "name": "echo_task", "type": "generate", "data": {"test": "test.jsonl"}, "input": "{{ q }}", "target": "{{ a }}",
        "prompts": ["short", "long"], "metrics": ["answer_chars", "exact_match"],
    }))
    (folder / "test.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "q": q, "a": q}) + "\n" for i, q in enumerate(QUESTIONS)))
    (folder / "prompts" / "short.jinja").write_text("{{ q }}")
    (folder / "prompts" / "long.jinja").write_text("{{ q }} {{ q }}")
    return folder


# -- entry points on sys.path: pip-installed packages, or a dist-info written by the test ----------
class Site:
    """A folder on sys.path holding fake installed distributions (dist-info + module)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(self, dist: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str] | None = None) -> None:
        info = self.root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("".join(
            f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()) for group, points in entry_points.items()))
        for module, source in (modules or {}).items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
            self.modules.append(module)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """Write distributions with ``site.add(...)``; the registries read them on their next lookup."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    fake = Site(folder)
    for registry in REGISTRIES:
        registry.reset_plugins()
    yield fake
    for registry in REGISTRIES:
        registry.reset_plugins()
    for module in fake.modules:
        sys.modules.pop(module, None)


def test_pip_installed_backend_and_metric_work_from_run_and_compare(site: Site, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`harness run` in a fresh process finds both plugins by their entry points; `harness compare` (in this
    process, with the same installed folder on sys.path) ranks by the plugin metric."""
    backend = _package(tmp_path / "src", "harness-echo-backend", "harness_echo_backend", ECHO_BACKEND, "harness.backends",
                       "echo = \"harness_echo_backend:EchoBackend\"")
    metric = _package(tmp_path / "src", "harness-echo-metric", "harness_echo_metric", ECHO_METRIC, "harness.metrics",
                      "answer_chars = \"harness_echo_metric:answer_chars\"")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                    "--target", str(site.root), str(backend), str(metric)], check=True, capture_output=True, cwd=tmp_path)
    site.modules += ["harness_echo_backend", "harness_echo_metric"]
    assert list(site.root.glob("harness_echo_backend-*.dist-info")) and list(site.root.glob("harness_echo_metric-*.dist-info"))

    task = _echo_task(tmp_path)
    db = tmp_path / "h.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site.root)])

    command = ["run", "--tasks-dir", str(task.parent), "--task", "echo_task", "--model", "echo:x", "--db", str(db), "--quiet", "--json"]
    run = subprocess.run([sys.executable, "-m", "harness.cli", *command], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    run_id = json.loads(run.stdout)["run_id"]

    rows = _stored(db, "SELECT cell_id, item_id, extracted, scores_json FROM items WHERE run_id = ?", run_id)
    cells = {c["cell_id"]: c["prompt"] for c in _stored(db, "SELECT cell_id, prompt, model FROM cells WHERE run_id = ?", run_id)}
    assert len(rows) == 16 and {c["model"] for c in _stored(db, "SELECT model FROM cells WHERE run_id = ?", run_id)} == {"echo:x"}
    for row in rows:
        q = QUESTIONS[int(row["item_id"][1:])]
        prompt = q if cells[row["cell_id"]] == "short" else f"{q} {q}"
        assert row["extracted"] == f"echo:{prompt}"  # the plugin backend's answer, one per request
        assert json.loads(row["scores_json"])["answer_chars"] == len("echo:") + len(prompt)  # the plugin metric's score
    assert len({r["extracted"] for r in rows}) == 16

    assert "harness_echo_metric" not in sys.modules
    assert cli("compare", run_id, "--db", db, "--metric", "answer_chars", "--json") == 0
    ranked = sorted(json.loads(capsys.readouterr().out), key=lambda r: r["rank"])
    assert [r["prompt"] for r in ranked] == ["long", "short"] and {r["metric"] for r in ranked} == {"answer_chars"}
    assert ranked[1]["diff_vs_best"] == pytest.approx(-sum(len(q) + 1 for q in QUESTIONS) / len(QUESTIONS))
    assert "harness_echo_metric" in sys.modules and "harness_echo_backend" not in sys.modules  # compare needs no backend


LAST_K = '''
from harness.fewshot.selectors import Selector


class LastK(Selector):
    """The last k usable pool rows."""

    def choose(self, item, candidates, k, rng):
        return candidates[-k:]
'''


def test_plugin_selector_from_an_entry_point(site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site.add("harness-last-k", {"harness.selectors": {"last_k": "harness_last_k:LastK"}}, {"harness_last_k": LAST_K})
    write_task(tmp_path / "tasks", rows=4, fewshot_rows=6)
    db = tmp_path / "h.db"
    assert "last_k" in SELECTORS.names() and "harness_last_k" not in sys.modules  # listed without importing it
    assert cli("run", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--shots", "2", "--selector", "last_k", "--model", "scripted:m",
               "--db", db, "--quiet", "--json") == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    rows = _stored(db, "SELECT demo_ids_json FROM items WHERE run_id = ?", run_id)
    assert len(rows) == 4 and all(json.loads(r["demo_ids_json"]) == ["f4", "f5"] for r in rows)

    assert cli("run", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--shots", "2", "--selector", "last_kk",
               "--model", "scripted:m", "--db", db, "--quiet") == 2
    assert "unknown selector 'last_kk'. Did you mean 'last_k'?" in capsys.readouterr().err


def test_broken_plugins_name_their_entry_point_and_distribution(site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site.add("harness-broken", {"harness.backends": {"broken": "harness_broken:Backend", "notabackend": "harness_broken_ok:VALUE"},
                                "harness.metrics": {"misnamed": "harness_broken_ok:METRIC"}},
             {"harness_broken": "raise ImportError('needs libfoo')\n",
              "harness_broken_ok": "from harness.scoring import METRICS\nVALUE = 3\nMETRIC = METRICS.get('acc')\n"})
    write_task(tmp_path / "tasks", rows=3)
    assert cli("tasks", "--tasks-dir", tmp_path / "tasks", "--json") == 0  # a broken plugin fails only where it is used
    capsys.readouterr()

    args = ["run", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--db", tmp_path / "h.db", "--quiet"]
    assert cli(*args, "--model", "broken:x") == 2
    err = capsys.readouterr().err
    assert "backend plugin 'broken' failed to load" in err and "entry point 'broken = harness_broken:Backend'" in err
    assert "distribution 'harness-broken 0.1'" in err and "ImportError: needs libfoo" in err and "Traceback" not in err

    assert cli(*args, "--model", "notabackend:x") == 2
    err = capsys.readouterr().err
    assert "backend plugin 'notabackend' is not a usable backend" in err and "harness-broken 0.1" in err
    assert "expected a subclass of harness.backends.Backend, got 3" in err

    with pytest.raises(HarnessError, match=r"metric plugin 'misnamed' is not a usable metric.*named 'acc', not 'misnamed'"):
        get_metric("misnamed")


def test_plugin_names_may_not_replace_built_ins(site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site.add("harness-clash", {"harness.metrics": {"acc": "harness_clash:ACC", "maj@3": "harness_clash:ACC"},
                               "harness.backends": {"scripted": "harness_clash:Other"}}, {"harness_clash": "ACC = Other = None\n"})
    site.add("harness-twin-a", {"harness.filters": {"twin": "harness_twin_a:make"}})
    site.add("harness-twin-b", {"harness.filters": {"twin": "harness_twin_b:make"}})
    write_task(tmp_path / "tasks", rows=3)
    assert cli("run", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--model", "scripted:m", "--db", tmp_path / "h.db", "--quiet") == 2
    err = capsys.readouterr().err
    assert "is built into harness" in err and "distribution 'harness-clash 0.1'" in err and "give the entry point another name" in err
    for registry, name in ((METRICS, "acc"), (METRICS, "maj@3"), (BACKENDS, "scripted")):
        with pytest.raises(HarnessError, match=f"{registry.kind} '{name}' is built into harness; the plugin entry point '{name} = "):
            registry.get(name)
    with pytest.raises(HarnessError, match=r"filter 'twin' is provided by 2 plugins: .*harness-twin-a 0\.1.*harness-twin-b 0\.1"):
        FILTERS.get("twin")
    assert "harness_clash" not in sys.modules  # refused before importing anything


# -- the registry itself -------------------------------------------------------------------------
def test_family_lookups_register_nothing() -> None:
    before = METRICS.names()
    member = get_metric("maj@7")
    assert member is get_metric("maj@7") and member.name == "maj@7"  # built once, cached
    assert "maj@7" in METRICS and "maj@0" not in METRICS and METRICS.names() == before == sorted(before)
    with pytest.raises(HarnessError, match="unknown metric 'acc_nrom'. Did you mean 'acc_norm'?"):
        get_metric("acc_nrom")


def test_references_import_on_first_lookup_only() -> None:
    registry: Registry[object] = Registry("thing")
    registry.add_reference("decoder", "json:JSONDecoder")
    registry.add_reference("missing", "json:NoSuchThing")
    assert registry.names() == ["decoder", "missing"] and "decoder" in registry
    assert registry.get("decoder") is json.JSONDecoder
    with pytest.raises(AttributeError):
        registry.get("missing")  # a broken built-in is a bug: it is not dressed up as a user error
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("decoder", object())


def test_every_verb_is_registered_once_and_in_the_parser() -> None:
    (subparsers,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(subparsers.choices) == list(HELP_ORDER)
    assert VERBS.names() == sorted(HELP_ORDER)
    for verb in VERBS.values():
        options = {o for a in subparsers.choices[verb.name]._actions for o in a.option_strings}
        assert ("--db" in options) == ("db" in verb.shared or verb.name == "report")
        assert ("--tasks-dir" in options) == ("dirs" in verb.shared)
