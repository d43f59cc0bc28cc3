#!/usr/bin/env bash
# Set up, then compare the bundled prompt variants of `capitals` at 0 and 3 shots on the embedded
# Gemma 3 270M, on a seeded sample of 30 of its 171 items spread evenly over the answer positions:
# 180 items, about a minute of model time on 2 CPU cores. It is enough for a clear verdict: the
# lettered variant (answer with A-D) is ~60 points worse than the best at adjusted p < 0.01, while
# the two variants that name the city stay in the "may be best" set. Extra arguments go to
# `harness run` (--verbose shows the model libraries' own output; --sample 171 is every item).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# converts the embedded model on first use (says so, one time), so the estimate below is the scoring alone
python -c "from harness.backends.hf.embedded import embedded_model_path; embedded_model_path()"
cat <<'EOF'

demo: 3 prompt variants of the task `capitals` (qa_plain, qa_lettered, instruct_statement)
      x 0 and 3 shots (random demonstrations) on the embedded Gemma 3 270M,
      30 items per cell (a seeded sample, even over answer positions): 180 items, 720 model calls.
      About a minute on 2 CPU cores (more while the machine is busy); progress with time left below.

EOF
harness run --task capitals --shots 0 3 --selector random --sample 30 --stratify answer "$@"
cat <<'EOF'

Next: `harness compare` shows this table again; `harness show` lists the stored runs; the whole task
(171 items per cell, a few minutes) is `harness run --task capitals --shots 0 3 --selector random`.
EOF
