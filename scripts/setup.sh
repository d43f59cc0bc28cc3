#!/usr/bin/env bash
# Create .venv (if needed) and install harness with everything the demo and the tests use.
# torch is installed first and pinned: an unpinned torch would pull several GB of CUDA
# packages here. On a GPU machine `pip install torch==2.13.0` gets the CUDA build from PyPI.
# What pip and apt print (download bars, the setuptools editable-install banner) goes to
# .venv/setup.log; a step that fails prints the end of that log. With an unchanged
# pyproject.toml and Python a second run skips pip (HARNESS_SETUP_FORCE=1 reinstalls).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
LOG=.venv/setup.log
: >"$LOG"

step() {  # step DESCRIPTION COMMAND...: the command's output goes to $LOG, shown only when it fails
  local what=$1
  shift
  echo "setup: $what"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "setup: failed: $what (the end of $LOG follows)" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
}

STAMP=.venv/.harness-setup
WANT="$(python -c 'import hashlib, sys; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest(), sys.version.split()[0])')"
if [ -z "${HARNESS_SETUP_FORCE:-}" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && python -c "import harness, torch, vl_convert" 2>/dev/null; then
  echo "setup: .venv is up to date (pyproject.toml unchanged since the last set-up)"
else
  rm -f "$STAMP"
  step "upgrading pip" python -m pip install -q --upgrade pip
  python -c "import torch" 2>/dev/null || step "installing torch 2.13.0 (CPU build here, a few hundred MB)" python -m pip install -q "torch==2.13.0"
  step "installing harness and its extras (hf, openai, test, metrics, fewshot, data, view)" \
    python -m pip install -q -e ".[hf,openai,test,metrics,fewshot,data,view]"
  echo "$WANT" >"$STAMP"
fi
# Headless Chromium (Debian's package): the HTML-report test renders the report in a real browser.
if ! command -v chromium >/dev/null; then
  step "installing chromium (Debian package, for the HTML-report test)" \
    bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'
fi
echo "setup: done (pip's output is in $LOG)"
