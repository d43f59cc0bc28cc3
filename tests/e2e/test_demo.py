"""The README's first command, scripts/demo.sh: its `harness run` on the embedded model gives a clear verdict (slow).

The demo is cut to a minute of model time (30 items per cell); this checks the cut still shows the
point: variants that differ for real (the lettered one is worse at an adjusted p < 0.05, out of the
may-be-best set) next to ones the data cannot separate, at both shot counts.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.sh"


def demo_run_arguments() -> list[str]:
    """The arguments demo.sh passes to `harness run` (its one `harness run` line, without the "$@" passthrough)."""
    (line,) = [line for line in DEMO.read_text().splitlines() if line.startswith("harness run ")]
    return [word for word in shlex.split(line)[2:] if word != "$@"]


def test_the_demo_is_a_sample_of_every_variant_at_two_shot_counts() -> None:
    args = demo_run_arguments()
    assert args[:2] == ["--task", "capitals"] and "--sample" in args and "--stratify" in args
    assert args[args.index("--shots") + 1 : args.index("--shots") + 3] == ["0", "3"]
    assert int(args[args.index("--sample") + 1]) * 3 * 2 <= 200  # items: about a minute of model time on 2 CPU cores


@pytest.mark.slow
def test_the_demo_gives_a_clear_verdict(tmp_path: Path, embedded_model: Path) -> None:
    harness = Path(sys.executable).with_name("harness")
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_VERBOSE"}
    done = subprocess.run([str(harness), "run", *demo_run_arguments(), "--db", str(tmp_path / "demo.db"), "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["items_written"] == 180 and result["warnings"] == []
    rows = {(r["prompt"], r["shots"]): r for r in result["ranking"]}
    assert set(rows) == {(p, k) for p in ("qa_plain", "qa_lettered", "instruct_statement") for k in (0, 3)}
    for shots in (0, 3):
        lettered = rows["qa_lettered", shots]
        assert lettered["verdict"] == "worse" and not lettered["may_be_best"] and lettered["p_adjusted"] < 0.05, lettered
        assert rows["qa_plain", shots]["may_be_best"] and rows["instruct_statement", shots]["may_be_best"]
    print("demo:", {f"{p} {k}-shot": round(r["mean"], 3) for (p, k), r in rows.items()}, result.get("backend_stats"))
