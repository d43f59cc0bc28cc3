"""hf: vs vllm: vs openai: on vllm serve: agreement of what they store, and their throughput.

Run with the vLLM venv's Python (it has vLLM, transformers, openai and harness):

    .venv-vllm/bin/python bench/engines.py agreement
    .venv-vllm/bin/python bench/engines.py throughput --items 40

``agreement``: ARC-Easy 5-shot and HellaSwag 0-shot (100 items each, the lm_eval templates) and
GSM8K 8-shot greedy (20 items), each run through ``run_experiment`` once per engine (fresh
database), then the stored rows compared item by item: per-choice log-prob differences, predictions,
and for GSM8K the generated texts (where they differ: the first differing character and the
margin of the first differing token, read from hf:'s greedy decoding).

``throughput``: the same requests (ARC-Easy 0-shot multiple choice, GSM8K 0-shot generation of up to
``--max-tokens``) sent straight to each engine's backend, loaded once and warmed: hf:, vllm:,
openai: on one vllm serve at concurrency 1, 8 and 32, in one invocation; items/s, with the load
average before and after each row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from harness.backends import ModelSpec, load_backend  # noqa: E402
from harness.backends.hf.embedded import embedded_model_path  # noqa: E402
from harness.requests import LoglikelihoodRequest  # noqa: E402
from harness.runner.execute import run_experiment  # noqa: E402
from harness.runner.planning import plan, prepare, selector_for  # noqa: E402
from harness.runner.spec import ExperimentSpec  # noqa: E402
from harness.store.store import Store  # noqa: E402

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
SETS = {  # name -> (task, template, shots, items)
    "arc_easy 5-shot": ("arc_easy", "lm_eval", 5, 100),
    "hellaswag 0-shot": ("hellaswag", "lm_eval", 0, 100),
    "gsm8k 8-shot": ("gsm8k", "lm_eval", 8, 20),
}


def engines(url: str, concurrency: int = 8, adapter: str | None = None) -> dict[str, ModelSpec]:
    """The three engines on the embedded model; with ``adapter``, hf: and vllm: with that LoRA."""
    model = str(embedded_model_path())
    local = {
        "hf": ModelSpec(backend="hf", model=model, dtype="float32", adapter=adapter),
        "vllm": ModelSpec(backend="vllm", model=model, dtype="float32", max_model_len=2048, adapter=adapter),
    }
    if adapter:
        return local
    return {**local, "openai": ModelSpec(backend="openai", model="gemma-3-270m", base_url=url, endpoint="completions", concurrency=concurrency)}


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def stored(db: Path, run_id: str) -> dict[str, dict[str, Any]]:
    store = Store(db)
    return {row.item_id: {"response": row.response, "extracted": row.extracted} for row in store.items([run_id])}


def agreement(args: argparse.Namespace, url: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="engines-"))
    sets = [(name, spec, None) for name, spec in SETS.items()]
    if args.adapter:  # the LoRA on hf: and on vllm: (LoRARequest), ARC-Easy 5-shot
        sets.append(("arc_easy 5-shot + LoRA", SETS["arc_easy 5-shot"], args.adapter))
    for name, (task, template, shots, items), adapter in sets:
        if args.only and not set(args.only) & set(name.split()):
            continue
        rows: dict[str, dict[str, dict[str, Any]]] = {}
        for engine, model in engines(url, adapter=adapter).items():
            spec = ExperimentSpec(tasks=[task], prompts=[template], shots=[shots], models=[model], limit=args.limit or items,
                                  data_dirs=[str(DATA)], max_tokens=args.max_tokens if args.limit else None)
            started = time.perf_counter()
            db = work / f"{task}-{engine}{'-lora' if adapter else ''}.db"
            summary = run_experiment(spec, Store(db), show_progress=False)
            rows[engine] = stored(db, summary.run_id)
            print(f"  {name}: {engine} {time.perf_counter() - started:.0f}s, {len(rows[engine])} items (load {load()})", flush=True)
        for engine in rows.keys() - {"hf"}:
            report_pair(name, engine, rows["hf"], rows[engine])


def report_pair(name: str, engine: str, hf: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]]) -> None:
    assert hf.keys() == other.keys(), "the engines stored different items"
    first = next(iter(hf.values()))["response"][0]
    if "logprob" in first:
        diffs, disagree = [], []
        for item, row in hf.items():
            a = [r["logprob"] for r in row["response"]]
            b = [r["logprob"] for r in other[item]["response"]]
            diffs += [abs(x - y) for x, y in zip(a, b)]
            if max(range(len(a)), key=a.__getitem__) != max(range(len(b)), key=b.__getitem__):
                top = sorted(a, reverse=True)
                disagree.append(f"{item} (hf margin {top[0] - top[1]:.2e})")
        n = len(hf)
        print(f"{name}, {engine} vs hf: predictions equal {n - len(disagree)}/{n}, max |Δ log-prob| {max(diffs):.1e}, "
              f"mean {sum(diffs) / len(diffs):.1e} over {len(diffs)} choices; disagreements: {disagree or 'none'}", flush=True)
    else:
        differ = []
        for item, row in hf.items():
            a, b = row["response"][0]["text"], other[item]["response"][0]["text"]
            if a != b:
                at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                differ.append(f"{item}: from char {at}: hf {a[at:at + 30]!r} vs {b[at:at + 30]!r}")
        same_answer = sum(row["extracted"] == other[item]["extracted"] for item, row in hf.items())
        n = len(hf)
        print(f"{name}, {engine} vs hf: texts equal {n - len(differ)}/{n}, extracted answers equal {same_answer}/{n}", flush=True)
        for line in differ:
            print(f"    {line}", flush=True)


def requests_of(task: str, template: str, items: int, max_tokens: int) -> list[list[Any]]:
    """The requests harness sends for each of the first ``items`` items."""
    spec = ExperimentSpec(tasks=[task], prompts=[template], shots=[0], limit=items, data_dirs=[str(DATA)], max_tokens=max_tokens)
    cell = plan(spec)[0]
    selector = selector_for(cell)
    return [list(prepare(cell, pos, item, selector).requests) for pos, item in enumerate(cell.items)]


def throughput(args: argparse.Namespace, serve: Callable[[], Any]) -> None:
    """In-process engines first, then the server is started for the openai: rows (an idle server
    would otherwise share the CPUs with them)."""
    workloads: dict[str, tuple[list[Any], list[Any], int]] = {}
    for task, template in (("arc_easy", "lm_eval"), ("gsm8k", "lm_eval")):
        per_item = requests_of(task, template, args.items + 2, args.max_tokens)
        workloads[task] = ([r for rs in per_item[: args.items] for r in rs], [r for rs in per_item[args.items:] for r in rs], args.items)
    print(f"| engine | ARC-Easy 0-shot MC items/s | GSM8K 0-shot gen ({args.max_tokens} tok) items/s | load before → after |")
    print("|---|---:|---:|---|")
    for label in ("hf", "vllm"):
        measure(label, engines("")[label], workloads)
    with serve() as url:
        for concurrency in args.concurrency:
            measure(f"openai c={concurrency}", engines(url, concurrency)["openai"], workloads)


def measure(label: str, model: ModelSpec, workloads: dict[str, tuple[list[Any], list[Any], int]]) -> None:
    backend = load_backend(model)
    before = load()
    rates = []
    for requests, warm, items in workloads.values():
        call: Callable[[Sequence[Any]], Any] = backend.loglikelihood if isinstance(requests[0], LoglikelihoodRequest) else backend.generate
        call(warm)  # other items' requests: weights paged in, engine started, connections open, nothing of the set cached
        started = time.perf_counter()
        answers = call(requests)
        elapsed = time.perf_counter() - started
        assert len(answers) == len(requests)
        rates.append(f"{items / elapsed:.2f} ({elapsed:.1f} s)")
    backend.close()
    print(f"| {label} | {rates[0]} | {rates[1]} | {before} → {load()} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["agreement", "throughput"])
    parser.add_argument("--only", nargs="+", help="agreement: sets whose name has one of these words (arc_easy, hellaswag, gsm8k, LoRA)")
    parser.add_argument("--adapter", help="agreement: also ARC-Easy 5-shot with this PEFT LoRA (from harness tune) on hf: and vllm:")
    parser.add_argument("--limit", type=int, help="agreement: a smoke test on N items each (and --max-tokens)")
    parser.add_argument("--items", type=int, default=40, help="throughput: items per workload")
    parser.add_argument("--max-tokens", type=int, default=64, help="throughput: generated tokens per GSM8K item")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--base-url", help="an already running vllm serve of the embedded model (else one is started)")
    args = parser.parse_args()
    print(json.dumps({"what": args.what, "load_average": load(), "cpus": os.cpu_count()}), flush=True)

    @contextlib.contextmanager
    def serve() -> Iterator[str]:
        if args.base_url:
            yield args.base_url
            return
        from tests.backends.vllm_server import vllm_server

        with vllm_server() as (url, _):
            yield url

    if args.what == "throughput":
        throughput(args, serve)
    else:
        with serve() as url:
            agreement(args, url)


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from running this again
    main()
