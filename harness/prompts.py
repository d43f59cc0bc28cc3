"""Prompt templates: Jinja files rendering an item (and its demonstrations) into a Prompt.

A ``NAME.jinja`` file renders plain text; a ``NAME.chat.jinja`` file renders chat messages,
each starting at a line ``@@ system``, ``@@ user`` or ``@@ assistant`` (demonstrations are
then naturally alternating user/assistant turns). For multiple choice the template renders
the context only; the scored continuation of choice ``i`` comes from the template's own
top-level macro ``answer(choice, index)`` (default: a space then the choice text, as in
lm-eval). The same macro fills ``shot.answer`` for demonstrations, so the format a
demonstration shows and the format that is scored cannot drift apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

from harness.errors import HarnessError, did_you_mean
from harness.requests import Message, Prompt
from harness.tasks import Item, Task, search_dirs
from harness.templating import JINJA_ERRORS, compile_template, explain

PROMPTS_DIR_ENV = "HARNESS_PROMPTS_DIR"
_ROLE_LINE = re.compile(r"^@@ (system|user|assistant)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Rendered:
    """A rendered item: the prompt plus, for multiple choice, one continuation per choice."""

    prompt: Prompt
    continuations: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    source: str

    @property
    def chat(self) -> bool:
        return self.path.name.endswith(".chat.jinja")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @cached_property
    def _template(self) -> jinja2.Template:
        return compile_template(self.source, str(self.path))

    def render(self, task: Task, item: Item, shots: Sequence[Item]) -> Rendered:
        """Render ``item`` with ``shots`` as demonstrations; errors name the template and line."""
        base = {"task": {"name": task.name, "description": task.spec.description}, **item.template_vars()}
        # First pass without demonstrations only to obtain the answer macro (it is needed to
        # fill each demonstration's ``answer`` before the real render).
        answer = self._answer_macro({**base, "shots": [], "k": 0})
        shot_vars = [self._shot_vars(shot, answer) for shot in shots]
        module = self._module({**base, "shots": shot_vars, "k": len(shot_vars)})
        text = str(module)
        prompt: Prompt = self._split_messages(text) if self.chat else text
        continuations: tuple[str, ...] = ()
        if item.verbalizers is not None:  # classification: every word of every label, label by label
            macro = getattr(module, "answer", None)
            continuations = tuple(self._call(macro, w, i) for i, words in enumerate(item.verbalizers) for w in words)
        elif item.choices is not None:
            macro = getattr(module, "answer", None)
            continuations = tuple(self._call(macro, c, i) for i, c in enumerate(item.choices))
        return Rendered(prompt=prompt, continuations=continuations)

    def _module(self, variables: dict[str, Any]) -> Any:
        try:
            return self._template.make_module(variables)
        except JINJA_ERRORS as exc:
            raise HarnessError(f"{self.path}: {explain(exc, str(self.path), self._template)}") from None

    def _answer_macro(self, variables: dict[str, Any]) -> Any:
        return getattr(self._module(variables), "answer", None)

    def _call(self, macro: Any, choice: str, index: int) -> str:
        if macro is None:
            return f" {choice}"
        try:
            return str(macro(choice, index))
        except JINJA_ERRORS as exc:
            raise HarnessError(f"{self.path}: macro 'answer': {explain(exc, str(self.path), self._template)}") from None

    def _shot_vars(self, shot: Item, answer_macro: Any) -> dict[str, Any]:
        variables = shot.template_vars()
        if shot.verbalizers is not None:  # a demonstration shows its label's first word
            assert isinstance(shot.target, int)
            variables["answer"] = self._call(answer_macro, shot.verbalizers[shot.target][0], shot.target)
        elif shot.choices is not None:
            assert isinstance(shot.target, int)
            variables["answer"] = self._call(answer_macro, shot.choices[shot.target], shot.target)
        else:
            variables["answer"] = variables["target"]
        return variables

    def _split_messages(self, text: str) -> tuple[Message, ...]:
        parts = _ROLE_LINE.split(text)
        if parts[0].strip():
            raise HarnessError(
                f"{self.path}: a chat template must start with a line '@@ system' or '@@ user'; "
                f"found text before it: {parts[0].strip()[:60]!r}"
            )
        messages = tuple(
            Message(role=role, content=content.strip("\n"))  # type: ignore[arg-type]
            for role, content in zip(parts[1::2], parts[2::2])
        )
        if not messages:
            raise HarnessError(f"{self.path}: chat template rendered no '@@ <role>' message lines")
        return messages


def default_prompt_dirs() -> list[Path]:
    return search_dirs(PROMPTS_DIR_ENV, "prompts")


def _search_folders(task: Task, extra_dirs: Iterable[Path]) -> list[Path]:
    folders = [task.folder / "prompts", task.folder]
    folders += [Path(d) / task.name for d in [*extra_dirs, *default_prompt_dirs()]]
    return folders


def available_prompts(task: Task, extra_dirs: Iterable[Path] = ()) -> dict[str, Path]:
    """Variant name -> template file, for every template found for ``task``."""
    found: dict[str, Path] = {}
    for folder in _search_folders(task, extra_dirs):
        if folder.is_dir():
            for path in sorted(folder.glob("*.jinja")):
                found.setdefault(path.name.removesuffix(".jinja").removesuffix(".chat"), path)
    return found


def load_prompt(task: Task, name: str, extra_dirs: Iterable[Path] = ()) -> PromptTemplate:
    """A variant by name (see ``available_prompts``) or by path to a ``.jinja`` file."""
    path = Path(name).expanduser()
    if name.endswith(".jinja") and path.is_file():
        variant = path.name.removesuffix(".jinja").removesuffix(".chat")
    else:
        known = available_prompts(task, extra_dirs)
        if name not in known:
            raise HarnessError(
                f"task '{task.name}': unknown prompt variant '{name}'.{did_you_mean(name, known)} "
                f"Found: {', '.join(sorted(known)) or '(none)'} "
                f"(searched {', '.join(str(f) for f in _search_folders(task, extra_dirs))})."
            )
        path, variant = known[name], name
    return PromptTemplate(name=variant, path=path, source=path.read_text(encoding="utf-8"))
