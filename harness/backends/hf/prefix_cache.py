"""Shared-prefix log-likelihood: each shared token is computed once, not once per request.

A multiple-choice item arrives as one request per choice with the same context, and with a
fixed few-shot selector (``first_k``) every item starts with the same demonstrations. Scoring
each (context, continuation) from scratch recomputes those tokens for every choice of every
item. Here the work is split in three levels, each reusing the keys/values of the one before:

1. **prefix**: the longest token prefix shared by a cluster of contexts (the demonstrations),
   computed once per cluster (batch of one);
2. **contexts**: the rest of each context except its last token, batched across items
   (right-padded after the prefix; pads sit after every real token, so causal attention never
   lets a real token see them);
3. **continuations**: ``[last context token] + continuation[:-1]`` for every choice, on top of
   its item's cached keys/values. The cache rows are re-laid out so that item padding moves to
   the *left* (masked out): real tokens stay contiguous, so index distances are true distances
   and sliding-window attention (Gemma 3: 512) sees exactly what an unshared forward pass sees.

Keys/values do not depend on where they sit in the cache (RoPE is applied with the explicit
position ids before caching), which is what makes the re-layout exact. Caches are plain
``DynamicCache()`` (no config), so sliding layers keep every key and rely on the mask instead of
cropping. The LM head runs only on continuation positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Tokens = tuple[int, ...]
KV = list[tuple[Any, Any]]  # per layer: (keys, values), each [rows, kv heads, tokens, head dim]
# (input ids, position ids, cache) -> the cache after the forward pass (LM head on one position)
ForwardCache = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class Scored:
    logprob: float
    is_greedy: bool
    latency_s: float


@dataclass(frozen=True)
class PrefixGroup:
    """Contexts (indices into the unique-context list) that share ``prefix_len`` leading tokens."""

    prefix_len: int
    members: tuple[int, ...]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


MAX_GROUP_SPAN = 512  # contexts a cluster may span in sorted order (bounds the partition search)


def prefix_groups(contexts: Sequence[Tokens], min_prefix: int = 16, min_saving: int = 0) -> list[PrefixGroup]:
    """Cluster contexts that share a long token prefix (same demonstrations -> same prefix).

    Contexts are sorted so that shared prefixes are adjacent, and the sorted list is cut into
    runs that save the most tokens: a run of m contexts whose common prefix is L computes L once
    instead of m times, saving (m - 1) x L (dynamic programming over the cut points, runs of at
    most ``MAX_GROUP_SPAN``). So a few odd contexts do not shrink a long shared prefix: with
    ``first_k`` few-shot, the first k items are each other's demonstrations and share only a
    part of the prefix every other item shares; joined to the big cluster they would cut its
    prefix from ~1,450 to ~490 tokens (GSM8K 8-shot), so they stay out.

    A run needs a prefix of at least ``min_prefix`` tokens and a saving of at least
    ``min_saving``: a small cluster's own batches can cost more than the tokens it saves.
    Contexts in no run go to one group with prefix 0, still batched across items. The prefix
    always leaves at least one context token, because that token starts each continuation row.
    """
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    n = len(order)
    usable = [len(contexts[i]) - 1 for i in order]  # a prefix leaves the last token
    shared = [0] + [common_prefix_len(contexts[order[j - 1]], contexts[order[j]]) for j in range(1, n)]
    best = [0] * (n + 1)  # best[j]: tokens saved by the best cut of the first j sorted contexts
    run_start = [-1] * (n + 1)  # where the run ending at context j - 1 starts (-1: that context is loose)
    for j in range(n):
        best[j + 1], prefix = best[j], usable[j]
        for s in range(j - 1, max(-1, j - MAX_GROUP_SPAN), -1):
            prefix = min(prefix, shared[s + 1], usable[s])
            if prefix < min_prefix:
                break
            saving = (j - s) * prefix
            if saving >= min_saving and best[s] + saving > best[j + 1]:
                best[j + 1], run_start[j + 1] = best[s] + saving, s
    groups: list[PrefixGroup] = []
    loose: list[int] = []
    j = n
    while j > 0:
        s = run_start[j]
        if s < 0:
            loose.append(order[j - 1])
            j -= 1
            continue
        members = order[s:j]
        prefix = min(usable[s:j] + shared[s + 1 : j])
        groups.append(PrefixGroup(prefix, tuple(members)))
        j = s
    groups.reverse()
    if loose:
        groups.append(PrefixGroup(0, tuple(sorted(loose))))
    return groups


def prefix_kv(forward: ForwardCache, prefix: Sequence[int], device: Any) -> KV:
    """Keys/values of one shared prefix (batch of one); empty when there is no prefix."""
    import torch
    from transformers import DynamicCache

    if not prefix:
        return []
    ids = torch.tensor([list(prefix)], device=device)
    cache = forward(ids, torch.arange(len(prefix), device=device)[None], DynamicCache())
    return [(layer.keys, layer.values) for layer in cache.layers]


def extend_rows(forward: ForwardCache, shared: KV, rests: Sequence[Sequence[int]], p: int, pad_id: int, device: Any) -> KV:
    """Keys/values of ``shared`` prefix + each row's rest, layout [prefix | rest | pad].

    Rests are right-padded: pads sit after every real token, so causal attention never lets a
    real token see them, and the prefix is an expanded view (one copy for all rows).
    """
    import torch

    from harness.backends.hf.decode_cache import append_cache  # needs torch + transformers at import, see greedy.py

    rows, width = len(rests), max(len(r) for r in rests)
    expanded = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in shared]
    if width == 0:
        return expanded
    ids = torch.tensor([list(r) + [pad_id] * (width - len(r)) for r in rests], device=device)
    positions = (p + torch.arange(width, device=device))[None].expand(rows, -1)
    # Every layer keeps every token (no config: sliding layers too); the rests are written in
    # place after one copy of the prefix per row (DynamicCache would copy the prefix twice).
    cache = forward(ids, positions, append_cache(expanded, None, spare=width))
    return [(layer.keys, layer.values) for layer in cache.layers]


def left_align(kv: KV, items: Any, pads: Sequence[int]) -> KV:
    """Rows ``items`` of a [prefix | rest | pad] cache, re-laid out as [pad | prefix | rest].

    Real tokens become contiguous and end at the last index, so index distances are true
    distances (what a sliding-window mask measures) and new tokens can be appended to every
    row at once; the moved pads are masked out on the left. Exact, because keys carry their
    rotary position from the position ids, not from where they sit in the cache.
    """
    if not kv:
        return []
    if not any(pads):
        return [(k.index_select(0, items), v.index_select(0, items)) for k, v in kv]
    # One slice copy per row and tensor: an index_select + gather over the whole cache was two
    # full copies, and gather runs far below memory speed (profiled: ~80 ms per 32 MB tensor).
    rows, cache_len = [int(i) for i in items.tolist()], kv[0][0].shape[2]
    aligned = []
    for tensors in kv:
        out = []
        for source in tensors:
            target = source.new_empty(len(rows), *source.shape[1:])
            for r, (row, pad) in enumerate(zip(rows, pads)):
                target[r, :, pad:].copy_(source[row, :, : cache_len - pad])
                target[r, :, :pad].copy_(source[row, :, cache_len - pad :])
            out.append(target)
        aligned.append((out[0], out[1]))
    return aligned


def budget_batches(order: list[int], width: Mapping[int, int], rows_per: Mapping[int, int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Consecutive batches of ``order`` (longest first) whose padded size stays within budget."""
    batches: list[list[int]] = []
    batch: list[int] = []
    rows = 0
    for index in order:
        top = max(width[batch[0]], 1) if batch else max(width[index], 1)
        if batch and (top * (len(batch) + 1) > max_tokens or rows + rows_per[index] > max_rows):
            batches.append(batch)
            batch, rows = [], 0
        batch.append(index)
        rows += rows_per[index]
    if batch:
        batches.append(batch)
    return batches


