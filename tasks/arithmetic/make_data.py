"""Generate test.jsonl and fewshot.jsonl for the arithmetic task.

Deterministic (random.Random(1234)), stdlib only. Run from anywhere:
    python3 tasks/arithmetic/make_data.py
Rows: {"id", "a", "b", "op", "expression", "answer"}; answer is a string.
Mix (roughly equal thirds): two-digit + two-digit, two-digit - two-digit with a
non-negative result, single-digit * two-digit. Test and fewshot are disjoint.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
N_TEST = 200
N_FEWSHOT = 40
OPS = ["+", "-", "*"]


def make_problem(rng, op):
    if op == "+":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        result = a + b
    elif op == "-":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if a < b:
            a, b = b, a
        result = a - b
    else:
        a, b = rng.randint(2, 9), rng.randint(10, 99)
        result = a * b
    return a, b, result


def make_split(rng, n, seen):
    # op for each row: equal thirds (remainder goes to the first ops), shuffled
    ops = [OPS[i % 3] for i in range(n)]
    rng.shuffle(ops)
    rows = []
    for op in ops:
        while True:
            a, b, result = make_problem(rng, op)
            if (a, op, b) not in seen:
                seen.add((a, op, b))
                break
        rows.append({"a": a, "b": b, "op": op,
                     "expression": f"{a} {op} {b}", "answer": str(result)})
    return rows


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main():
    rng = random.Random(1234)
    seen = set()
    test = make_split(rng, N_TEST, seen)
    fewshot = make_split(rng, N_FEWSHOT, seen)
    test = [{"id": f"ar-{i:03d}", **r} for i, r in enumerate(test, 1)]
    fewshot = [{"id": f"arfs-{i:02d}", **r} for i, r in enumerate(fewshot, 1)]
    write(os.path.join(HERE, "test.jsonl"), test)
    write(os.path.join(HERE, "fewshot.jsonl"), fewshot)
    print(f"wrote {len(test)} test and {len(fewshot)} fewshot rows")


if __name__ == "__main__":
    main()
