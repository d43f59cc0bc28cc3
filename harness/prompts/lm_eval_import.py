"""An lm-evaluation-harness task YAML as a harness task folder (task.yaml + prompts/lm_eval.jinja).

What maps, and how (lm-eval 0.4's ``ConfigurableTask`` semantics):

- ``include:`` files are merged first (relative to the including file, recursively; the including
  file's keys win), as lm-eval does;
- ``dataset_path`` / ``dataset_name`` / ``*_split`` become hub data sources (``{hf: ...}``): the
  evaluated split is ``test_split``, else ``validation_split``; demonstrations come from
  ``fewshot_split``, else ``training_split``, else ``validation_split``;
- ``doc_to_text`` / ``doc_to_target`` / ``doc_to_choice``: a field name, Jinja, an int or a list
  literal, as lm-eval reads them; ``doc_to_text`` is rendered in the generated template (with
  ``description``, ``target_delimiter`` and ``fewshot_delimiter``), the others become the task's
  ``target`` / ``choices`` expressions;
- ``output_type``: multiple_choice or generate_until (``generation_kwargs``: ``until`` ->
  stop, ``max_gen_toks`` -> max tokens, ``temperature``); ``metric_list`` -> metrics harness has;
  ``filter_list``'s first pipeline of ``regex`` / ``take_first`` -> filters;
- never executed: ``!function`` (Python in the task's package) and ``process_docs`` are refused,
  naming the line; so are ``loglikelihood_rolling`` and metric options harness cannot honour
  (said as warnings, the task still written when the rest maps).

``num_fewshot`` is not part of a harness task: it is printed as the ``--shots`` to run with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import HarnessError
from harness.core.templating import read_template_text
from harness.prompts.foreign import keep_whitespace, row_scope, template_variables
from harness.tasks.kinds import task_kind

# lm-eval's output_type (its names, not harness's task types) -> the harness task type, and its default metric
OUTPUT_TYPES = {"multiple_choice": "multiple_choice", "generate_until": "generate"}
DEFAULT_METRIC = {"multiple_choice": "acc", "generate_until": "exact_match"}
METRICS = {"acc": "acc", "acc_norm": "acc_norm", "exact_match": "exact_match", "f1": "f1_macro", "mcc": "mcc", "bleu": "bleu",
           "chrf": "chrf", "ter": "ter"}


class _Loader(yaml.SafeLoader):
    """SafeLoader that turns ``!function`` into a marker with its line (never imports anything)."""


@dataclass(frozen=True)
class Function:
    target: str
    line: int


def _function(loader: yaml.SafeLoader, node: yaml.Node) -> Function:
    assert isinstance(node, yaml.ScalarNode)
    return Function(str(loader.construct_scalar(node)), node.start_mark.line + 1)


_Loader.add_constructor("!function", _function)


@dataclass(frozen=True)
class Converted:
    folder: Path
    task: dict[str, Any]
    num_fewshot: int | None
    warnings: list[str]


def _tasks_root() -> Path:
    try:
        import lm_eval
    except ImportError:
        raise HarnessError("naming lm-eval's tasks needs lm-eval installed (pip install 'harness[bench]'); or give a task YAML") from None
    return Path(lm_eval.__file__).parent / "tasks"


def _shipped(name: str) -> list[tuple[Path, dict[str, Any]]]:
    """The installed lm-eval's YAMLs that mention ``name``, parsed safely (unparsable ones skipped)."""
    found = []
    for candidate in sorted(_tasks_root().rglob("*.yaml")):
        text = candidate.read_text(encoding="utf-8", errors="replace")
        if name not in text:
            continue
        try:
            document = yaml.load(text, Loader=_Loader)  # noqa: S506 (SafeLoader + a marker tag)
        except yaml.YAMLError:
            continue
        if isinstance(document, dict):
            found.append((candidate, document))
    return found


def _tags(document: dict[str, Any]) -> list[str]:
    tags = document.get("tag")
    return [str(t) for t in tags] if isinstance(tags, list) else [str(tags)] if tags else []


def lm_eval_yaml(given: str) -> Path:
    """A task YAML path, or the file of a task shipped with the installed lm-eval (``arc_easy``)."""
    path = Path(given).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    for candidate, document in _shipped(given):
        if document.get("task") == given and "group" not in document:
            return candidate
    raise HarnessError(f"the installed lm-eval ships no task named '{given}' (searched {_tasks_root()})")


