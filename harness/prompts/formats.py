"""Format perturbations (FormatSpread, Sclar et al. 2023): same prompt, other formatting.

From one Jinja template, ``perturb`` makes K variants that change only formatting — the
casing of field names (``Answer:`` / ``answer:`` / ``ANSWER:``), the separator after them
(``:`` / `` -`` / `` ::`` / `` =``), the blank lines between blocks and, for templates that
list lettered choices, the choice-label style (``A.`` / ``(a)`` / ``1)``, see
choice_labels.py: listed labels and the scored key change together) — chosen with a
seeded RNG, so the same (template, K, seed) always gives the same variants. Otherwise only
literal text is touched: Jinja tags, expressions and macros (hence the scored
continuations' words) stay as written. Variant 0 is the template itself.

Instruction paraphrases (``--instructions FILE``) replace the template's instruction — a
``{# instruction #}...{# /instruction #}`` block, else the first literal line before the
``{% for ... in shots %}`` loop — variant ``i`` taking alternative ``i mod (n + 1)``
(0 = the original), combined with its format choice.

``write_variants`` saves them as ``<out>/<task>/<name>__fmt<i>.jinja``; run them with
``--prompts-dir <out> --prompt <name>__fmt0 ...`` and ``harness compare`` reports their
spread (min / median / max across prompt variants) with CIs and paired tests.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.core.choice_labels import LABEL_STYLES, has_labels, relabel, written_style
from harness.core.errors import HarnessError
from harness.core.templating import compile_template, read_template_text

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
    labels: str | None = None  # choice-label style; None: as the template writes them
    instruction: int = 0  # 0: the template's own instruction, i: the i-th alternative from --instructions

    def describe(self) -> str:
        text = f"casing={self.casing} separator={self.separator.strip() or repr(self.separator)} blank_lines={self.spacing.count(chr(10)) - 1}"
        if self.labels is not None:
            text += f" labels={self.labels}"
        return text + (f" instruction={self.instruction}" if self.instruction else "")


def _case(name: str, casing: str) -> str:
    return {"as_is": name, "lower": name.lower(), "upper": name.upper(), "title": name.title()}[casing]


def apply_format(source: str, choice: FormatChoice) -> str:
    """The template with its literal field names, separators, blank lines and choice labels reformatted."""
    parts = _TAG.split(relabel(source, choice.labels) if choice.labels is not None else source)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 1:  # a Jinja tag: untouched
            out.append(part)
            continue
        part = _FIELD.sub(lambda m: _case(m.group(1), choice.casing) + choice.separator, part)
        part = re.sub(r"\n\n+", lambda _: choice.spacing, part)
        out.append(part)
    return "".join(out)


def perturb(source: str, k: int, seed: int = 0, instructions: Sequence[str] = ()) -> list[tuple[FormatChoice, str]]:
    """K distinct formattings of ``source`` (variant 0: unchanged), seeded and reproducible.

    The label axis exists only for templates that list labels and instruction alternatives
    only when given, so a template without either gets exactly the variants it got before
    those axes existed (same combinations in the same seeded order).
    """
    if k < 1:
        raise HarnessError("format perturbations: K must be at least 1")
    labelled = has_labels(source)
    if not labelled and not _FIELD.search("".join(_TAG.split(source)[::2])):
        raise HarnessError("format perturbations need literal field names like 'Answer:' at the start of a line, "
                           "or lettered choices ({{ letters[i] }}. / choice_label(i)), in the template")
    texts = [source, *(with_instruction(source, alt) for alt in instructions)]
    styles: Sequence[str | None] = LABEL_STYLES if labelled else (None,)
    original = FormatChoice(labels=written_style(source) if labelled else None)
    combos = [FormatChoice(c, s, p, lab) for c in CASINGS for s in SEPARATORS for p in SPACINGS for lab in styles]
    rng = random.Random(seed)
    rest = [c for c in combos if c != original]
    rng.shuffle(rest)
    variants: list[tuple[FormatChoice, str]] = [(original, source)]
    seen = {source}
    for choice in rest:
        if len(variants) == k:
            break
        instruction = len(variants) % len(texts)
        text = apply_format(texts[instruction], choice)
        if text not in seen:  # a template without blank lines ignores spacing: skip duplicates
            seen.add(text)
            variants.append((FormatChoice(choice.casing, choice.separator, choice.spacing, choice.labels, instruction), text))
    if len(variants) < k:
        raise HarnessError(f"this template has only {len(variants)} distinct formattings; ask for fewer")
    return variants


# -- instructions ------------------------------------------------------------------------
_MARKED = re.compile(r"{#-?\s*instruction\s*-?#}(.*?){#-?\s*/instruction\s*-?#}", re.DOTALL)
_SHOTS_LOOP = re.compile(r"{%-?\s*for\s+\w+\s+in\s+shots\b")
NO_INSTRUCTION = ("has no instruction to paraphrase: mark it with {# instruction #}...{# /instruction #}, "
                  "or put it as a literal line before the {% for ... in shots %} loop")


def instruction_span(source: str) -> tuple[int, int, bool] | None:
    """(start, end, marked) of the template's instruction text, or None.

    The instruction is the text between ``{# instruction #}`` and ``{# /instruction #}``
    (one block at most); without markers, the first line before the demonstrations loop
    that starts with literal text (not a ``{% %}`` statement, a ``{# #}`` comment or a chat
    ``@@ role`` line). Templates with neither have none.
    """
    marked = list(_MARKED.finditer(source))
    if len(marked) > 1:
        raise HarnessError("template marks more than one {# instruction #} block")
    if marked:
        return marked[0].start(1), marked[0].end(1), True
    loop = _SHOTS_LOOP.search(source)
    if loop is None:
        return None
    in_tag = [(m.start(), m.end()) for m in _TAG.finditer(source) if not m.group(0).startswith("{{")]
    offset = 0
    for line in source[: loop.start()].split("\n"):
        first = offset + len(line) - len(line.lstrip())
        if line.strip() and not line.lstrip().startswith("@@ ") and not any(a <= first < b for a, b in in_tag):
            return first, offset + len(line.rstrip()), False
        offset += len(line) + 1
    return None


def with_instruction(source: str, text: str) -> str:
    """``source`` with its instruction replaced by ``text`` (markers are kept)."""
    span = instruction_span(source)
    if span is None:
        raise HarnessError(f"template {NO_INSTRUCTION}")
    start, end, marked = span
    if not marked and "\n" in text.strip():
        raise HarnessError(f"instruction {text[:40]!r} spans several lines; the template's instruction is one line "
                           "(mark a block with {# instruction #}...{# /instruction #} for longer ones)")
    return source[:start] + (text if marked else text.strip()) + source[end:]


def read_instructions(path: Path) -> list[str]:
    """Alternative instructions: a JSON or YAML list of strings, or a text file with one per line."""
    raw = read_template_text(path, "instructions file")
    if path.suffix in (".json", ".yaml", ".yml"):
        try:
            entries = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise HarnessError(f"{path}: not valid {path.suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None
        if not isinstance(entries, list):
            raise HarnessError(f"{path}: expected a list of instruction strings, got {type(entries).__name__}")
    else:
        entries = [line.strip() for line in raw.splitlines() if line.strip()]
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, str) or not entry.strip():
            raise HarnessError(f"{path}: entry {number} is not a non-empty string: {entry!r}")
    if not entries:
        raise HarnessError(f"{path}: no instructions in the file")
    return list(entries)


def write_variants(task_name: str, template_name: str, source: str, out: Path, k: int, seed: int = 0,
                   instructions: Sequence[str] = ()) -> list[tuple[str, FormatChoice]]:
    """Write the K variants as templates of ``task_name`` under ``out``; returns (variant name, format)."""
    variants = perturb(source, k, seed, instructions)
    for choice, text in variants:  # a paraphrase is Jinja too: fail before writing anything
        compile_template(text, f"{template_name} variant with instruction {choice.instruction}")
    folder = out / task_name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (choice, text) in enumerate(variants):
        name = f"{template_name}__fmt{i}"
        (folder / f"{name}.jinja").write_text(f"{{# format variant {i} of {template_name}: {choice.describe()} #}}\n{text}", encoding="utf-8")
        written.append((name, choice))
    return written
