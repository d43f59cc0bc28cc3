"""``harness view``: a local, read-only web app over the results database (runs, a run's verdict and
ranked table with provenance, the outputs matrix of its items, one item's prompt and response)."""

from harness.view.app import check_host, create_app, is_loopback, serve

__all__ = ["check_host", "create_app", "is_loopback", "serve"]
