"""``harness run --until-decided`` (issue 21, item 1): the race's runner and store integration.

The backend scores each request by a hash of it (answers unique per request), and gives the
correct choice the top score with a probability set by a marker in the template (GOOD 0.85,
MID 0.55, BAD 0.25), so the cells have clear gaps and the race decides early."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from harness.backends import ModelSpec
from harness.backends.scripted import ScriptedBackend
from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.prompts.messages import prompt_text
from harness.requests import LoglikelihoodRequest, LoglikelihoodResult
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec, RaceSpec
from harness.scoring import Metric, register_metric
from harness.scoring.metrics import CHOICE_KINDS, METRICS
from harness.stats.racing import seeded_order
from harness.store.store import Store

QUALITY = {"GOOD": 0.85, "MID": 0.55, "BAD": 0.25}
TEMPLATE = "{{% macro answer(choice, index) %}} {{{{ choice }}}}{{% endmacro %}}{marker} Q: {{{{ input }}}}\nA:"


def _unit(*parts: str) -> float:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big") / 2**64


def race_task(root: Path, rows: int = 400, markers: Sequence[str] = ("GOOD", "MID", "BAD"), metrics: Sequence[str] = ("acc",)) -> Path:
    folder = root / "race"
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    spec = {"name": "race", "type": "multiple_choice", "data": {"test": "test.jsonl"}, "input": "{{ question }}",
            "choices": "{{ options }}", "target": "{{ answer }}", "prompts": [m.lower() for m in markers], "metrics": list(metrics)}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    lines = [json.dumps({"id": f"q{i}", "question": f"question {i}?", "options": [f"right {i}", f"wrong {i}", f"other {i}"], "answer": 0})
             for i in range(rows)]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    for marker in markers:
        (folder / "prompts" / f"{marker.lower()}.jinja").write_text(TEMPLATE.format(marker=marker))
    return folder


class Graded(ScriptedBackend):
    """Scores unique per request; the correct choice wins with the template's quality; counts requests per template."""

    fail_after: int | None = None

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.per_template: Counter[str] = Counter()
        self.keys: list[tuple[str, str]] = []

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        if self.fail_after is not None and self.loglikelihood_calls + len(requests) > self.fail_after:
            raise RuntimeError("the backend went away")
        out = super().loglikelihood(requests)
        for r in requests:
            self.keys.append((prompt_text(r.context), r.continuation))
        return out

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        context = prompt_text(request.context)
        marker = next(m for m in QUALITY if m in context)
        self.per_template[marker] += 1
        value = -1 - 5 * _unit(self.spec.model, context, request.continuation)
        if request.continuation.startswith(" right") and _unit("coin", context) < QUALITY[marker]:
            value = -0.5
        return LoglikelihoodResult(logprob=value, is_greedy=False, n_tokens=2)


def _spec(root: Path, race: RaceSpec | None = RaceSpec(round=20), **fields: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"tasks": [str(root / "race")], "models": ["scripted:m"], "race": race, **fields})


def _run(spec: ExperimentSpec, store: Store, backend: Graded | None = None, **kw: object):  # type: ignore[no-untyped-def]
    backend = backend or Graded(spec.models[0])
    return run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: backend}, **kw), backend  # type: ignore[arg-type]


