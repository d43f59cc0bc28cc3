"""Throughput of the OpenAI-compatible backend against a local llama.cpp server.

Measures, for the same generation requests (arithmetic task, one request per item):
- items/s through harness at each --concurrency (fresh database each, so nothing is cached);
- the server's own throughput: the same request bodies posted one by one with urllib
  (no harness, no client library) and, when this script started the server, the compute time the
  server itself logs (llama.cpp's ``llama_perf_context_print: total time``);
- items/s of a cached re-run (the finished run repeated: served from the response cache).

    python bench/openai_throughput.py                      # starts a server on the embedded GGUF
    python bench/openai_throughput.py --base-url http://127.0.0.1:8000/v1 --items 64
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.backends import ModelSpec  # noqa: E402
from harness.runner.execute import run_experiment  # noqa: E402
from harness.runner.spec import ExperimentSpec  # noqa: E402
from harness.store.store import Store  # noqa: E402

PERF = re.compile(r"llama_perf_context_print:\s+total time =\s+([0-9.]+) ms")


def harness_run(db: Path, url: str, items: int, concurrency: int, task: str, prompt: str) -> tuple[float, dict[str, Any]]:
    model = ModelSpec(backend="openai", model="gemma-3-270m", base_url=url, concurrency=concurrency)
    spec = ExperimentSpec(tasks=[task], prompts=[prompt], models=[model], limit=items)
    started = time.perf_counter()
    summary = run_experiment(spec, Store(db), show_progress=False)
    elapsed = time.perf_counter() - started
    stats = summary.extra.get("backend_stats", {}).get(model.label, {})
    return elapsed, {"items": summary.items_written, "backend_requests": summary.backend_requests, "cache_hits": summary.cache_hits, **stats}


def request_bodies(items: int, task: str, prompt: str) -> list[dict[str, Any]]:
    """The exact completions bodies harness sends for these items."""
    from harness.runner.planning import plan, prepare

    spec = ExperimentSpec(tasks=[task], prompts=[prompt], limit=items)
    cell = plan(spec)[0]
    bodies = []
    for pos, item in enumerate(cell.items):
        request = prepare(cell, pos, item, None).requests[0]
        bodies.append({"model": "gemma-3-270m", "prompt": request.prompt, "max_tokens": request.max_tokens,  # type: ignore[union-attr]
                       "temperature": 0.0, "stop": list(request.stop)})  # type: ignore[union-attr]
    return bodies


def raw_run(url: str, bodies: list[dict[str, Any]]) -> float:
    """The same bodies posted one by one with the standard library: no client, no harness."""
    started = time.perf_counter()
    for body in bodies:
        request = urllib.request.Request(f"{url}/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: start llama.cpp on the embedded GGUF)")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--prompt", default="question")
    parser.add_argument("--threads", type=int, default=2, help="server threads when this script starts it")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-openai-")))
        log = tmp / "server.log"
        if args.base_url:
            url = args.base_url.rstrip("/")
        else:
            from tests.backends.llama_server import llama_server

            url = stack.enter_context(llama_server(n_threads=args.threads, log_path=log))
        bodies = request_bodies(args.items, args.task, args.prompt)
        raw_run(url, bodies[:2])  # warm-up: first requests pay for allocations

        def compute_s(mark: int) -> float | None:
            """Compute time llama.cpp logged since ``mark`` log entries (None: not our server)."""
            found = PERF.findall(log.read_text(errors="replace")) if log.exists() else []
            return sum(float(ms) for ms in found[mark:]) / 1000 if found else None

        def marker() -> int:
            return len(PERF.findall(log.read_text(errors="replace"))) if log.exists() else 0

        rows: list[dict[str, Any]] = []
        mark = marker()
        rows.append({"mode": "server alone (urllib, sequential)", "seconds": raw_run(url, bodies), "items": len(bodies), "server_s": compute_s(mark)})
        for index, concurrency in enumerate(args.concurrency):
            mark = marker()
            elapsed, info = harness_run(tmp / f"run{index}.db", url, args.items, concurrency, args.task, args.prompt)
            rows.append({"mode": f"harness, concurrency {concurrency}", "seconds": elapsed, "server_s": compute_s(mark), **info})
        last = len(args.concurrency) - 1
        cached, info = harness_run(tmp / f"run{last}.db", url, args.items, args.concurrency[-1], args.task, args.prompt)
        rows.append({"mode": "harness, cached re-run", "seconds": cached, "server_s": 0.0, **info})

    print(f"{args.items} items of {args.task}/{args.prompt}, one completions request each, server {url}")
    print("| mode | items | wall s | items/s | server compute s | server's own items/s | retries |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        row["items_per_s"] = row["items"] / row["seconds"] if row["seconds"] else float("inf")
        server = row.get("server_s")
        own = f"{row['items'] / server:.2f}" if server else "-"
        print(f"| {row['mode']} | {row['items']} | {row['seconds']:.2f} | {row['items_per_s']:.2f} | "
              f"{'-' if server is None else f'{server:.2f}'} | {own} | {row.get('retries', '-')} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
