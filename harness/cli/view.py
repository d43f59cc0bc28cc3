"""``harness view``: serve the read-only web app over the results database until Ctrl-C."""

from __future__ import annotations

import argparse
import socket
import sys

from harness.cli.options.view import DEFAULT_HOST
from harness.core.deps import require
from harness.core.errors import HarnessError

for _module, _package in (("starlette", None), ("uvicorn", None), ("jinja2", None)):  # the extra "view", said as such when missing
    require(_module, "view", _package, what="harness view")

from harness.view import is_loopback, serve  # noqa: E402


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def cmd_view(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise HarnessError(f"--port {args.port}: a port is between 0 and 65535")
    host = args.host or DEFAULT_HOST
    port = args.port or free_port(host)  # 0: a free port, chosen here so the address printed is the one served
    if not is_loopback(host):
        print(f"warning: serving {args.db} on {host}: anyone who can reach this address can read every prompt and output in it",
              file=sys.stderr)

    def ready(url: str) -> None:
        print(f"harness view: {url} over {args.db} (read-only; Ctrl-C stops it)", file=sys.stderr, flush=True)

    serve(args.db, host, port, explicit_host=args.host is not None, ready=ready)
    return 0
