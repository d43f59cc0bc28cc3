"""``harness view`` at scale: page server times on a generated store of 200,000 items x 8 cells.

Generates (once, cached at ``--db``) one big multiple-choice run (one task, 4 prompt variants x {0, 5} shots on one
model: 8 cells, every item with its rendered prompt, four scored choices with log-probs, a 0/1 ``acc`` score, about
1% unscorable items with NaN log-probs and score, a subject cluster and a gold label), written last so it is on the
runs page's first page, and ``--small-runs`` small runs before it (finished and failed, several tasks and models).
Everything is written through ``harness.store.Store`` (``create_run``, ``add_cell``, ``write_items``), as the runner writes.

The big run's digests (harness/view/digest.py) are then written as ``harness run`` writes them when a run finishes (the
time it takes is printed: what a run of this size pays once). Then times each page's server time through the real app
in-process (Starlette's TestClient: no socket; the time is request to full response body), the first request of each page
separately (cold: the viewer's caches empty) and the median and p95 of ``--repeats`` more, and the process's RSS before and
after ``--loads`` further page loads; the first requests twice, side by side: from the digests, and computed from the
items (the digests made unusable: a database written before migration 007, or by another version of harness).

    python bench/view_scale.py                       # generate /tmp/harness-view-scale.db if missing, then time
    python bench/view_scale.py --items 20000 --db /tmp/small.db   # a quick look at a tenth of the scale
    python bench/view_scale.py --no-computed                      # skip the first requests without digests (about 80 s)
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from starlette.testclient import TestClient

from harness.store import ItemRecord, Store, StoredCell
from harness.view import create_app
from harness.view import digest as digest_module
from harness.view.digest import has_digests, write_digests

TASK = "mmlu_like"
PROMPTS = ("plain", "lettered", "instruct", "terse")
SHOTS = (0, 5)
MODEL = "hf:org/model-7b"
SUBJECTS = ("anatomy", "astronomy", "biology", "chemistry", "computer science", "economics", "geography", "history", "law",
            "logic", "mathematics", "medicine", "music", "nutrition", "philosophy", "physics", "psychology", "sociology")
WORDS = ("which", "of", "the", "following", "best", "describes", "a", "process", "in", "that", "most", "likely", "explains",
         "why", "an", "observed", "change", "when", "is", "increased", "under", "standard", "conditions", "result", "system",
         "value", "model", "given", "measured", "energy", "rate", "structure", "function", "primary", "cause", "effect")
RARE = "photosynthesis"  # in about 1 question in 400: what the search benchmark looks for
LETTERS = ("A", "B", "C", "D")


def question(rng: np.random.Generator, k: int) -> tuple[str, list[str]]:
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), 14)]
    if k % 400 == 7:
        words[5] = RARE
    text = f"Question {k}: " + " ".join(words).capitalize() + "?"
    options = [" ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 3)) for _ in range(4)]
    return text, options


def render(prompt: str, q: str, options: list[str], demos: list[tuple[str, list[str], int]]) -> str:
    def block(text: str, opts: list[str], answer: int | None) -> str:
        lines = [text, *(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))]
        tail = "Answer:" if answer is None else f"Answer: {LETTERS[answer]}"
        return "\n".join([*lines, tail])

    head = {"plain": "", "lettered": "Choose the letter of the correct answer.\n\n",
            "instruct": "The following are multiple choice questions. Think about each option, then answer with its letter.\n\n",
            "terse": "Q&A.\n"}[prompt]
    return head + "\n\n".join([*(block(t, o, a) for t, o, a in demos), block(q, options, None)])


def generate(db: Path, n_items: int, n_small: int, seed: int = 20) -> None:
    rng = np.random.default_rng(seed)
    tmp = db.with_name(db.name + ".part")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    store = Store(tmp)
    started = time.perf_counter()
    try:
        for r in range(n_small):  # the small runs first: the big run is the newest, on the runs page's first page
            run_id = f"20260101-{r:06d}-small"
            task = ("capitals", "arithmetic", "sst2", "boolq")[r % 4]
            store.create_run(run_id, f"{r:064d}", {"spec": {"tasks": [task], "seed": r}}, {"harness": "bench"}, r)
            cells = [StoredCell(run_id, f"c{r}-{p}", task, "multiple_choice", p, "0" * 64, 0, "none", f"scripted:m{r % 7}", {}, ["acc"], 30)
                     for p in ("plain", "polite")]
            for cell in cells:
                store.add_cell(cell)
            store.write_items(run_id, [ItemRecord(cell.cell_id, f"i{k}", k, f"Q {k}?", [" yes", " no"], [], k % 2,
                                                  [{"kind": "loglikelihood", "logprob": -0.5 - (k % 3), "is_greedy": False, "n_tokens": 1,
                                                    "latency_s": 0.0}, {"kind": "loglikelihood", "logprob": -1.0, "is_greedy": False,
                                                                        "n_tokens": 1, "latency_s": 0.0}],
                                                  None, {"acc": float(k % 3 == 0)}, 0.01, 3, False) for cell in cells for k in range(30)], {})
            if r % 10 == 9:
                store.fail_run(run_id, "backend failed: connection reset")
            else:
                store.finish_run(run_id)
        run_id = "20260102-000000-big"
        store.create_run(run_id, "b" * 64, {"spec": {"tasks": [TASK], "shots": list(SHOTS), "seed": 1}}, {"harness": "bench"}, 1)
        cells = [StoredCell(run_id, f"{p}-{s}shot", TASK, "multiple_choice", p, f"{i:064d}", s, "none" if s == 0 else "random", MODEL,
                            {"backend": "hf", "model": "org/model-7b"}, ["acc", "acc_norm"], n_items)
                 for i, (p, s) in enumerate((p, s) for s in SHOTS for p in PROMPTS)]
        for cell in cells:
            store.add_cell(cell)
        difficulty = rng.normal(0.0, 1.2, n_items)
        skill = {c.cell_id: 0.2 + 0.1 * i for i, c in enumerate(cells)}
        questions = [question(rng, k) for k in range(n_items)]
        targets = rng.integers(0, 4, n_items)
        subjects = rng.integers(0, len(SUBJECTS), n_items)
        batch = 5000
        for start in range(0, n_items, batch):
            records = []
            for cell in cells:
                stop = min(n_items, start + batch)
                noise = rng.normal(0.0, 1.0, (stop - start, 4))
                unscorable = rng.random(stop - start) < 0.01
                for j, k in enumerate(range(start, stop)):
                    text, options = questions[k]
                    demos = []
                    if cell.shots:
                        ids = [int(d) for d in rng.integers(0, n_items, cell.shots)]
                        demos = [(questions[d][0], questions[d][1], int(targets[d])) for d in ids]
                    target = int(targets[k])
                    logprobs = -2.0 + noise[j] * 1.5
                    logprobs[target] += skill[cell.cell_id] - difficulty[k]
                    if unscorable[j]:
                        response = [{"kind": "loglikelihood", "logprob": float("nan"), "is_greedy": False, "n_tokens": 2, "latency_s": 0.0}
                                    for _ in range(4)]
                        scores = {"acc": float("nan"), "acc_norm": float("nan")}
                    else:
                        best = int(np.argmax(logprobs))
                        response = [{"kind": "loglikelihood", "logprob": round(float(v), 4), "is_greedy": i == best, "n_tokens": 2,
                                     "latency_s": 0.0} for i, v in enumerate(logprobs)]
                        scores = {"acc": float(best == target), "acc_norm": float(best == target)}
                    records.append(ItemRecord(cell.cell_id, f"q{k:06d}", k, render(cell.prompt, text, options, demos),
                                              [f" {LETTERS[i]}" for i in range(4)], [f"q{d:06d}" for d in ([] if not cell.shots else ids)],
                                              target, response, None, scores, 0.05, 180 + 40 * cell.shots, False,
                                              SUBJECTS[int(subjects[k])]))
            store.write_items(run_id, records, {})
            done = min(n_items, start + batch)
            print(f"\r  generated {done:,} of {n_items:,} items x {len(cells)} cells ({time.perf_counter() - started:.0f} s)", end="",
                  file=sys.stderr, flush=True)
        store.finish_run(run_id)
        print(file=sys.stderr)
    finally:
        store.close()
    tmp.rename(db)
    for side in ("-wal", "-shm"):
        Path(f"{tmp}{side}").unlink(missing_ok=True)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


BIG = "20260102-000000-big"


def ensure_digests(db: Path) -> float | None:
    """Write the big run's digests if they are not current (as ``harness run`` does at its end); the seconds it took."""
    store = Store(db)
    try:
        if has_digests(store, BIG):
            return None
        t0 = time.perf_counter()
        written = write_digests(store, BIG)
        assert not written.stale
        return time.perf_counter() - t0
    finally:
        store.close()


