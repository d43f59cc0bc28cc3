"""A shared prefix's keys/values for one packed forward pass: read by every row, never extended.

Why: packed scoring (packed.py) runs the rows of a batch after a cached shared prefix (the
few-shot demonstrations every item shares). Built with ``DynamicCache(ddp_cache_data=...)``, each
layer first copies the prefix expanded to the batch's rows, then ``update`` concatenates the
batch's own keys/values onto it and keeps the result, so all 18 layers' [rows, heads, prefix +
width, dim] tensors stay alive until the forward pass ends (about 100-200 MB at the peak of an
ARC-Easy 5-shot batch on Gemma 3 270M). The scorer never reads the cache after the forward pass,
so here the prefix stays an expanded view (no copy) and ``update`` returns the same concatenation
``DynamicLayer`` would, without keeping it: each layer's copy is freed once its attention has run.
The keys and values the attention sees are the same tensors, so scores are bitwise unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class PrefixOnlyLayer(DynamicLayer):
    """One layer's prefix keys/values; an update returns prefix + new tokens and keeps nothing."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # transformers' CacheLayerMixin.__init__ is unannotated
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.keys is not None and self.values is not None
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def prefix_only_cache(shared: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: int) -> DynamicCache:
    """A cache holding ``shared`` (per layer, one row each) for a batch of ``rows`` rows, without copying it."""
    cache = DynamicCache()
    cache.layers.extend(PrefixOnlyLayer(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in shared)
    return cache
