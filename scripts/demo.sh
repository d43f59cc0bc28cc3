#!/usr/bin/env bash
# Set up, then compare the bundled prompt variants of `capitals` on the embedded Gemma 3 270M.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
harness run --task capitals --shots 0 3 --selector random "$@"