class SharedPrefixScorer:
    """Scores (context ids, continuation ids) pairs with the three-level cache described above."""

    def __init__(
        self, model: Any, pad_id: int, device: Any, max_batch_tokens: int, max_logit_rows: int, min_prefix: int = 16, min_saving: int = 0
    ) -> None:
        import torch
        from transformers import DynamicCache

        self.torch, self.cache_class = torch, DynamicCache
        self.model, self.pad_id, self.device = model, pad_id, device
        self.max_batch_tokens, self.max_logit_rows = max_batch_tokens, max_logit_rows
        self.min_prefix, self.min_saving = min_prefix, min_saving
        self.forward_s = 0.0  # time inside model calls: the floor the rest is overhead on
        self.tokens = 0  # tokens run through the model (padding included)

    def _model(self, **kwargs: Any) -> Any:
        return self._timed(self.model, **kwargs)

    def _timed(self, module: Any, **kwargs: Any) -> Any:
        """``module(**kwargs)``, its time and input tokens added to the floor (``forward_s``, ``tokens``)."""
        started = time.perf_counter()
        output = module(**kwargs)
        self.forward_s += time.perf_counter() - started
        self.tokens += int(kwargs["input_ids"].numel())
        return output

    def score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[Scored]:
        contexts: dict[Tokens, int] = {}
        requests_of: list[list[int]] = []
        for i, (ctx, _) in enumerate(pairs):
            key = tuple(ctx)
            if key not in contexts:
                contexts[key] = len(contexts)
                requests_of.append([])
            requests_of[contexts[key]].append(i)
        unique = list(contexts)
        results: list[Scored | None] = [None] * len(pairs)
        with self.torch.inference_mode():
            for group in prefix_groups(unique, self.min_prefix, self.min_saving):
                self._score_group(group, unique, requests_of, pairs, results)
        return [r for r in results if r is not None]

    # -- the three levels ---------------------------------------------------------------
    def _forward_cache(self, ids: Any, positions: Any, cache: Any) -> Any:
        self._model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return cache

    def _score_group(
        self, group: PrefixGroup, unique: list[Tokens], requests_of: list[list[int]], pairs: Sequence[tuple[list[int], list[int]]], results: list[Scored | None]
    ) -> None:
        p = group.prefix_len
        shared = prefix_kv(self._forward_cache, unique[group.members[0]][:p], self.device)
        rests = {c: unique[c][p:-1] for c in group.members}
        order = sorted(group.members, key=lambda c: (-len(rests[c]), c))
        width = {c: len(rests[c]) for c in group.members}
        choices = {c: len(requests_of[c]) for c in group.members}
        # Level 2 batches by context tokens; their choices are scored before the next batch, so
        # at most one batch of item caches is alive at a time.
        for batch in budget_batches(order, width, choices, self.max_batch_tokens, 1 << 30):
            started = time.perf_counter()
            kv = extend_rows(self._forward_cache, shared, [rests[c] for c in batch], p, self.pad_id, self.device)
            self._continuations(batch, kv, [len(rests[c]) for c in batch], p, unique, requests_of, pairs, results, started)

    def _continuations(
        self,
        batch: list[int],
        kv: list[tuple[Any, Any]],
        lengths: list[int],
        p: int,
        unique: list[Tokens],
        requests_of: list[list[int]],
        pairs: Sequence[tuple[list[int], list[int]]],
        results: list[Scored | None],
        started: float,
    ) -> None:
        torch = self.torch
        width = max(lengths)
        cache_len = p + width
        rows: list[tuple[int, int, list[int], list[int]]] = []  # (request, local item, input ids, targets)
        for local, c in enumerate(batch):
            for r in requests_of[c]:
                cont = pairs[r][1]
                rows.append((r, local, [unique[c][-1]] + cont[:-1], cont))
        order = sorted(range(len(rows)), key=lambda i: (-len(rows[i][2]), i))
        size = {i: len(row[2]) for i, row in enumerate(rows)}
        for sub in budget_batches(order, size, size, self.max_batch_tokens, self.max_logit_rows):
            chosen = [rows[i] for i in sub]
            s = max(len(row[2]) for row in chosen)
            items = torch.tensor([row[1] for row in chosen], device=self.device)
            pads = [width - lengths[row[1]] for row in chosen]
            cache_data = left_align(kv, items, pads)  # real tokens contiguous, pads masked on the left
            ids = torch.tensor([row[2] + [self.pad_id] * (s - len(row[2])) for row in chosen], device=self.device)
            mask = torch.tensor([[0] * pad + [1] * (cache_len - pad + s) for pad in pads], device=self.device)
            positions = torch.tensor([[p + lengths[row[1]] + j for j in range(s)] for row in chosen], device=self.device)
            cache = self.cache_class(ddp_cache_data=cache_data) if cache_data else self.cache_class()
            valid = torch.tensor([[j < len(row[3]) for j in range(s)] for row in chosen], device=self.device)
            started_forward = time.perf_counter()
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True).logits
            logprobs = torch.log_softmax(logits[valid].float(), dim=-1)
            self.forward_s += time.perf_counter() - started_forward  # the head's log-softmax is part of the floor
            self.tokens += int(ids.numel())
            targets = torch.tensor([t for row in chosen for t in row[3]], device=self.device)
            picked = logprobs.gather(-1, targets[:, None]).squeeze(-1)
            hits = logprobs.argmax(-1) == targets
            offset = 0
            elapsed = (time.perf_counter() - started) / max(1, len(rows))
            for row in chosen:
                n = len(row[3])
                results[row[0]] = Scored(float(picked[offset : offset + n].sum()), bool(hits[offset : offset + n].all()), elapsed)
                offset += n

