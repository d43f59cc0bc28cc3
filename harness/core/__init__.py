"""The kernel every stage imports and that imports no stage: errors, the registry, strict YAML,
the Jinja sandbox, paths, optional dependencies, file fingerprints, atomic writes, progress.

The names below are imported on first use, not with the package: ``import harness.core.errors``
(which every module does) would otherwise load pydantic, Jinja and YAML, and ``harness --help``
would pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.lazy import lazy_names

if TYPE_CHECKING:
    from harness.core.deps import require
    from harness.core.errors import HarnessError, did_you_mean
    from harness.core.files import write_atomic
    from harness.core.fingerprint import content_sha256
    from harness.core.paths import bundled_dir, cache_dir
    from harness.core.progress import progress_bar
    from harness.core.registry import Registry
    from harness.core.templating import compile_expression, compile_template, environment
    from harness.core.yamlfile import read_yaml_mapping, validate

_WHERE = {
    "require": "deps", "HarnessError": "errors", "did_you_mean": "errors", "write_atomic": "files", "content_sha256": "fingerprint",
    "bundled_dir": "paths", "cache_dir": "paths", "progress_bar": "progress", "Registry": "registry", "compile_expression": "templating",
    "compile_template": "templating", "environment": "templating", "read_yaml_mapping": "yamlfile", "validate": "yamlfile",
}

__all__ = [
    "HarnessError", "Registry", "bundled_dir", "cache_dir", "compile_expression", "compile_template",
    "content_sha256", "did_you_mean", "environment", "progress_bar", "read_yaml_mapping", "require",
    "validate", "write_atomic",
]

__getattr__ = lazy_names(__name__, _WHERE)
