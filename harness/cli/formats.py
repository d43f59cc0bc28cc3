"""``harness formats``: write K format perturbations (FormatSpread) of a prompt variant as new variants."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.verbs import Verb, register_verb
from harness.core.errors import HarnessError
from harness.core.templating import compile_template
from harness.prompts.formats import NO_INSTRUCTION, instruction_span, read_instructions, with_instruction, write_variants
from harness.prompts.template import load_prompt
from harness.tasks.task import find_task


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task")
    p.add_argument("--prompt", required=True, help="the variant to perturb")
    p.add_argument("-k", type=int, default=8, help="number of variants, the original included (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", type=Path, required=True, help="folder to write <task>/<prompt>__fmt<i>.jinja into")
    p.add_argument("--instructions", type=Path, metavar="FILE",
                   help="alternative instructions (one per line, or a JSON/YAML list) replacing the template's instruction")


def cmd_formats(args: argparse.Namespace) -> int:
    task = find_task(args.task, args.tasks_dir, args.data_dir)
    template = load_prompt(task, args.prompt, args.prompts_dir)
    instructions = read_instructions(args.instructions) if args.instructions else []
    if instructions and instruction_span(template.source) is None:
        raise HarnessError(f"{template.path}: {NO_INSTRUCTION}")

    for number, alternative in enumerate(instructions, start=1):  # name the file and entry on a bad one
        where = f"{args.instructions}: entry {number}"
        try:
            compile_template(with_instruction(template.source, alternative), where)
        except HarnessError as exc:
            raise HarnessError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    written = write_variants(task.name, template.name, template.source, args.out, args.k, args.seed, instructions)
    for name, choice in written:
        print(f"{name}\t{choice.describe()}")
    names = " ".join(name for name, _ in written)
    print(f"\nrun them: harness run --task {args.task} --prompts-dir {args.out} --prompt {names}")
    return 0


register_verb(Verb("formats", "write K format perturbations of a prompt variant (FormatSpread) as new variants", _arguments, cmd_formats, ("dirs",)))
