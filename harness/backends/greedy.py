"""Batched greedy decoding on a shared-prefix KV cache, with per-row stops and early exit.

Why not HF ``generate`` for greedy requests: it recomputes every prompt in full (an 8-shot
GSM8K prompt is ~900 tokens, nearly all of them the same demonstrations), one generate call
takes one stop list and one ``max_new_tokens``, and finished rows stay in the batch until the
last row stops. Here:

1. prompts are clustered by shared token prefix (``prefix_cache.prefix_groups``); a cluster's
   prefix is computed once and its keys/values are shared by every row (an expanded view);
2. each row's rest, except its last token, is prefilled on top (right-padded), then the cache
   is re-laid out with the pads on the left (``prefix_cache.left_align``), so every row's real
   tokens end at the same index and a new token can be appended to all rows at once;
3. decoding feeds each row's last prompt token, then its greedy token, one step at a time,
   with the LM head on that single position;
4. a row stops at EOS, at its own stop strings (searched in the decoded new text, which is
   what ``truncate_at_stop`` cuts) or at its own ``max_tokens``; finished rows are dropped from
   the cache (index-select), so later steps cost only what the rows still running need.

The decode cache is a ``DynamicCache(config=...)``, as HF ``generate`` uses: sliding-window
layers (Gemma 3: 512) keep only their window, full layers keep everything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.backends.prefix_cache import budget_batches, extend_rows, left_align, prefix_groups, prefix_kv


@dataclass(frozen=True)
class GreedyRow:
    """One greedy request, already tokenised (and truncated to fit the model)."""

    prompt: tuple[int, ...]
    max_tokens: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decoded:
    text: str  # cut at the first stop string
    n_tokens: int  # generated tokens, EOS excluded
    finish_reason: str  # "stop" (EOS or a stop string) | "length"
    latency_s: float  # the batch's wall time shared out over its rows


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut at the earliest stop sequence (the stop itself is not part of the answer)."""
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


class GreedyDecoder:
    """Greedy decoding of many prompts; see the module docstring for the cache layout."""

    def __init__(
        self,
        model: Any,
        decode: Callable[[list[int]], str],
        pad_id: int,
        eos_ids: frozenset[int],
        device: Any,
        max_batch_tokens: int,
        min_prefix: int = 16,
    ) -> None:
        import torch
        from transformers import DynamicCache

        self.torch, self.cache_class = torch, DynamicCache
        self.model, self.decode, self.pad_id, self.eos_ids, self.device = model, decode, pad_id, eos_ids, device
        self.max_batch_tokens, self.min_prefix = max_batch_tokens, min_prefix
        self.forward_s = 0.0  # time inside model calls
        self.tokens = 0  # tokens run through the model (padding included)

    def run(self, rows: Sequence[GreedyRow]) -> list[Decoded]:
        results: list[Decoded | None] = [None] * len(rows)
        live = [i for i, r in enumerate(rows) if r.max_tokens > 0]
        for i in set(range(len(rows))) - set(live):
            results[i] = Decoded("", 0, "length", 0.0)
        if live:
            with self.torch.inference_mode():
                for group in prefix_groups([rows[i].prompt for i in live], self.min_prefix):
                    self._group(group.prefix_len, [live[m] for m in group.members], rows, results)
        return [r for r in results if r is not None]

    def _forward(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        output = self.model(**kwargs, use_cache=True, logits_to_keep=1)
        self.forward_s += time.perf_counter() - started
        self.tokens += int(kwargs["input_ids"].numel())
        return output

    def _forward_cache(self, ids: Any, positions: Any, cache: Any) -> Any:
        self._forward(input_ids=ids, position_ids=positions, past_key_values=cache)
        return cache

    def _group(self, p: int, members: list[int], rows: Sequence[GreedyRow], results: list[Decoded | None]) -> None:
        """Rows sharing ``p`` prompt tokens: the prefix once, then batches under the token budget."""
        shared = prefix_kv(self._forward_cache, rows[members[0]].prompt[:p], self.device)
        rests = {i: rows[i].prompt[p:-1] for i in members}
        order = sorted(members, key=lambda i: (-len(rests[i]) - rows[i].max_tokens, i))
        # a row costs its prefill plus one token per step; the KV cache it holds is bounded by the same sum
        width = {i: len(rests[i]) + rows[i].max_tokens for i in members}
        for batch in budget_batches(order, width, dict.fromkeys(members, 1), self.max_batch_tokens, 1 << 30):
            self._batch(batch, shared, p, rests, rows, results)

    def _batch(
        self, batch: list[int], shared: Any, p: int, rests: dict[int, tuple[int, ...]], rows: Sequence[GreedyRow], results: list[Decoded | None]
    ) -> None:
        torch = self.torch
        started = time.perf_counter()
        kv = extend_rows(self._forward_cache, shared, [rests[i] for i in batch], p, self.pad_id, self.device)
        width = max(len(rests[i]) for i in batch)
        pads = [width - len(rests[i]) for i in batch]
        kv = left_align(kv, torch.arange(len(batch), device=self.device), pads, self.device)
        # With the config, sliding-window layers crop themselves to their window (as in HF
        # generate); the left-aligned layout keeps the window's index distances true.
        config = self.model.config
        cache = self.cache_class(ddp_cache_data=kv, config=config) if kv else self.cache_class(config=config)
        mask = torch.tensor([[0] * pad + [1] * (p + width - pad + 1) for pad in pads], device=self.device)
        inputs = torch.tensor([[rows[i].prompt[-1]] for i in batch], device=self.device)
        positions = torch.tensor([[len(rows[i].prompt) - 1] for i in batch], device=self.device)
        active = list(batch)
        generated: dict[int, list[int]] = {i: [] for i in batch}
        finished: dict[int, bool] = {}  # row -> stopped by EOS
        while active:
            logits = self._forward(input_ids=inputs, attention_mask=mask, position_ids=positions, past_key_values=cache).logits
            chosen = logits[:, -1].argmax(-1)
            keep: list[int] = []
            for j, (i, token) in enumerate(zip(active, chosen.tolist())):
                if token in self.eos_ids:
                    finished[i] = True
                    continue
                generated[i].append(token)
                row = rows[i]
                if len(generated[i]) >= row.max_tokens or (row.stop and any(s in self.decode(generated[i]) for s in row.stop if s)):
                    finished[i] = False
                else:
                    keep.append(j)
            if len(keep) < len(active):
                if not keep:
                    break
                # early exit: drop finished rows from every layer's cache and the step tensors
                index = torch.tensor(keep, device=self.device)
                cache.reorder_cache(index)
                mask, chosen, positions = mask.index_select(0, index), chosen.index_select(0, index), positions.index_select(0, index)
                active = [active[j] for j in keep]
            inputs, positions = chosen[:, None], positions + 1
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        latency = (time.perf_counter() - started) / len(batch)
        for i in batch:
            text, stopped = truncate_at_stop(self.decode(generated[i]), rows[i].stop)
            reason = "stop" if stopped or finished[i] else "length"
            results[i] = Decoded(text, len(generated[i]), reason, latency)
