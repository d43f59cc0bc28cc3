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
    scorer = PackedScorer(model, 0, "cpu", *budget, min_saving=0)  # keep the cached-prefix cluster
    packed = scorer.score(pairs)
    for got, (logprob, greedy) in zip(packed, _plain(model, pairs)):
        assert got.logprob == pytest.approx(logprob, abs=1e-4)
        assert got.is_greedy == greedy
    assert packing_verified(model, 0, "cpu", VOCAB)


def test_packing_pools_small_clusters_and_matches_the_three_level_scorer() -> None:
    model = gemma(8, "sdpa")
    pairs = _pairs(2)
    packed = PackedScorer(model, 0, "cpu", 256, 32).score(pairs)  # MIN_SAVING pools the 40-token cluster (6 x 40 > 128 keeps it)
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
