"""Prompt templates: Jinja files rendering an item (and its demonstrations) into a Prompt.

A ``NAME.jinja`` file renders plain text; a ``NAME.chat.jinja`` file renders chat messages,
each starting at a line ``@@ system``, ``@@ user`` or ``@@ assistant`` (demonstrations are
then naturally alternating user/assistant turns). For multiple choice the template renders
the context only; the scored continuation of choice ``i`` comes from the template's own
top-level macro ``answer(choice, index)`` (default: a space then the choice text, as in
lm-eval). The same macro fills ``shot.answer`` for demonstrations, so the format a
demonstration shows and the format that is scored cannot drift apart. A demonstration's
``answer`` comes from a rendering with the demonstration's own fields (cached per template,
task and demonstration), so a macro that reads another field (``{{ reason }}``) shows the
demonstration's value, not the evaluated item's.

Per-choice contexts (task ``contexts:`` + ``continuation:``, Winograd style): the template is
rendered once per choice with ``context`` (that choice's context) and ``choice_index``; each
rendering is scored on ``answer(continuation, index)`` (default: a space then the shared
continuation, lm-eval's target delimiter), which must give the same text for every choice.
A demonstration shows its correct choice's context (``shot.context``) and its own continuation
through the macro (``shot.answer``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

from harness.core.errors import HarnessError, did_you_mean
from harness.core.paths import bundled_prompts
from harness.core.templating import JINJA_ERRORS, call_limited, compile_template, explain, read_template_text, reads_variable, render_module
from harness.prompts.messages import Message, Prompt
from harness.tasks.task import Item, Task, search_dirs

PROMPTS_DIR_ENV = "HARNESS_PROMPTS_DIR"
_ROLE_LINE = re.compile(r"^@@ (system|user|assistant)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Rendered:
    """A rendered item: the prompt plus, for multiple choice, one continuation per choice.

    With per-choice contexts ``prompts`` holds one prompt per choice (scored with the
    continuation at the same index) and ``prompt`` is the correct choice's: the one stored,
    shown and trained on. Otherwise ``prompts`` is empty and every continuation follows ``prompt``.
    """

    prompt: Prompt
    continuations: tuple[str, ...] = ()
    prompts: tuple[Prompt, ...] = ()


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    source: str
    # demonstration answers: (id(task), id(shot)) -> (task, shot, answer); the objects are kept so an id is never reused
    _answers: dict[tuple[int, int], tuple[Task, Item, str]] = field(init=False, default_factory=dict, compare=False, repr=False)

    @property
    def chat(self) -> bool:
        return self.path.name.endswith(".chat.jinja")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @cached_property
    def _template(self) -> jinja2.Template:
        check_not_empty(self.source, self.path)
        return compile_template(self.source, str(self.path))

    def render(self, task: Task, item: Item, shots: Sequence[Item]) -> Rendered:
        """Render ``item`` with ``shots`` as demonstrations; errors name the template, line and item. Each rendering
        (and each call of the answer macro) has the sandbox's time and size limits (``harness.core.templating``)."""
        variables = {**self._item_vars(task, item), "shots": [self._shot_vars(task, shot) for shot in shots], "k": len(shots)}
        if item.contexts is not None:
            return self._render_per_choice(item, variables)
        who = f"item {item.id!r}"
        module = self._module(variables, who)
        prompt = self._prompt(str(module), who)
        continuations: tuple[str, ...] = ()
        if item.verbalizers is not None:  # classification: every word of every label, label by label
            macro = getattr(module, "answer", None)
            continuations = tuple(self._call(macro, w, i, who) for i, words in enumerate(item.verbalizers) for w in words)
        elif item.choices is not None:
            macro = getattr(module, "answer", None)
            continuations = tuple(self._call(macro, c, i, who) for i, c in enumerate(item.choices))
        return Rendered(prompt=prompt, continuations=continuations)

    def _render_per_choice(self, item: Item, variables: dict[str, Any]) -> Rendered:
        """One prompt per choice (``context`` = that choice's context), each scored on the shared continuation."""
        assert item.contexts is not None and item.continuation is not None and isinstance(item.target, int)
        prompts: list[Prompt] = []
        continuations: list[str] = []
        who = f"item {item.id!r}"
        for index, context in enumerate(item.contexts):
            module = self._module({**variables, "context": context, "choice_index": index}, who)
            prompts.append(self._prompt(str(module), who))
            continuations.append(self._call(getattr(module, "answer", None), item.continuation, index, who))
        for index, continuation in enumerate(continuations):
            if continuation != continuations[0]:
                raise HarnessError(
                    f"{self.path}: item {item.id!r}: the answer macro gave {continuations[0]!r} for choice 0 but {continuation!r} "
                    f"for choice {index}; with per-choice contexts the scored continuation is shared, so the macro must not depend "
                    "on the choice"
                )
        if len(prompts) > 1 and len(set(map(repr, prompts))) == 1 and len(set(item.contexts)) > 1:
            raise HarnessError(
                f"{self.path}: item {item.id!r}: every choice renders the same prompt; a template for per-choice contexts must "
                "show each choice's '{{ context }}'"
            )
        return Rendered(prompt=prompts[item.target], continuations=tuple(continuations), prompts=tuple(prompts))

    def _item_vars(self, task: Task, item: Item) -> dict[str, Any]:
        return {"task": {"name": task.name, "description": task.spec.description}, **item.template_vars()}

    def _prompt(self, text: str, who: str) -> Prompt:
        prompt = self._split_messages(text) if self.chat else text
        if not (prompt.strip() if isinstance(prompt, str) else any(m.content.strip() for m in prompt)):
            raise HarnessError(f"{self.path}: {who}: the template rendered an empty prompt; nothing would be sent to the model "
                               "(a condition that is false for this row?)")
        return prompt

    def _module(self, variables: dict[str, Any], who: str) -> Any:
        try:
            return render_module(self._template, variables)
        except JINJA_ERRORS as exc:
            raise HarnessError(f"{self.path}: {who}: {explain(exc, str(self.path), self._template)}") from None

    def _answer_macro(self, variables: dict[str, Any]) -> Any:
        """A demonstration's answer macro, from a rendering with its own fields (``variables``)."""
        return getattr(self._module(variables, f"demonstration {variables.get('id')!r}"), "answer", None)

    def _call(self, macro: Any, choice: str, index: int, who: str) -> str:
        if macro is None:
            return f" {choice}"
        try:
            return call_limited(macro, choice, index)
        except JINJA_ERRORS as exc:
            raise HarnessError(f"{self.path}: {who}: macro 'answer': {explain(exc, str(self.path), self._template)}") from None

    def _shot_vars(self, task: Task, shot: Item) -> dict[str, Any]:
        variables = shot.template_vars()
        if shot.contexts is not None:  # a demonstration shows its correct choice's context
            assert isinstance(shot.target, int)
            variables.update(context=shot.contexts[shot.target], choice_index=shot.target)
        if shot.choices is not None:
            variables["answer"] = self._shot_answer(task, shot)
        else:
            variables["answer"] = variables["target"]
        return variables

    def _shot_answer(self, task: Task, shot: Item) -> str:
        """The answer macro applied to a demonstration's correct choice, in a rendering with the
        demonstration's own fields (so a macro reading another field shows the demonstration's):
        a classification shot shows its label's first word, a per-choice-context shot its
        continuation. Cached: few-shot runs render the same demonstrations thousands of times."""
        key = (id(task), id(shot))
        cached = self._answers.get(key)
        if cached is not None and cached[0] is task and cached[1] is shot:
            return cached[2]
        assert isinstance(shot.target, int) and shot.choices is not None
        macro = None
        who = f"demonstration {shot.id!r}"
        if "answer" in self.source:  # no macro named answer can exist otherwise: skip the rendering
            own = {**self._item_vars(task, shot), "shots": [], "k": 0}
            if shot.contexts is not None:
                own.update(context=shot.contexts[shot.target], choice_index=shot.target)
            try:
                macro = self._answer_macro(own)
            except HarnessError as exc:
                raise HarnessError(f"{exc} (rendering demonstration {shot.id!r} with its own fields, for its 'answer')") from None
        if shot.verbalizers is not None:
            text = self._call(macro, shot.verbalizers[shot.target][0], shot.target, who)
        elif shot.contexts is not None:
            assert shot.continuation is not None
            text = self._call(macro, shot.continuation, shot.target, who)
        else:
            text = self._call(macro, shot.choices[shot.target], shot.target, who)
        if len(self._answers) >= 4096:  # demonstration pools are bounded; callers making fresh Items each time are not
            self._answers.clear()
        self._answers[key] = (task, shot, text)
        return text

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
    """The task folder's own prompts/ and the folder itself; a bundled task's prompts/<task>/
    (its own variants, so they keep their place); then <dir>/<task name> for each prompts dir,
    and for a group's member (mmlu_anatomy of tasks/mmlu) also <dir>/<group>, where `harness
    formats mmlu -o DIR` writes the variants every member shares."""
    own = bundled_prompts(task.folder)
    folders = [task.folder / "prompts", task.folder, *([own] if own is not None else [])]
    names = [task.name, task.folder.name] if task.folder.name != task.name else [task.name]
    folders += [Path(d) / name for d in [*extra_dirs, *default_prompt_dirs()] for name in names]
    unique: dict[Path, Path] = {}
    for folder in folders:
        unique.setdefault(folder.resolve(), folder)
    return list(unique.values())


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
    source = read_template_text(path)
    check_not_empty(source, path)
    return PromptTemplate(name=variant, path=path, source=source)


def check_not_empty(source: str, path: Path) -> None:
    """An empty template would send every model an empty prompt: refuse it where it is loaded."""
    if not source.strip():
        raise HarnessError(f"{path}: the template is empty; it must render the prompt (e.g. '{{{{ input }}}}')")


def reads_shots(template: PromptTemplate) -> bool:
    """Whether the template shows the demonstrations at all: reads ``shots`` somewhere (a macro counts).

    A k-shot cell of a template that does not renders exactly its zero-shot prompt: ``harness validate`` and
    ``harness run`` say so, one line per template (``harness.fewshot.selectors.unshown_shots_warning``)."""
    return reads_variable(template.source, "shots", str(template.path))
