import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import ModelSpec
from harness.backends.scripted import ScriptedBackend
from harness.core.errors import HarnessError
from harness.runner.execute import run_experiment
from harness.runner.planning import plan
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.helpers import write_task

ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, **fields) -> ExperimentSpec:
    base = {"tasks": [str(tmp_path / "toy")], "models": [{"backend": "scripted", "model": "m1"}], "shots": [0, 2],
            "selectors": ["random", "first_k"]}
    base.update(fields)
    return ExperimentSpec.model_validate(base)


def test_matrix_and_every_item_stored(tmp_path: Path) -> None:
    write_task(tmp_path, templates={"plain": "{{ input }}", "other": "Q: {{ input }}\nA:"},
               spec={"prompts": ["plain", "other"]})
    spec = _spec(tmp_path)
    cells = plan(spec)
    # 2 prompts x (0-shot once + 2-shot x 2 selectors)
    assert len(cells) == 6 and len({c.cell_id for c in cells}) == 6
    store = Store(tmp_path / "r" / "h.db")
    summary = run_experiment(spec, store, show_progress=False)
    rows = store.items([summary.run_id])
    assert len(rows) == 6 * 12
    row = rows[0]
    assert row.scores.keys() == {"acc", "acc_norm"}
    assert len(row.response) == 3
    two_shot = [r for r in rows if len(r.demo_ids) == 2]
    assert len(two_shot) == 4 * 12
    jsonl = (summary.run_dir / "items.jsonl").read_text().splitlines()
    assert len(jsonl) == 72 and json.loads(jsonl[0])["run_id"] == summary.run_id
    config = json.loads((summary.run_dir / "config.json").read_text())
    assert config["config"]["tasks"]["toy"]["templates"].keys() == {"plain", "other"}


class Counting(ScriptedBackend):
    instances = 0

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        Counting.instances += 1


def test_identical_rerun_hits_cache_for_every_request(tmp_path: Path) -> None:
    write_task(tmp_path)
    spec = _spec(tmp_path)
    store = Store(tmp_path / "h.db")
    first = run_experiment(spec, store, show_progress=False)
    # identical requests (two selectors picking the same demonstrations) are sent once
    assert 0 < first.backend_requests == first.requests - first.cache_hits
    backend = Counting(spec.models[0])
    second = run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: backend})
    assert second.run_id != first.run_id and not second.resumed
    assert second.cache_hits == second.requests == first.requests
    assert second.backend_requests == 0 and backend.loglikelihood_calls == 0
    scores = lambda run: [(r.cell_id, r.item_id, r.scores) for r in store.items([run])]  # noqa: E731
    assert scores(first.run_id) == scores(second.run_id)
    assert all(r.cached for r in store.items([second.run_id]))


def test_cache_distinguishes_models(tmp_path: Path) -> None:
    write_task(tmp_path)
    store = Store(tmp_path / "h.db")
    first = run_experiment(_spec(tmp_path), store, show_progress=False)
    other = run_experiment(_spec(tmp_path, models=[{"backend": "scripted", "model": "m2"}]), store, show_progress=False)
    assert other.backend_requests == first.backend_requests > 0


def test_fully_cached_run_never_builds_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_task(tmp_path)
    store = Store(tmp_path / "h.db")
    run_experiment(_spec(tmp_path), store, show_progress=False)
    import harness.backends.scripted as scripted

    monkeypatch.setattr(scripted.ScriptedBackend, "__init__", lambda *a: (_ for _ in ()).throw(AssertionError("loaded")))
    summary = run_experiment(_spec(tmp_path), store, show_progress=False, new=True)
    assert summary.backend_requests == 0


def test_results_do_not_depend_on_limit_or_order(tmp_path: Path) -> None:
    write_task(tmp_path)
    store = Store(tmp_path / "h.db")
    full = run_experiment(_spec(tmp_path), store, show_progress=False)
    part = run_experiment(_spec(tmp_path, limit=5), Store(tmp_path / "other.db"), show_progress=False)
    demos = lambda db, run: {(r.cell_id, r.item_id): r.demo_ids for r in Store(db).items([run])}  # noqa: E731
    whole, some = demos(tmp_path / "h.db", full.run_id), demos(tmp_path / "other.db", part.run_id)
    assert some and all(whole[key] == value for key, value in some.items())


def test_template_error_fails_before_anything_is_written(tmp_path: Path) -> None:
    write_task(tmp_path, templates={"plain": "{{ nope }}"})
    store = Store(tmp_path / "h.db")
    with pytest.raises(HarnessError, match="nope"):
        run_experiment(_spec(tmp_path), store, show_progress=False)
    assert store.runs() == []