def first_requests(db: Path, pages: list[tuple[str, str, dict[str, str]]]) -> list[float]:
    """Each page's first request in a fresh app, computed from the items: the digests are not this code's, so none is used."""
    real = digest_module.producer
    digest_module.producer = lambda: "not this code"  # type: ignore[assignment]
    try:
        client = TestClient(create_app(db), base_url="http://127.0.0.1")
        out = []
        for name, path, params in pages:
            t0 = time.perf_counter()
            assert client.get(path, params=params).status_code == 200, name
            out.append(time.perf_counter() - t0)
            print(f"  {name}: computed {out[-1] * 1000:.0f} ms", file=sys.stderr, flush=True)
        return out
    finally:
        digest_module.producer = real  # type: ignore[assignment]


def time_pages(db: Path, repeats: int, loads: int) -> list[tuple[str, float, float, float]]:
    big = BIG
    flips = {"show": "flips", "a": "plain-0shot", "b": "instruct-5shot"}
    pages = [
        ("runs page", "/", {}),
        ("runs page, created from/to", "/", {"created_from": "2026-01-01", "created_to": "2099-12-31"}),
        ("run page (big run)", f"/runs/{big}", {}),
        ("items, no filter, page 2", f"/runs/{big}/items", {"page": "2"}),
        (f"items, search '{RARE}'", f"/runs/{big}/items", {"q": RARE}),
        ("items, search with no match (hostile)", f"/runs/{big}/items", {"q": "%_\\' OR 1=1 --\"*"}),
        ("items, wrong in A right in B", f"/runs/{big}/items", flips),
        ("items, flips, page 40", f"/runs/{big}/items", {**flips, "page": "40"}),
        ("items, disagreements", f"/runs/{big}/items", {"show": "disagree"}),
        ("items, unscorable", f"/runs/{big}/items", {"show": "unscorable"}),
        ("items, label 2", f"/runs/{big}/items", {"label": "2"}),
        ("items, cluster 'law'", f"/runs/{big}/items", {"cluster": "law"}),
        ("items, sorted by margin in A", f"/runs/{big}/items", {"sort": "margin", "a": "plain-0shot"}),
        ("items, flips + cluster + margin sort", f"/runs/{big}/items", {**flips, "cluster": "law", "sort": "margin"}),
    ]
    PAGES[:] = pages
    client = TestClient(create_app(db), base_url="http://127.0.0.1")
    out = []
    for name, path, params in pages:
        t0 = time.perf_counter()
        response = client.get(path, params=params)
        cold = time.perf_counter() - t0
        assert response.status_code == 200, (name, response.status_code, response.text[:500])
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            assert client.get(path, params=params).status_code == 200
            times.append(time.perf_counter() - t0)
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        out.append((name, cold, statistics.median(times), p95))
        print(f"  {name}: cold {cold * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms", file=sys.stderr, flush=True)
    gc.collect()
    before = rss_mib()
    for k in range(loads):
        name, path, params = pages[k % len(pages)]
        client.get(path, params={**params, "page": str(1 + k % 7)} if "items" in path else params)
    gc.collect()
    after = rss_mib()
    out.append((f"RSS MiB before / after {loads} more page loads", before, after, float("nan")))
    return out


