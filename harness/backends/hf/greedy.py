"""Batched greedy decoding on a shared-prefix KV cache, with per-row stops and early exit.

Why not HF ``generate`` for greedy requests: it recomputes every prompt in full (an 8-shot
GSM8K prompt is ~1,500 tokens, nearly all of them the same demonstrations), one generate call
takes one stop list and one ``max_new_tokens``, and finished rows stay in the batch until the
last row stops. Here:

1. prompts are clustered by shared token prefix (``prefix_cache.prefix_groups``); a cluster's
   prefix is computed once and its keys/values are shared by every row (an expanded view);
2. each row's rest, except its last token, is prefilled on top (right-padded), then the cache
   is re-laid out with the pads on the left (in the copy into the decode buffers), so every row's real
   tokens end at the same index and a new token can be appended to all rows at once;
3. decoding feeds each row's last prompt token, then its greedy token, one step at a time,
   with the LM head on that single position (in vocabulary chunks that keep only the maximum,
   ``argmax_head.py``, where a probe shows that gives the model's own greedy tokens);
4. a row stops at EOS, at its own stop strings (searched in the decoded new text, which is
   what ``truncate_at_stop`` cuts) or at its own ``max_tokens``; finished rows are dropped from
   the cache (index-select), so later steps cost only what the rows still running need;
5. continuous batching: waiting rows are prefilled and merged into the running batch as soon
   as a quarter of its ``max_rows`` are free (both sides left-padded to a common length), so
   steps stay full instead of a batch running as long as its longest row. Rows of every prefix
   group share one running batch: a group's prefix only matters at prefill.

The decode cache is a ``DynamicCache(config=...)``, as HF ``generate`` uses (sliding-window
layers, Gemma 3: 512, keep only their window; full layers keep everything), whose layers append
a step's token in place (``decode_cache.py``) instead of concatenating the whole cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import takewhile
from typing import Any

from harness.backends.hf.argmax_head import ArgmaxHead
from harness.backends.hf.prefix_cache import KV, PrefixGroup, budget_batches, extend_rows, prefix_groups, prefix_kv
from harness.backends.stops import truncate_at_stop

DECODE_SPARE = 64  # decode steps between re-allocations of a cache layer's buffer


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
        max_rows: int,
        min_prefix: int = 16,
        head: ArgmaxHead | None = None,
    ) -> None:
        import torch

        # decode_cache subclasses transformers' cache layers at import, so it needs the hf extra:
        # imported here, with torch, so `import harness.backends.hf` (and the CLI) works without torch
        from harness.backends.hf.decode_cache import filled_cache

        self.torch, self.filled_cache = torch, filled_cache
        self.model, self.decode, self.pad_id, self.eos_ids, self.device = model, decode, pad_id, eos_ids, device
        self.max_batch_tokens, self.max_rows, self.min_prefix = max_batch_tokens, max(1, max_rows), min_prefix
        self.head = head  # None: decode steps take the argmax of the model's full logits
        self.forward_s = 0.0  # time inside model calls
        self.tokens = 0  # tokens run through the model (padding included)
        self.prefills = 0  # prefill batches (rows admitted into the running batch)

    def run(self, rows: Sequence[GreedyRow]) -> list[Decoded]:
        results: list[Decoded | None] = [None] * len(rows)
        live = [i for i, r in enumerate(rows) if r.max_tokens > 0]
        for i in set(range(len(rows))) - set(live):
            results[i] = Decoded("", 0, "length", 0.0)
        if live:
            with self.torch.inference_mode():
                self._decode(live, rows, results)
        return [r for r in results if r is not None]

    def _forward(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        output = self.model(**kwargs, use_cache=True, logits_to_keep=1)
        self.forward_s += time.perf_counter() - started
        self.tokens += int(kwargs["input_ids"].numel())
        return output

    def _next_tokens(self, **kwargs: Any) -> Any:
        """Each row's greedy token after its last position (a decode step)."""
        if self.head is None:
            return self._forward(**kwargs).logits[:, -1].argmax(-1)
        started = time.perf_counter()
        tokens = self.head.next_tokens(**kwargs, use_cache=True)
        self.forward_s += time.perf_counter() - started
        self.tokens += int(kwargs["input_ids"].numel())
        return tokens

    def _forward_cache(self, ids: Any, positions: Any, cache: Any) -> Any:
        self._forward(input_ids=ids, position_ids=positions, past_key_values=cache)
        return cache

    def _decode(self, live: list[int], rows: Sequence[GreedyRow], results: list[Decoded | None]) -> None:
        """Continuous batching over all rows: up to ``max_rows`` rows decode together, a finished
        row leaves at once, and waiting rows are prefilled and merged into the running batch as
        soon as a quarter of the rows are free, so decode steps stay full (on a CPU a step of 32
        rows costs about 4x a step of one). Prefix groups matter only at prefill: a group's
        prefix is computed once, when its first row is admitted, and its rows join the same
        running batch as every other group's."""
        started = time.perf_counter()
        group_of: dict[int, PrefixGroup] = {}
        waiting: list[int] = []
        for group in prefix_groups([rows[i].prompt for i in live], self.min_prefix):
            members = [live[m] for m in group.members]
            group_of.update((i, group) for i in members)
            # within a group longest first: out-of-memory shows at once
            waiting += sorted(members, key=lambda i: (-len(rows[i].prompt), i))
        shared: dict[PrefixGroup, KV] = {}
        running: _Running | None = None
        while waiting or running is not None:
            free = self.max_rows - (len(running.active) if running is not None else 0)
            if waiting and (running is None or free >= max(1, self.max_rows // 4)):
                parts: list[_Running] = []
                while waiting and free > 0:
                    group = group_of[waiting[0]]
                    admitted = self._take(waiting, group_of, free, rows)
                    if group not in shared:
                        shared[group] = prefix_kv(self._forward_cache, rows[admitted[0]].prompt[: group.prefix_len], self.device)
                    parts.append(self._prefill(admitted, shared[group], group.prefix_len, rows))
                    if not waiting or group_of[waiting[0]] is not group:
                        del shared[group]  # its last rows are in: the prefix is no longer needed
                    free -= len(admitted)
                running = self._merge(([running] if running is not None else []) + parts, rows)
            assert running is not None
            if not self._step(running, rows, results):
                running = None
        elapsed = (time.perf_counter() - started) / len(live)
        for i in live:  # wall time shared out over the rows
            done = results[i]
            results[i] = replace(done, latency_s=elapsed) if done is not None else None

    def _take(self, waiting: list[int], group_of: dict[int, PrefixGroup], free: int, rows: Sequence[GreedyRow]) -> list[int]:
        """The next waiting rows of the first waiting row's group, for one prefill pass: at most
        ``free`` rows and ``max_batch_tokens`` padded tokens (always at least one row)."""
        group = group_of[waiting[0]]
        run = list(takewhile(lambda i: group_of[i] is group, waiting))  # longest first within the group
        width = {i: len(rows[i].prompt) - group.prefix_len - 1 for i in run}
        admitted = budget_batches(run, width, dict.fromkeys(run, 1), self.max_batch_tokens, free)[0]
        del waiting[: len(admitted)]
        return admitted

    def _prefill(self, admitted: list[int], shared: KV, p: int, rows: Sequence[GreedyRow]) -> _Running:
        """The admitted rows' prompts (all but the last token) on top of their shared prefix,
        laid out [pad | prefix | rest] so every row's tokens end at the same index."""
        torch = self.torch
        self.prefills += 1
        rests = [rows[i].prompt[p:-1] for i in admitted]
        kv = extend_rows(self._forward_cache, shared, rests, p, self.pad_id, self.device)
        width = max(len(rest) for rest in rests)
        pads = [width - len(rest) for rest in rests]  # kv is [prefix | rest | pad]: _merge lays each row out [pad | prefix | rest]
        mask = torch.tensor([[0] * pad + [1] * (p + width - pad) for pad in pads], device=self.device)
        inputs = torch.tensor([[rows[i].prompt[-1]] for i in admitted], device=self.device)
        positions = torch.tensor([[len(rows[i].prompt) - 1] for i in admitted], device=self.device)
        return _Running(admitted, {i: [] for i in admitted}, inputs, positions, mask, p + width, None, kv, pads)

    def _merge(self, parts: list[_Running], rows: Sequence[GreedyRow]) -> _Running:
        """One running batch from the running one (if any) and the newly prefilled parts.

        Every layer gets the common length's columns it keeps (all of them, or a sliding window's
        last ``window - 1``), written once into its decode buffer (``_fill_layer``): the rows are
        stacked, all real tokens right-aligned, and columns a part lacks become zeros, masked."""
        torch = self.torch
        length = max(part.length for part in parts)
        mask = torch.cat([_left_pad(part.mask, length) for part in parts])
        # Columns that are padding in every row (left by rows that finished) are dropped.
        lead = int(mask.any(0).int().argmax())
        mask, length = mask[:, lead:], length - lead
        active = [i for part in parts for i in part.active]
        merged = _Running(
            active, {i: tokens for part in parts for i, tokens in part.generated.items()},
            torch.cat([part.inputs for part in parts]), torch.cat([part.positions for part in parts]), mask, length, None,
        )  # fmt: skip
        # With the config, sliding-window layers keep only their window (as in HF generate);
        # the right-aligned layout keeps the window's index distances true.
        # Room for the longest row's new tokens (at most 64 steps between re-allocations).
        spare = min(DECODE_SPARE, 1 + max(rows[i].max_tokens for i in active))
        like = parts[0].kv if parts[0].cache is None else [(layer.keys, layer.values) for layer in parts[0].cache.layers]
        assert like is not None
        merged.cache = self.filled_cache(like, len(active), length, self.model.config, spare, lambda i, k, v: _fill_layer(parts, i, (k, v)))
        return merged

    def _step(self, running: _Running, rows: Sequence[GreedyRow], results: list[Decoded | None]) -> bool:
        """One decode step for every running row; finished rows leave. False when none is left."""
        torch = self.torch
        mask = torch.cat([running.mask, running.mask.new_ones(len(running.active), 1)], dim=1)
        chosen = self._next_tokens(input_ids=running.inputs, attention_mask=mask, position_ids=running.positions, past_key_values=running.cache)
        keep: list[int] = []
        for j, (i, token) in enumerate(zip(running.active, chosen.tolist())):
            tokens, row = running.generated[i], rows[i]
            eos = token in self.eos_ids
            if not eos:
                tokens.append(token)
            text = self.decode(tokens) if row.stop else None  # decoded once per step, only when stops need it
            hit = text is not None and any(s in text for s in row.stop if s)
            if eos or len(tokens) >= row.max_tokens or hit:
                text, stopped = truncate_at_stop(text if text is not None else self.decode(tokens), row.stop)
                results[i] = Decoded(text, len(tokens), "stop" if eos or stopped else "length", 0.0)
            else:
                keep.append(j)
        if not keep:
            return False
        if len(keep) < len(running.active):
            # early exit: finished rows leave every layer's cache and the step tensors
            index = torch.tensor(keep, device=self.device)
            running.cache.reorder_cache(index)
            mask, chosen, running.positions = mask.index_select(0, index), chosen.index_select(0, index), running.positions.index_select(0, index)
            running.active = [running.active[j] for j in keep]
        running.inputs, running.positions, running.mask, running.length = chosen[:, None], running.positions + 1, mask, running.length + 1
        return True


@dataclass
class _Running:
    """The batch being decoded (mutable, private). ``mask`` covers the ``length`` cached columns."""

    active: list[int]
    generated: dict[int, list[int]]
    inputs: Any  # [rows, 1]: the next token to feed
    positions: Any  # [rows, 1]: its position id
    mask: Any  # [rows, length]
    length: int
    cache: Any  # the decode cache (None in a freshly prefilled part, not yet merged)
    kv: KV | None = None  # a freshly prefilled part's per-layer (keys, values), [prefix | rest | pad]
    pads: list[int] | None = None  # its rows' pads at the right


def _left_pad(mask: Any, length: int) -> Any:
    """Zeros on the left of a [rows, tokens] mask up to ``length`` tokens."""
    from torch.nn.functional import pad

    missing = length - mask.shape[1]
    return pad(mask, (missing, 0)) if missing > 0 else mask


def _fill_layer(parts: Sequence[_Running], layer: int, out: tuple[Any, Any]) -> None:
    """Write one layer's keys and values of every part, stacked by rows, into ``out`` ([rows, heads,
    kept, dim]: the last ``kept`` columns of the merged cache), each row's real tokens right-aligned
    and zeros on the left. A running part's layer already ends at its last token; a freshly prefilled
    part is [prefix | rest | pad], so its rows move one by one (this is the left-alignment, done in
    the same copy: prefix_cache.left_align would be one more full copy of every layer)."""
    kept, row = out[0].shape[2], 0
    for part in parts:
        rows = len(part.active)
        if part.cache is not None:  # every row ends at the last column: one block copy
            cached = part.cache.layers[layer]
            blocks = [(slice(row, row + rows), slice(None), cached.keys.shape[2])]
            sources = (cached.keys, cached.values)
        else:
            assert part.kv is not None and part.pads is not None
            sources = part.kv[layer]
            blocks = [(slice(row + r, row + r + 1), slice(r, r + 1), sources[0].shape[2] - pad) for r, pad in enumerate(part.pads)]
        for into, take, end in blocks:
            n = min(kept, end)
            for source, target in zip(sources, out):
                target[into, :, kept - n :].copy_(source[take, :, end - n : end])
                if n < kept:
                    target[into, :, : kept - n].zero_()
        row += rows
