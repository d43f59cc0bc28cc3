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


def prefix_groups(contexts: Sequence[Tokens], min_prefix: int = 16, min_saving: int = 0) -> list[PrefixGroup]:
    """Cluster contexts that share a long token prefix (same demonstrations -> same prefix).

    Contexts are sorted so that shared prefixes are adjacent; a cluster grows while its common
    prefix stays >= ``min_prefix`` and keeps at least half its length (one odd context must not
    shrink a long shared prefix to nothing). Contexts that share nothing worth caching go to one
    group with prefix 0, which is still batched across items at the context level. The prefix
    always leaves at least one context token, because that token starts each continuation row.
    A cluster whose sharing saves fewer than ``min_saving`` tokens ((members - 1) x prefix) is
    pooled too: its own small batches would cost more than the tokens it saves.
    """
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    clusters: list[tuple[int, list[int]]] = []
    for index in order:
        if clusters:
            length, members = clusters[-1]
            shared = min(length, common_prefix_len(contexts[members[0]], contexts[index]))
            if shared >= min_prefix and 2 * shared >= length:
                clusters[-1] = (shared, members + [index])
                continue
        clusters.append((len(contexts[index]), [index]))
    groups: list[PrefixGroup] = []
    loose: list[int] = []
    for length, members in clusters:
        usable = min([length] + [len(contexts[m]) - 1 for m in members])
        if len(members) > 1 and usable >= min_prefix and (len(members) - 1) * usable >= min_saving:
            groups.append(PrefixGroup(usable, tuple(members)))
        else:
            loose += members
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
    from transformers import DynamicCache

    rows, width = len(rests), max(len(r) for r in rests)
    expanded = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in shared]
    if width == 0:
        return expanded
    ids = torch.tensor([list(r) + [pad_id] * (width - len(r)) for r in rests], device=device)
    positions = (p + torch.arange(width, device=device))[None].expand(rows, -1)
    cache = forward(ids, positions, DynamicCache(ddp_cache_data=expanded) if expanded else DynamicCache())
    return [(layer.keys, layer.values) for layer in cache.layers]


def left_align(kv: KV, items: Any, pads: Sequence[int], device: Any) -> KV:
    """Rows ``items`` of a [prefix | rest | pad] cache, re-laid out as [pad | prefix | rest].

    Real tokens become contiguous and end at the last index, so index distances are true
    distances (what a sliding-window mask measures) and new tokens can be appended to every
    row at once; the moved pads are masked out on the left. Exact, because keys carry their
    rotary position from the position ids, not from where they sit in the cache.
    """
    import torch

    if not kv:
        return []
    cache_len = kv[0][0].shape[2]
    if not any(pads):
        return [(k.index_select(0, items), v.index_select(0, items)) for k, v in kv]
    layout = torch.tensor([list(range(cache_len - pad, cache_len)) + list(range(cache_len - pad)) for pad in pads], device=device)
    aligned = []
    for k, v in kv:
        index = layout[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        aligned.append((k.index_select(0, items).gather(2, index), v.index_select(0, items).gather(2, index)))
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
        started = time.perf_counter()
        output = self.model(**kwargs)
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
            cache_data = left_align(kv, items, pads, self.device)  # real tokens contiguous, pads masked on the left
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

