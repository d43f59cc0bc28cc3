"""The HF backend on the real embedded Gemma 3 270M (slow)."""

from __future__ import annotations

import math

import pytest

from harness.backends import ModelSpec
from harness.core.errors import HarnessError
from harness.prompts.messages import Message
from harness.requests import GenerateRequest, LoglikelihoodRequest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(embedded_model):
    from harness.backends.hf.backend import HFBackend

    return HFBackend(ModelSpec())


def _capital_requests(n: int) -> list[LoglikelihoodRequest]:
    from harness.prompts.template import load_prompt
    from harness.tasks.task import find_task

    task = find_task("capitals")
    template = load_prompt(task, "qa_plain")
    requests = []
    for item in task.items("test")[:n]:
        rendered = template.render(task, item, task.items("fewshot")[:2])
        requests += [LoglikelihoodRequest(rendered.prompt, c) for c in rendered.continuations]
    return requests


def test_predictions_do_not_depend_on_batch_size(backend) -> None:
    requests = _capital_requests(24)
    budgets = {}
    for budget in (64, 1024, 16384):
        backend.max_batch_tokens = budget
        budgets[budget] = backend.loglikelihood(requests)
    backend.max_batch_tokens = 4096
    reference = budgets[64]
    for results in budgets.values():
        for a, b in zip(reference, results):
            assert math.isclose(a.logprob, b.logprob, rel_tol=1e-4, abs_tol=5e-3)
            assert a.is_greedy == b.is_greedy and a.n_tokens == b.n_tokens
        argmax = lambda rs: [max(range(4), key=lambda j: rs[i + j].logprob) for i in range(0, len(rs), 4)]  # noqa: E731
        assert argmax(results) == argmax(reference)


def test_loglikelihood_matches_a_plain_forward_pass(backend) -> None:
    import torch

    context, continuation = "The capital of France is", " Paris"
    [result] = backend.loglikelihood([LoglikelihoodRequest(context, continuation)])
    tok = backend.tokenizer
    ctx = tok(context).input_ids
    whole = tok(context + continuation).input_ids
    with torch.no_grad():
        logits = backend.model(torch.tensor([whole])).logits[0].float().log_softmax(-1)
    expected = sum(float(logits[i - 1, whole[i]]) for i in range(len(ctx), len(whole)))
    assert math.isclose(result.logprob, expected, abs_tol=1e-4)
    assert result.n_tokens == len(whole) - len(ctx)
    greedy = all(int(logits[i - 1].argmax()) == whole[i] for i in range(len(ctx), len(whole)))
    assert result.is_greedy == greedy


def test_generation_stops_and_is_batch_invariant(backend) -> None:
    prompts = [f"{a} + {a} = {2 * a}\n{a + 1} + {a + 1} =" for a in range(3, 9)]
    requests = [GenerateRequest(p, max_tokens=8, stop=("\n",)) for p in prompts]
    backend.max_batch_tokens, backend.max_decode_rows = 16, 1
    one_by_one = backend.generate(requests)
    backend.max_batch_tokens, backend.max_decode_rows = 4096, 32
    batched = backend.generate(requests)
    assert [r.text for r in one_by_one] == [r.text for r in batched]
    assert all("\n" not in r.text for r in batched)
    assert sum(r.text.strip() == str(2 * (a + 1)) for r, a in zip(batched, range(3, 9))) >= 3


def test_chat_prompt_needs_a_chat_template(backend) -> None:
    with pytest.raises(HarnessError, match="no chat template"):
        backend.generate([GenerateRequest((Message("user", "hi"),), max_tokens=2)])


def test_chat_prompt_goes_through_the_models_chat_template(backend) -> None:
    """The embedded base model has no chat template; give it a minimal one for this test."""
    template = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
                "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
    backend.tokenizer.chat_template = template
    try:
        chat = (Message("user", "What is the capital of France?"),)
        text = "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
        [via_chat] = backend.loglikelihood([LoglikelihoodRequest(chat, "Paris")])
        [via_text] = backend.loglikelihood([LoglikelihoodRequest(text, "Paris")])
        assert math.isclose(via_chat.logprob, via_text.logprob, abs_tol=1e-4)
    finally:
        backend.tokenizer.chat_template = None


def test_shared_prefix_scoring_equals_scoring_each_request_alone(backend) -> None:
    """Few-shot prefix shared across items, context shared across choices, multi-token
    continuations, a context without a shared prefix, and one longer than Gemma 3's 512-token
    sliding window: the cached path must give what a separate forward pass per request gives."""
    demos = "".join(f"Question: What is {i} plus {i}?\nAnswer: {2 * i}\n\n" for i in range(4))
    requests = [
        LoglikelihoodRequest(demos + f"Question: {q}\nAnswer:", c)
        for q in ("What color is the sky?", "Which planet is closest to the Sun?")
        for c in (" blue", " Mercury and Venus are both", " a")
    ]
    requests.append(LoglikelihoodRequest("Hi", " there, how are you today?"))
    long_context = " ".join(f"w{i}" for i in range(300)) + " The end"
    requests += [LoglikelihoodRequest(long_context, c) for c in (" is near", " of it")]
    assert len(backend.tokenizer(long_context).input_ids) > 512
    backend.max_batch_tokens = 256  # several batches at every level
    shared = backend.loglikelihood(requests)
    backend.share_prefix = False
    try:
        alone = backend.loglikelihood(requests)
    finally:
        backend.share_prefix, backend.max_batch_tokens = True, 4096
    for a, b in zip(shared, alone):
        assert math.isclose(a.logprob, b.logprob, abs_tol=1e-3)
        assert (a.is_greedy, a.n_tokens) == (b.is_greedy, b.n_tokens)
    assert len({r.n_tokens for r in shared}) > 2  # multi-token continuations were really scored


def test_results_count_the_tokens_each_request_reads_and_writes(backend) -> None:
    """The cost ledger's counts: a log-likelihood request reads its context and continuation (with the tokenizer's BOS) and
    writes nothing, on the shared-prefix and the plain path alike; a generation reads its prompt and writes what it generated."""
    tok = backend.tokenizer
    context = "The capital of France is"
    requests = [LoglikelihoodRequest(context, c) for c in (" Paris", " Lyon", " a city in the north")]
    shared = backend.loglikelihood(requests)
    plain = backend._loglikelihood_plain([backend._encode_pair(r) for r in requests])
    for request, a, b in zip(requests, shared, plain):
        whole = len(tok(request.context + request.continuation).input_ids)
        assert (a.input_tokens, a.output_tokens) == (b.input_tokens, b.output_tokens) and a.output_tokens == 0
        assert abs(a.input_tokens - whole) <= 1  # the pair is encoded apart: at most one token differs at the boundary
        assert a.input_tokens == sum(map(len, backend._encode_pair(request)))
    [greedy] = backend.generate([GenerateRequest("Q: What is 2 + 2?\nA:", max_tokens=6, stop=("\n",))])
    assert greedy.input_tokens == len(tok("Q: What is 2 + 2?\nA:").input_ids) and greedy.output_tokens == greedy.n_tokens > 0
    [sampled] = backend.generate([GenerateRequest("Q: What is 2 + 2?\nA:", max_tokens=4, temperature=0.7, seed=3)])
    assert sampled.input_tokens == greedy.input_tokens and sampled.output_tokens == sampled.n_tokens
