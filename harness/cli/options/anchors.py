"""Options of ``anchors`` (handler: harness/cli/anchors.py)."""

from __future__ import annotations

import argparse

from harness.cli.verbs import ListFlag, Verb, output_option, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.usage = ("harness anchors TASK --from RUN [RUN ...] -k K [-o FILE] [--seed S] [--metric M] [--prompt P ...] [--exclude-prompt P ...]\n"
               "       harness anchors estimate [RUN ...] --anchors FILE [--prompt P ...] [--confidence C]")
    p.add_argument("words", nargs="+", metavar="TASK | estimate RUN",
                   help="TASK: fit anchors on the task's stored cells (--from); 'estimate RUN ...': the full-set estimate of each cell "
                        "of the runs (default: the latest) from its anchor items (--anchors)")
    p.add_argument("--from", dest="runs", action=ListFlag, default=[], metavar="RUN",
                   help="runs whose cells the model is fitted on (each cell: one respondent)")
    p.add_argument("-k", type=int, help="number of anchor items (at least 4: two in each of k // 2 strata)")
    output_option(p, "the anchors file to write (JSON for *.json, else YAML; default: printed on stdout)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the anchors' draw inside their strata (default: %(default)s)")
    p.add_argument("--metric", help="the 0/1 metric (default: the task's main metric)")
    p.add_argument("--prompt", action=ListFlag, default=None, help="only these prompt variants' cells")
    p.add_argument("--exclude-prompt", action=ListFlag, default=[], help="leave these prompt variants' cells out (held out for a check)")
    p.add_argument("--anchors", help="estimate: the anchors file written by harness anchors TASK")
    p.add_argument("--confidence", type=float, default=0.95, help="estimate: confidence of the intervals (default: %(default)s)")


register_verb(Verb("anchors", "fit an IRT model on stored cells and choose anchor items; estimate full-set scores from them", _arguments,
                   "harness.cli.anchors:cmd_anchors", ("db",)))
