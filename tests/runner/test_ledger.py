"""The cost ledger (issue 21, item 4): requests sent vs served from the cache, tokens in/out, money from a price table,
``compare --budget``; counted on the scripted backend, whose answers are unique per request and whose tokens are words."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.backends.scripted import scripted_tokens
from harness.cli.app import main
from harness.prompts.messages import prompt_text
from harness.requests import GenerateResult, LoglikelihoodResult, result_from_json, result_to_json
from harness.runner.ledger import cell_costs
from harness.store.store import Store


def mc_task(root: Path, rows: int = 12, duplicate: bool = True) -> Path:
    """A multiple-choice task of ``rows`` items x 3 choices and two prompt variants; with ``duplicate`` the last item asks
    exactly what the first does (same question, same choices), so its requests are identical to the first's."""
    folder = root / "costly"
    (folder / "prompts").mkdir(parents=True)
    spec = {"name": "costly", "type": "multiple_choice", "data": {"test": "test.jsonl"}, "input": "{{ question }}",
            "choices": "{{ options }}", "target": "{{ answer }}", "prompts": ["short", "long"], "metrics": ["acc"]}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    lines = [{"id": f"q{i}", "question": f"what is item {i} ?", "options": [f"right {i}", f"wrong answer {i}", "other"], "answer": i % 3}
             for i in range(rows)]
    if duplicate:
        lines[-1] = {**lines[0], "id": "twin"}
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    (folder / "prompts" / "short.jinja").write_text("Q: {{ input }}\nA:")
    (folder / "prompts" / "long.jinja").write_text("Answer the question below with care.\nQuestion: {{ input }}\nAnswer:")
    return folder


def cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def experiment(tmp_path: Path, task: Path, models: list[str], prices: dict[str, Any] | None = None, name: str = "exp.yaml") -> Path:
    body: dict[str, Any] = {"tasks": [str(task)], "models": models}
    if prices is not None:
        body["prices"] = prices
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def expected_tokens(store: Store, run_id: str) -> dict[str, tuple[int, int]]:
    """Per cell, the words of every request's context and continuation, recomputed from the stored prompts (not from results)."""
    out: dict[str, tuple[int, int]] = {}
    for item in store.items([run_id]):
        read = sum(scripted_tokens(prompt_text(item.prompt)) + scripted_tokens(c) for c in item.continuations or [])
        have = out.get(item.cell_id, (0, 0))
        out[item.cell_id] = (have[0] + read, have[1] + len(item.response))
    return out


def test_ledger_counts_requests_cache_and_tokens_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task, db = mc_task(tmp_path), tmp_path / "h.db"
    path = experiment(tmp_path, task, ["scripted:m"])
    code, out, _ = cli(capsys, "run", path, "--db", db, "--json")
    assert code == 0
    first = json.loads(out)
    store = Store(db)
    tokens = expected_tokens(store, first["run_id"])
    ledger = {row["cell_id"]: row for row in first["ledger"]}
    assert set(ledger) == set(tokens) and len(ledger) == 2
    for cell, row in ledger.items():
        assert row["items"] == 12 and row["requests"] == 36 == tokens[cell][1]
        assert row["sent"] == 33 and row["from_cache"] == 3  # the twin's 3 requests are the first item's: sent once
        assert row["tokens_in"] == tokens[cell][0] and row["tokens_out"] == 0
        assert row["money"] is None and row["no_money"] == "no price for model 'scripted:m'"
    assert sum(r["sent"] for r in ledger.values()) == first["backend_requests"] == 66
    # the same experiment again: a new run (the first is finished) answered from the response cache, same tokens, nothing sent
    code, out, _ = cli(capsys, "run", path, "--db", db, "--json")
    second = json.loads(out)
    assert second["run_id"] != first["run_id"] and second["backend_requests"] == 0
    for row in second["ledger"]:
        assert row["sent"] == 0 and row["from_cache"] == 36 and row["sent_tokens_in"] == 0 == row["sent_tokens_out"]
        assert row["tokens_in"] == ledger[row["cell_id"]]["tokens_in"]
    # the terminal prints the same ledger, without a money column when nothing is priced
    code, out, _ = cli(capsys, "show", second["run_id"], "--db", db, "--costs")
    assert code == 0 and "cost ledger" in out and "from cache" in out and "money" not in out


