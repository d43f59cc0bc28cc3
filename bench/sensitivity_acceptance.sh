#!/usr/bin/env bash
# Issue 7 acceptance: on the embedded model with SST-2 and AG News, random vs knn vs balanced
# at 4 shots over 5 draws, with and without contextual calibration, and 8 format
# perturbations; then ONE sensitivity report (terminal + HTML + JSON) with each factor's
# spread with CIs and the paired tests between selectors.
#
#   bash bench/sensitivity_acceptance.sh --limit 100                 # the lead's run
#   bash bench/sensitivity_acceptance.sh --limit 3 --content-free N/A # a quick end-to-end check
#
# Every step is resumable: run the same command again after an interruption (runs resume,
# calibration and formats are answered from the response cache).
set -euo pipefail

LIMIT=100
DB=results/sensitivity_acceptance.db
OUT=results/sensitivity_acceptance
DATA=../shared/data
MODEL=""          # empty: the embedded Gemma 3 270M; e.g. scripted:x to check the plumbing only
DRAWS=5
FORMATS=8
CONTENT_FREE=("N/A" "" "[MASK]")
usage() { sed -n '2,10p' "$0"; echo "options: --limit N --db FILE --out DIR --data-dir DIR --model SPEC --draws N --formats K --content-free TEXT..."; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --limit) LIMIT="$2"; shift 2 ;;
    --db) DB="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --data-dir) DATA="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --draws) DRAWS="$2"; shift 2 ;;
    --formats) FORMATS="$2"; shift 2 ;;
    --content-free) shift; CONTENT_FREE=(); while [[ $# -gt 0 && "$1" != --* ]]; do CONTENT_FREE+=("$1"); shift; done ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
[[ -d .venv ]] && . .venv/bin/activate
mkdir -p "$OUT"
MODEL_ARGS=(--model); [[ -n "$MODEL" ]] && MODEL_ARGS=(--model "$MODEL")
run_id() { python -c 'import json,sys; print(json.load(sys.stdin)["run_id"])'; }
RUNS=()
START=$(date +%s)

for pair in "sst2:lm_eval" "ag_news:article"; do
  TASK=${pair%%:*}; PROMPT=${pair#*:}
  echo "== $TASK ($PROMPT): selectors x $DRAWS draws, $LIMIT items"
  RUN=$(harness run --task "$TASK" --prompt "$PROMPT" --shots 4 --selector random knn balanced --draws "$DRAWS" \
        --limit "$LIMIT" --data-dir "$DATA" --db "$DB" "${MODEL_ARGS[@]}" --quiet --json | run_id)
  harness calibrate "$RUN" --db "$DB" --content-free "${CONTENT_FREE[@]}" --json > "$OUT/${TASK}_selectors_calibration.json"
  RUNS+=("$RUN")

  echo "== $TASK ($PROMPT): $FORMATS format perturbations (random selector)"
  harness formats "$TASK" --prompt "$PROMPT" -k "$FORMATS" --seed 0 -o "$OUT/formats" --data-dir "$DATA" > "$OUT/${TASK}_formats.txt"
  VARIANTS=(); for ((i = 0; i < FORMATS; i++)); do VARIANTS+=("${PROMPT}__fmt$i"); done
  RUN=$(harness run --task "$TASK" --prompts-dir "$OUT/formats" --prompt "${VARIANTS[@]}" --shots 4 --selector random \
        --limit "$LIMIT" --data-dir "$DATA" --db "$DB" "${MODEL_ARGS[@]}" --quiet --json | run_id)
  harness calibrate "$RUN" --db "$DB" --content-free "${CONTENT_FREE[@]}" --json > "$OUT/${TASK}_formats_calibration.json"
  RUNS+=("$RUN")
done

echo "== one sensitivity report over runs ${RUNS[*]}"
harness sensitivity "${RUNS[@]}" --db "$DB" --json > "$OUT/sensitivity.json"
harness sensitivity "${RUNS[@]}" --db "$DB" --html "$OUT/sensitivity.html" | tee "$OUT/sensitivity.txt"
echo "done in $(( $(date +%s) - START )) s: $OUT/sensitivity.html, $OUT/sensitivity.txt, $OUT/sensitivity.json (db $DB)"
