"""One openai: model over several servers: requests are spread, a dead, hung or slow server does not
stall the run, its requests move to the others, and the answers are those of a one-server run.
Toy servers over real HTTP here; two real vLLM servers, one killed mid-run, in test_vllm_fleet.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from harness.backends import parse_model
from harness.backends.openai.backend import OpenAIBackend
from harness.backends.openai.endpoints import EndpointPool, HealthPolicy
from harness.backends.openai.ratelimit import CallStats
from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.requests import GenerateRequest, LoglikelihoodRequest
from harness.store.store import Store
from tests.backends.toy_upstream import ToyUpstream, generated_text, loglikelihood_of

# the toy's answers are unique to their request (a hash of it): a request handed another's answer is seen
REQUESTS = [GenerateRequest("q" + "x" * i, stop=("\n",)) for i in range(40)]
SCORES = [LoglikelihoodRequest("Q" + "y" * i + ":", " answer" + " z" * (i % 3)) for i in range(12)]


def backend(urls: list[str], **fields: object) -> OpenAIBackend:
    spec = parse_model("openai:toy").model_copy(update={"base_url": urls if len(urls) > 1 else urls[0], **fields})
    return OpenAIBackend(spec)


def answers(api: OpenAIBackend) -> tuple[list[str], list[float]]:
    try:
        return [r.text for r in api.generate(REQUESTS)], [r.logprob for r in api.loglikelihood(SCORES)]
    finally:
        api.close()


@pytest.fixture(scope="module")
def expected() -> Iterator[tuple[list[str], list[float]]]:
    with ToyUpstream() as toy:
        clean = answers(backend([f"{toy.url}/v1"]))
    texts = [generated_text(str(r.prompt)).partition("\n")[0] for r in REQUESTS]
    scores = [loglikelihood_of(str(r.context), r.continuation) for r in SCORES]
    assert clean == (texts, scores) and len(set(texts)) == len(REQUESTS) and len(set(scores)) == len(SCORES)
    yield clean


def toys(*made: ToyUpstream) -> Iterator[list[ToyUpstream]]:
    with ExitStack() as stack:
        yield [stack.enter_context(t) for t in made]


def test_requests_are_spread_over_the_servers(expected: tuple[list[str], list[float]]) -> None:
    for a, b in toys(ToyUpstream(delay_s=0.01), ToyUpstream(delay_s=0.01)):
        api = backend([f"{a.url}/v1", f"{b.url}/v1"], concurrency=2)
        assert answers(api) == expected
        assert a.calls >= 15 and b.calls >= 15 and a.calls + b.calls == len(REQUESTS) + len(SCORES)
        served = {e["url"]: e["served"] for e in api.stats()["endpoints"]}
        assert served == {f"{a.url}/v1": a.calls, f"{b.url}/v1": b.calls}


def test_a_server_killed_mid_run_moves_its_requests_to_the_other(expected: tuple[list[str], list[float]]) -> None:
    for a, b in toys(ToyUpstream(delay_s=0.02, die_after=6), ToyUpstream(delay_s=0.02)):
        api = backend([f"{a.url}/v1", f"{b.url}/v1"], concurrency=4, max_retries=3)
        started = time.monotonic()
        assert answers(api) == expected
        assert time.monotonic() - started < 10
        stats = api.stats()
        dead = next(e for e in stats["endpoints"] if e["url"] == f"{a.url}/v1")
        assert a.dead and dead["served"] == 6 and dead["failed"] >= 1 and dead["marked_down"] >= 1
        assert stats["retries_by_reason"].get("connection", 0) >= 1 and stats["requests"] == len(REQUESTS) + len(SCORES)


def test_a_hung_server_does_not_stall_the_run(expected: tuple[list[str], list[float]]) -> None:
    for a, b in toys(ToyUpstream(), ToyUpstream()):
        a.hang = True
        api = backend([f"{a.url}/v1", f"{b.url}/v1"], concurrency=4, timeout_s=30.0)
        started = time.monotonic()
        assert answers(api) == expected
        elapsed = time.monotonic() - started
        a.hang = False
        # the requests it holds are hedged to the other after 1 s (the hedge floor), long before their timeout
        assert elapsed < 10, elapsed
        assert b.calls >= len(REQUESTS) + len(SCORES) and api.stats()["hedge_wins"] >= 1


def test_a_timed_out_server_is_marked_down_and_skipped(expected: tuple[list[str], list[float]]) -> None:
    for a, b in toys(ToyUpstream(), ToyUpstream()):
        a.hang = True
        api = backend([f"{a.url}/v1", f"{b.url}/v1"], concurrency=4, timeout_s=0.3)  # times out before any hedge
        assert answers(api) == expected
        a.hang = False
        hung = next(e for e in api.stats()["endpoints"] if e["url"] == f"{a.url}/v1")
        assert hung["served"] == 0 and hung["marked_down"] >= 1
        # down for 1 s, 2 s, 4 s...: each probe costs one timeout, not every request
        assert hung["failed"] <= 12 and api.stats()["retries_by_reason"]["timeout"] == hung["failed"]


def test_a_slow_server_gets_fewer_requests(expected: tuple[list[str], list[float]]) -> None:
    for slow, fast in toys(ToyUpstream(delay_s=0.3), ToyUpstream(delay_s=0.005)):
        api = backend([f"{slow.url}/v1", f"{fast.url}/v1"], concurrency=2)
        assert answers(api) == expected
        assert fast.calls >= 4 * slow.calls


def test_a_request_stuck_on_a_slow_server_is_hedged_to_an_idle_one(expected: tuple[list[str], list[float]]) -> None:
    for slow, fast in toys(ToyUpstream(delay_s=6.0), ToyUpstream(delay_s=0.01)):
        api = backend([f"{slow.url}/v1", f"{fast.url}/v1"], concurrency=2)
        started = time.monotonic()
        assert answers(api) == expected
        elapsed = time.monotonic() - started
        stats = api.stats()
        # without hedging the requests the slow server took would each hold their chunk for 6 s
        assert elapsed < 6, elapsed
        assert stats["hedged"] >= 1 and stats["hedge_wins"] >= 1 and stats["requests"] == len(REQUESTS) + len(SCORES)


def test_when_every_server_is_dead_the_run_stops_with_a_clear_error() -> None:
    for a, b in toys(ToyUpstream(die_after=0), ToyUpstream(die_after=0)):
        api = backend([f"{a.url}/v1", f"{b.url}/v1"], max_retries=3)
        started = time.monotonic()
        with pytest.raises(HarnessError, match=r"cannot connect to .*: giving up after 4 attempts in [0-9.]+ s; last error \(connection\)"):
            api.generate(REQUESTS[:4])
        api.close()
        assert time.monotonic() - started < 20


def test_a_server_that_comes_back_is_used_again() -> None:
    stats = CallStats()
    pool = EndpointPool(["http://a/v1", "http://b/v1"], 2, stats, HealthPolicy(first_down_s=0.05))
    a, b = pool.endpoints

    async def scenario() -> list[str]:
        pool.bind()
        got = await pool.acquire()
        await pool.release(got)
        pool.failed(a, "connection")  # a is down for 50 ms: everything goes to b
        taken = [(await pool.acquire()).url for _ in range(2)]
        for endpoint in (b, b):
            await pool.release(endpoint)
        await asyncio.sleep(0.06)
        probe = await pool.acquire(avoid=b)  # a is back, probing: one request at a time
        assert probe is a and a.room(time.monotonic()) == 0
        pool.succeeded(a)
        await pool.release(a)
        assert not a.probing() and a.room(time.monotonic()) == 1
        return taken

    import asyncio

    assert asyncio.run(scenario()) == ["http://b/v1", "http://b/v1"]
    assert a.marked_down == 1


def test_one_server_keeps_the_identity_runs_had_before_lists_and_several_are_a_sorted_list() -> None:
    one = OpenAIBackend.identity_of(parse_model("openai:m").model_copy(update={"base_url": "http://h:1/v1/"}))
    listed = OpenAIBackend.identity_of(parse_model("openai:m").model_copy(update={"base_url": ["http://h:1/v1"]}))
    assert one["base_url"] == listed["base_url"] == "http://h:1/v1"
    ab = OpenAIBackend.identity_of(parse_model("openai:m").model_copy(update={"base_url": ["http://h:2/v1", "http://h:1/v1"]}))
    ba = OpenAIBackend.identity_of(parse_model("openai:m").model_copy(update={"base_url": ["http://h:1/v1", "http://h:2/v1"]}))
    assert ab == ba and ab["base_url"] == ["http://h:1/v1", "http://h:2/v1"]


def test_the_same_server_twice_is_refused() -> None:
    with pytest.raises(HarnessError, match="is given twice"):
        backend(["http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/"])


def test_cli_repeated_base_url_and_an_experiment_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for a, b in toys(ToyUpstream(), ToyUpstream()):
        db = tmp_path / "h.db"
        code = main(["run", "--task", "arithmetic", "--limit", "6", "--model", "openai:toy", "--base-url", f"{b.url}/v1",
                     "--base-url", f"{a.url}/v1", "--concurrency", "1", "--db", str(db), "--quiet", "--json"])
        assert code == 0, capsys.readouterr().err
        out = json.loads(capsys.readouterr().out)
        assert {e["url"] for e in out["backend_stats"]["openai:toy"]["endpoints"]} == {f"{a.url}/v1", f"{b.url}/v1"}
        assert a.calls > 0 and b.calls > 0
        stored = Store(db).run_config(out["run_id"])
        assert stored["spec"]["models"][0]["base_url"] == sorted([f"{a.url}/v1", f"{b.url}/v1"])
        experiment = tmp_path / "exp.yaml"
        experiment.write_text(f"tasks: [arithmetic]\nlimit: 6\nmodels:\n  - backend: openai\n    model: toy\n"
                              f"    base_url: [{b.url}/v1, {a.url}/v1]\n    concurrency: 1\n")
        code = main(["run", str(experiment), "--db", str(db), "--quiet", "--json"])
        assert code == 0, capsys.readouterr().err
        again = json.loads(capsys.readouterr().out)
        # the same set of servers, named in another order: the same identity, so every answer comes from the cache
        assert again["cache_hits"] == again["requests"] == out["requests"] and again["backend_requests"] == 0


def test_an_empty_list_of_servers_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("tasks: [arithmetic]\nmodels:\n  - backend: openai\n    model: toy\n    base_url: []\n")
    assert main(["run", str(experiment), "--db", str(tmp_path / "h.db"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "models.0.base_url" in err and "at least one URL" in err and "Traceback" not in err