def test_sent_tokens_are_those_of_the_requests_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task, db = mc_task(tmp_path), tmp_path / "h.db"
    code, out, _ = cli(capsys, "run", experiment(tmp_path, task, ["scripted:m"]), "--db", db, "--json")
    run = json.loads(out)["run_id"]
    store = Store(db)
    twin = {i.cell_id: i for i in store.items([run]) if i.item_id == "twin"}
    for row in json.loads(out)["ledger"]:
        read = sum(scripted_tokens(prompt_text(twin[row["cell_id"]].prompt)) + scripted_tokens(c) for c in twin[row["cell_id"]].continuations or [])
        assert row["sent_tokens_in"] == row["tokens_in"] - read


def test_money_from_the_price_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task, db = mc_task(tmp_path), tmp_path / "h.db"
    prices = {"scripted:cheap": {"input_per_million": 2.0, "output_per_million": 10.0, "per_request": 0.001}}
    code, out, _ = cli(capsys, "run", experiment(tmp_path, task, ["scripted:cheap", "scripted:free"], prices), "--db", db, "--json")
    assert code == 0
    body = json.loads(out)
    for row in body["ledger"]:
        if row["model"] == "scripted:cheap":
            assert row["currency"] == "USD"
            assert row["money"] == pytest.approx(row["requests"] * 0.001 + row["tokens_in"] * 2.0 / 1e6)
            assert row["sent_money"] == pytest.approx(row["sent"] * 0.001 + row["sent_tokens_in"] * 2.0 / 1e6)
        else:  # a model without a price has no money, not 0
            assert row["money"] is None and row["sent_money"] is None and "no price" in row["no_money"]
    # the price is not part of the run's identity: the same matrix without prices is the same config
    store = Store(db)
    assert "prices" not in store.run_config(body["run_id"])["spec"]
    code, out, _ = cli(capsys, "show", body["run_id"], "--db", db, "--costs")
    assert "money" in out and "USD" in out and "no money for scripted:free: no price" in out


@pytest.mark.parametrize(("prices", "expected"), [
    ({"scripted:m": {"input_per_millon": 1.0, "output_per_million": 1.0}}, "unknown key 'prices.scripted:m.input_per_millon'. Did you mean 'input_per_million'?"),
    ({"scripted:m": {"input_per_million": -1.0, "output_per_million": 1.0}}, "field 'prices.scripted:m.input_per_million': Input should be greater than or equal to 0"),
    ({"scripted:mm": {"input_per_million": 1.0, "output_per_million": 1.0}}, "field 'prices.scripted:mm': no model of the experiment is labelled 'scripted:mm'. Did you mean 'scripted:m'?"),
    ({"scripted:m": {"input_per_million": 1.0}}, "missing required field 'prices.scripted:m.output_per_million'"),
])
def test_a_bad_price_table_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], prices: dict[str, Any], expected: str) -> None:
    path = experiment(tmp_path, mc_task(tmp_path), ["scripted:m"], prices)
    code, out, err = cli(capsys, "run", path, "--db", tmp_path / "h.db")
    assert code == 2 and out == ""
    assert str(path) in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "h.db").exists()


def budget_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    task, db = mc_task(tmp_path, rows=40, duplicate=False), tmp_path / "h.db"
    prices = {"scripted:a": {"input_per_million": 1000.0, "output_per_million": 0.0},
              "scripted:b": {"input_per_million": 100.0, "output_per_million": 0.0}}
    code, out, _ = cli(capsys, "run", experiment(tmp_path, task, ["scripted:a", "scripted:b", "scripted:c"], prices), "--db", db, "--json")
    assert code == 0
    return db, json.loads(out)["run_id"]


