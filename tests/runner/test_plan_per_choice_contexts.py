"""Per-choice contexts ("partial scoring", Winograd style) and demonstrations that show their own answer.

The shipped tasks/winogrande (``contexts:`` + ``continuation:``) on a few inline WinoGrande-layout
rows, scripted backends and the toy OpenAI-compatible server: rendering, requests, acc/acc_norm,
validation errors, the API fallback refused at planning, calibration refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.backends import ModelSpec
from harness.backends.scripted import ScriptedBackend
from harness.core.errors import HarnessError
from harness.prompts.messages import prompt_text
from harness.prompts.template import PromptTemplate, load_prompt
from harness.requests import (
    LoglikelihoodRequest,
    LoglikelihoodResult,
    loglikelihood_requests,
)
from harness.runner.execute import run_experiment
from harness.runner.planning import plan
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from harness.tasks.task import Task, find_task
from tests.conftest import ROOT as PROJECT_ROOT
from tests.helpers import cli, write_task

WINOGRANDE = PROJECT_ROOT / "tasks" / "winogrande"

OWN_FIELD_TEMPLATE = """{% macro answer(choice, index) %} {{ choice }} (because {{ reason }}){% endmacro %}
{% for s in shots %}Q: {{ s.question }}
A:{{ s.answer }}

{% endfor %}Q: {{ question }}
A:"""

# (sentence, option1, option2, answer): twins whose last words flip the answer
ROWS = [
    ("The trophy did not fit into the suitcase because the _ was too big.", "trophy", "suitcase", "1"),
    ("The trophy did not fit into the suitcase because the _ was too small.", "trophy", "suitcase", "2"),
    ("Anna lent money to Maria because _ was rich and generous.", "Anna", "Maria", "1"),
    ("Anna lent money to Maria because _ was poor and in need.", "Anna", "Maria", "2"),
    ("The enormous oak wardrobe fell on the cup because the _ was heavy.", "enormous oak wardrobe", "cup", "1"),
    ("The rock fell on the vase and broke it, because the _ was fragile.", "rock", "vase", "2"),
]
TRAIN = [
    ("The piano did not fit through the doorway because the _ was too wide.", "piano", "doorway", "1"),
    ("The piano did not fit through the doorway because the _ was too narrow.", "piano", "doorway", "2"),
    ("The horse raced the donkey, and the _ lost badly.", "donkey", "horse", "1"),
]


def _rows(rows: list[tuple[str, str, str, str]], prefix: str) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "sentence": s, "option1": a, "option2": b, "answer": ans} for i, (s, a, b, ans) in enumerate(rows)]


def winogrande_data(root: Path) -> Path:
    """A --data-dir holding winogrande/validation.jsonl and winogrande/train.jsonl (tasks/winogrande's layout)."""
    folder = root / "data" / "winogrande"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows, prefix in (("validation", ROWS, "v"), ("train", TRAIN, "tr")):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(rows, prefix)))
    return root / "data"


def winogrande(root: Path) -> Task:
    return find_task(str(WINOGRANDE), data_dirs=[winogrande_data(root)])


def spec(root: Path, **fields: Any) -> ExperimentSpec:
    base: dict[str, Any] = {"tasks": [str(WINOGRANDE)], "prompts": ["lm_eval"], "data_dirs": [str(winogrande_data(root))],
                            "models": ["scripted:m"], "shots": [0]}
    return ExperimentSpec.model_validate({**base, **fields})


# -- demonstrations show their own answer ----------------------------------------------------
def _with_reasons(folder: Path) -> None:
    for split in ("test", "fewshot"):
        path = folder / f"{split}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "reason": f"reason of {r['id']}"}) + "\n" for r in rows))


def test_a_demonstration_shows_its_own_answer_macro_fields(tmp_path: Path) -> None:
    """The answer macro reads another field (``reason``): each demonstration must show its own,
    not the evaluated item's (the macro used to come from a module rendered with the item's fields)."""
    folder = write_task(tmp_path, templates={"plain": OWN_FIELD_TEMPLATE})
    _with_reasons(folder)
    task = find_task(str(folder))
    template = load_prompt(task, "plain")
    item, shots = task.items("test")[5], task.items("fewshot")[:3]
    rendered = template.render(task, item, shots)
    text = str(rendered.prompt)
    for shot in shots:
        assert f"A: {shot.choices[shot.target]} (because reason of {shot.id})\n" in text
    assert "reason of t5" not in text  # the evaluated item's field is in its own continuations only
    assert rendered.continuations == tuple(f" {c} (because reason of t5)" for c in item.choices)


