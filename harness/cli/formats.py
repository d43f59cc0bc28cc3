"""``harness formats``: write K format perturbations (FormatSpread) of a prompt variant as new variants."""

from __future__ import annotations

import argparse

from harness.core.errors import HarnessError
from harness.core.templating import compile_template
from harness.prompts.formats import NO_INSTRUCTION, instruction_span, read_instructions, with_instruction, write_variants
from harness.prompts.template import load_prompt
from harness.tasks.task import find_task


def cmd_formats(args: argparse.Namespace) -> int:
    if args.output is None:
        raise HarnessError("harness formats: give -o/--output OUT, the folder to write the variants into")
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
    written = write_variants(task.name, template.name, template.source, args.output, args.k, args.seed, instructions)
    for name, choice in written:
        print(f"{name}\t{choice.describe()}")
    names = " ".join(name for name, _ in written)
    print(f"\nrun them: harness run --task {args.task} --prompts-dir {args.output} --prompt {names}")
    return 0
