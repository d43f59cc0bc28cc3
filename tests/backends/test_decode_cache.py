"""Append-in-place decode cache (decode_cache.py) and the greedy decoder built on it, on tiny
random models: the layers must return exactly what transformers' DynamicLayer /
DynamicSlidingWindowLayer return, and greedy decoding (shared prefix, padding, rows leaving and
joining the batch) must produce the tokens of plain greedy decoding by full recomputation."""

from __future__ import annotations

import random
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer  # noqa: E402

from harness.backends.hf.argmax_head import ArgmaxHead  # noqa: E402
from harness.backends.hf.decode_cache import (  # noqa: E402
    AppendLayer,
    AppendSlidingWindowLayer,
    append_cache,
    filled_cache,
)
from harness.backends.hf.greedy import GreedyDecoder, GreedyRow  # noqa: E402
from tests.backends.tiny_models import VOCAB, gemma, llama  # noqa: E402


def _kv(rows: int, n: int, seed: int) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, n, 4, generator=g), torch.randn(rows, 2, n, 4, generator=g)


@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("spare", [1, 3, 64])
def test_append_layers_return_what_dynamic_layers_return(window: int | None, spare: int) -> None:
    reference = DynamicLayer() if window is None else DynamicSlidingWindowLayer(sliding_window=window)
    layer = AppendLayer(spare) if window is None else AppendSlidingWindowLayer(window, spare)
    # initial fill, single steps (forcing re-allocations), a multi-token update, rows leaving
    updates = [7, 1, 1, 1, 3, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1]
    for step, n in enumerate(updates):
        if step == 9:
            index = torch.tensor([2, 0])
            reference.reorder_cache(index)
            layer.reorder_cache(index)
        rows = 3 if step < 9 else 2
        assert layer.get_mask_sizes(n) == reference.get_mask_sizes(n)
        assert layer.get_seq_length() == reference.get_seq_length()
        k, v = _kv(rows, n, step)
        got, want = layer.update(k, v), reference.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert torch.equal(layer.keys, reference.keys) and torch.equal(layer.values, reference.values)


def test_append_cache_uses_the_config_layer_types_and_holds_the_data() -> None:
    model = gemma(8, "sdpa")
    kv = [_kv(2, 12, 1), _kv(2, 12, 2)]
    cache = append_cache(kv, model.config, spare=4)
    assert [type(layer) for layer in cache.layers] == [AppendSlidingWindowLayer, AppendLayer]
    assert torch.equal(cache.layers[1].keys, kv[1][0])  # full layer: every token
    assert torch.equal(cache.layers[0].keys, kv[0][0][:, :, -7:])  # sliding layer: the last window - 1
    with pytest.raises(NotImplementedError):
        cache.layers[0].crop(-1)


@pytest.mark.parametrize("length", [3, 7, 12])
def test_filled_cache_is_append_cache_written_in_place(length: int) -> None:
    """filled_cache writes only what each layer keeps (a sliding layer: its last window - 1 tokens),
    and then behaves exactly as append_cache of the full tensors: same kept keys/values, mask sizes,
    and the same tensors returned by the next updates (through a re-allocation)."""
    model = gemma(8, "sdpa")
    kv = [_kv(2, length, 1), _kv(2, length, 2)]
    written: list[int] = []

    def fill(layer: int, keys: Any, values: Any) -> None:
        written.append(keys.shape[2])
        keys.copy_(kv[layer][0][:, :, length - keys.shape[2] :])
        values.copy_(kv[layer][1][:, :, length - values.shape[2] :])

    got, want = filled_cache(kv, 2, length, model.config, 2, fill), append_cache(kv, model.config, spare=2)
    assert written == [min(length, 7), length]  # sliding (window 8) then full
    for step in range(4):
        for mine, theirs in zip(got.layers, want.layers):
            assert type(mine) is type(theirs)
            assert mine.get_seq_length() == theirs.get_seq_length() and mine.get_mask_sizes(1) == theirs.get_mask_sizes(1)
            assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)
            k, v = _kv(2, 1, 10 + step)
            a, b = mine.update(k, v), theirs.update(k, v)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _reference_greedy(model: Any, prompt: list[int], max_tokens: int, eos: int) -> list[int]:
    """Greedy decoding by full recomputation: no cache, no batch, no padding."""
    tokens = list(prompt)
    with torch.inference_mode():
        for _ in range(max_tokens):
            token = int(model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax())
            if token == eos:
                break
            tokens.append(token)
    return tokens[len(prompt) :]