PAGES: list[tuple[str, str, dict[str, str]]] = []  # filled by time_pages: the same list the computed first requests use


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/harness-view-scale.db"), help="the generated store (made once, then reused)")
    parser.add_argument("--items", type=int, default=200_000, help="items of the big run (x 8 cells)")
    parser.add_argument("--small-runs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=15, help="timed requests per page after the first")
    parser.add_argument("--loads", type=int, default=200, help="page loads between the two RSS readings")
    parser.add_argument("--no-computed", action="store_true", help="skip the first requests computed without the digests")
    args = parser.parse_args()
    if not args.db.exists():
        t0 = time.perf_counter()
        generate(args.db, args.items, args.small_runs)
        print(f"generated {args.db} ({args.db.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"db {args.db} ({args.db.stat().st_size / 2**20:,.0f} MiB), load average {Path('/proc/loadavg').read_text().strip()}, "
          f"{os.cpu_count()} CPUs")
    took = ensure_digests(args.db)
    if took is not None:
        print(f"wrote the big run's digests in {took:.1f} s (what `harness run` adds when a run of this size finishes)")
    rows = time_pages(args.db, args.repeats, args.loads)
    computed = [math.nan] * len(PAGES) if args.no_computed else first_requests(args.db, PAGES)
    print(f"\n| page | first request, from digests ms | first request, computed ms | median ms ({args.repeats} repeats) | p95 ms |\n"
          "|---|---:|---:|---:|---:|")
    for (name, cold, median, p95), slow in zip(rows[:-1], computed):
        print(f"| {name} | {cold * 1000:.0f} | {slow * 1000:.0f} | {median * 1000:.0f} | {p95 * 1000:.0f} |")
    name, before, after, _ = rows[-1]
    print(f"\n{name}: {before:.0f} / {after:.0f}")
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
