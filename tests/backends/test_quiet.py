"""transformers' chatter (deprecation FutureWarnings, loading bars, logs) stays off the screen unless --verbose."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from harness.backends.hf.quiet import quiet

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(sys.executable).with_name("harness")
NOISE = ("FutureWarning", "past_key_values", "it/s]", "Loading weights", "Loading checkpoint shards", "%|")


def _warn(category: type[Warning], module: str) -> None:
    warnings.warn_explicit("`past_key_values` is deprecated", category, "generic.py", 1, module=module, registry={})


def test_quiet_hides_transformers_deprecations_and_bars_only_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("HARNESS_VERBOSE", raising=False)
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet():
            assert hf_logging.get_verbosity() == hf_logging.ERROR and not hf_logging.is_progress_bar_enabled()
            _warn(FutureWarning, "transformers.utils.generic")
            _warn(DeprecationWarning, "harness.backends.hf.packed")  # a deprecated keyword in our call into transformers
            _warn(FutureWarning, "somebody.else")  # not ours to hide
            _warn(UserWarning, "transformers.modeling_utils")  # not a deprecation: shown
        _warn(FutureWarning, "transformers.utils.generic")  # outside: shown again
    assert [(w.category, str(w.message)) for w in seen] == [
        (FutureWarning, "`past_key_values` is deprecated"), (UserWarning, "`past_key_values` is deprecated"),
        (FutureWarning, "`past_key_values` is deprecated"),
    ]
    assert hf_logging.get_verbosity() == level and hf_logging.is_progress_bar_enabled() == bars


def test_verbose_leaves_transformers_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("HARNESS_VERBOSE", "1")
    level = hf_logging.get_verbosity()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet():
            assert hf_logging.get_verbosity() == level
            _warn(FutureWarning, "transformers.utils.generic")
    assert len(seen) == 1


def test_errors_still_raise_through_quiet() -> None:
    pytest.importorskip("transformers")

    @quiet()
    def broken() -> None:
        raise ValueError("a real error")

    with pytest.raises(ValueError, match="a real error"):
        broken()


def _run(tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [str(HARNESS), "run", "--task", "capitals", "--prompt", "qa_plain", "--shots", "0", "1", "--selector", "random", "--limit", "3",
            "--db", str(tmp_path / f"{name}.db"), *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_VERBOSE", "PYTHONWARNINGS")}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_real_model_run_shows_no_library_noise_unless_verbose(tmp_path: Path, embedded_model: Path) -> None:
    """The embedded model, in a fresh process (warnings show once per process): stderr has harness's own lines only."""
    quiet_run = _run(tmp_path, "quiet")
    assert quiet_run.returncode == 0, quiet_run.stderr[-3000:]
    assert not [n for n in NOISE if n in quiet_run.stderr], quiet_run.stderr[-3000:]
    assert "qa_plain" in quiet_run.stdout and "Traceback" not in quiet_run.stderr
    verbose_run = _run(tmp_path, "verbose", "--verbose")  # its own database: no cached answers, so the model runs
    assert verbose_run.returncode == 0, verbose_run.stderr[-3000:]
    assert "Loading weights" in verbose_run.stderr or "past_key_values" in verbose_run.stderr, verbose_run.stderr[-3000:]
