"""Candidate prompts for ``harness optimize``: a format/instruction grammar, and instruction rewrites by a language model.

A candidate is a template text with a shot count and a selector (``Candidate``). Two proposers make them:

- **grammar** (``grammar_candidates``): the product of the format axes of ``harness formats``
  (harness/prompts/formats.py: field-name casing, separators, blank lines and, for templates that list lettered
  choices, the choice-label style, each applied with ``apply_format``), the template's instruction and its
  alternatives from a user file (``--instructions``), and the given shot counts x selectors. The whole product
  (less the starting point) is shuffled with the seed and the first K distinct candidates are taken, so the same
  (template, axes, K, seed) always gives the same candidates.
- **a model** (``model_candidates``, ``--proposer BACKEND:MODEL``): K meta-prompts, each asking for one rewrite
  of the template's instruction in a different direction (the directions' order is seeded), answered greedily
  through the model's ``generate`` and the response cache, so a rerun proposes the same candidates without the
  model. Each answer (its first line, unquoted) replaces the template's instruction (or is added before the
  demonstrations, marked ``{# instruction #}``, when it has none); a proposal that does not compile or render in
  the sandbox (StrictUndefined: a ``{{ name }}`` the rows lack fails) is dropped and counted, never used.

Nothing here reads the items the proposals will be judged on: the grammar sees the template text, the meta-prompt
the template text and the task's description.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.core.choice_labels import LABEL_STYLES, has_labels, written_style
from harness.core.errors import HarnessError
from harness.core.templating import compile_template
from harness.prompts.formats import CASINGS, SEPARATORS, SPACINGS, FormatChoice, apply_format, instruction_span, with_instruction
from harness.requests import GenerateRequest, Result

_SHOTS_LOOP = re.compile(r"{%-?\s*for\s+\w+\s+in\s+shots\b")
_INPUT = re.compile(r"^[^\n]*{{-?\s*(input|question)\b", re.MULTILINE)

# the directions a model is asked to rewrite the instruction in, one per meta-prompt (their order is seeded)
DIRECTIONS = (
    "clearer and more explicit about what to answer",
    "shorter",
    "more precise about the answer's format",
    "written as an expert would put it to a colleague",
    "encouraging careful reading of every option before answering",
    "simpler, in plain words",
    "formal",
    "focused on the single correct answer",
)


@dataclass(frozen=True)
class Candidate:
    """One point of the search: a template text at a shot count with a selector (``none`` at 0 shots)."""

    text: str
    shots: int
    selector: str
    origin: str  # how it was made, in words: 'casing=upper separator=- ...', 'instruction 2', 'proposed by MODEL: ...'

    def key(self) -> tuple[str, int, str]:
        return (self.text, self.shots, self.selector)


@dataclass(frozen=True)
class Proposals:
    """What a proposer produced: the candidates kept, and how many proposals were dropped and why."""

    candidates: tuple[Candidate, ...]
    proposed: int
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    examples: tuple[str, ...] = ()  # the first few dropped proposals with their reason


def settings(shots: Sequence[int], selectors: Sequence[str]) -> list[tuple[int, str]]:
    """Every (shot count, selector) of the grammar, in the given order; 0 shots has one, selector ``none``."""
    out: list[tuple[int, str]] = []
    for k in shots:
        for selector in (selectors if k > 0 else ["none"]):
            if (k, selector) not in out:
                out.append((k, selector))
    return out


def format_axes(source: str) -> list[tuple[FormatChoice, str]]:
    """Every distinct formatting of ``source`` by the axes of ``harness formats`` (the template itself first)."""
    labelled = has_labels(source)
    styles: Sequence[str | None] = LABEL_STYLES if labelled else (None,)
    original = FormatChoice(labels=written_style(source) if labelled else None)
    out = [(original, source)]
    seen = {source}
    for casing in CASINGS:
        for separator in SEPARATORS:
            for spacing in SPACINGS:
                for labels in styles:
                    choice = FormatChoice(casing, separator, spacing, labels)
                    if choice == original:
                        continue
                    text = apply_format(source, choice)
                    if text not in seen:
                        seen.add(text)
                        out.append((choice, text))
    return out


def add_instruction(source: str, text: str) -> str:
    """``source`` with its instruction replaced by ``text``; a template without one gets ``text`` as a marked
    ``{# instruction #}`` line before its demonstrations (else before the line that shows the input, else first)."""
    if instruction_span(source) is not None:
        return with_instruction(source, text)
    line = " ".join(text.split())
    block = "{# instruction #}" + line + "{# /instruction #}\n\n"  # trim_blocks eats the first newline after the tag
    anchor = _SHOTS_LOOP.search(source) or _INPUT.search(source)
    at = source.rfind("\n", 0, anchor.start()) + 1 if anchor is not None else 0
    return source[:at] + block + source[at:]


def grammar_candidates(source: str, start: tuple[int, str], shots: Sequence[int], selectors: Sequence[str], k: int, seed: int,
                       instructions: Sequence[str] = (), check: Callable[[str], str | None] | None = None) -> Proposals:
    """Up to ``k`` distinct candidates from the grammar, seeded; ``start`` is the starting point's (shots, selector),
    left out. ``check(text)`` returns why a text cannot be used (None: it renders)."""
    texts: list[tuple[str, str]] = [("", source)]
    for number, alternative in enumerate(instructions, start=1):
        texts.append((f"instruction {number}", add_instruction(source, alternative)))
    variants: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, text in texts:
        for choice, formatted in format_axes(text):
            if formatted not in seen:
                seen.add(formatted)
                words = " ".join(w for w in (choice.describe() if formatted != text else "", label) if w)
                variants.append((words or "as written", formatted))
    space = [(words, text, k_, sel) for words, text in variants for k_, sel in settings(shots, selectors)]
    space = [s for s in space if not (s[1] == source and (s[2], s[3]) == start)]
    random.Random(seed).shuffle(space)
    kept: list[Candidate] = []
    dropped: dict[str, int] = {}
    examples: list[str] = []
    proposed = 0
    for words, text, k_, sel in space:
        if len(kept) == k:
            break
        proposed += 1
        problem = check(text) if check is not None else None
        if problem is not None:
            dropped["does not render"] = dropped.get("does not render", 0) + 1
            examples.append(f"{words}: {problem}")
            continue
        setting = f"{k_}-shot" + (f" {sel}" if sel != "none" else "")
        kept.append(Candidate(text, k_, sel, f"{words}; {setting}"))
    return Proposals(tuple(kept), proposed, dropped, tuple(examples[:5]))


def current_instruction(source: str) -> str | None:
    span = instruction_span(source)
    return None if span is None else source[span[0]:span[1]].strip()


def meta_prompts(source: str, description: str, k: int, seed: int) -> list[str]:
    """The ``k`` meta-prompts: each asks for one rewrite of the template's instruction in one direction (seeded order)."""
    directions = list(DIRECTIONS)
    random.Random(seed).shuffle(directions)
    instruction = current_instruction(source)
    now = f'Its instruction now: "{instruction}"' if instruction else "It has no instruction yet."
    out = []
    for i in range(k):
        direction = directions[i % len(directions)]
        variant = f" (rewrite {i // len(directions) + 1})" if i >= len(directions) else ""
        out.append(
            "You improve the instruction at the top of a prompt for a language model.\n"
            f"Task: {description or 'answer the question'}\n"
            "The prompt template (Jinja: {{ ... }} is filled in for each question):\n"
            f"---\n{source.strip()}\n---\n"
            f"{now}\n"
            f"Write one new instruction for this prompt, {direction}{variant}. One line, plain text, no Jinja, no quotes.\n"
            "New instruction:"
        )
    return out


def proposal_requests(source: str, description: str, k: int, seed: int) -> list[GenerateRequest]:
    """The generate requests of a model proposer (greedy, one line each, seeded): one per meta-prompt."""
    return [GenerateRequest(prompt=p, max_tokens=64, stop=("\n",), temperature=0.0, seed=seed) for p in meta_prompts(source, description, k, seed)]


def clean_proposal(text: str) -> str:
    """A model's answer as an instruction: its first non-empty line, without surrounding quotes or a leading label."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^(new instruction|instruction)\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip("\"'`").strip()


def model_candidates(source: str, results: Sequence[Result], start: tuple[int, str], label: str,
                     check: Callable[[str], str | None]) -> Proposals:
    """Candidates from a model's answers (in request order), at the starting point's setting; each checked by ``check``."""
    kept: list[Candidate] = []
    dropped: dict[str, int] = {}
    examples: list[str] = []
    seen = {source}

    def drop(reason: str, what: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1
        examples.append(f"{what[:80]!r}: {reason}")

    for result in results:
        instruction = clean_proposal(str(getattr(result, "text", "")))
        if not instruction:
            drop("empty", instruction)
            continue
        try:
            text = add_instruction(source, instruction)
            compile_template(text, f"instruction proposed by {label}")
        except HarnessError as exc:
            drop("does not compile", f"{instruction}: {str(exc).splitlines()[0][:120]}")
            continue
        problem = check(text)
        if problem is not None:
            drop("does not render", f"{instruction}: {problem[:120]}")
            continue
        if text in seen:
            drop("duplicate", instruction)
            continue
        seen.add(text)
        kept.append(Candidate(text, start[0], start[1], f"proposed by {label}: {instruction[:100]}"))
    return Proposals(tuple(kept), len(results), dropped, tuple(examples[:5]))
