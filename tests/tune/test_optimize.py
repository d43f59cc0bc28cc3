"""``harness optimize`` (issue 21, item 3): the search never touches the held-out split, the confirmation is one paired
test on it, the same seed gives the same search and result, bad input is a clean error.

The backend's answers are unique per request (a hash of it), and the correct choice wins with a probability set by
the prompt's casing of 'Answer' (ANSWER 0.9, otherwise 0.35), so an upper-cased candidate is clearly better; every
request's item id is read from the prompt (each question names its item), so the test counts requests by item."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from harness.backends import ModelSpec
from harness.backends.scripted import ScriptedBackend
from harness.cli.app import main
from harness.prompts.messages import prompt_text
from harness.requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult
from harness.runner.spec import ExperimentSpec
from harness.scoring import Metric, register_metric
from harness.scoring.metrics import CHOICE_KINDS, METRICS
from harness.stats.paired import compare_pairing, pair
from harness.store.store import Store
from harness.tune.optimize import OptimizeSpec, optimize, split_items
from harness.tune.proposers import add_instruction, grammar_candidates

TEMPLATE = """{% macro answer(choice, index) %} {{ choice }}{% endmacro %}
{% for s in shots %}
Question: {{ s.question }}
Answer:{{ s.answer }}

{% endfor %}
Question: {{ input }}
Answer:"""
ITEM = re.compile(r"\[(q\d+)\]")


def _unit(*parts: str) -> float:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big") / 2**64


def make_task(root: Path, rows: int = 160) -> Path:
    folder = root / "opt"
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    spec = {"name": "opt", "type": "multiple_choice", "data": {"test": "test.jsonl", "fewshot": "test.jsonl"}, "input": "{{ question }}",
            "choices": "{{ options }}", "target": "{{ answer }}", "prompts": ["plain"], "metrics": ["acc"]}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    lines = [json.dumps({"id": f"q{i}", "question": f"question [q{i}]?", "options": [f"right {i}", f"wrong {i}", f"other {i}"], "answer": 0})
             for i in range(rows)]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "prompts" / "plain.jinja").write_text(TEMPLATE)
    return folder


class Counting(ScriptedBackend):
    """Unique answers per request; 'ANSWER' prompts are good; requests counted by the item they are for (the last id in the prompt)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.by_item: Counter[str] = Counter()
        self.order: list[str] = []

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        context = prompt_text(request.context)
        item = ITEM.findall(context)[-1]  # demonstrations come first; the evaluated item's question is last
        self.by_item[item] += 1
        self.order.append(item)
        quality = 0.9 if "ANSWER" in context else 0.35
        value = -1 - 5 * _unit(self.spec.model, context, request.continuation)
        if request.continuation.startswith(" right") and _unit("coin", context) < quality:
            value = -0.5
        return LoglikelihoodResult(logprob=value, is_greedy=False, n_tokens=2)


class Proposer(ScriptedBackend):
    """A model proposer with scripted answers, in request order, cycling."""

    answers: Sequence[str] = ()

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        self.generate_calls += len(requests)
        return [GenerateResult(text=self.answers[i % len(self.answers)], n_tokens=3)
                for i in range(len(requests))]


def spec_for(task: Path, out: Path, **kw: object) -> OptimizeSpec:
    experiment = ExperimentSpec(tasks=[str(task)], prompts=["plain"], models=[ModelSpec(backend="scripted", model="m")], seed=7)
    fields: dict[str, object] = {"shots": (0, 2), "selectors": ("random",), "k": 6, "search_share": 0.6, "round": 20, "output": out}
    fields.update(kw)
    return OptimizeSpec(experiment, "plain", **fields)  # type: ignore[arg-type]


def run(tmp_path: Path, name: str, task: Path, **kw: object):  # type: ignore[no-untyped-def]
    backend = Counting(ModelSpec(backend="scripted", model="m"))
    store = Store(tmp_path / f"{name}.db")
    report = optimize(spec_for(task, tmp_path / f"{name}-out", **kw), store, backends={"scripted:m": backend}, show_progress=False)
    return report, backend, store


