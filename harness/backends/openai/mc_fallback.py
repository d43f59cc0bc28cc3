"""Multiple choice without log-likelihoods: ask for the answer, then parse it.

Chat-only APIs return no prompt logprobs, so a multiple-choice item cannot be scored by
comparing continuations. With ``mc_fallback: generate`` the backend shows the options as
lettered lines, asks for the letter, and maps the reply back to one option: that option
gets log-probability 0, the others -inf. A reply that names no option (or several) is a
*parse failure*: every option gets NaN, so it is visible in the stored responses, and the
backend counts it so the run reports it instead of silently scoring it.

It shows one context and lists the options under it, so it cannot express a task whose
choices have their own contexts (``contexts:``, Winograd style): such a task with
``mc_fallback: generate`` is refused at planning time
(``OpenAIBackend.capabilities``), before any request is sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from harness.prompts.messages import Message, Prompt

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
INSTRUCTION = "Answer with the letter of the correct option only."


def question_prompt(context: Prompt, options: Sequence[str]) -> Prompt:
    """The item's own prompt followed by lettered options and the instruction."""
    listing = "\n".join(f"{LETTERS[i]}. {option.strip()}" for i, option in enumerate(options))
    suffix = f"\n\nOptions:\n{listing}\n{INSTRUCTION}"
    if isinstance(context, str):
        return f"{context.rstrip()}{suffix}\nAnswer:"
    messages = list(context)
    if messages and messages[-1].role == "user":
        messages[-1] = Message("user", messages[-1].content.rstrip() + suffix)
    else:
        messages.append(Message("user", suffix.strip()))
    return tuple(messages)


def parse_choice(reply: str, options: Sequence[str]) -> int | None:
    """Index of the option the reply names, or None when it names none or several."""
    text = reply.strip()
    letters = LETTERS[: len(options)]
    match = re.match(rf"^\(?([{letters}])\)?(?:[.):\s]|$)", text)
    if match:
        return letters.index(match.group(1))
    match = re.search(rf"\b(?:answer|option)\s*(?:is)?\s*:?\s*\(?([{letters}])\b", text, re.IGNORECASE)
    if match and match.group(1) in letters:
        return letters.index(match.group(1))
    lowered = text.lower()
    named = [i for i, option in enumerate(options) if option.strip() and option.strip().lower() in lowered]
    return named[0] if len(named) == 1 else None


def choice_logprobs(chosen: int | None, n_options: int) -> list[float]:
    if chosen is None:
        return [math.nan] * n_options
    return [0.0 if i == chosen else -math.inf for i in range(n_options)]
