"""What the viewer's triggers cost the runner's writes: 20,000 item rows (4 cells x 5,000 items, prompts as
bench/view_scale.py writes them) written 64 per ``write_items`` call, as the runner writes them, into a fresh store with
no triggers on items, with migration 007's (the run's revision and item count, for the digests), and with those and
migration 006's search-index triggers (the schema as it is), twice each (bench/README.md records the figures).

    python bench/view_write_cost.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import view_scale  # noqa: E402  (this folder's generator: the same prompts and options)

from harness.store import Store, StoredCell  # noqa: E402
from harness.store.records import ItemRecord  # noqa: E402

SEARCH = ("items_search_insert", "items_search_delete", "items_search_update")
REVISION = ("items_revision_insert", "items_revision_delete", "items_revision_update")
MODES = {"no triggers": SEARCH + REVISION, "revision (007)": SEARCH, "revision + search (006, 007)": ()}
CHUNK = 64  # items per write, as the runner writes


def records(n: int, cells: list[StoredCell], rng: np.random.Generator) -> list[ItemRecord]:
    questions = [view_scale.question(rng, k) for k in range(n)]
    out = []
    for cell in cells:
        for k in range(n):
            text, options = questions[k]
            demos = [(questions[d][0], questions[d][1], 1) for d in rng.integers(0, n, cell.shots)]
            response = [{"kind": "loglikelihood", "logprob": -1.5, "is_greedy": i == 0, "n_tokens": 2, "latency_s": 0.0} for i in range(4)]
            out.append(ItemRecord(cell.cell_id, f"q{k:06d}", k, view_scale.render(cell.prompt, text, options, demos),
                                  [" A", " B", " C", " D"], [], 1, response, None, {"acc": 1.0}, 0.05, 200, False, "law"))
    return out


def once(path: Path, dropped: tuple[str, ...]) -> tuple[float, int]:
    """Seconds to write the rows with the ``dropped`` triggers dropped, and the file's size after."""
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    store = Store(path)
    for name in dropped:
        store.db.execute(f"DROP TRIGGER {name}")
    store.create_run("r", "x" * 64, {"spec": {}}, {}, 1)
    cells = [StoredCell("r", f"{p}-{s}", "t", "multiple_choice", p, "0" * 64, s, "none", "m", {}, ["acc"], 5000)
             for p in ("plain", "lettered") for s in (0, 5)]
    for cell in cells:
        store.add_cell(cell)
    rows = records(5000, cells, np.random.default_rng(1))
    started = time.perf_counter()
    for start in range(0, len(rows), CHUNK):
        store.write_items("r", rows[start:start + CHUNK], {})
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, path.stat().st_size


def main() -> None:
    print(f"load average {Path('/proc/loadavg').read_text().strip()}")
    for _ in range(2):
        for k, (mode, dropped) in enumerate(MODES.items()):
            elapsed, size = once(Path(f"/tmp/view-write-cost-{k}.db"), dropped)
            print(f"{mode}: 20,000 rows in {elapsed:.2f} s ({20000 / elapsed:,.0f} rows/s), file {size / 2**20:.1f} MiB", flush=True)
    print(f"load average after {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
