"""Options of ``import`` (handler: harness/cli/imports.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.verbs import Verb, output_option, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["promptsource", "lm-eval"], help="what to import")
    p.add_argument("dataset", help="promptsource: a dataset[/subset], e.g. glue/sst2, super_glue/boolq, ag_news; "
                   "lm-eval: a task YAML, or the name of a task shipped with the installed lm-eval (arc_easy)")
    output_option(p, "promptsource: the folder for the variants, e.g. prompts/sst2; lm-eval: the task folder to write, e.g. tasks/arc_easy_lm "
                  "(required)", type=Path, metavar="OUT")
    p.add_argument("--from", dest="source", type=Path, help="PromptSource's source archive (promptsource-<version>.tar.gz), its templates "
                   "folder, or a templates.yaml (default: the archive, fetched once from the package registry into harness's cache)")
    p.add_argument("--field", action="append", default=[], metavar="NAME=EXPR",
                   help="a PromptSource variable the task's rows lack, as an expression over their fields, "
                   "e.g. --field \"text=Title ~ '. ' ~ Description\" (repeatable)")
    p.add_argument("--task", help="check every variant renders on this task's first items; those that do not are not kept")
    p.add_argument("--json", action="store_true")


register_verb(Verb("import", "import PromptSource templates as prompt variants, or an lm-eval task YAML as a task folder", _arguments,
                   "harness.cli.imports:cmd_import", ("dirs",)))