def test_split_is_disjoint_seeded_and_keeps_clusters(tmp_path: Path) -> None:
    from harness.tasks.task import Item

    items = [Item(id=f"i{n}", row={}, input="x", target=0, choices=("a", "b"), cluster=f"c{n // 4}") for n in range(200)]
    one, again, other = split_items(items, 0.6, 1), split_items(items, 0.6, 1), split_items(items, 0.6, 2)
    assert [i.id for i in one.search] == [i.id for i in again.search] and one.search != other.search
    assert not {i.id for i in one.search} & {i.id for i in one.heldout}
    assert len(one.search) + len(one.heldout) == 200
    assert not {i.cluster for i in one.search} & {i.cluster for i in one.heldout}  # a cluster lies on one side
    assert len({i.cluster for i in one.search}) == 30  # 60% of the 50 clusters


def test_heldout_never_touched_during_search_and_confirmed_on_it(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    report, backend, store = run(tmp_path, "a", task)
    search_ids = {i.id for i in report.split.search}
    held_ids = {i.id for i in report.split.heldout}
    assert search_ids and held_ids and not search_ids & held_ids
    assert len(search_ids) == 96 and len(held_ids) == 64

    # requests by item: every request of the search is for a search item, then the confirmation's only for held-out ones
    first_held = next(n for n, item in enumerate(backend.order) if item in held_ids)
    assert set(backend.order[:first_held]) <= search_ids
    assert set(backend.order[first_held:]) <= held_ids
    assert set(backend.by_item) == search_ids | held_ids

    # stored items per phase: the search run holds search items only (and no held-out demonstration); the confirmation's
    # cells hold exactly the held-out items, none served from the cache (so none was ever requested before)
    search_items = store.items([report.search_run])
    assert {i.item_id for i in search_items} == search_ids
    assert not {d for i in search_items for d in i.demo_ids} & held_ids
    assert any(i.demo_ids for i in search_items)  # few-shot candidates were raced
    assert report.confirm_run is not None
    confirm_items = store.items([report.confirm_run])
    cells = {i.cell_id for i in confirm_items}
    assert len(cells) == 2
    for cell in cells:
        assert {i.item_id for i in confirm_items if i.cell_id == cell} == held_ids
    assert all(not i.cached for i in confirm_items)
    assert not {d for i in confirm_items for d in i.demo_ids} & held_ids

    # the winner is the upper-cased 'ANSWER' format; the confirmation is one paired test on the held-out items only
    assert "casing=upper" in report.winner.origin and not report.winner.start
    c = report.confirmation
    assert c is not None and c.n == len(held_ids) and set(c.pairs) == held_ids
    start_cell, winner_cell = sorted(cells, key=lambda cid: next(i for i in confirm_items if i.cell_id == cid).prompt.count("ANSWER"))
    scores = {cid: {i.item_id: i.scores["acc"] for i in confirm_items if i.cell_id == cid} for cid in cells}
    expected = compare_pairing(pair(scores[winner_cell], scores[start_cell]), "binary", True, confidence=0.95, seed=7)
    assert c.difference == pytest.approx(expected.diff.mean) and c.p_value == pytest.approx(expected.p_value)
    assert (c.low, c.high) == pytest.approx((expected.diff.low, expected.diff.high))
    assert c.test == "tango-score" and c.verdict == "better" and c.difference > 0.3

    # the winner is written as a variant the runner finds by name
    assert report.written is not None and report.written == tmp_path / "a-out" / "opt" / f"{report.written_name}.jinja"
    assert report.run_command is not None and f"--prompt {report.written_name}" in report.run_command
    winner_text = next(c.text for c in report.proposals.candidates if c.origin == report.winner.origin)
    assert report.written.read_text().split("\n", 1)[1] == winner_text
    store.close()


def test_written_winner_runs_from_prompts_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = make_task(tmp_path, rows=80)
    report, _, store = run(tmp_path, "w", task)
    store.close()
    assert report.written_name is not None
    settings = ["--shots", str(report.winner.shots)] + (["--selector", report.winner.selector] if report.winner.selector != "none" else [])
    code = main(["run", "--task", str(task), "--prompts-dir", str(tmp_path / "w-out"), "--prompt", report.written_name, *settings,
                 "--model", "scripted:m", "--db", str(tmp_path / "w2.db"), "--limit", "3", "--quiet", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["ranking"][0]["prompt"] == report.written_name


def test_same_seed_same_candidates_same_result(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    one, _, s1 = run(tmp_path, "one", task)
    two, _, s2 = run(tmp_path, "two", task)
    assert [c.key() for c in one.proposals.candidates] == [c.key() for c in two.proposals.candidates]
    assert [(e.name, e.status, e.round, e.items, e.mean) for e in one.entries] == [(e.name, e.status, e.round, e.items, e.mean) for e in two.entries]
    assert one.confirmation == two.confirmation
    assert one.written is not None and two.written is not None
    assert one.written.read_text().split("\n", 1)[1] == two.written.read_text().split("\n", 1)[1]
    s1.close()
    s2.close()


def test_another_seed_is_another_split(tmp_path: Path) -> None:
    task = make_task(tmp_path, rows=60)
    a = spec_for(task, tmp_path / "x")
    b = OptimizeSpec(a.experiment.model_copy(update={"seed": 8}), "plain", a.shots, a.selectors, k=2, output=tmp_path / "y")
    ra = optimize(OptimizeSpec(a.experiment, "plain", a.shots, a.selectors, k=2, output=tmp_path / "x"), Store(tmp_path / "x.db"),
                  backends={"scripted:m": Counting(ModelSpec(backend="scripted", model="m"))}, show_progress=False)
    rb = optimize(b, Store(tmp_path / "y.db"), backends={"scripted:m": Counting(ModelSpec(backend="scripted", model="m"))}, show_progress=False)
    assert {i.id for i in ra.split.search} != {i.id for i in rb.split.search}


def test_model_proposer_checks_renders_drops_and_caches(tmp_path: Path) -> None:
    task = make_task(tmp_path, rows=100)
    label = "scripted:prop"
    Proposer.answers = ("Read the question, then give the ANSWER.\n", "Use {{ no_such_field }} here", "{% if %} broken",
                        "Read the question, then give the ANSWER.", "   \n", '"Think, then reply."')
    proposer = Proposer(ModelSpec(backend="scripted", model="prop"))
    evaluated = Counting(ModelSpec(backend="scripted", model="m"))
    store = Store(tmp_path / "p.db")
    o = spec_for(task, tmp_path / "p-out", proposer=label, k=6, shots=(0,), selectors=("first_k",))
    report = optimize(o, store, backends={"scripted:m": evaluated, label: proposer}, show_progress=False)
    assert proposer.generate_calls == 6
    assert report.proposals.proposed == 6
    assert report.proposals.dropped == {"does not render": 1, "does not compile": 1, "duplicate": 1, "empty": 1}
    kept = [c.origin for c in report.proposals.candidates]
    assert kept == [f"proposed by {label}: Read the question, then give the ANSWER.", f"proposed by {label}: Think, then reply."]
    assert all("{# instruction #}" in c.text for c in report.proposals.candidates)  # the template had none: added, marked
    assert "ANSWER" in report.winner.origin and report.confirmation is not None

    # a rerun asks the response cache, not the model: the same candidates
    again = Proposer(ModelSpec(backend="scripted", model="prop"))
    rerun = optimize(o, store, backends={"scripted:m": Counting(ModelSpec(backend="scripted", model="m")), label: again}, show_progress=False)
    assert again.generate_calls == 0
    assert [c.key() for c in rerun.proposals.candidates] == [c.key() for c in report.proposals.candidates]
    store.close()


def test_grammar_axes_and_instructions() -> None:
    proposals = grammar_candidates(TEMPLATE, (0, "none"), (0, 2), ("random", "first_k"), 10, 3, ("Answer each question.",))
    keys = [c.key() for c in proposals.candidates]
    assert len(keys) == 10 == len(set(keys)) and (TEMPLATE, 0, "none") not in keys
    assert {c.shots for c in proposals.candidates} >= {0, 2}
    assert grammar_candidates(TEMPLATE, (0, "none"), (0, 2), ("random", "first_k"), 10, 3, ("Answer each question.",)) == proposals
    assert "{# instruction #}Answer each question.{# /instruction #}" in add_instruction(TEMPLATE, "Answer each question.")


@pytest.mark.parametrize(("argv", "expected"), [
    (["optimize", "nosuch", "--prompt", "plain"], "unknown task"),
    (["optimize", "TASK", "--prompt", "plian"], "Did you mean 'plain'"),
    (["optimize", "TASK", "--prompt", "plain", "--search-share", "1.2"], "strictly between 0 and 1"),
    (["optimize", "TASK", "--prompt", "plain", "--search-share", "0"], "strictly between 0 and 1"),
    (["optimize", "TASK", "--prompt", "plain", "--proposer", "hf:/no/such/model"], "--proposer hf:/no/such/model: the proposer model cannot be used"),
    (["optimize", "TASK", "--prompt", "plain", "--proposer", "nosuch:model"], "--proposer 'nosuch:model'"),
    (["optimize", "TASK", "--prompt", "plain", "-k", "0"], "-k 0"),
])
def test_bad_input_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    task = make_task(tmp_path, rows=20)
    db = tmp_path / "bad.db"
    code = main([a.replace("TASK", str(task)) for a in argv] + ["--model", "scripted:m", "--db", str(db), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not db.exists()  # nothing was stored


def test_cli_prints_the_confirmation_not_the_search_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = make_task(tmp_path, rows=60)
    code = main(["optimize", str(task), "--prompt", "plain", "-k", "3", "--model", "scripted:m", "--db", str(tmp_path / "c.db"),
                 "-o", str(tmp_path / "c-out"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "confirmation on 24 held-out items" in out or "START itself" in out
    assert "search score (optimistic: selected on these items)" in out
    code = main(["optimize", str(task), "--prompt", "plain", "-k", "3", "--model", "scripted:m", "--db", str(tmp_path / "c.db"),
                 "-o", str(tmp_path / "c-out"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["split"] == {**data["split"], "search_items": 36, "heldout_items": 24}
    assert set(data["winner"]) >= {"search_score_optimistic", "is_start"}


def test_start_given_as_a_template_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = make_task(tmp_path, rows=60)
    code = main(["optimize", str(task), "--prompt", str(task / "prompts" / "plain.jinja"), "-k", "3", "--model", "scripted:m",
                 "--db", str(tmp_path / "t.db"), "-o", str(tmp_path / "t-out"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert all(c["name"].startswith("plain") and "/" not in c["name"] for c in data["search"]["cells"])
    if data["prompt_name"] is not None:
        assert data["prompt_name"].startswith("plain__opt_") and Path(data["written"]).parent == tmp_path / "t-out" / "opt"


def test_a_metric_the_race_cannot_use_is_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if "optimize_test_unbounded" not in METRICS:  # a test-only metric with no known range, under a name no task uses
        register_metric(Metric("optimize_test_unbounded", "a continuous score with no known range", True, "continuous", CHOICE_KINDS,
                               lambda o: 1.0))
    folder = make_task(tmp_path, rows=20)
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    spec["metrics"] = ["optimize_test_unbounded", "acc"]
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))
    code = main(["optimize", str(folder), "--prompt", "plain", "--model", "scripted:m", "--db", str(tmp_path / "m.db")])
    err = capsys.readouterr().err
    assert code == 2 and "harness optimize races the candidates, but task 'opt'" in err and "has no known bounds" in err
    assert "Traceback" not in err and "--until-decided" not in err
    assert not (tmp_path / "m.db").exists()


class PlainIsBest(Counting):
    """START (no instruction line) is clearly best: a prompt that starts with an instruction is mostly wrong."""

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        context = prompt_text(request.context)
        value = -1 - 5 * _unit(self.spec.model, context, request.continuation)
        quality = 0.95 if context.startswith("Question:") else 0.1
        if request.continuation.startswith(" right") and _unit("coin", context) < quality:
            value = -0.5
        return LoglikelihoodResult(logprob=value, is_greedy=False, n_tokens=2)


def test_when_start_wins_nothing_is_confirmed_or_written(tmp_path: Path) -> None:
    task = make_task(tmp_path, rows=150)
    label = "scripted:prop"
    Proposer.answers = ("Be careful.", "Think first.", "Answer the question.")
    out = tmp_path / "s-out"
    o = spec_for(task, out, proposer=label, k=3, shots=(0,), selectors=("first_k",))
    evaluated = PlainIsBest(ModelSpec(backend="scripted", model="m"))
    store = Store(tmp_path / "s.db")
    report = optimize(o, store, backends={"scripted:m": evaluated, label: Proposer(ModelSpec(backend="scripted", model="prop"))},
                      show_progress=False)
    assert report.winner_is_start and report.winner.name == "plain"
    assert report.confirm_run is None and report.confirmation is None and report.written is None and not out.exists()
    assert {e.status for e in report.entries if not e.start} == {"eliminated"}
    held = {i.id for i in report.split.heldout}
    assert not held & set(evaluated.by_item)  # no confirmation: the held-out items were never asked for at all
    assert [r.id for r in store.runs()] == [report.search_run]
    assert report.to_dict()["confirmation"] is None
    store.close()