def test_demonstration_answers_are_rendered_once_per_demonstration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_task(tmp_path, rows=12, templates={"plain": OWN_FIELD_TEMPLATE})
    _with_reasons(folder)
    task = find_task(str(folder))
    template = load_prompt(task, "plain")
    calls: list[object] = []
    original = PromptTemplate._answer_macro
    monkeypatch.setattr(PromptTemplate, "_answer_macro", lambda self, variables: calls.append(variables["id"]) or original(self, variables))
    shots = task.items("fewshot")[:3]
    first = [template.render(task, item, shots).prompt for item in task.items("test")]
    again = [template.render(task, item, shots).prompt for item in task.items("test")]
    assert sorted(calls) == sorted(s.id for s in shots)  # 24 renderings, one answer rendering per demonstration
    assert first == again


# -- rendering -------------------------------------------------------------------------------
def test_each_choice_gets_its_own_prompt_and_the_continuation_is_shared(tmp_path: Path) -> None:
    task = winogrande(tmp_path)
    item = task.items()[1]  # "... because the _ was too small.", answer 2
    assert item.contexts == ("The trophy did not fit into the suitcase because the trophy",
                             "The trophy did not fit into the suitcase because the suitcase")
    assert item.continuation == "was too small." and item.target == 1 and item.choices == ("trophy", "suitcase")
    shots = task.items("fewshot")[1:3]
    rendered = load_prompt(task, "lm_eval").render(task, item, shots)
    # lm-eval's multiple-input prompt: each demonstration is its correct context, " " + its own rest, "\n\n"
    demos = ("The piano did not fit through the doorway because the doorway was too narrow.\n\n"
             "The horse raced the donkey, and the donkey lost badly.\n\n")
    assert rendered.prompts == tuple(demos + c for c in item.contexts)
    assert rendered.continuations == (" was too small.", " was too small.")
    assert rendered.prompt == rendered.prompts[1]  # the correct choice's: stored, shown, trained on
    requests = loglikelihood_requests(rendered)
    assert [(r.context, r.continuation) for r in requests] == list(zip(rendered.prompts, rendered.continuations))


def test_a_template_sees_context_choice_index_contexts_and_continuation(tmp_path: Path) -> None:
    task = winogrande(tmp_path)
    path = tmp_path / "probe.jinja"
    path.write_text("{% macro answer(continuation, index) %} <{{ continuation }}>{% endmacro %}"
                    "{% for s in shots %}[{{ s.context }}|{{ s.choice_index }}|{{ s.answer }}]{% endfor %}"
                    "{{ choice_index }}:{{ choices[choice_index] }}:{{ context }}:{{ contexts | length }}:{{ continuation }}")
    template = PromptTemplate("probe", path, path.read_text())
    rendered = template.render(task, task.items()[2], task.items("fewshot")[:1])
    shot = "[The piano did not fit through the doorway because the piano|0| <was too wide.>]"
    assert rendered.prompts == (f"{shot}0:Anna:Anna lent money to Maria because Anna:2:was rich and generous.",
                                f"{shot}1:Maria:Anna lent money to Maria because Maria:2:was rich and generous.")
    assert rendered.continuations == (" <was rich and generous.>",) * 2


def test_a_template_that_ignores_the_context_or_varies_the_continuation_is_an_error(tmp_path: Path) -> None:
    task = winogrande(tmp_path)
    for source, message in (
        ("{{ input }}", "every choice renders the same prompt.*context"),
        ("{% macro answer(c, index) %} {{ c }}{{ index }}{% endmacro %}{{ context }}", "gave ' was too big.0' for choice 0 but "
         "' was too big.1' for choice 1.*must not depend on the choice"),
    ):
        path = tmp_path / "bad.jinja"
        path.write_text(source)
        with pytest.raises(HarnessError, match=message):
            PromptTemplate("bad", path, source).render(task, task.items()[0], [])


