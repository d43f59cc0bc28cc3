"""Several true answers against lm-eval 0.4.13, item by item, on the embedded model (slow): harness's mc2 /
mc1 / acc_norm / acc_norm_bytes / acc_mutual_info and lm-eval's process_results_mc2 / acc / acc_norm /
acc_bytes / acc_mutual_info on the first 20 generated rows of bench/lm_eval_tasks/multi_true.py, both whole
pipelines (bench/compare_lm_eval.py multi_true, short prompt). The 100-item figures are in bench/README.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("compare_lm_eval", ROOT / "bench" / "compare_lm_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("compare_lm_eval", module)
    spec.loader.exec_module(module)
    return module


def test_mc2_mc1_and_normalisations_agree_with_lm_eval(tmp_path: Path, embedded_model: Path) -> None:
    pytest.importorskip("lm_eval", reason="lm-eval 0.4.13 is the reference here: pip install 'harness[bench]'")
    row = _bench().multi_true(20, 16, tmp_path, short=True)  # type: ignore[attr-defined]
    assert row["same_rendering"] == 1.0  # the same prompts, continuations and ("", continuation) requests
    assert row["max_abs_logprob_diff"] < 1e-3 and row["max_abs_unconditional_logprob_diff"] < 1e-3
    assert row["max_abs_mc2_diff"] < 1e-4 and row["mc2_within_1e-4"] == 1.0
    assert row["same_pred_mc1"] >= 0.99 and row["harness_mc1"] == row["lm_eval_mc1"]
    for name in ("acc", "acc_norm", "acc_norm_bytes", "acc_mutual_info"):
        assert row[f"same_{name}"] >= 0.95, name
    assert 0.0 < row["harness_mc2"] < 1.0  # a real distribution, not a degenerate one
