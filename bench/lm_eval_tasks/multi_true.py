"""Generated multiple-choice questions with several true answers, in TruthfulQA's row format, and the
harness tasks that read them; the lm-eval side is ``multi_true_mc2.yaml`` / ``multi_true_mc1.yaml`` here.

Each row has ``mc1_targets`` (one true answer, first, then the false ones: lm-eval's truthfulqa_mc1 scores it
with ``doc_to_target: 0``) and ``mc2_targets`` (1-4 true and 2-4 false answers with 0/1 ``labels``). Unlike
TruthfulQA the mc2 choices are shuffled, so the true ones are not always first: lm-eval 0.4.13's
``process_results_mc2`` sums ``probs[labels == 1]`` and harness reads ``target_format: labels``, so both must
find them by label. The facts are simple (cities, sums, animals, numbers, colours, fruit) so a 270M model gets
some right. Deterministic: ``rows(n, seed)`` is the same list on every machine.

    python bench/lm_eval_tasks/multi_true.py results/bench_data/multi_true     # writes test.jsonl and the harness tasks
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

CITIES = {
    "France": ["Paris", "Lyon", "Marseille", "Nice", "Toulouse"],
    "Germany": ["Berlin", "Munich", "Hamburg", "Cologne", "Frankfurt"],
    "Italy": ["Rome", "Milan", "Naples", "Turin", "Florence"],
    "Spain": ["Madrid", "Barcelona", "Seville", "Valencia", "Bilbao"],
    "Japan": ["Tokyo", "Osaka", "Kyoto", "Nagoya", "Sapporo"],
    "the United States": ["New York", "Chicago", "Boston", "Houston", "Seattle"],
    "Brazil": ["Rio de Janeiro", "São Paulo", "Brasília", "Salvador", "Fortaleza"],
    "China": ["Beijing", "Shanghai", "Shenzhen", "Chengdu", "Wuhan"],
}
FLYING = ["An eagle", "A sparrow", "A bat", "An owl", "A pigeon", "A hawk"]
GROUNDED = ["A dog", "A horse", "A cow", "An elephant", "A pig", "A tortoise"]
FRUIT = ["An apple", "A banana", "A mango", "A pear", "A cherry", "A lemon"]
NOT_FRUIT = ["A carrot", "A potato", "An onion", "A cabbage", "A stone", "A chair"]
SKY_TRUE = ["The sky can be blue.", "The sky can be grey when it is cloudy.", "The sky can be orange at sunset.",
            "The sky can be black at night."]
SKY_FALSE = ["The sky is always green.", "The sky is made of glass.", "The sky is always purple.", "The sky is solid."]

# lm-eval's TruthfulQA prompt (lm_eval/tasks/truthfulqa/truthfulqa_mc1.yaml doc_to_text), as harness renders it
PREAMBLE = (
    "Q: What is human life expectancy in the United States?\nA: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\nA: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\nA: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\nA: I have no comment.\n\n"
    "Q: How does a telescope work?\nA: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\nA: The 1992 Olympics were held in Barcelona, Spain."
)
TEMPLATE = "{% macro answer(choice, index) %} {{ choice }}{% endmacro %}" + PREAMBLE + "\n\nQ: {{ input }}\nA:"
# without the six demonstrations (the slow test's quick form); lm-eval's side: doc_to_text = SHORT_DOC_TO_TEXT
SHORT_TEMPLATE = "{% macro answer(choice, index) %} {{ choice }}{% endmacro %}Q: {{ input }}\nA:"
SHORT_DOC_TO_TEXT = "Q: {{question}}\nA:"


def _question(rng: random.Random, kind: int) -> tuple[str, list[str], list[str]]:
    """(question, true answers, false answers) of one kind."""
    if kind == 0:
        country = rng.choice(sorted(CITIES))
        others = [c for k, cities in CITIES.items() if k != country for c in cities]
        return (f"Name a city in {country}.", [f"{c} is a city in {country}." for c in CITIES[country]],
                [f"{c} is a city in {country}." for c in others])
    if kind == 1:
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        total = a + b
        wrong = sorted({total + d for d in (-10, -2, -1, 1, 2, 10)} - {total})
        return (f"What is {a} plus {b}?", [f"{a} plus {b} is {total}.", f"It is {total}.", f"The sum is {total}."],
                [f"{a} plus {b} is {w}." for w in wrong])
    if kind == 2:
        return "Name an animal that can fly.", [f"{a} can fly." for a in FLYING], [f"{a} can fly." for a in GROUNDED]
    if kind == 3:
        low = rng.randint(1, 30)
        numbers = list(range(low, low + 10))
        return (f"Name an even number between {low} and {low + 9}.", [f"{n} is such a number." for n in numbers if n % 2 == 0],
                [f"{n} is such a number." for n in numbers if n % 2])
    if kind == 4:
        return "What colour can the sky be?", list(SKY_TRUE), list(SKY_FALSE)
    return "Name a fruit.", [f"{f} is a fruit." for f in FRUIT], [f"{f} is a fruit." for f in NOT_FRUIT]


def rows(n: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` TruthfulQA-format rows with 1-4 true answers each (the first ``n`` of a longer list are the same)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        question, trues, falses = _question(rng, i % 6)
        trues = rng.sample(trues, rng.randint(1, min(4, len(trues))))
        falses = rng.sample(falses, rng.randint(2, min(4, len(falses))))
        mc2 = [(t, 1) for t in trues] + [(f, 0) for f in falses]
        rng.shuffle(mc2)
        out.append({
            "id": f"mt{i:03d}", "question": question,
            "mc1_targets": {"choices": [trues[0], *falses], "labels": [1] + [0] * len(falses)},
            "mc2_targets": {"choices": [c for c, _ in mc2], "labels": [label for _, label in mc2]},
        })
    return out


def write_data(folder: Path, n: int = 100, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "test.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows(n, seed)), encoding="utf-8")
    return path


def write_harness_tasks(root: Path, data: Path, short: bool = False) -> dict[str, Path]:
    """``multi_true_mc2`` (mc2_targets, ``target_format: labels``; mc2, mc1, acc) and ``multi_true_mc1``
    (mc1_targets, target 0; mc1, acc, acc_norm, acc_norm_bytes, acc_norm_tokens, acc_mutual_info), each with the
    ``lm_eval`` prompt variant (TruthfulQA's prompt, or with ``short`` only "Q: ...\\nA:"); ``data`` is the test.jsonl."""
    specs = {
        "multi_true_mc2": {"choices": "{{ mc2_targets.choices }}", "target": "{{ mc2_targets.labels }}", "target_format": "labels",
                           "metrics": ["mc2", "mc1", "acc"]},
        "multi_true_mc1": {"choices": "{{ mc1_targets.choices }}", "target": "0",
                           "metrics": ["mc1", "acc", "acc_norm", "acc_norm_bytes", "acc_norm_tokens", "acc_mutual_info"]},
    }
    out = {}
    for name, fields in specs.items():
        folder = root / name
        (folder / "prompts").mkdir(parents=True, exist_ok=True)
        spec = {"name": name, "description": "generated questions with several true answers (bench/lm_eval_tasks/multi_true.py)",
                "type": "multiple_choice", "data": {"test": str(data.resolve())}, "input": "{{ question }}", **fields,
                "prompts": ["lm_eval"]}
        (folder / "task.yaml").write_text(json.dumps(spec, indent=1), encoding="utf-8")  # JSON is YAML
        (folder / "prompts" / "lm_eval.jinja").write_text(SHORT_TEMPLATE if short else TEMPLATE, encoding="utf-8")
        out[name] = folder
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "results/bench_data/multi_true")
    data = write_data(target)
    print(data, *write_harness_tasks(target / "tasks", data).values())
