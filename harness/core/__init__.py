"""The kernel every stage imports and that imports no stage: errors, the registry, strict YAML,
the Jinja sandbox, paths, optional dependencies, file fingerprints, atomic writes, progress."""

from harness.core.deps import require
from harness.core.errors import HarnessError, did_you_mean
from harness.core.files import write_atomic
from harness.core.fingerprint import content_sha256
from harness.core.paths import bundled_dir, cache_dir
from harness.core.progress import progress_bar
from harness.core.registry import Registry
from harness.core.templating import compile_expression, compile_template, environment
from harness.core.yamlfile import read_yaml_mapping, validate

__all__ = [
    "HarnessError", "Registry", "bundled_dir", "cache_dir", "compile_expression", "compile_template",
    "content_sha256", "did_you_mean", "environment", "progress_bar", "read_yaml_mapping", "require",
    "validate", "write_atomic",
]