# -- validation ------------------------------------------------------------------------------
def _task_with(tmp_path: Path, **fields: Any) -> Path:
    folder = tmp_path / "wino"
    folder.mkdir(exist_ok=True)
    (folder / "prompts").mkdir(exist_ok=True)
    (folder / "prompts" / "plain.jinja").write_text("{{ context }}")
    base: dict[str, Any] = yaml.safe_load((WINOGRANDE / "task.yaml").read_text())
    base.update(data={"test": "test.jsonl"}, prompts=["plain"], **fields)
    (folder / "task.yaml").write_text(yaml.safe_dump({k: v for k, v in base.items() if v is not None}))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(ROWS, "v")))
    return folder


@pytest.mark.parametrize("fields,message", [
    ({"contexts": "{{ sentence }}"}, r"field 'contexts' .* on .*test.jsonl line 1: expected a list with one context per choice"),
    ({"contexts": "{{ [option1, option2, 'x'] }}"}, r"field 'contexts' .* on .*test.jsonl line 1: gave 3 contexts for 2 choices"),
    ({"contexts": "{{ [[option1], [option2]] }}"}, r"every context must be text"),
    ({"continuation": "{{ '  ' }}"}, r"field 'continuation' .* on .*test.jsonl line 1: gave '  '; it must be non-empty text"),
    ({"continuation": "{{ sentence.split('#')[1] }}"}, r"field 'continuation' .*failed on .*test.jsonl line 1: undefined variable: list object has no element 1"),
])
def test_bad_contexts_or_continuation_name_the_file_field_and_line(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    task = find_task(str(_task_with(tmp_path, **fields)))
    with pytest.raises(HarnessError, match=message) as caught:
        task.items()
    assert str(tmp_path / "wino" / "task.yaml") in str(caught.value)


@pytest.mark.parametrize("fields,message", [
    ({"continuation": None}, "'contexts' needs 'continuation'"),
    ({"contexts": None}, "'continuation' needs 'contexts'"),
    ({"type": "generate", "choices": None, "metrics": ["exact_match"]}, "are for type: multiple_choice, not generate"),
])
def test_contexts_and_continuation_come_together_on_multiple_choice(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        find_task(str(_task_with(tmp_path, **fields)))


def test_the_shipped_winogrande_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("validate", WINOGRANDE, "--data-dir", winogrande_data(tmp_path), "-n", "1", "--shots", "2") == 0
    out = capsys.readouterr().out
    assert "lm_eval · item" in out and "instructed · item" in out and "was too big" in out


# -- requests and metrics ------------------------------------------------------------------
class ContextLengthScorer(ScriptedBackend):
    """log P = -0.1 per character of the option the context ends with, -1.9 if it is 'cup': so the
    long 'enormous oak wardrobe' (-2.1) loses acc but wins acc_norm (divided by the context's length)."""

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        context = prompt_text(request.context)
        if context.endswith("cup"):
            return LoglikelihoodResult(logprob=-1.9, is_greedy=False, n_tokens=3)
        option = context.rsplit(" the ", 1)[-1].rsplit(" because ", 1)[-1]
        return LoglikelihoodResult(logprob=-0.1 * len(option), is_greedy=False, n_tokens=3)


def test_one_request_per_choice_with_its_own_context_scored_by_acc_and_acc_norm(tmp_path: Path) -> None:
    store = Store(tmp_path / "results" / "harness.db")
    backend = ContextLengthScorer(ModelSpec(backend="scripted", model="m"))
    run = run_experiment(spec(tmp_path, shots=[2]), store, backends={"scripted:m": backend}, show_progress=False)
    task = winogrande(tmp_path)
    items = {i.id: i for i in task.items()}
    seen = [r for r in backend.requests_seen if isinstance(r, LoglikelihoodRequest)]
    assert len(seen) == 2 * len(ROWS) and run.backend_requests == 2 * len(ROWS)
    records = {json.loads(line)["item_id"]: json.loads(line) for line in (run.run_dir / "items.jsonl").open()}  # type: ignore[operator]
    for item_id, record in records.items():
        item = items[item_id]
        mine = [r for r in seen if r.continuation == " " + item.continuation and prompt_text(r.context).endswith(item.contexts)]
        assert [prompt_text(r.context)[-len(c):] for r, c in zip(mine, item.contexts)] == list(item.contexts) and len(mine) == 2
        assert prompt_text(mine[0].context)[: -len(item.contexts[0])] == prompt_text(mine[1].context)[: -len(item.contexts[1])]
        assert record["prompt"].endswith(item.contexts[item.target]) and record["continuations"] == [" " + item.continuation] * 2
        logprobs = [r["logprob"] for r in record["response"]]
        acc = max(range(2), key=lambda i: (logprobs[i], -i)) == item.target
        norm = [lp / len(c) for lp, c in zip(logprobs, item.contexts)]  # lm-eval: len(doc_to_choice), the contexts
        acc_norm = max(range(2), key=lambda i: (norm[i], -i)) == item.target
        assert record["scores"] == {"acc": float(acc), "acc_norm": float(acc_norm)}
    wardrobe = records["v4"]
    assert [len(c) for c in items["v4"].contexts] == [75, 57]
    assert wardrobe["scores"] == {"acc": 0.0, "acc_norm": 1.0}  # -2.1 < -1.9 (acc picks 'cup'); -2.1/75 > -1.9/57
    from harness.runner.rescore import rescore_run

    summary = rescore_run(store, run.run_id, write=False)
    assert {c.metric: (c.items, c.same) for c in summary.checks} == {"acc": (6, 6), "acc_norm": (6, 6)}  # from the task's contexts


def test_echo_scoring_over_the_api_is_per_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy server scores whitespace-led words at -len(word)/10: only the shared continuation's
    words may count, whatever the context before them."""
    from tests.backends.toy_upstream import ToyUpstream

    monkeypatch.setenv("OPENAI_API_KEY", "sk-toy")
    with ToyUpstream() as toy:
        model = {"backend": "openai", "model": "toy", "base_url": f"{toy.url}/v1", "name": "toy"}
        run = run_experiment(spec(tmp_path, models=[model], shots=[1]), Store(tmp_path / "r" / "h.db"), show_progress=False)
    assert run.backend_requests == 2 * len(ROWS)
    for line in (run.run_dir / "items.jsonl").open():  # type: ignore[operator]
        record = json.loads(line)
        words = record["continuations"][0].split()
        for response in record["response"]:
            assert response["n_tokens"] == len(words)
            assert response["logprob"] == pytest.approx(-sum(len(" " + w) for w in words) / 10)


# -- what cannot take per-choice contexts --------------------------------------------------
def test_the_generate_and_parse_fallback_is_refused_at_planning(tmp_path: Path) -> None:
    api = {"backend": "openai", "model": "toy", "base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(HarnessError, match=r"per-choice contexts .*mc_fallback: generate.*cannot express choices that differ"):
        plan(spec(tmp_path, models=[{**api, "mc_fallback": "generate"}]))
    with pytest.raises(HarnessError, match=r"per-choice contexts .*chat prompts"):
        plan(spec(tmp_path, models=[{**api, "endpoint": "chat"}]))
    (tmp_path / "prompts" / "winogrande").mkdir(parents=True)
    (tmp_path / "prompts" / "winogrande" / "chat.chat.jinja").write_text("@@ user\n{{ context }}")
    with pytest.raises(HarnessError, match=r"per-choice contexts .*chat prompts"):
        plan(spec(tmp_path, models=[api], prompts=["chat"], prompts_dirs=[str(tmp_path / "prompts")]))
    assert len(plan(spec(tmp_path, models=[api]))) == 1  # a completions server with echo: fine (nothing is sent at planning)
    ordinary = write_task(tmp_path / "tasks")
    assert len(plan(ExperimentSpec.model_validate({"tasks": [str(ordinary)], "models": [{**api, "mc_fallback": "generate"}]}))) == 1


def test_calibration_refuses_per_choice_contexts_and_says_why(tmp_path: Path) -> None:
    from harness.runner.calibration import calibrate_run, content_free_item

    store = Store(tmp_path / "results" / "harness.db")
    run = run_experiment(spec(tmp_path), store, show_progress=False)
    with pytest.raises(HarnessError, match=r"task 'winogrande' gives each choice its own context .*no content-free prompt keeps the "
                       r"choices apart"):
        calibrate_run(store, run.run_id)
    assert not store.calibration(run.run_id)  # refused before anything was scored
    with pytest.raises(HarnessError, match="item 'v0' gives each choice its own context"):
        content_free_item(winogrande(tmp_path).items()[0], "N/A", "{{ sentence }}")