def test_compare_under_a_money_budget_marks_the_cells_over_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, run = budget_runs(tmp_path, capsys)
    store = Store(db)
    costs = {(c.cell.model, c.cell.prompt): c for c in cell_costs(store, [run])}
    cheapest_a = min(c.money for (m, _), c in costs.items() if m == "scripted:a")  # type: ignore[type-var]
    priciest_b = max(c.money for (m, _), c in costs.items() if m == "scripted:b")  # type: ignore[type-var]
    assert priciest_b < cheapest_a  # b costs a tenth of a per token
    budget = (priciest_b + cheapest_a) / 2
    code, out, _ = cli(capsys, "compare", run, "--db", db, "--json", "--budget", budget)
    assert code == 0
    body = json.loads(out)
    [task] = body["budgets"]
    assert task["unit"] == "money" and task["scope"] == "compared" and not task["estimated"] and task["n_items"] == 40
    status = {c["cell_id"]: c for c in task["cells"]}
    models = {row["cell_id"]: row["model"] for row in body["cells"]}
    for cell_id, c in status.items():
        expected = {"scripted:a": "over", "scripted:b": "within", "scripted:c": "unknown"}[models[cell_id]]
        assert c["status"] == expected, (models[cell_id], c)
        if expected != "unknown":  # every item is compared here, so the cost is the cell's ledger money
            assert c["cost"] == pytest.approx(costs[(models[cell_id], next(r["prompt"] for r in body["cells"] if r["cell_id"] == cell_id))].money)
        else:
            assert c["cost"] is None and "no price" in c["why"]
    ranked = sorted(task["cells"], key=lambda c: c["rank"])
    best = next(c for c in ranked if c["status"] == "within")
    assert task["best_within"] == best["cell_id"] and task["best_within_verdict"] == best["verdict"]
    assert [r["verdict"] for r in body["cells"] if r["cell_id"] == best["cell_id"]] == [best["verdict"]]  # the ranking's own verdict
    # the terminal: the marks, the best within the budget, what the cost counts
    code, out, _ = cli(capsys, "compare", run, "--db", db, "--budget", budget, "--wide")
    assert code == 0 and "best within the budget:" in out and "cost of the 40 items compared" in out and "over" in out


