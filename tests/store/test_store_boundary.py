"""SQL and the store's JSON columns stay inside harness/store/: every other module reads typed records.

A reader that ran its own query or decoded ``scores_json`` itself would tie the schema to code
outside the store again (the migration of a column would have to find it). The one exception is
harness/core/fingerprint.py: its own small database memoises file hashes (the model-identity
fingerprints), it is not the results store and holds nothing the store's readers see.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "harness"
ALLOWED = {PACKAGE / "core" / "fingerprint.py"}  # the file-hash memo database, not the results store
SQL_CALLS = {"execute", "executemany", "executescript"}
SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA)\s", re.ASCII)


def _problems(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlite3" for a in node.names):
            found.append(f"{where}: import sqlite3")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
            found.append(f"{where}: from sqlite3 import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            found.append(f"{where}: .{node.func.attr}(...)")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str) \
                and node.slice.value.endswith("_json"):
            found.append(f"{where}: [{node.slice.value!r}] (a JSON column)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.match(node.value):
            found.append(f"{where}: SQL text {node.value.strip()[:40]!r}")
    return found


def test_no_module_outside_the_store_runs_sql_or_decodes_its_columns() -> None:
    modules = [p for p in sorted(PACKAGE.rglob("*.py")) if (PACKAGE / "store") not in p.parents and p not in ALLOWED]
    assert len(modules) > 50  # the scan sees the package
    problems = [line for path in modules for line in _problems(path)]
    assert problems == [], "SQL or JSON-column decoding outside harness/store/ (add a typed Store method):\n" + "\n".join(problems)


def test_the_scan_catches_what_it_is_for(tmp_path: Path) -> None:
    sample = tmp_path / "harness_like.py"
    sample.write_text(
        "import sqlite3\n"
        "def f(store, row):\n"
        "    store.db.execute('SELECT id FROM runs')\n"
        "    return row['scores_json']\n",
        encoding="utf-8",
    )
    problems = _problems(sample, tmp_path)
    assert len(problems) == 4, problems
