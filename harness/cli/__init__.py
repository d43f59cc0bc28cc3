"""The ``harness`` command: one module per verb group over the packages that do the work."""

from harness.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
