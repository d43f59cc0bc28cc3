"""Small builders shared by tests: write a task folder, run the CLI in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness.cli.app import main

MC_TEMPLATE = """{% macro answer(choice, index) %} {{ choice }}{% endmacro %}
{% for s in shots %}
Q: {{ s.input }}
A:{{ s.answer }}

{% endfor %}
Q: {{ input }}
A:"""


def write_task(root: Path, name: str = "toy", rows: int = 12, spec: dict[str, Any] | None = None,
               templates: dict[str, str] | None = None, fewshot_rows: int = 8) -> Path:
    """A small multiple-choice task folder; ``spec`` entries override task.yaml fields."""
    folder = root / name
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "name": name, "type": "multiple_choice", "data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl"},
        "input": "{{ question }}", "choices": "{{ options }}", "target": "{{ answer }}",
        "prompts": ["plain"], "metrics": ["acc", "acc_norm"],
    }
    base.update(spec or {})
    (folder / "task.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    for split, count, prefix in (("test", rows, "t"), ("fewshot", fewshot_rows, "f")):
        lines = [
            json.dumps({"id": f"{prefix}{i}", "question": f"{prefix} question {i}?", "options": [f"yes {i}", f"no {i}", "maybe"],
                        "answer": i % 3})
            for i in range(count)
        ]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    for template_name, source in (templates or {"plain": MC_TEMPLATE}).items():
        (folder / "prompts" / f"{template_name}.jinja").write_text(source)
    return folder


def cli(*args: str) -> int:
    return main([str(a) for a in args])
