"""Synthetic Winograd-style rows in WinoGrande's layout, and lm-eval's own WinoGrande functions.

No WinoGrande copy is shared with this project, so the per-choice-context comparison
(bench/compare_lm_eval.py --only winogrande_like0 winogrande_like5, tests/test_lm_eval_winogrande.py)
runs on sentences generated here: five twin-sentence frames x ten noun or name pairs x two
twins (the twin's last words flip the answer), options swapped on a seeded coin, plus ten more
rows as the few-shot split. Fields as in allenai/winogrande: ``sentence`` (one ``_``),
``option1``, ``option2``, ``answer`` ("1" or "2"), and an ``id``.

``write(folder)`` writes ``winogrande/validation.jsonl`` (100 rows) and ``winogrande/train.jsonl``
(10 rows) for harness's ``tasks/winogrande`` (``--data-dir folder``); lm-eval reads the same files
through ``dataset`` (``custom_dataset`` in winogrande_like_json.yaml, folder from
``--metadata '{"data_dir": ...}'``). ``doc_to_text`` / ``doc_to_target`` / ``doc_to_choice`` are
lm-eval 0.4.13's ``lm_eval/tasks/winogrande/preprocess_winogrande.py``, verbatim.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

# (sentence with {a}, {b} and the blank, words that make the answer {a}, words that make it {b})
FRAMES = [
    ("The {a} did not fit into the {b} because the _ was too {w}.", "big", "small"),
    ("The {a} fell onto the {b} and broke it, because the _ was so {w}.", "heavy", "fragile"),
    ("The {a} raced the {b}, and the _ {w}.", "won easily", "lost badly"),
    ("{a} lent money to {b} because _ was {w}.", "rich and generous", "poor and in need"),
    ("{a} could not hear {b} at the concert because _ was {w}.", "sitting far away at the back", "whispering very quietly"),
]
PAIRS = [
    [("trophy", "suitcase"), ("piano", "doorway"), ("sofa", "van"), ("cake", "box"), ("painting", "frame"),
     ("bicycle", "shed"), ("statue", "crate"), ("mattress", "car"), ("tree", "pot"), ("coat", "bag"), ("table", "elevator")],
    [("rock", "vase"), ("hammer", "glass"), ("brick", "plate"), ("dictionary", "lamp"), ("anvil", "bowl"),
     ("log", "mirror"), ("suitcase", "teacup"), ("stone", "window"), ("iron", "egg"), ("barbell", "phone"), ("safe", "bulb")],
    [("cheetah", "tortoise"), ("horse", "donkey"), ("sports car", "bicycle"), ("hare", "snail"), ("train", "bus"),
     ("falcon", "pigeon"), ("motorbike", "scooter"), ("greyhound", "poodle"), ("speedboat", "canoe"), ("jet", "balloon"), ("deer", "cow")],
    [("Anna", "Maria"), ("John", "Peter"), ("Sofia", "Emma"), ("Liam", "Noah"), ("Olivia", "Ava"),
     ("James", "Lucas"), ("Mia", "Chloe"), ("Ethan", "Mason"), ("Grace", "Lily"), ("Oscar", "Henry"), ("Ruby", "Alice")],
    [("Tom", "Sarah"), ("Kevin", "Laura"), ("Nina", "Paul"), ("David", "Julia"), ("Rosa", "Mark"),
     ("Ivan", "Elena"), ("Hannah", "Leo"), ("Sam", "Zoe"), ("Clara", "Ben"), ("Victor", "Ella"), ("Maya", "Adam")],
]


def rows(seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(100 evaluated rows, 10 few-shot rows): pairs 0-9 of every frame, then pair 10 of every frame."""
    rng = random.Random(seed)
    test: list[dict[str, Any]] = []
    fewshot: list[dict[str, Any]] = []
    for f, (frame, for_a, for_b) in enumerate(FRAMES):
        for p, (a, b) in enumerate(PAIRS[f]):
            for twin, word in enumerate((for_a, for_b)):
                text = frame.format(a=a, b=b, w=word)
                sentence = text[0].upper() + text[1:]
                swap = rng.random() < 0.5
                options = (b, a) if swap else (a, b)
                correct = a if twin == 0 else b
                row = {"sentence": sentence, "option1": options[0], "option2": options[1], "answer": "1" if options[0] == correct else "2"}
                (fewshot if p == 10 else test).append(row)
    rng.shuffle(test)
    return ([{"id": f"wl{i}", **r} for i, r in enumerate(test)], [{"id": f"wl-train{i}", **r} for i, r in enumerate(fewshot)])


def write(folder: Path, seed: int = 0) -> Path:
    """Write ``folder/winogrande/{validation,train}.jsonl``; returns ``folder`` (harness's --data-dir)."""
    test, fewshot = rows(seed)
    out = Path(folder) / "winogrande"
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("validation", test), ("train", fewshot)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split), encoding="utf-8")
    return Path(folder)


def dataset(data_dir: str | None = None, **_: Any) -> dict[str, Any]:
    """lm-eval ``custom_dataset``: the files ``write`` made under ``data_dir`` (from ``--metadata``)."""
    import datasets

    if not data_dir:
        raise ValueError("winogrande_like_json needs --metadata '{\"data_dir\": \"FOLDER\"}' (the folder winogrande_like.write filled)")
    splits = {}
    for split, name in (("test", "validation"), ("train", "train")):
        path = Path(data_dir) / "winogrande" / f"{name}.jsonl"
        splits[split] = datasets.Dataset.from_list([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])
    return splits


# -- lm-eval 0.4.13, lm_eval/tasks/winogrande/preprocess_winogrande.py ----------------------
def doc_to_text(doc):  # type: ignore[no-untyped-def]
    answer_to_num = {"1": 0, "2": 1}
    return answer_to_num[doc["answer"]]


def doc_to_target(doc):  # type: ignore[no-untyped-def]
    idx = doc["sentence"].index("_") + 1
    return doc["sentence"][idx:].strip()


def doc_to_choice(doc):  # type: ignore[no-untyped-def]
    idx = doc["sentence"].index("_")
    options = [doc["option1"], doc["option2"]]
    return [doc["sentence"][:idx] + opt for opt in options]
