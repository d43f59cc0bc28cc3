#!/usr/bin/env bash
# Issue 21 item 2 acceptance, part 1 (model runs): ARC-Easy, HellaSwag and MMLU on the embedded model, each under
# 12 prompt variants (format perturbations of two prompts: `harness formats`), 0-shot, every item of a seeded sample,
# one run per task, one at a time. Part 2 (no model): python bench/anchors_acceptance.py fits anchors on 8 of the
# variants and measures the anchor estimate against the full run on the 4 held-out ones.
#
#   bash bench/anchors_acceptance.sh                 # ARC-Easy 250 items, HellaSwag 80, MMLU 2 per subject (114)
#   bash bench/anchors_acceptance.sh hellaswag mmlu  # only these tasks
#
# Resumable: run it again after an interruption. Waits while another `harness run` is running (a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d .venv ]] && . .venv/bin/activate
OUT=results/anchors_acceptance
DB=$OUT/runs.db
DATA=../shared/data
mkdir -p "$OUT/formats" "$OUT/base/hellaswag"
# HellaSwag's shipped prompts have no field names or lettered choices for `harness formats` to perturb: two that do
cat >"$OUT/base/hellaswag/fields.jinja" <<'JINJA'
{# the context under a field name, the ending scored as text #}
{% macro answer(choice, index) %} {{ choice }}{% endmacro %}
{% for s in shots %}
Context: {{ s.input }}
Ending:{{ s.answer }}

{% endfor %}
Context: {{ input }}
Ending:
JINJA
cat >"$OUT/base/hellaswag/lettered.jinja" <<'JINJA'
{# the endings listed with letters, the letter scored #}
{% macro answer(choice, index) %} {{ letters[index] }}{% endmacro %}
{% for s in shots %}
Context: {{ s.input }}
{% for c in s.choices %}
{{ letters[loop.index0] }}. {{ c }}
{% endfor %}
Answer:{{ s.answer }}

{% endfor %}
Context: {{ input }}
{% for c in choices %}
{{ letters[loop.index0] }}. {{ c }}
{% endfor %}
Answer:
JINJA
wait_free() { while pgrep -f "harness run" >/dev/null; do echo "waiting: another harness run is running"; sleep 30; done; }
variants() {  # task, prompt, k -> the variant names
  harness formats "$1" --prompt "$2" -k "$3" -o "$OUT/formats" --data-dir "$DATA" --prompts-dir "$OUT/base" >/dev/null || exit 1
  for ((i = 0; i < $3; i++)); do printf '%s__fmt%d ' "$2" "$i"; done
}
run_task() {  # task, sample, prompt A, prompt B
  local a b
  a=$(variants "$1" "$3" 8)
  b=$(variants "$1" "$4" 4)
  wait_free
  # shellcheck disable=SC2086
  harness run --task "$1" --data-dir "$DATA" --prompts-dir "$OUT/formats" --prompt $a $b --shots 0 --sample "$2" --db "$DB" --quiet
  echo "$1 done: $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
}
echo "start: $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
tasks=("$@")
[[ ${#tasks[@]} -eq 0 ]] && tasks=(arc_easy hellaswag mmlu)
for task in "${tasks[@]}"; do
  case "$task" in
    arc_easy) run_task arc_easy 250 lm_eval lettered ;;
    hellaswag) run_task hellaswag 80 fields lettered ;;
    mmlu) run_task mmlu 2 lm_eval cloze ;;
    *) echo "unknown task: $task (arc_easy, hellaswag, mmlu)" >&2; exit 2 ;;
  esac
done
