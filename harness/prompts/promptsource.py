"""PromptSource templates as harness prompt variants, without importing PromptSource.

PromptSource (Bach et al. 2022) is the largest public collection of prompt variants: per dataset,
Jinja templates with ``|||`` between the input and the target and an ``answer_choices`` list
(``negative ||| positive``, or Jinja over the row: ``{{sol1}} ||| {{sol2}}``). Its package does not
install on Python >= 3.10, so harness reads the ``templates.yaml`` files from its source archive
(fetched once from the package registry into harness's cache, or a file or folder the user
names) with a safe YAML loader that maps PromptSource's ``!Template`` / ``!TemplateMetadata`` tags
to plain mappings, never a full loader and never its code.

Each template with answer choices becomes one ``ps_<name>.jinja`` file that reproduces
PromptSource's own ``Template.apply``: the template rendered with the row (fields cut to 2,048
characters, as ``apply`` does) and ``answer_choices``, the part before ``|||`` stripped, is the
prompt (only that part is rendered when the separator is outside every block, so the row need
not hold the target's fields: harness's task gives the gold); choice ``i`` is scored as a space and ``answer_choices[i]`` (lm-eval's target delimiter).
The original Jinja runs in harness's sandbox with its whitespace semantics kept (harness trims
block lines, PromptSource does not: every block tag is marked ``{%+ ... +%}``). Demonstrations,
when asked for, are the same rendering of each shot followed by its answer, a blank line apart.
Templates without answer choices (generation ones), or using the random ``choice`` filter, are
listed as skipped, with why.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml

from harness.core.errors import HarnessError
from harness.core.templating import decode_utf8, environment, read_template_text
from harness.prompts.foreign import keep_whitespace, row_scope, template_variables

VERSION = "0.2.3"
ARCHIVE = f"promptsource-{VERSION}.tar.gz"
TEXT_VAR_LENGTH = 2048  # PromptSource's truncation of every {{ }} in apply(truncate=True)
_SLUG = re.compile(r"[^A-Za-z0-9]+")


class _Loader(yaml.SafeLoader):
    """SafeLoader plus PromptSource's two tags, read as plain mappings."""


def _plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor("!Template", _plain)
_Loader.add_constructor("!TemplateMetadata", _plain)


@dataclass(frozen=True)
class PSTemplate:
    """One PromptSource template as its file holds it."""

    id: str
    name: str
    jinja: str
    answer_choices: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def file_stem(self) -> str:
        return "ps_" + (_SLUG.sub("_", self.name).strip("_").lower() or self.id[:8])


@dataclass(frozen=True)
class Imported:
    written: list[Path]
    skipped: list[tuple[str, str]]  # (template name, why)


def archive_path(cache: Path) -> Path:
    """PromptSource's source archive in ``cache``, downloaded once from the package registry
    (``pip download``: the registry is reachable where the hub is not)."""
    target = cache / ARCHIVE
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--ignore-requires-python",
               f"promptsource=={VERSION}", "-d", str(cache), "-q"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"downloading {ARCHIVE} from the package registry took over 5 minutes; give the archive or a "
                           "templates folder with --from") from None
    if done.returncode != 0 or not target.is_file():
        raise HarnessError(f"could not download {ARCHIVE} ({' '.join(command[2:])}): {done.stderr.strip()[-300:]}; "
                           "give the archive or a templates folder with --from")
    return target


def read_templates(source: Path, dataset: str) -> list[PSTemplate]:
    """The templates of ``dataset`` (``glue/sst2``, ``ag_news``) from PromptSource's archive, its
    ``templates`` folder, or a ``templates.yaml`` file."""
    text, where = _templates_text(source, dataset)
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass: two tags added, nothing executable)
    except yaml.YAMLError as exc:
        raise HarnessError(f"{where}: not valid YAML ({exc})") from None
    templates = (document or {}).get("templates") if isinstance(document, dict) else None
    if not isinstance(templates, dict) or not templates:
        raise HarnessError(f"{where}: no 'templates' mapping")
    out = []
    for key, entry in templates.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("jinja"), str) or not isinstance(entry.get("name"), str):
            raise HarnessError(f"{where}: template {key}: expected a mapping with 'name' and 'jinja'")
        choices = entry.get("answer_choices")
        out.append(PSTemplate(str(entry.get("id", key)), entry["name"], entry["jinja"], choices if isinstance(choices, str) else None,
                              dict(entry.get("metadata") or {})))
    return out


