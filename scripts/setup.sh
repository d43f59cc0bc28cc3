#!/usr/bin/env bash
# Create .venv (if needed) and install harness with everything the demo and the tests use.
# torch is installed first and pinned: an unpinned torch would pull several GB of CUDA
# packages here. On a GPU machine `pip install torch==2.13.0` gets the CUDA build from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[hf,openai,test,metrics,fewshot,data]"
# Headless Chromium (Debian's package): the HTML-report test renders the report in a real browser.
command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
