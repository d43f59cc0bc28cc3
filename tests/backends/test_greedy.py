"""Batched greedy decoding on a shared-prefix cache (greedy.py) against HF generate (slow).

The reference for every prompt is HF ``model.generate(do_sample=False)`` on that prompt alone
(batch of one, no padding, no shared cache), cut at the request's stop strings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends import ModelSpec
from harness.requests import GenerateRequest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(embedded_model):
    from harness.backends.hf.backend import HFBackend

    return HFBackend(ModelSpec())


def _gsm8k_requests(shared_data: Path) -> list[GenerateRequest]:
    """lm-eval-style GSM8K prompts: the same 4 demonstrations (longer than Gemma 3's 512-token
    sliding window), then questions of different lengths, each with its own stops and budget."""
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").open()][:9]
    demos = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in rows[:4])
    settings = [(32, ("Question:", "\n\n\n")), (6, ("Question:",)), (28, ("\n",)), (16, ()), (24, ("he",))]
    requests = [GenerateRequest(demos + f"Question: {r['question']}\nAnswer:", max_tokens=m, stop=s) for r, (m, s) in zip(rows[4:], settings)]
    requests.append(GenerateRequest("The three primary colours are", max_tokens=12, stop=("\n",)))  # shares no prefix
    return requests


def _hf_reference(backend, request: GenerateRequest) -> str:
    import torch

    from harness.backends.hf.greedy import truncate_at_stop

    ids = torch.tensor([backend.tokenizer(request.prompt).input_ids])
    kwargs = {"stop_strings": list(request.stop), "tokenizer": backend.tokenizer} if request.stop else {}
    with torch.inference_mode():
        output = backend.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=request.max_tokens, do_sample=False,
            temperature=None, top_p=None, top_k=None, pad_token_id=backend.tokenizer.pad_token_id, **kwargs,
        )  # fmt: skip
    return truncate_at_stop(backend.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True), request.stop)[0]


def test_greedy_text_equals_hf_generate_alone(backend, shared_data) -> None:
    requests = _gsm8k_requests(shared_data)
    assert len(backend.tokenizer(requests[0].prompt).input_ids) > 600  # past the sliding window
    backend.max_batch_tokens = 4096
    ours = backend.generate(requests)
    for request, result in zip(requests, ours):
        assert result.text == _hf_reference(backend, request)
        assert result.n_tokens <= request.max_tokens
        assert not any(s in result.text for s in request.stop)
    assert {r.finish_reason for r in ours} == {"stop", "length"}
    assert ours[1].n_tokens == 6 and ours[1].finish_reason == "length"


def test_greedy_is_batch_invariant_and_finished_rows_leave_the_batch(backend, shared_data) -> None:
    from harness.backends.hf.greedy import GreedyDecoder, GreedyRow
    from harness.backends.hf.prefix_cache import prefix_groups

    requests = _gsm8k_requests(shared_data)[:5]
    rows = [GreedyRow(tuple(backend.tokenizer(r.prompt).input_ids), r.max_tokens, r.stop) for r in requests]

    def decoder(max_rows: int) -> GreedyDecoder:
        return GreedyDecoder(backend.model, backend._decode, backend.tokenizer.pad_token_id, backend._eos_ids(), backend.input_device, 4096, max_rows)

    together, alone = decoder(8), decoder(1)  # one batch of 5 rows / one row at a time
    decoded = together.run(rows)
    assert [d.text for d in decoded] == [d.text for d in alone.run(rows)]
    # Both compute the shared prefix once. Alone, a row prefills its own rest and then runs one
    # decode step per token it generates (+1 for an EOS). Together, rests are padded to the
    # longest; with early exit every row still runs only its own steps, so the difference is
    # exactly the padding (without it, every row would run as many steps as the longest).
    [group] = prefix_groups([r.prompt for r in rows])
    rests = [len(r.prompt) - group.prefix_len - 1 for r in rows]
    assert together.tokens == alone.tokens + sum(max(rests) - n for n in rests)
    assert len({d.n_tokens for d in decoded}) > 2  # rows really finished at different steps
    # Two rows at a time: rows join the running batch as others finish (merged caches of
    # different lengths), and the texts stay the same.
    refilled = decoder(2)
    assert [d.text for d in refilled.run(rows)] == [d.text for d in decoded]
    assert refilled.prefills >= 3

def test_sampled_generation_is_seeded_per_request(backend) -> None:
    prompt = "Once upon a time, in a small village,"
    first = backend.generate([GenerateRequest(prompt, max_tokens=16, temperature=1.0, seed=7)])
    again = backend.generate([GenerateRequest(prompt, max_tokens=16, temperature=1.0, seed=7)])
    other = backend.generate([GenerateRequest(prompt, max_tokens=16, temperature=1.0, seed=7, repeat=1)])
    assert first[0].text == again[0].text
    assert first[0].text != other[0].text