MODELS = {
    "gemma-window-8-sdpa": lambda: gemma(8, "sdpa"),
    "gemma-window-8-eager": lambda: gemma(8, "eager"),
    "llama-sdpa": lambda: llama("sdpa"),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("max_rows", [3, 32])
def test_greedy_decoder_equals_plain_greedy_decoding(name: str, max_rows: int) -> None:
    """Two prefix groups (20 tokens shared by 5 prompts, 18 by 3), two loose prompts, and
    different ``max_tokens`` so rows finish at different steps; all groups decode in one
    running batch, and with 3 rows waiting rows are admitted into it several times."""
    model = MODELS[name]()
    rng = random.Random(3)
    words = lambda n: [rng.randrange(1, VOCAB) for _ in range(n)]  # noqa: E731
    prefix_a, prefix_b = words(20), words(18)
    prompts = [prefix_a + words(rng.randrange(1, 9)) for _ in range(5)] + [prefix_b + words(rng.randrange(1, 9)) for _ in range(3)]
    prompts += [words(5), words(11)]
    budgets = [rng.randrange(1, 30) for _ in prompts]
    eos = 7
    decoder = GreedyDecoder(
        model, lambda tokens: " ".join(map(str, tokens)), 0, frozenset({eos}), "cpu", max_batch_tokens=64, max_rows=max_rows
    )
    got = decoder.run([GreedyRow(tuple(p), m) for p, m in zip(prompts, budgets)])
    for prompt, budget, decoded in zip(prompts, budgets, got):
        want = _reference_greedy(model, prompt, budget, eos)
        assert decoded.text == " ".join(map(str, want))
        assert decoded.n_tokens == len(want)
    if max_rows == 3:
        assert decoder.prefills > 2  # rows really joined running batches


@pytest.mark.parametrize("name", MODELS)
def test_argmax_head_gives_the_full_logits_argmax_in_chunks(name: str) -> None:
    model = MODELS[name]()
    head = ArgmaxHead.verified(model, "cpu", VOCAB, chunk=100)  # 512 rows: 5 full chunks and a short one
    assert head is not None
    ids = torch.tensor([[5, 9, 200, 31, 77, 410, 3], [8, 8, 1, 500, 64, 2, 90]])
    with torch.inference_mode():
        want = model(input_ids=ids).logits[:, -1].argmax(-1)
        assert torch.equal(head.next_tokens(input_ids=ids), want)


def test_argmax_head_is_refused_when_the_logits_are_not_the_head_of_the_hidden_state() -> None:
    model = llama("sdpa")
    original = model.lm_head.forward
    model.lm_head.forward = lambda hidden: -original(hidden)  # a non-monotonic map: the shortcut would be wrong
    assert ArgmaxHead.verified(model, "cpu", VOCAB) is None
    model.lm_head = torch.nn.Sequential(model.lm_head)  # not a plain linear head
    assert ArgmaxHead.verified(model, "cpu", VOCAB) is None


@pytest.mark.parametrize("name", MODELS)
def test_greedy_decoder_with_the_chunked_head_equals_plain_greedy_decoding(name: str) -> None:
    model = MODELS[name]()
    head = ArgmaxHead.verified(model, "cpu", VOCAB, chunk=64)
    assert head is not None
    rng = random.Random(5)
    prefix = [rng.randrange(1, VOCAB) for _ in range(20)]
    prompts = [prefix + [rng.randrange(1, VOCAB) for _ in range(n)] for n in (1, 4, 9, 2)]
    decoder = GreedyDecoder(model, lambda t: " ".join(map(str, t)), 0, frozenset({7}), "cpu", 64, 2, head=head)
    got = decoder.run([GreedyRow(tuple(p), 25) for p in prompts])
    for prompt, decoded in zip(prompts, got):
        assert decoded.text == " ".join(map(str, _reference_greedy(model, prompt, 25, 7)))


def test_admission_takes_one_groups_rows_within_the_token_budget_and_free_rows() -> None:
    from harness.backends.hf.prefix_cache import PrefixGroup

    group_a, group_b = PrefixGroup(10, (0, 1, 2, 3)), PrefixGroup(0, (4,))
    rows = [GreedyRow(tuple(range(10 + 1 + width)), 5) for width in (8, 6, 6, 3)] + [GreedyRow((1, 2, 3), 5)]
    group_of = {0: group_a, 1: group_a, 2: group_a, 3: group_a, 4: group_b}
    decoder = GreedyDecoder(None, str, 0, frozenset(), "cpu", max_batch_tokens=20, max_rows=10)
    waiting = [0, 1, 2, 3, 4]  # longest first within each group
    assert decoder._take(waiting, group_of, 10, rows) == [0, 1]  # a third row would pad to 3 x 8 > 20 tokens
    assert decoder._take(waiting, group_of, 10, rows) == [2, 3]  # stops at the group's end
    assert decoder._take(waiting, group_of, 1, rows) == [4]
    assert waiting == []
