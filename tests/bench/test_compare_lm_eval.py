"""bench/compare_lm_eval.py's own machinery: the quiet-machine gate, peak RSS, and the random-demonstration figures.

The benchmark itself is hours of model time (bench/README.md); what must not be wrong silently is whether a figure is
refused on a busy machine and what the accuracy intervals mean.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_lm_eval", ROOT / "bench" / "compare_lm_eval.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_run_reports_peak_rss_of_the_child_and_no_foreign_cpu_of_its_own() -> None:
    """A child that allocates ~200 MB: its peak RSS is seen, not the parent's (this test session may hold GBs), and its
    own CPU is not counted as others'."""
    code = "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); s = sum(range(3_000_000)); print('ok')"
    bench.QUIET = bench.Quiet(max_load=1000.0, wait_s=0.0)
    try:
        wall, stdout, machine = bench._run([sys.executable, "-c", code], ROOT)
    finally:
        bench.QUIET = bench.Quiet()
    assert stdout.strip() == "ok" and wall > 0
    assert 200 <= machine["peak_rss_mb"] < 300
    assert machine["foreign_cpu_cores"] < 2.5  # at most the machine's other work; the child's own seconds are subtracted
    assert set(machine) == {"peak_rss_mb", "load_1m_before", "foreign_cpu_cores", "stolen_cpu_cores"}


def test_a_failing_child_exits_with_its_output() -> None:
    bench.QUIET = bench.Quiet(max_load=1000.0, wait_s=0.0)
    try:
        with pytest.raises(SystemExit, match="failed \\(3\\).*boom"):
            bench._run([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], ROOT)
    finally:
        bench.QUIET = bench.Quiet()


@pytest.mark.parametrize(
    ("machine", "refused"),
    [
        ({"load_1m_before": 0.3, "foreign_cpu_cores": 0.05, "stolen_cpu_cores": 0.0}, None),
        ({"load_1m_before": 2.4, "foreign_cpu_cores": 0.05, "stolen_cpu_cores": 0.0}, "load average 2.4 > 1.0"),
        ({"load_1m_before": 0.3, "foreign_cpu_cores": 0.9, "stolen_cpu_cores": 0.0}, "other processes used 0.90 cores"),
        ({"load_1m_before": 0.3, "foreign_cpu_cores": 0.1, "stolen_cpu_cores": 0.2}, "other processes used 0.30 cores"),
    ],
)
def test_noise_refuses_a_busy_machine(machine: dict[str, float], refused: str | None) -> None:
    why = bench.noise(machine, bench.Quiet())
    assert (why is None) if refused is None else (why is not None and why.startswith(refused))


def test_compare_labels_a_noisy_figure() -> None:
    """compare() carries the gate's reason; main() then refuses the row unless --allow-noisy."""
    items = [{"target": 0, "response": [{"logprob": -1.0}, {"logprob": -2.0}], "continuations": [" a", " b"], "scores": {"acc": 1.0}}]
    samples = [{"acc": 1.0, "acc_norm": 1.0}]
    quiet = {"peak_rss_mb": 10, "load_1m_before": 0.1, "foreign_cpu_cores": 0.0, "stolen_cpu_cores": 0.0}
    busy = dict(quiet, foreign_cpu_cores=1.5)
    random_bench = bench.Bench("r", "tasks/arc_easy", 5, "x", 1, selector="random")
    row = bench.compare(random_bench, {"wall": 1.0, "items": items, "stats": {}, "machine": quiet}, {"wall": 6.0, "items": samples, "machine": busy})
    assert row["noisy"].startswith("lm-eval: other processes used 1.50 cores")
    assert row["speedup"] == 6.0 and row["lm_eval_peak_rss_mb"] == 10
    clean = bench.compare(random_bench, {"wall": 1.0, "items": items, "stats": {}, "machine": quiet}, {"wall": 6.0, "items": samples, "machine": quiet})
    assert "noisy" not in clean


def test_wilson_interval_covers_at_its_level() -> None:
    """The interval behind "accuracy within lm-eval's CI": 95% coverage at n = 200 (seeded simulation)."""
    rng = random.Random(0)
    for p in (0.3, 0.6, 0.9):
        covered = 0
        for _ in range(2000):
            k = sum(rng.random() < p for _ in range(200))
            low, high = bench.wilson(k, 200)
            covered += low <= p <= high
        assert 0.93 <= covered / 2000 <= 0.975, (p, covered)


def test_paired_difference_covers_the_true_difference() -> None:
    """Items shared by both tools: the paired interval of the accuracy difference holds ~95% when the truth is 0.05."""
    rng = random.Random(1)
    covered = 0
    for _ in range(1000):
        ease = [rng.random() for _ in range(200)]  # per-item difficulty shared by both sides
        ours = [float(rng.random() < min(1.0, e + 0.05)) for e in ease]
        theirs = [float(rng.random() < e) for e in ease]
        truth = sum(min(1.0, e + 0.05) - e for e in ease) / 200
        _, low, high = bench.paired_difference(ours, theirs)
        covered += low <= truth <= high
    assert 0.93 <= covered / 1000 <= 0.975


def test_random_demonstration_figures() -> None:
    h: dict[str, Any] = {"items": [{"target": t, "response": [{"logprob": -1.0 if t == 0 else -3.0}, {"logprob": -2.0}], "continuations": [" a", " b"]}
                                    for t in [0, 1] * 50]}
    e: dict[str, Any] = {"items": [{"acc": float(i % 2 == 0), "acc_norm": 0.0} for i in range(100)]}
    row = bench.random_demonstrations(h, e, 100)
    assert row["harness_acc"] == 1.0 and row["lm_eval_acc"] == 0.5
    assert row["lm_eval_acc_ci95"] == [0.404, 0.596] and row["harness_acc_within_lm_eval_ci"] is False
    assert row["acc_difference_ci95"][0] == 0.5 and row["acc_difference_ci95"][1] > 0.39
