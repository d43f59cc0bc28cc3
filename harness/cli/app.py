"""The ``harness`` command: thin verbs over the modules that do the work. The parser is built
from the verb registry (harness/cli/verbs.py), which every harness/cli/options/<group>.py fills;
a verb's handler is imported only when it runs, so ``harness --help`` starts in a blink.

User errors (HarnessError) print one paragraph and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from harness.cli.options import (  # noqa: F401  (registration: each module registers its verbs)
    anchors,
    basic,
    calibrate,
    decide,
    draws,
    export,
    formats,
    imports,
    optimize,
    plan,
    sensitivity,
    tune,
    view,
)
from harness.cli.verbs import VERBS, check_dirs
from harness.core.errors import HarnessError, did_you_mean

# the order of ``harness --help``; verbs not listed follow by name
HELP_ORDER = ("tasks", "validate", "import", "run", "compare", "show", "ab", "rescore", "report", "tune", "calibrate", "draws", "export", "formats",
              "optimize", "sensitivity", "plan", "anchors", "cache", "view", "digest")


def _version() -> str:
    try:
        return version("harness")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Which prompt, few-shot setup or checkpoint is better, and is the difference real?",
                                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"harness {_version()}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    rank = {name: i for i, name in enumerate(HELP_ORDER)}
    for verb in sorted(VERBS.values(), key=lambda v: (rank.get(v.name, len(rank)), v.name)):
        verb.add_to(verbs)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parse_args``, with a did-you-mean for an unknown option (``--tasks`` is no longer taken for ``--tasks-dir``)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        (verbs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        verb: argparse.ArgumentParser = verbs.choices[args.verb]
        known = [o for a in verb._actions if a.help != argparse.SUPPRESS for o in a.option_strings]
        # matched without the dashes, which every option shares ('--metric' is not close to '--device')
        bare = {o.lstrip("-"): o for o in known if o.startswith("--")}
        hints = "".join(did_you_mean(e.partition("=")[0].lstrip("-"), bare).replace("'", "'--", 1) for e in extra if e.startswith("--"))
        verb.error(f"unrecognized arguments: {' '.join(extra)}.{hints}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    try:
        check_dirs(args)
        return VERBS.get(args.verb).run(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `harness compare --json | head`: the reader left, not an error
        if _stdout_gone():  # point stdout at /dev/null so the interpreter's last flush does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        raise  # another pipe (a server's socket): a real error; sys.stderr stays open (main may run inside a process)


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has left. A flush that fails says so, but the failed write may have left
    nothing to flush: then the pipe itself is asked (poll reports POLLERR on a pipe with no reader)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no fileno (a captured stream), or no poll on this platform
        return False


if __name__ == "__main__":
    sys.exit(main())
