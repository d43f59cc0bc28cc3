"""Packed scoring (all choices of an item in one row, separated by the mask) on tiny random
models: it must give what one plain forward pass per (context, continuation) gives, including
past a sliding window, with and without a cached shared prefix, on SDPA and eager attention."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from harness.backends.hf.argmax_head import ArgmaxHead  # noqa: E402
from harness.backends.hf.packed import (  # noqa: E402
    NotPackable,
    PackedScorer,
    attention_masks,
    packing_verified,
)
from harness.backends.hf.prefix_cache import SharedPrefixScorer  # noqa: E402
from tests.backends.tiny_models import VOCAB, gemma, llama  # noqa: E402


def _plain(model: Any, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
    out = []
    with torch.inference_mode():
        for ctx, cont in pairs:
            ids = torch.tensor([ctx + cont[:-1]])
            logprobs = model(input_ids=ids).logits[0, len(ctx) - 1 :].float().log_softmax(-1)
            target = torch.tensor(cont)
            out.append((float(logprobs.gather(-1, target[:, None]).sum()), bool((logprobs.argmax(-1) == target).all())))
    return out


def _pairs(seed: int) -> list[tuple[list[int], list[int]]]:
    """A 40-token prefix shared by 6 items, 3 loose items (one 70 tokens long), 2-4 choices of 1-6 tokens."""
    rng = random.Random(seed)
    words = lambda n: [rng.randrange(1, VOCAB) for _ in range(n)]  # noqa: E731
    prefix = words(40)
    contexts = [prefix + words(rng.randrange(1, 12)) for _ in range(6)] + [words(3), words(70), words(1)]
    return [(ctx, words(rng.randrange(1, 7))) for ctx in contexts for _ in range(rng.randrange(2, 5))]


MODELS = {
    "gemma-window-8-sdpa": lambda: gemma(8, "sdpa"),
    "gemma-window-8-eager": lambda: gemma(8, "eager"),
    "gemma-window-512-sdpa": lambda: gemma(512, "sdpa"),
    "llama-sdpa": lambda: llama("sdpa"),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("budget", [(64, 8), (4096, 256)])
def test_packed_scores_equal_one_plain_forward_pass_per_request(name: str, budget: tuple[int, int]) -> None:
    model = MODELS[name]()
    pairs = _pairs(1)
    scorer = PackedScorer(model, 0, "cpu", budget, min_saving=0)  # keep the cached-prefix cluster
    packed = scorer.score(pairs)
    for got, (logprob, greedy) in zip(packed, _plain(model, pairs)):
        assert got.logprob == pytest.approx(logprob, abs=1e-4)
        assert got.is_greedy == greedy
    assert packing_verified(model, 0, "cpu", VOCAB)


def test_packing_pools_small_clusters_and_matches_the_three_level_scorer() -> None:
    model = gemma(8, "sdpa")
    pairs = _pairs(2)
    packed = PackedScorer(model, 0, "cpu", (256, 32)).score(pairs)  # MIN_SAVING pools the 40-token cluster (6 x 40 > 128 keeps it)
    three_level = SharedPrefixScorer(model, 0, "cpu", 256, 32).score(pairs)
    assert [round(a.logprob, 4) for a in packed] == pytest.approx([round(b.logprob, 4) for b in three_level], abs=2e-4)


def test_pads_and_other_choices_are_masked_out() -> None:
    """One row: context [a b], choices [c d] and [e]; pads after. Choice 2 must not see choice 1."""
    seg = torch.tensor([[0, 0, 1, 2, -1]])
    pos = torch.tensor([[5, 6, 7, 7, 6]])
    mask = attention_masks(gemma(512, "sdpa").config, seg, pos, 5, torch.float32)["full_attention"][0, 0]
    assert mask.shape == (5, 10)
    assert mask[:, :5].all()  # the cached prefix is visible to everyone
    row = mask[:, 5:].int().tolist()
    assert row == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 1, 0], [1, 1, 0, 0, 0]]


@pytest.mark.parametrize(
    "config",
    [SimpleNamespace(_attn_implementation="flash_attention_2"), SimpleNamespace(_attn_implementation="sdpa", layer_types=["chunked_attention"])],
)
def test_attention_that_takes_no_custom_mask_is_not_packable(config: SimpleNamespace) -> None:
    seg, pos = torch.zeros(1, 2, dtype=torch.long), torch.arange(2)[None]
    with pytest.raises(NotPackable):
        attention_masks(config, seg, pos, 0, torch.float32)


def test_a_model_that_rejects_the_masks_falls_back() -> None:
    """Llama's forward builds its own mask from a tensor: given a per-layer-type dict (as Gemma 3
    takes) it fails, and the probe must say "not packable" instead of raising."""
    model = llama("sdpa")
    model.config.layer_types = ["full_attention", "full_attention"]
    assert not packing_verified(model, 0, "cpu", VOCAB)


@pytest.mark.parametrize("rows", [1, 31, 32, 33, 100, 256])
def test_chunked_head_log_softmax_is_bitwise_the_whole_one(rows: int) -> None:
    """head_logprobs takes log-softmax SOFTMAX_ROWS rows at a time to halve the head's peak memory: every picked
    log-prob and argmax verdict must be exactly what one log-softmax over all rows gives (shared rows included)."""
    from harness.backends.hf.packed import head_logprobs

    generator = torch.Generator().manual_seed(rows)
    logits = torch.randn(rows, 5000, generator=generator) * 4
    heads = torch.randint(0, rows, (3 * rows,), generator=generator)
    heads[:rows] = torch.arange(rows)  # every row used, some several times (a last context token predicts every choice)
    targets = torch.randint(0, 5000, (3 * rows,), generator=generator)
    targets[::7] = logits[heads[::7]].argmax(-1)  # some targets are the argmax
    whole = torch.log_softmax(logits, -1)
    picked, missed = head_logprobs(torch, logits, heads, targets)
    assert torch.equal(picked, whole[heads, targets])
    assert torch.equal(missed, (whole.argmax(-1)[heads] != targets).float())
    assert 0 < int(missed.sum()) < len(targets)


def _chunked_head(model: Any, chunk: int) -> ArgmaxHead:
    head = model.get_output_embeddings()
    return ArgmaxHead(model.get_decoder(), head.weight, head.bias, chunk)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("chunk", [100, 512])
def test_packed_scores_through_the_chunked_head_equal_one_plain_forward_pass_per_request(name: str, chunk: int) -> None:
    """The LM head in vocabulary chunks (100: five full chunks and a partial one of the 512-token vocabulary)."""
    model = MODELS[name]()
    pairs = _pairs(3)
    head = _chunked_head(model, chunk)
    packed = PackedScorer(model, 0, "cpu", (4096, 256), min_saving=0, head=head).score(pairs)
    for got, (logprob, greedy) in zip(packed, _plain(model, pairs)):
        assert got.logprob == pytest.approx(logprob, abs=1e-4)
        assert got.is_greedy == greedy
    assert packing_verified(model, 0, "cpu", VOCAB, head)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("chunk", [7, 4096, 5000])
def test_target_logprobs_equal_the_log_softmax(chunk: int, with_bias: bool) -> None:
    """Online log-sum-exp over vocabulary chunks against one log_softmax over the whole vocabulary; argmax ties go to the
    first maximum, as argmax does (two vocabulary rows made identical)."""
    generator = torch.Generator().manual_seed(chunk)
    weight = torch.randn(5000, 32, generator=generator)
    weight[3000] = weight[10]  # a tie between token 10 and token 3000 wherever either is the maximum
    hidden = torch.randn(40, 32, generator=generator) * 3
    hidden[0] = weight[10] * 4  # row 0's maximum is that tie
    rows = torch.cat([torch.arange(40), torch.randint(0, 40, (40,), generator=generator)])
    bias = torch.randn(5000, generator=generator) if with_bias else None
    if bias is not None:
        bias[3000] = bias[10]
    logits = hidden @ weight.T + (0 if bias is None else bias)
    whole = torch.log_softmax(logits, -1)
    targets = torch.randint(0, 5000, (80,), generator=generator)
    targets[:40] = whole.argmax(-1)  # half the targets are their row's argmax
    targets[0] = 10
    head = ArgmaxHead(None, weight, bias, chunk)
    picked, hits = head.target_logprobs(hidden, rows, targets)
    assert torch.allclose(picked, whole[rows, targets], rtol=1e-6, atol=2e-5)
    assert torch.equal(head.argmax(hidden), logits.argmax(-1))
    assert torch.equal(hits, whole.argmax(-1)[rows] == targets)
    assert bool(hits[0]) and int(hits.sum()) >= 40


def test_a_head_with_soft_capped_logits_is_not_used_for_log_probs() -> None:
    """Soft-capping (Gemma 2, or Gemma 3 configured so) keeps the argmax, so the greedy head is verified, but it changes
    log-probs: the packing probe must reject the chunked head and accept packing with the model's own logits."""
    model = gemma(512, "sdpa")
    model.config.final_logit_softcapping = 2.0
    head = ArgmaxHead.verified(model, "cpu", VOCAB)
    assert head is not None
    assert not packing_verified(model, 0, "cpu", VOCAB, head)
    assert packing_verified(model, 0, "cpu", VOCAB)
