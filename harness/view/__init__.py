"""``harness view``: a local, read-only web app over the results database (runs, a run's verdict and
ranked table with provenance, the outputs matrix of its items, one item's prompt and response, the A/B
and sensitivity pages), and the same pages written as one self-contained file (``harness report``).

The names below are imported on first use: ``harness report`` writes a page without loading
Starlette and uvicorn, which only the app needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.lazy import lazy_names

if TYPE_CHECKING:
    from harness.view.app import check_host, create_app, is_loopback, serve
    from harness.view.export import write_ab_report, write_report, write_sensitivity_report, write_tuning_report

_WHERE = {"check_host": "app", "create_app": "app", "is_loopback": "app", "serve": "app", "write_ab_report": "export",
          "write_report": "export", "write_sensitivity_report": "export", "write_tuning_report": "export"}

__all__ = ["check_host", "create_app", "is_loopback", "serve", "write_ab_report", "write_report", "write_sensitivity_report",
           "write_tuning_report"]

__getattr__ = lazy_names(__name__, _WHERE)
