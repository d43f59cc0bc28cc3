"""Where harness finds files of its own: the cache outside the project, and the bundled tasks,
prompts and metric cases inside it.

The repository keeps the bundled data at its top level (``tasks/``, ``prompts/``,
``tests/cases/``), where users and docs refer to it; a wheel carries the same folders inside
the package as ``harness/bundled/<name>`` (copied there by ``setup.py`` at build time, from
``BUNDLED`` below). Lookup goes through ``importlib.resources``: the packaged copy when there is
one (an installed wheel), else the source checkout the package was imported from (an editable
install or ``PYTHONPATH``). This module imports only the standard library: ``setup.py`` reads
``BUNDLED`` from it without importing harness.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

BUNDLED_PACKAGE_DIR = "bundled"
# name inside the wheel's harness/bundled/ -> the folder in the repository it is copied from
BUNDLED: dict[str, str] = {"tasks": "tasks", "prompts": "prompts", "cases": "tests/cases"}


def cache_dir() -> Path:
    """Where harness keeps converted models: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "harness"


def bundled_dir(name: str) -> Path:
    """The bundled folder ``name`` (a key of ``BUNDLED``): harness/bundled/<name> in an installed
    wheel, else the checkout's own top-level folder. The path may not exist (a checkout without it)."""
    package = Path(str(resources.files("harness")))  # an on-disk package: a wheel installs unpacked
    packaged = package / BUNDLED_PACKAGE_DIR / name
    return packaged if packaged.is_dir() else package.parent / BUNDLED[name]


def bundled_tasks_dir() -> Path:
    """The bundled task folders, ``<dir>/<task>/task.yaml``: searched last by task name."""
    return bundled_dir("tasks")


def bundled_prompts_dir() -> Path:
    """The bundled tasks' prompt variants, ``<dir>/<task>/*.jinja``."""
    return bundled_dir("prompts")


def bundled_prompts(task_folder: Path) -> Path | None:
    """``prompts/<task>/`` of a bundled task folder ``tasks/<task>/``: its own variants, searched
    right after the folder itself (as when they lived in it); None for any other folder."""
    tasks = bundled_tasks_dir()
    if not tasks.is_dir() or task_folder.resolve().parent != tasks.resolve():
        return None
    return bundled_prompts_dir() / task_folder.name


def metric_cases_dir() -> Path:
    """The hand-computed metric and statistics cases (``<name>.json``; tests/cases in the repository)."""
    return bundled_dir("cases")


def metric_cases() -> dict[str, Path]:
    """Case file name without ``.json`` -> path, e.g. ``metric_cases()["choice_metrics"]``."""
    return {path.stem: path for path in sorted(metric_cases_dir().glob("*.json"))}
