"""Format perturbations (FormatSpread, Sclar et al. 2023): same prompt, other formatting.

From one Jinja template, ``perturb`` makes K variants that change only formatting — the
casing of field names (``Answer:`` / ``answer:`` / ``ANSWER:``), the separator after them
(``:`` / `` -`` / `` ::`` / `` =``) and the blank lines between blocks — chosen with a
seeded RNG, so the same (template, K, seed) always gives the same variants. Only literal
text is touched: Jinja tags, expressions and macros (hence the scored continuations'
words) stay as written. Variant 0 is the template itself.

``write_variants`` saves them as ``<out>/<task>/<name>__fmt<i>.jinja``; run them with
``--prompts-dir <out> --prompt <name>__fmt0 ...`` and ``harness compare`` reports their
spread (min / median / max across prompt variants) with CIs and paired tests.
"""

from __future__ import annotations

import random
import re
import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

_TAG = re.compile(r"({{.*?}}|{%.*?%}|{#.*?#})", re.DOTALL)
_FIELD = re.compile(r"(?:(?<=\n)|^)([A-Za-z][A-Za-z ]{0,30}?):")
CASINGS = ("as_is", "lower", "upper", "title")
SEPARATORS = (":", " -", " ::", " =")
SPACINGS = ("\n\n", "\n", "\n\n\n")


@dataclass(frozen=True)
class FormatChoice:
    casing: str = "as_is"
    separator: str = ":"
    spacing: str = "\n\n"

    def describe(self) -> str:
        return f"casing={self.casing} separator={self.separator.strip() or repr(self.separator)} blank_lines={self.spacing.count(chr(10)) - 1}"


def _case(name: str, casing: str) -> str:
    return {"as_is": name, "lower": name.lower(), "upper": name.upper(), "title": name.title()}[casing]


def apply_format(source: str, choice: FormatChoice) -> str:
    """The template with its literal field names, separators and blank lines reformatted."""
    parts = _TAG.split(source)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 1:  # a Jinja tag: untouched
            out.append(part)
            continue
        part = _FIELD.sub(lambda m: _case(m.group(1), choice.casing) + choice.separator, part)
        part = re.sub(r"\n\n+", lambda _: choice.spacing, part)
        out.append(part)
    return "".join(out)


def perturb(source: str, k: int, seed: int = 0) -> list[tuple[FormatChoice, str]]:
    """K distinct formattings of ``source`` (variant 0: unchanged), seeded and reproducible."""
    if k < 1:
        raise HarnessError("format perturbations: K must be at least 1")
    if not _FIELD.search("".join(_TAG.split(source)[::2])):
        raise HarnessError("format perturbations need literal field names like 'Answer:' at the start of a line in the template")
    combos = [FormatChoice(c, s, p) for c in CASINGS for s in SEPARATORS for p in SPACINGS]
    rng = random.Random(seed)
    rest = [c for c in combos if c != FormatChoice()]
    rng.shuffle(rest)
    variants: list[tuple[FormatChoice, str]] = [(FormatChoice(), source)]
    seen = {source}
    for choice in rest:
        if len(variants) == k:
            break
        text = apply_format(source, choice)
        if text not in seen:  # a template without blank lines ignores spacing: skip duplicates
            seen.add(text)
            variants.append((choice, text))
    if len(variants) < k:
        raise HarnessError(f"this template has only {len(variants)} distinct formattings; ask for fewer")
    return variants


def write_variants(task_name: str, template_name: str, source: str, out: Path, k: int, seed: int = 0) -> list[tuple[str, FormatChoice]]:
    """Write the K variants as templates of ``task_name`` under ``out``; returns (variant name, format)."""
    folder = out / task_name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (choice, text) in enumerate(perturb(source, k, seed)):
        name = f"{template_name}__fmt{i}"
        (folder / f"{name}.jinja").write_text(f"{{# format variant {i} of {template_name}: {choice.describe()} #}}\n{text}", encoding="utf-8")
        written.append((name, choice))
    return written


# -- CLI: harness formats TASK --prompt NAME -k 8 -o DIR ---------------------------------
def add_verb(verbs: argparse._SubParsersAction, dirs: Callable[[argparse.ArgumentParser], None]) -> None:  # type: ignore[type-arg]
    p = verbs.add_parser("formats", help="write K format perturbations of a prompt variant (FormatSpread) as new variants")
    dirs(p)
    p.add_argument("task")
    p.add_argument("--prompt", required=True, help="the variant to perturb")
    p.add_argument("-k", type=int, default=8, help="number of variants, the original included (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", type=Path, required=True, help="folder to write <task>/<prompt>__fmt<i>.jinja into")


def cmd_formats(args: argparse.Namespace) -> int:
    from harness.prompts import load_prompt
    from harness.tasks import find_task

    task = find_task(args.task, args.tasks_dir, args.data_dir)
    template = load_prompt(task, args.prompt, args.prompts_dir)
    written = write_variants(task.name, template.name, template.source, args.out, args.k, args.seed)
    for name, choice in written:
        print(f"{name}\t{choice.describe()}")
    names = " ".join(name for name, _ in written)
    print(f"\nrun them: harness run --task {args.task} --prompts-dir {args.out} --prompt {names}")
    return 0
