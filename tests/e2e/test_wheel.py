"""A wheel built from the repository, installed non-editable into a fresh venv, lists and runs the
bundled ``capitals`` from an unrelated directory (the wheel once shipped only ``harness/``, and
``harness tasks`` was empty). Slow: the fresh venv installs harness's dependencies from PyPI."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
# what a build must not see: local environments, build leftovers (a stale build/lib would be packaged), results
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", "results")


def _run(args: list[str | Path], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """A subprocess that cannot import the repository's harness: no PYTHONPATH, cwd outside the repo."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"} and not k.startswith("HARNESS_")}
    done = subprocess.run([str(a) for a in args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def _source_copy(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    return source


def _build_wheel(source: Path, out: Path) -> Path:
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []  # offline when setuptools is here
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", out, source], cwd=out.parent)
    (wheel,) = out.glob("harness-*.whl")
    return wheel


def _bundled_names(names: list[str], prefix: str) -> set[str]:
    return {n.removeprefix(prefix) for n in names if n.startswith(prefix)}


def test_wheel_installed_elsewhere_lists_and_runs_capitals(tmp_path: Path) -> None:
    wheel = _build_wheel(_source_copy(tmp_path), tmp_path / "wheels")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"tasks/capitals/task.yaml", "tasks/capitals/test.jsonl", "cases/choice_metrics.json"} <= _bundled_names(names, "harness/bundled/")
    assert _bundled_names(names, "harness/bundled/prompts/capitals/") == {"instruct_statement.jinja", "qa_lettered.jinja", "qa_plain.jinja"}
    assert not any(n.startswith(("tasks/", "prompts/", "tests/")) for n in names)  # inside the package, not top-level
    assert {"vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "LICENSE-vega", "LICENSE-vega-lite", "LICENSE-vega-embed",
            "README.md"} <= _bundled_names(names, "harness/view/static/vendor/")  # harness view's plots, offline
    assert {"harness/view/static/plots.js", "harness/view/static/view.css"} <= set(names)

    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", venv], cwd=tmp_path)
    python, harness = venv / "bin" / "python", venv / "bin" / "harness"
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", "--timeout", "120", wheel], cwd=tmp_path, timeout=1800)

    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = "import harness, harness.core.paths as p; print(harness.__file__); print(p.bundled_tasks_dir()); print(sorted(p.metric_cases()))"
    where = _run([python, "-c", probe], cwd=work).stdout.splitlines()
    assert Path(where[0]).resolve().is_relative_to(venv.resolve()) and Path(where[1]).resolve().is_relative_to(venv.resolve())
    assert "choice_metrics" in where[2] and "stats" in where[2]

    rows = {r["name"]: r for r in json.loads(_run([harness, "tasks", "--json"], cwd=work).stdout)}
    assert rows["capitals"]["type"] == "multiple_choice" and rows["capitals"]["rows"] == 171
    assert rows["capitals"]["prompts"] == ["instruct_statement", "qa_lettered", "qa_plain"]

    db = work / "out" / "results.db"
    out = json.loads(_run([harness, "run", "--task", "capitals", "--model", "scripted:m", "--limit", "5", "--db", db, "--quiet", "--json"],
                          cwd=work).stdout)
    assert out["items_written"] > 0
    with sqlite3.connect(db) as con:
        (stored,) = con.execute("SELECT COUNT(*) FROM items WHERE run_id = ?", (out["run_id"],)).fetchone()
    assert stored == out["items_written"]


def test_sdist_carries_the_bundled_folders(tmp_path: Path) -> None:
    """``python -m build`` makes the wheel from the sdist: the folders setup.py copies must be in it (MANIFEST.in)."""
    source = _source_copy(tmp_path)
    if not importlib.util.find_spec("setuptools"):
        pytest.skip("setuptools is not installed here")
    out = tmp_path / "sdist"
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"], cwd=source)
    (sdist,) = out.glob("harness-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    assert {"setup.py", "tasks/capitals/task.yaml", "prompts/capitals/qa_plain.jinja", "tests/cases/stats.json"} <= set(names)