def task_files(given: str, seen: frozenset[str] = frozenset()) -> list[Path]:
    """The task YAMLs behind a task, a group (its ``task:`` list, recursively) or a tag: a YAML path
    or a name of the installed lm-eval's."""
    if given in seen:
        raise HarnessError(f"lm-eval group loop through {', '.join(sorted(seen))}")
    path = Path(given).expanduser()
    documents = [(path, read_config(path))] if path.suffix in (".yaml", ".yml") or path.exists() else _shipped(given)
    for candidate, document in documents:
        is_group = "group" in document
        if not is_group and (document.get("task") == given or candidate == path):
            return [candidate]
        if document.get("group") == given or candidate == path:
            members = document.get("task", [])
            out: list[Path] = []
            for member in members if isinstance(members, list) else [members]:
                if isinstance(member, dict):
                    raise HarnessError(f"{candidate}: group '{given}' defines a task inline; write it as its own YAML to convert it")
                out += task_files(str(member), seen | {given})
            return out
    tagged = [c for c, d in documents if given in _tags(d)]
    if tagged:
        return tagged
    raise HarnessError(f"the installed lm-eval ships no task, group or tag named '{given}' (searched {_tasks_root()})")


def read_config(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The task YAML with its ``include:`` chain merged in (the including file's keys win)."""
    if path in seen:
        raise HarnessError(f"{path}: include loop through {' -> '.join(map(str, seen))}")
    if not path.is_file():
        raise HarnessError(f"{path}: no such lm-eval task file")
    try:
        document = yaml.load(read_template_text(path, "lm-eval task file"), Loader=_Loader)  # noqa: S506 (SafeLoader + a marker tag)
    except yaml.YAMLError as exc:
        raise HarnessError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        raise HarnessError(f"{path}: expected a mapping of lm-eval task fields")
    base: dict[str, Any] = {}
    if "include" in document:
        base = read_config(path.parent / str(document.pop("include")), (*seen, path))
    base.pop("group", None)  # an included file's group is its own, not the includer's
    return {**base, **document, "_file": str(path)}


def _refuse_code(config: dict[str, Any]) -> None:
    for key, value in config.items():
        if isinstance(value, Function):
            raise HarnessError(f"{config['_file']} line {value.line}: '{key}: !function {value.target}' is Python code in lm-eval's "
                               "package; harness never runs it. Write the field as Jinja (or a field name) instead, or keep the "
                               "task in lm-eval")
    if "process_docs" in config:
        raise HarnessError(f"{config['_file']}: 'process_docs' rewrites the rows in Python; convert the data once (the rewritten rows "
                           "as JSONL) and point a harness task at it")


def _expression(value: Any, what: str, config: dict[str, Any]) -> str:
    """A task.yaml expression for doc_to_target / doc_to_choice: a field name, Jinja, an int or a list."""
    if isinstance(value, bool) or value is None:
        raise HarnessError(f"{config['_file']}: '{what}' must be a field name, Jinja, a number or a list, got {value!r}")
    if isinstance(value, int):
        return f"{{{{ {value} }}}}"
    if isinstance(value, list):
        return f"{{{{ {json.dumps(value)} }}}}"
    text = str(value)
    return text if "{{" in text or "{%" in text else f"{{{{ {text} }}}}"


_PART = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def _input_expression(value: Any) -> str:
    """doc_to_text as one task.yaml expression (the item's ``input``: shown, embedded for kNN):
    its text and ``{{ }}`` parts joined with ``~``; with ``{% %}`` blocks, its first variable."""
    text = str(value)
    if "{{" not in text and "{%" not in text:
        return f"{{{{ {text} }}}}"
    if "{%" in text:
        names = template_variables(text)
        return f"{{{{ {names[0]} }}}}" if names else f"{{{{ {json.dumps(text)} }}}}"
    pieces, at = [], 0
    for match in _PART.finditer(text):
        if match.start() > at:
            pieces.append(json.dumps(text[at:match.start()]))
        pieces.append(f"(({match.group(1).strip()}) | string)")
        at = match.end()
    if at < len(text):
        pieces.append(json.dumps(text[at:]))
    return "{{ " + " ~ ".join(pieces) + " }}"


def _text_macro(name: str, value: Any, config: dict[str, Any]) -> str:
    """A macro rendering doc_to_text (or the description) for a row ``r``, whitespace as lm-eval's Jinja renders it."""
    if not isinstance(value, str):
        raise HarnessError(f"{config['_file']}: '{name}' must be text (a field name or Jinja), got {value!r}")
    source = value if "{{" in value or "{%" in value or name == "description" else f"{{{{ {value} }}}}"
    opening, closing = row_scope(template_variables(source), {})
    return f"{{% macro {name}(r) %}}{opening}{keep_whitespace(source)}{closing}{{% endmacro %}}\n"


def _split(config: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        if config.get(key):
            return str(config[key])
    return None


def convert(path: Path, out: Path, name: str | None = None) -> Converted:
    """Write the harness task folder for the lm-eval task YAML at ``path`` into ``out``."""
    config = read_config(path)
    _refuse_code(config)
    warnings: list[str] = []
    output_type = str(config.get("output_type", "generate_until"))
    if output_type not in OUTPUT_TYPES:
        raise HarnessError(f"{path}: output_type '{output_type}' is not converted ({' and '.join(OUTPUT_TYPES)} are)")
    task_type = OUTPUT_TYPES[output_type]
    choices = task_kind(task_type).scoring == "loglikelihood"  # scored by the choices' log-likelihoods, not by generated text
    default_metric = DEFAULT_METRIC[output_type]
    if not config.get("dataset_path"):
        raise HarnessError(f"{path}: no dataset_path (lm-eval's data source) to convert")
    hub = {"path": config["dataset_path"], **({"name": config["dataset_name"]} if config.get("dataset_name") else {})}
    test = _split(config, "test_split", "validation_split")
    pool = _split(config, "fewshot_split", "training_split", "validation_split")
    if test is None:
        raise HarnessError(f"{path}: neither test_split nor validation_split is set")
    data: dict[str, Any] = {"test": {"hf": {**hub, "split": test}}}
    if pool is not None:
        data["fewshot"] = {"hf": {**hub, "split": pool}}
    task_name = name or str(config.get("task", path.stem))
    metrics = []
    for entry in config.get("metric_list", [{"metric": default_metric}]):
        metric = entry.get("metric") if isinstance(entry, dict) else entry
        if metric in METRICS:
            metrics.append(METRICS[metric])
            options = sorted(set(entry) - {"metric", "aggregation", "higher_is_better"}) if isinstance(entry, dict) else []
            if options:
                warnings.append(f"metric '{metric}': options {', '.join(options)} have no harness equivalent (not applied)")
        else:
            warnings.append(f"metric '{metric}' has no harness equivalent (left out)")
    spec: dict[str, Any] = {
        "name": task_name, "description": f"converted from lm-eval's {path.name}", "type": task_type,
        "source": f"lm-eval task {config.get('task', path.stem)} ({path}); data: the hub dataset {hub['path']}",
        "data": data, "input": _input_expression(config.get("doc_to_text")), "target": _expression(config.get("doc_to_target"), "doc_to_target", config),
        "prompts": ["lm_eval"], "metrics": metrics or [default_metric],
    }
    target_delimiter = str(config.get("target_delimiter", " "))
    fewshot_delimiter = str(config.get("fewshot_delimiter", "\n\n"))
    template = "{# lm-evaluation-harness " + str(config.get("task", path.stem)) + ", converted by harness import lm-eval #}\n"
    template += _text_macro("doc_to_text", config.get("doc_to_text"), config)
    if choices:
        spec["choices"] = _expression(config.get("doc_to_choice"), "doc_to_choice", config)
        template += f"{{% macro answer(choice, index) %}}{{{{ {json.dumps(target_delimiter)} }}}}{{{{ choice }}}}{{% endmacro %}}\n"
        shot_target = "{{ s.answer }}"
    else:
        template += _text_macro("doc_to_target", config.get("doc_to_target"), config)
        shot_target = f"{{{{ {json.dumps(target_delimiter)} }}}}{{{{ doc_to_target(s.row) }}}}"
        generation = config.get("generation_kwargs") or {}
        spec["generation"] = {"max_tokens": int(generation.get("max_gen_toks", 256)), "stop": list(generation.get("until", [])),
                              "temperature": float(generation.get("temperature", 0.0))}
        filters = _filters(config, warnings)
        if filters:
            spec["filters"] = filters
    if config.get("description"):
        template += _text_macro("description", config["description"], config)
        template += "{{ description(row) }}"
    template += ("{% for s in shots %}{{ doc_to_text(s.row) }}" + shot_target + f"{{{{ {json.dumps(fewshot_delimiter)} }}}}"
                 + "{% endfor %}{{ doc_to_text(row) }}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompts").mkdir(exist_ok=True)
    (out / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (out / "prompts" / "lm_eval.jinja").write_text(template + "\n", encoding="utf-8")
    shots = config.get("num_fewshot")
    return Converted(out, spec, int(shots) if shots is not None else None, warnings)


def _filters(config: dict[str, Any], warnings: list[str]) -> list[Any]:
    """lm-eval's first filter pipeline as harness filters (regex, take_first)."""
    pipelines = config.get("filter_list") or []
    if not pipelines:
        return []
    if len(pipelines) > 1:
        warnings.append(f"filter_list: only the first pipeline ('{pipelines[0].get('name')}') is converted; harness scores one "
                        f"extraction ({', '.join(str(p.get('name')) for p in pipelines[1:])} left out)")
    steps: list[Any] = []
    for step in pipelines[0].get("filter", []):
        function = step.get("function")
        if function == "regex":
            select = step.get("group_select", 0)
            pattern = step.get("regex_pattern", r"#### (\-?[0-9\.\,]+)")
            steps.append({"regex": {"pattern": pattern, "select": "last" if select == -1 else "first"}} if select else {"regex": pattern})
        elif function == "take_first":
            continue  # harness keeps one response per sample already
        else:
            warnings.append(f"filter '{function}' has no harness equivalent (left out)")
    return steps
