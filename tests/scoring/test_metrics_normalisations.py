"""acc_norm_tokens, acc_norm_bytes and acc_mutual_info through the runner on scripted backends: the extra
("", continuation) requests exist only when a task lists acc_mutual_info, go through the response cache,
are stored with the item (so rescore recomputes the metric) and reach the metric; classification labels
whose words differ in token count and byte length are normalised by their first word."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from harness.analysis.compare import item_diff
from harness.backends import ModelSpec
from harness.backends.scripted import ScriptedBackend, _unit
from harness.core.errors import HarnessError
from harness.prompts.messages import prompt_text
from harness.requests import LoglikelihoodRequest, LoglikelihoodResult
from harness.runner.calibration import calibrate_run
from harness.runner.execute import run_experiment
from harness.runner.rescore import rescore_run
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.helpers import cli, write_task


class Table(ScriptedBackend):
    """Log-likelihoods in [-10, -0.5] from a hash of the request, whatever the continuation's length (so the
    normalisations can disagree), and after an empty context -0.3 per character (what acc_mutual_info divides
    out); tokens = words (ScriptedBackend)."""

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        result = super().score(request)
        if prompt_text(request.context) == "":
            return LoglikelihoodResult(logprob=-0.3 * len(request.continuation), is_greedy=False, n_tokens=result.n_tokens)
        value = -0.5 - 9.5 * _unit(prompt_text(request.context), request.continuation)
        return LoglikelihoodResult(logprob=value, is_greedy=False, n_tokens=result.n_tokens)


def _run(tmp_path: Path, folder: Path, backend: ScriptedBackend, shots: int = 0, db: str = "h.db") -> tuple[Store, str]:
    store = Store(tmp_path / "results" / db)
    spec = ExperimentSpec(tasks=[str(folder)], models=["scripted:m"], shots=[shots])
    return store, run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: backend}, new=True).run_id


def _backend() -> Table:
    return Table(ModelSpec(backend="scripted", model="m"))


def test_mutual_info_adds_one_empty_context_request_per_choice_only_when_listed(tmp_path: Path) -> None:
    plain = write_task(tmp_path / "a", rows=6, spec={"metrics": ["acc", "acc_norm_tokens", "acc_norm_bytes"]})
    backend = _backend()
    store, run = _run(tmp_path, plain, backend, db="a.db")
    assert len(backend.requests_seen) == 6 * 3 and all(prompt_text(r.context) for r in backend.requests_seen)  # type: ignore[attr-defined]
    assert all(len(r.response) == 3 for r in store.items([run]))
    with pytest.raises(HarnessError, match="lists acc_mutual_info in its metrics"):  # cannot be made up afterwards
        rescore_run(store, run, ["acc_mutual_info"], write=False)

    listed = write_task(tmp_path / "b", rows=6, spec={"metrics": ["acc", "acc_mutual_info"]})
    backend = _backend()
    store, run = _run(tmp_path, listed, backend, db="b.db")
    seen: list[Any] = backend.requests_seen
    empty = [r for r in seen if prompt_text(r.context) == ""]
    # one ("", continuation) per distinct continuation: "maybe" is shared by every item, so it is sent once
    assert sorted(r.continuation for r in empty) == sorted({c for r in seen for c in [r.continuation]})
    assert len(seen) == 6 * 3 + len(empty) and len(empty) == 6 * 2 + 1
    for row in store.items([run]):
        continuations = row.continuations
        response = row.response
        assert len(continuations) == 3 and len(response) == 6  # conditional, then unconditional, same order
        conditional = np.array([r["logprob"] for r in response[:3]])
        unconditional = np.array([-0.3 * len(c) for c in continuations])
        assert [r["logprob"] for r in response[3:]] == pytest.approx(unconditional.tolist())
        scores = row.scores
        target = row.target
        assert scores["acc_mutual_info"] == float(int(np.argmax(conditional - unconditional)) == target)
        assert scores["acc"] == float(int(np.argmax(conditional)) == target)  # acc ignores the extra results


def test_mutual_info_requests_are_cached_stored_and_rescored(tmp_path: Path) -> None:
    folder = write_task(tmp_path, rows=10, spec={"metrics": ["acc_mutual_info", "acc"]})
    backend = _backend()
    store, first = _run(tmp_path, folder, backend, shots=2)
    sent = len(backend.requests_seen)
    store, second = _run(tmp_path, folder, backend, shots=2)  # --new: a fresh run, every request from the cache
    assert len(backend.requests_seen) == sent
    summary = rescore_run(store, second, ["acc_norm_tokens", "acc_norm_bytes"], write=False)
    assert summary.reproduced and {c.metric for c in summary.checks} == {"acc_mutual_info", "acc"}
    assert set(summary.added) == {"acc_norm_tokens", "acc_norm_bytes"}
    a, b = store.cells([first])[0], store.cells([second])[0]
    _, diffs, paired = item_diff(store, a, b, "acc")
    assert paired == 10 and diffs == []


def test_compare_show_diff_and_degenerate_check_read_only_the_choices_own_results(tmp_path: Path) -> None:
    # the unconditional results follow the choices' own in the stored response: an argmax over all of them
    # would name a choice that does not exist (show --diff) or not divide by the lengths (degenerate, acc_norm first)
    folder = write_task(tmp_path, rows=30, spec={"metrics": ["acc_norm", "acc_mutual_info"]})
    db = tmp_path / "results" / "h.db"
    assert cli("run", "--task", folder, "--model", "scripted:m", "--db", db, "--shots", "0", "1", "--quiet") == 0
    store = Store(db)
    (run,) = [r.id for r in store.runs()]
    zero, one = sorted(store.cells([run]), key=lambda c: c.shots)
    _, diffs, paired = item_diff(store, zero, one, "acc_norm")
    assert paired == 30 and diffs
    for d in diffs:
        for answer in (d.response_a, d.response_b):
            index = int(answer.rsplit("(choice ", 1)[1].rstrip(")"))
            assert 0 <= index < 3
    assert cli("show", "--db", db, "--diff", zero.cell_id, one.cell_id) == 0


def test_each_normalisation_picks_its_own_choice(tmp_path: Path) -> None:
    class Fixed(ScriptedBackend):
        # log-likelihood; tokens (ScriptedBackend: words), chars and UTF-8 bytes without the leading space
        values = {" a": -1.0, " bbbbbbbbbb": -2.5, " c c c c": -2.0, " 好好好": -1.5}

        def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
            base = super().score(request)
            return LoglikelihoodResult(logprob=self.values[request.continuation], is_greedy=False, n_tokens=base.n_tokens)

    # raw: -1 (a) | chars: -1, -0.25 (b), -0.29, -0.5 | tokens: -1, -2.5, -0.5 (c), -1.5 | bytes: -1, -0.25, -0.29, -0.17 (好)
    write_task(tmp_path, "fixed", rows=1, spec={"metrics": ["acc", "acc_norm", "acc_norm_tokens", "acc_norm_bytes"]})
    folder = tmp_path / "fixed"
    rows = [{"id": f"t{i}", "question": "q?", "options": ["a", "bbbbbbbbbb", "c c c c", "好好好"], "answer": i} for i in range(4)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    store, run = _run(tmp_path, folder, Fixed(ModelSpec(backend="scripted", model="m")))
    right = {r.target: [m for m, v in r.scores.items() if v == 1.0] for r in store.items([run])}
    assert right == {0: ["acc"], 1: ["acc_norm"], 2: ["acc_norm_tokens"], 3: ["acc_norm_bytes"]}


def _sentiment(root: Path, metrics: list[str]) -> Path:
    folder = root / "senti"
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "senti", "type": "classification", "data": {"test": "test.jsonl"}, "input": "{{ text }}", "target": "{{ label }}",
        # first words: "not good at all" (4 tokens, 15 bytes) vs "好评" (1 token, 6 bytes)
        "verbalizers": {"negative": ["not good at all", "bad"], "positive": ["好评", "great"]},
        "prompts": ["plain"], "metrics": metrics,
    }
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    rows = [{"id": f"r{i}", "text": f"review number {i}", "label": i % 2} for i in range(24)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "prompts" / "plain.jinja").write_text("Review: {{ input }}\nSentiment:")
    return folder


def test_classification_labels_normalise_by_their_first_word(tmp_path: Path) -> None:
    metrics = ["acc", "acc_norm", "acc_norm_tokens", "acc_norm_bytes", "acc_mutual_info"]
    folder = _sentiment(tmp_path, metrics)
    store, run = _run(tmp_path, folder, _backend())
    tokens = np.array([4.0, 1.0])  # ScriptedBackend: tokens = words of the first word of each label
    chars, utf8 = np.array([15.0, 2.0]), np.array([15.0, 6.0])
    differ = 0
    for row in store.items([run]):
        response = [r["logprob"] for r in row.response]
        assert len(response) == 8  # 4 words, then the same 4 after an empty context
        labels = np.array([np.logaddexp(response[0], response[1]), np.logaddexp(response[2], response[3])])
        free = np.array([np.logaddexp(response[4], response[5]), np.logaddexp(response[6], response[7])])
        target = row.target
        expected = {
            "acc": int(np.argmax(labels)) == target, "acc_norm": int(np.argmax(labels / chars)) == target,
            "acc_norm_tokens": int(np.argmax(labels / tokens)) == target, "acc_norm_bytes": int(np.argmax(labels / utf8)) == target,
            "acc_mutual_info": int(np.argmax(labels - free)) == target,
        }
        scores = row.scores
        assert scores == {k: float(v) for k, v in expected.items()}
        differ += len({expected["acc_norm"], expected["acc_norm_tokens"], expected["acc_norm_bytes"]}) > 1
    assert differ > 0  # the three normalisations really disagree on some items here


def test_calibrate_reads_the_stored_choices_of_a_mutual_info_run(tmp_path: Path) -> None:
    folder = _sentiment(tmp_path, ["acc", "acc_mutual_info"])
    backend = _backend()
    store, run = _run(tmp_path, folder, backend)
    assert calibrate_run(store, run, backends={"scripted:m": backend}) == 24
    stored = {r.item_id: r.scores["acc"] for r in store.items([run])}
    assert {r.item_id: float(r.predicted == r.target) for r in store.calibration(run)} == stored