def test_compare_under_a_token_budget_and_extrapolated_to_the_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task, db = mc_task(tmp_path, rows=30, duplicate=False), tmp_path / "h.db"
    code, out, _ = cli(capsys, "run", "--task", task, "--model", "scripted:a", "--prompt", "short", "long", "--sample", "10", "--db", db, "--json")
    body = json.loads(out)
    tokens = {row["cell_id"]: row["tokens_in"] + row["tokens_out"] for row in body["ledger"]}
    low, high = sorted(tokens.values())
    code, out, _ = cli(capsys, "compare", body["run_id"], "--db", db, "--json", "--budget-tokens", (low + high) // 2)
    [b] = json.loads(out)["budgets"]
    assert b["unit"] == "tokens" and sorted(c["status"] for c in b["cells"]) == ["over", "within"]
    assert {c["cell_id"]: c["cost"] for c in b["cells"]} == tokens
    code, out, _ = cli(capsys, "compare", body["run_id"], "--db", db, "--json", "--budget-tokens", high, "--budget-scope", "split")
    [b] = json.loads(out)["budgets"]
    assert b["estimated"] and b["n_items"] == 30
    assert {c["cell_id"]: c["cost"] for c in b["cells"]} == pytest.approx({k: v * 3 for k, v in tokens.items()})  # 10 of 30 items, x 3
    assert all(c["status"] == "over" for c in b["cells"])
    code, out, _ = cli(capsys, "compare", body["run_id"], "--db", db, "--budget-tokens", high, "--budget-scope", "split", "--wide")
    assert "estimated cost of the task's whole split" in out and "extrapolated from the items stored, an estimate" in out
    assert "no cell's cost is known to be within the budget (2 over, 0 unknown)" in out


def test_budget_flags_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, run = budget_runs(tmp_path, capsys)
    code, _, err = cli(capsys, "compare", run, "--db", db, "--budget", "1", "--budget-tokens", "5")
    assert code == 2 and "not both" in err
    code, _, err = cli(capsys, "compare", run, "--db", db, "--budget", "-1")
    assert code == 2 and "--budget must be a number >= 0" in err


def test_results_cached_before_the_ledger_still_read_and_are_unmetered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_ll = {"kind": "loglikelihood", "logprob": -1.5, "is_greedy": False, "n_tokens": 2, "latency_s": 0.1}
    old_gen = {"kind": "generate", "text": " 4", "n_tokens": 1, "finish_reason": "stop", "latency_s": 0.0, "token_logprobs": [-0.5]}
    assert result_from_json(old_ll) == LoglikelihoodResult(-1.5, False, 2, 0.1)
    assert result_from_json(old_gen) == GenerateResult(" 4", 1, "stop", 0.0, (-0.5,))
    assert result_to_json(LoglikelihoodResult(-1.5, False, 2, 0.1)) == old_ll  # a result without counts is stored as before
    # a run, then its cache entries rewritten as a harness before the ledger wrote them, then the same matrix answered from them
    task, db = mc_task(tmp_path, duplicate=False), tmp_path / "h.db"
    path = experiment(tmp_path, task, ["scripted:m"], {"scripted:m": {"input_per_million": 1.0, "output_per_million": 1.0}})
    assert cli(capsys, "run", path, "--db", db)[0] == 0
    con = sqlite3.connect(db)
    rows = con.execute("SELECT key, result_json FROM cache").fetchall()
    for key, text in rows:
        value = json.loads(text)
        value.pop("input_tokens"), value.pop("output_tokens")
        con.execute("UPDATE cache SET result_json = ? WHERE key = ?", (json.dumps(value), key))
    con.commit()
    con.close()
    code, out, _ = cli(capsys, "run", path, "--db", db, "--json")
    assert code == 0
    for row in json.loads(out)["ledger"]:
        assert row["from_cache"] == row["requests"] == 36 and row["unmetered_items"] == 12
        assert row["tokens_in"] is None and row["money"] is None and "carry no token counts" in row["no_money"]


def test_a_database_before_the_ledger_reads_its_items_as_unrecorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task, db = mc_task(tmp_path, duplicate=False), tmp_path / "h.db"
    code, out, _ = cli(capsys, "run", "--task", task, "--model", "scripted:m", "--db", db, "--json")
    run = json.loads(out)["run_id"]
    con = sqlite3.connect(db)
    con.execute("UPDATE items SET n_requests = NULL, requests_sent = NULL, tokens_in = NULL, tokens_out = NULL, sent_tokens_in = NULL, "
                "sent_tokens_out = NULL")
    con.commit()
    con.close()
    [one, *_] = cell_costs(Store.open_read_only(db), [run])
    assert one.ledger.requests == 36 and one.ledger.unrecorded == 12 and one.ledger.unmetered == 12
    code, out, _ = cli(capsys, "show", run, "--db", db, "--costs", "--json")
    row = json.loads(out)[0]
    assert row["requests"] == 36 and row["sent"] is None and row["from_cache"] is None and row["tokens_in"] is None


def test_a_viewer_reads_a_database_without_migration_009(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A reader that never writes (harness view) opens a database of the harness before the ledger: no item recorded or metered."""
    task, db = mc_task(tmp_path, duplicate=False), tmp_path / "h.db"
    code, out, _ = cli(capsys, "run", "--task", task, "--model", "scripted:m", "--db", db, "--json")
    run = json.loads(out)["run_id"]
    con = sqlite3.connect(db)
    con.executescript("DROP TABLE run_prices; DELETE FROM migrations WHERE name = '009_cost_ledger';")
    for column in ("n_requests", "requests_sent", "tokens_in", "tokens_out", "sent_tokens_in", "sent_tokens_out"):
        con.execute(f"ALTER TABLE items DROP COLUMN {column}")
    con.commit()
    con.close()
    viewer = Store.open_read_only(db, never_write=True)
    assert "009_cost_ledger" in viewer.pending and viewer.prices([run]) == []
    [one, *_] = cell_costs(viewer, [run])
    assert (one.ledger.requests, one.ledger.unrecorded, one.ledger.unmetered, one.money) == (36, 12, 12, None)
    assert {i.requests for i in viewer.item_ledgers([run])} == {3}


def test_a_money_budget_needs_a_price_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task, db = mc_task(tmp_path, duplicate=False), tmp_path / "h.db"
    code, out, _ = cli(capsys, "run", "--task", task, "--model", "scripted:m", "--db", db, "--json")
    run = json.loads(out)["run_id"]
    code, _, err = cli(capsys, "compare", run, "--db", db, "--budget", "1")
    assert code == 2 and "no compared run has a price table" in err and "--budget-tokens" in err and "Traceback" not in err
    code, _, err = cli(capsys, "compare", run, "--db", db, "--budget-tokens", "1", "--csv")
    assert code == 2 and "--csv prints the ranked cells only" in err
