"""Build hook only (the metadata is in pyproject.toml): copy the bundled top-level folders
(tasks/, prompts/, tests/cases/) into the built package as harness/bundled/<name>, so a wheel or
a non-editable install lists and runs the bundled tasks. What is copied where is
harness.core.paths.BUNDLED, read from the file without importing harness (a build environment
has only setuptools). Editable installs copy nothing: harness then reads the checkout's folders."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from setuptools import setup  # type: ignore[import-untyped]
from setuptools.command.build_py import build_py  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
PATHS = runpy.run_path(str(HERE / "harness" / "core" / "paths.py"))


class build_py_bundled(build_py):
    """build_py, then the bundled folders into <build_lib>/harness/bundled/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "harness" / PATHS["BUNDLED_PACKAGE_DIR"]
        if target.exists():  # a reused build/ must not keep files deleted from the source
            shutil.rmtree(target)
        for name, source in PATHS["BUNDLED"].items():
            shutil.copytree(HERE / source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": build_py_bundled})