def _positions(store: Store, run: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in store.items([run]):
        out.setdefault(row.cell_id, []).append(row.position)
    return out


def test_every_cell_gets_a_prefix_of_one_seeded_order_and_the_race_decides(tmp_path: Path) -> None:
    race_task(tmp_path)
    store = Store(tmp_path / "h.db")
    summary, backend = _run(_spec(tmp_path), store)
    (race,) = store.races([summary.run_id])
    assert race.reason == "winner" and race.decided
    winner = next(c for c in race.cells if c.status == "winner")
    cells = {c.cell_id: c.prompt for c in store.cells([summary.run_id])}
    assert cells[winner.cell_id] == "good"
    order = [int(p) for p in seeded_order(400, 1234)]
    for cell_id, positions in _positions(store, summary.run_id).items():
        k = len(positions)
        assert sorted(positions) == sorted(order[:k]), "a cell's items are the first k of the run's seeded order"
        assert k == race.cell(cell_id).items and k % 20 == 0  # type: ignore[union-attr]
    assert race.evaluations < 3 * 400 / 2, "clear gaps: the race needs far fewer than all items"
    # another seed: another order
    other = Store(tmp_path / "other.db")
    second, _ = _run(_spec(tmp_path, seed=7), other)
    first_items = {row.item_id for row in other.items([second.run_id]) if row.position in [int(p) for p in seeded_order(400, 7)[:20]]}
    assert len(first_items) == 20 and first_items != {f"q{p}" for p in order[:20]}


def test_eliminated_cells_get_no_further_requests(tmp_path: Path) -> None:
    race_task(tmp_path)
    store = Store(tmp_path / "h.db")
    summary, backend = _run(_spec(tmp_path), store)
    (race,) = store.races([summary.run_id])
    cells = {c.cell_id: c.prompt.upper() for c in store.cells([summary.run_id])}
    eliminated = [c for c in race.cells if c.status == "eliminated"]
    assert eliminated and all(c.beaten_by is not None and c.difference is not None and c.difference[0] > 0 for c in eliminated)
    for c in race.cells:  # 3 choices per item, one request each; nothing after the round it stopped at
        assert backend.per_template[cells[c.cell_id]] == 3 * c.items == 3 * 20 * c.round
    assert len(set(backend.keys)) == len(backend.keys), "every request sent once"
    assert summary.backend_requests == summary.requests == race.requests == 3 * race.evaluations


def test_the_stored_outcomes_round_trip(tmp_path: Path) -> None:
    race_task(tmp_path)
    store = Store(tmp_path / "h.db")
    summary, _ = _run(_spec(tmp_path, race=RaceSpec(round=25, alpha=0.1, items=300, requests=10_000)), store)
    (returned,) = summary.extra["races"]
    (stored,) = Store.open_read_only(tmp_path / "h.db").races([summary.run_id])
    assert stored == returned.__class__(**{**returned.__dict__, "updated_at": stored.updated_at})
    assert stored.alpha == 0.1 and stored.round_items == 25 and stored.budget == {"items": 300, "requests": 10_000, "tokens": None}
    assert stored.population == 400 and stored.seed == 1234 and stored.bounds == (0.0, 1.0) and stored.worst == 0.0
    assert "with probability >= 90%" in stored.guarantee and stored.metric == "acc"
    assert store.races(["no-such-run"]) == []


def test_an_interrupted_race_resumes_where_it_stopped(tmp_path: Path) -> None:
    race_task(tmp_path)
    whole = Store(tmp_path / "whole.db")
    reference, ref_backend = _run(_spec(tmp_path), whole)
    store = Store(tmp_path / "h.db")
    failing = Graded(ModelSpec(backend="scripted", model="m"))
    failing.fail_after = 400  # dies during round 3 (180 requests a round)
    with pytest.raises(RuntimeError, match="went away"):
        _run(_spec(tmp_path), store, failing)
    (partial,) = store.races([store.runs()[0].id])
    assert partial.reason == "racing" and partial.rounds == 2
    lines: list[str] = []
    resumed, backend = _run(_spec(tmp_path), store, log=lines.append)
    assert resumed.resumed and any(line.startswith("resuming failed run") for line in lines)
    (race,) = store.races([resumed.run_id])
    (expected,) = whole.races([reference.run_id])
    strip = lambda r: {**r.__dict__, "run_id": None, "updated_at": None}  # noqa: E731
    assert strip(race) == strip(expected), "the resumed race reaches the state of the uninterrupted one"
    # the items stored before the failure were not asked again
    assert failing.loglikelihood_calls + backend.loglikelihood_calls == ref_backend.loglikelihood_calls
    assert not set(failing.keys) & set(backend.keys)


def test_an_eliminated_cell_resumes_to_full_size_from_the_cache(tmp_path: Path) -> None:
    race_task(tmp_path)
    store = Store(tmp_path / "h.db")
    raced, _ = _run(_spec(tmp_path), store)
    (race,) = store.races([raced.run_id])
    loser = next(c for c in race.cells if c.status == "eliminated")
    prompt = next(c.prompt for c in store.cells([raced.run_id]) if c.cell_id == loser.cell_id)
    full, backend = _run(_spec(tmp_path, race=None, prompts=[prompt]), store)  # a plain run of that cell
    (cell,) = store.cells([full.run_id])
    assert cell.cell_id == loser.cell_id and len(store.items([full.run_id])) == 400
    assert full.cache_hits == 3 * loser.items and backend.loglikelihood_calls == 3 * (400 - loser.items)
    assert store.races([full.run_id]) == []


def test_compare_shows_the_race_and_keeps_its_verdicts_honest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    race_task(tmp_path)
    db = tmp_path / "h.db"
    summary, _ = _run(_spec(tmp_path), Store(db))
    capsys.readouterr()
    assert main(["compare", "--db", str(db)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "race (--until-decided, acc, α = 0.05, rounds of 20 items in one seeded order): winner good" in out
    assert "eliminated at round" in out and "by good: good − it in [+" in out and "guarantee: with probability >= 95%" in out
    assert "(race: winner)" in out and "(race: out at round" in out
    assert "unfinished" not in out, "an eliminated cell is not an unfinished one"
    assert "its level is not guaranteed" in out
    assert main(["compare", "--db", str(db), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["prompt"]: r["race_status"] for r in rows}["good"] == "winner"
    assert all(r["race_reason"] == "winner" and r["race_guarantee"] for r in rows)
    assert main(["compare", "--db", str(db), "--json", "--full"]) == 0
    (race,) = json.loads(capsys.readouterr().out)["races"]
    assert race["reason"] == "winner" and race["full_evaluations"] == 1200 and {c["label"].split(" ·")[0] for c in race["cells"]} == {
        "good", "mid", "bad"}
    # the paired comparison rests on the items every cell has
    ranked = [r for r in rows if r["race_status"] == "eliminated"]
    assert all(r["n_paired"] is None or r["n_paired"] <= min(x["n"] for x in rows) for r in ranked)


def test_cli_race_and_the_experiment_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    race_task(tmp_path, rows=60)
    db = tmp_path / "h.db"
    assert main(["run", "--task", str(tmp_path / "race"), "--model", "scripted:m", "--until-decided", "--round", "30", "--margin", "0.5",
                 "--db", str(db), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    store = Store.open_read_only(db)
    (race,) = store.races([out["run_id"]])
    assert race.round_items == 30 and race.margin == 0.5 and out["ranking"][0]["race_status"] is not None
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump({"tasks": [str(tmp_path / "race")], "models": ["scripted:m"], "race": {"round": 15, "alpha": 0.2}}))
    assert main(["run", str(experiment), "--db", str(db), "--json", "--round", "12"]) == 0
    run = json.loads(capsys.readouterr().out)["run_id"]
    (race,) = Store.open_read_only(db).races([run])
    assert (race.round_items, race.alpha) == (12, 0.2)


@pytest.mark.parametrize(("flags", "message"), [
    (["--alpha", "0.1"], "--alpha applies only to a race: add --until-decided"),
    (["--margin", "0.1", "--round", "5"], "--margin, --round apply only to a race"),
    (["--until-decided", "--alpha", "1.5"], "--alpha must be between 0 and 1"),
    (["--until-decided", "--margin", "-0.1"], "--margin must be positive"),
    (["--until-decided", "--margin", "2"], "--margin 2: task 'race''s metric 'acc' lies in [0, 1]"),
    (["--until-decided", "--round", "0"], "--round must be at least 1"),
    (["--until-decided", "--budget-requests", "0"], "--budget-requests must be at least 1"),
    (["--until-decided", "--prompt", "good"], "task 'race' has one cell"),
])
def test_bad_race_flags_are_clean_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    race_task(tmp_path, rows=10)
    db = tmp_path / "h.db"
    assert main(["run", "--task", str(tmp_path / "race"), "--model", "scripted:m", "--db", str(db), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not db.exists(), "refused before a database is made"


def test_metrics_that_cannot_be_raced_are_refused(tmp_path: Path) -> None:
    # test-only metrics, registered once per session under names no task uses
    if "race_test_unbounded" not in METRICS:
        register_metric(Metric("race_test_unbounded", "a continuous score with no known range", True, "continuous", CHOICE_KINDS, lambda o: 1.0))
        register_metric(Metric("race_test_corpus", "a corpus statistic", True, "continuous", CHOICE_KINDS, lambda o: 1.0, aggregation="corpus",
                               corpus=lambda items: 1.0, worst=0.0, bounds=(0.0, 1.0)))
    for metric, why in (("race_test_unbounded", "has no known bounds"), ("race_test_corpus", "is a corpus-level metric")):
        race_task(tmp_path, rows=10, metrics=[metric, "acc"])
        with pytest.raises(HarnessError, match=rf"race/task.yaml\): its main metric '{metric}' .*{why}.*list a per-item metric with known bounds"):
            run_experiment(_spec(tmp_path), lambda: Store(tmp_path / "h.db"), show_progress=False)
    assert not (tmp_path / "h.db").exists()


def test_unscorable_items_count_as_the_worst_value(tmp_path: Path) -> None:
    class Unscorable(Graded):
        def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
            result = super().score(request)
            return LoglikelihoodResult(logprob=float("nan"), is_greedy=False, n_tokens=2) if "BAD" in prompt_text(request.context) else result

    race_task(tmp_path)
    store = Store(tmp_path / "h.db")
    summary, _ = _run(_spec(tmp_path), store, Unscorable(ModelSpec(backend="scripted", model="m")))
    (race,) = store.races([summary.run_id])
    bad = next(c for c in store.cells([summary.run_id]) if c.prompt == "bad")
    outcome = race.cell(bad.cell_id)
    assert outcome is not None and outcome.status == "eliminated" and outcome.mean == 0.0


def test_a_database_without_the_race_tables_reads_as_no_races(tmp_path: Path) -> None:
    import sqlite3

    race_task(tmp_path, rows=40)
    path = tmp_path / "h.db"
    summary, _ = _run(_spec(tmp_path), Store(path))
    con = sqlite3.connect(path)
    con.executescript("DROP TABLE race_cells; DROP TABLE races; DELETE FROM migrations WHERE name = '008_race_outcomes';")
    con.close()
    viewer = Store.open_read_only(path, never_write=True)
    assert "008_race_outcomes" in viewer.pending and viewer.races([summary.run_id]) == []
    assert Store(path).races([summary.run_id]) == []  # a writer migrates it: the tables are back, empty


def test_the_viewer_run_page_shows_the_race(tmp_path: Path) -> None:
    from harness.analysis.compare import compare_runs
    from harness.view.pages import task_views

    race_task(tmp_path)
    store = Store(tmp_path / "h.db")
    summary, _ = _run(_spec(tmp_path), store)
    (view,) = task_views(compare_runs(store, [summary.run_id]))
    marks = {row.cell: row.verdict.split(" (", 1)[1] for row in view.rows}
    assert marks["good"] == "race: winner)" and marks["mid"].startswith("race: out at round") and marks["bad"].startswith("race: out at round")
    assert not any("unfinished" in row.verdict for row in view.rows)
    assert any(line.startswith("race (--until-decided") for line in view.notes) and any("eliminated at round" in n for n in view.notes)