def test_sigkill_then_rerun_completes_asking_only_for_missing(tmp_path: Path) -> None:
    write_task(tmp_path, rows=300)
    db = tmp_path / "h.db"
    args = ["run", "--task", str(tmp_path / "toy"), "--model", "slowscripted:m", "--db", str(db), "--quiet"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests' / 'plugins'}{os.pathsep}{ROOT}"}
    code = "import slow_backend, sys; from harness.cli.app import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen([sys.executable, "-c", code, *args], env=env)
    deadline = time.time() + 120
    stored = 0
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    stored = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if stored > 0:  # the first chunk is committed: kill it mid-way through the next
                time.sleep(1.0)
                break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < stored < 300, f"the run was not interrupted halfway (stored {stored})"

    sys.path.insert(0, str(ROOT / "tests" / "plugins"))
    import slow_backend  # registers 'slowscripted' in this process too

    store = Store(db)
    (killed,) = store.runs()
    done = store.item_count(killed.id)
    spec = ExperimentSpec.model_validate({"tasks": [str(tmp_path / "toy")], "models": ["slowscripted:m"]})
    backend = slow_backend.SlowScripted(spec.models[0])
    summary = run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: backend})
    assert summary.resumed
    assert backend.loglikelihood_calls == (300 - done) * 3  # only the missing items, 3 choices each
    assert len(store.items([summary.run_id])) == 300
    fresh = run_experiment(spec, Store(tmp_path / "clean.db"), show_progress=False)
    key = lambda rows: sorted((r.item_id, json.dumps(r.scores), json.dumps(r.response)) for r in rows)  # noqa: E731
    assert key(store.items([summary.run_id])) == key(Store(tmp_path / "clean.db").items([fresh.run_id]))


class Versioned(ScriptedBackend):
    """A scripted model whose identity names its 'weights'; it can die after some requests (a kill)."""

    def __init__(self, spec: ModelSpec, weights: str, die_after: int | None = None) -> None:
        super().__init__(spec)
        self.weights, self.die_after = weights, die_after

    @property
    def identity(self) -> dict:
        return {**super().identity, "weights": self.weights}

    def loglikelihood(self, requests):  # type: ignore[no-untyped-def]
        if self.die_after is not None and self.loglikelihood_calls >= self.die_after:
            raise RuntimeError("killed")
        return super().loglikelihood(requests)


def test_resume_only_with_the_same_model_content_and_say_so(tmp_path: Path) -> None:
    write_task(tmp_path, rows=40)
    spec = _spec(tmp_path, shots=[0], chunk_items=8)
    label = spec.models[0].label
    store = Store(tmp_path / "h.db")
    with pytest.raises(RuntimeError, match="killed"):
        run_experiment(spec, store, show_progress=False, backends={label: Versioned(spec.models[0], "v1", die_after=8 * 3)})
    (killed,) = [r.id for r in store.runs()]
    assert store.run_config(killed)["models"] == [{**Versioned(spec.models[0], "v1").identity}]

    # other weights under the same spec: not the same model, so a new run (and no cached answer is reused)
    lines: list[str] = []
    other = run_experiment(spec, store, show_progress=False, backends={label: Versioned(spec.models[0], "v2")}, log=lines.append)
    assert not other.resumed and other.run_id != killed and other.cache_hits == 0
    assert not any("resuming" in line or "response cache" in line for line in lines)

    # the backend error marked the run failed, with its reason; the same weights resume it, in one line naming it and the failure
    (failed,) = [r for r in store.runs() if r.id == killed]
    assert (failed.status, failed.error, failed.owner) == ("failed", "RuntimeError: killed", None)
    lines.clear()
    backend = Versioned(spec.models[0], "v1")
    resumed = run_experiment(spec, store, show_progress=False, backends={label: backend}, log=lines.append)
    assert resumed.resumed and resumed.run_id == killed
    assert backend.loglikelihood_calls == (40 - 8) * 3
    assert [line for line in lines if line.startswith("resuming")] == [
        f"resuming failed run {killed} (it failed: RuntimeError: killed): 8 of 40 items already stored (same config and model content)"]
    (done,) = [r for r in store.runs() if r.id == killed]
    assert (done.status, done.error, done.owner) == ("finished", None, None)

    # a repeat is served from the response cache, and says which run stored the answers
    lines.clear()
    again = run_experiment(spec, store, show_progress=False, new=True, backends={label: Versioned(spec.models[0], "v1")}, log=lines.append)
    assert again.cache_hits == again.requests == 40 * 3
    assert lines == [f"{40 * 3} of {40 * 3} requests served from the response cache (first stored by run {killed})"]


def test_cli_run_says_resume_and_cache_on_stderr_and_keeps_json_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import cli

    write_task(tmp_path, rows=6)
    args = ["run", "--task", str(tmp_path / "toy"), "--model", "scripted:m", "--db", str(tmp_path / "h.db"), "--quiet", "--json"]
    assert cli(*args) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli(*args) == 0
    captured = capsys.readouterr()
    second = json.loads(captured.out)  # stdout is still one JSON document
    assert second["cache_hits"] == second["requests"] == 18
    assert f"18 of 18 requests served from the response cache (first stored by run {first['run_id']})" in captured.err.splitlines()
