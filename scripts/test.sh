#!/usr/bin/env bash
# Set up, then run the whole test suite (fast and slow tests). For a quick loop: pytest -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# the API backend's tests run a real llama.cpp server (pyproject extra "server"; compiled once)
python -c "import llama_cpp.server" 2>/dev/null || CMAKE_ARGS="-DLLAVA_BUILD=OFF" python -m pip install -q "llama-cpp-python[server]==0.3.36"
# the vllm: backend's tests (and `vllm serve`) use vLLM's CPU build in its own venv, .venv-vllm (prints its cost)
bash scripts/vllm_venv.sh
# the slow agreement tests run lm-evaluation-harness itself on the embedded model (pyproject extra "bench")
python -c "import lm_eval" 2>/dev/null || python -m pip install -q "lm-eval==0.4.13"
# harness export --format mlflow / wandb are read back with MLflow's client and W&B's protobuf records (extras "mlflow", "wandb")
python -c "import mlflow, wandb" 2>/dev/null || python -m pip install -q "mlflow-skinny>=2.10" "wandb>=0.19"
# the viewer's browser tests drive Debian's chromium (scripts/setup.sh installs it) through playwright; no browser is downloaded
python -c "import playwright.sync_api" 2>/dev/null || python -m pip install -q "playwright==1.65.2"
# the house rules: layers in flow order (import-linter), types (mypy --strict on harness/), lint (ruff)
(python -c "import importlinter, mypy, ruff" && python -m pip show -q types-PyYAML) >/dev/null 2>&1 || python -m pip install -q -e ".[lint]"
lint-imports
mypy
ruff check harness tests bench
# the viewer's tests (real uvicorn + headless Chromium) run in a process of their own: after the rest of the suite in
# one process, tests/view/test_ab_tuned.py failed and the process lost its stdout/stderr (cause not found yet; alone,
# or after tests/tune, they pass)
if [ $# -eq 0 ]; then
    python -m pytest -q --durations=20 --ignore=tests/view
    python -m pytest -q --durations=10 tests/view
else
    python -m pytest -q --durations=20 "$@"
fi