def _templates_text(source: Path, dataset: str) -> tuple[str, str]:
    relative = f"{dataset.strip('/')}/templates.yaml"
    if source.is_file() and source.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(source) as archive:
            names = [m for m in archive.getmembers() if m.name.endswith(f"/promptsource/templates/{relative}")]
            if not names:
                known = sorted({m.name.split("/promptsource/templates/")[1].removesuffix("/templates.yaml")
                                for m in archive.getmembers() if m.name.endswith("/templates.yaml") and "/promptsource/templates/" in m.name})
                near = [k for k in known if dataset.split("/")[-1] in k][:8]
                hint = f" (similar: {', '.join(near)})" if near else f" ({len(known)} datasets, e.g. {', '.join(known[:5])})"
                raise HarnessError(f"{source}: PromptSource has no templates for '{dataset}'{hint}")
            handle = archive.extractfile(names[0])
            assert handle is not None
            where = f"{source}:{names[0].name}"
            return decode_utf8(handle.read(), where, "PromptSource templates file"), where
    path = source if source.is_file() else source / relative
    if not path.is_file():
        raise HarnessError(f"{path}: not found; --from takes PromptSource's archive ({ARCHIVE}), its templates folder, or a templates.yaml")
    return read_template_text(path, "PromptSource templates file"), str(path)


_TAG = re.compile(r"\{%[-+]?\s*(\w+)")
_OPENS = {"if", "for", "macro", "with", "block", "filter", "call", "raw", "autoescape"}


def input_source(jinja: str) -> str:
    """The template up to its ``|||`` when that separator is outside every block (almost always):
    then the target's fields (``label``...) need not exist in the row. A ``|||`` inside a block
    (a conditional target) keeps the whole template: it is rendered and split, as apply() does."""
    at = jinja.find("|||")
    depth = 0
    for match in _TAG.finditer(jinja[:at]):
        word = match.group(1)
        depth += word in _OPENS
        depth -= word.startswith("end")
    return jinja[:at] if at >= 0 and depth == 0 else jinja


def convert(template: PSTemplate, dataset: str, fields: dict[str, str] | None = None) -> str:
    """The harness template for one PromptSource template; HarnessError saying why it cannot be.
    ``fields`` maps a PromptSource variable to an expression over the task's row fields."""
    if not template.answer_choices:
        raise HarnessError("no answer_choices: a generation template, which harness does not import (yet)")
    if re.search(r"\|\s*choice\b", template.jinja + template.answer_choices):
        raise HarnessError("uses the 'choice' filter, which picks at random on every rendering")
    if "|||" not in template.jinja:
        raise HarnessError("has no ||| between input and target")
    source = input_source(template.jinja)
    text = keep_whitespace(source.replace("}}", f" | string | truncate({TEXT_VAR_LENGTH}) }}}}"))
    choices = keep_whitespace(template.answer_choices)
    names = sorted(set(template_variables(source)) | set(template_variables(template.answer_choices)))
    with_row, end_row = row_scope(names, fields or {})
    meta = ", ".join(f"{k}: {v}" for k, v in sorted(template.metadata.items()) if k in ("original_task", "choices_in_prompt", "metrics", "languages"))
    header = (f"{{# PromptSource {dataset} \"{template.name}\" (id {template.id}){'; ' + meta if meta else ''}. Imported by harness import "
              "promptsource: the prompt is PromptSource's apply() before |||, choice i is scored as \" \" + answer_choices[i] #}\n")
    return (
        header
        + f"{{% macro ps_choices(r) %}}{with_row}{choices}{end_row}{{% endmacro %}}\n"
        + "{% macro ps_prompt(r) %}"
        + f"{{% with answer_choices=ps_choices(r).split('|||') | map('trim') | list %}}{with_row}{text}{end_row}{{% endwith %}}"
        + "{% endmacro %}\n"
        + "{% macro answer(choice, index) %} {{ (ps_choices(row).split('|||') | map('trim') | list)[index] }}{% endmacro %}\n"
        + "{% for s in shots %}\n{{ ps_prompt(s.row).split('|||')[0] | trim }}{{ s.answer }}\n\n{% endfor %}\n"
        + "{{ ps_prompt(row).split('|||')[0] | trim }}"
    )


def import_templates(dataset: str, out: Path, source: Path, fields: dict[str, str] | None = None) -> Imported:
    """Write one ``ps_<name>.jinja`` per convertible template of ``dataset`` into ``out``."""
    templates = read_templates(source, dataset)
    written, skipped = [], []
    stems: set[str] = set()
    for template in templates:
        try:
            text = convert(template, dataset, fields)
            environment().parse(text)
        except (HarnessError, jinja2.TemplateSyntaxError, RecursionError) as exc:
            skipped.append((template.name, str(exc)))
            continue
        stem = template.file_stem if template.file_stem not in stems else f"{template.file_stem}_{template.id[:8]}"
        stems.add(stem)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{stem}.jinja"
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return Imported(written, skipped)
