"""Packed log-likelihood: all choices of an item in one row, kept apart by the attention mask.

The three-level path (prefix_cache.SharedPrefixScorer) computes each context once but then
gives every choice its own row: the item's cache is copied once per choice, choices are padded
to a common length, and the last context token is run once per choice although its output is
the same for all of them. On a small model those copies and pads cost as much as the model
(HellaSwag: four ~14-token endings against a ~30-token context). Here one row holds

    [context after the shared prefix | choice 1[:-1] | choice 2[:-1] | ... | pads]

with position ids restarting at the context length for every choice, and a 4D mask that lets
a context token see the shared prefix and the context before it, and a choice token see the
prefix, the whole context and the earlier tokens of its own choice only: exactly what a
separate forward pass of context + choice sees. The last context token predicts the first
token of every choice; the LM head runs only there and on the choice tokens
(``logits_to_keep`` as a boolean mask). Sliding-window layers get their own mask, measured in
positions, not in row indices (which packing makes meaningless).

Custom masks are an attention-implementation detail (bool for SDPA, additive float for eager;
flash attention takes none), so ``packing_verified`` scores a small probe both ways once per
model and the backend falls back to the three-level path if the two disagree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from harness.backends.hf.argmax_head import ArgmaxHead
from harness.backends.hf.prefix_cache import PrefixGroup, Scored, SharedPrefixScorer, Tokens, budget_batches, prefix_kv

MASK_KINDS = {"full_attention", "sliding_attention"}
# A cluster of contexts gets its own cached prefix only if sharing saves this many tokens:
# every cluster costs its own (small, inefficient) batches, so two items sharing a 30-token
# context are cheaper packed with everything else (HellaSwag has dozens of such pairs).
MIN_SAVING = 128
# Head rows put through log-softmax at a time: a batch keeps up to 256 head positions of a 262k
# vocabulary (268 MB of float32 logits); log-softmax of all of them at once would double that.
# Row by row is exactly the same arithmetic, so chunks change no value (measured bitwise).
SOFTMAX_ROWS = 32


class NotPackable(Exception):
    """The model's attention cannot take the custom masks packing needs."""


def segment_mask(seg: Any, pos: Any, prefix_len: int, window: int | None) -> Any:
    """[rows, 1, queries, prefix + row] bool mask: who may attend to whom in packed rows.

    ``seg`` is 0 for context tokens, j + 1 for tokens of choice j and -1 for pads; ``pos`` holds
    position ids (pads sit at the last context position, so their rows are never empty and
    produce no NaN). Prefix keys are context (segment 0) at positions 0..prefix_len-1.
    """
    import torch

    rows = seg.shape[0]
    key_seg = torch.cat([seg.new_zeros(rows, prefix_len), seg], 1)[:, None, :]
    key_pos = torch.cat([torch.arange(prefix_len, device=pos.device).expand(rows, -1), pos], 1)[:, None, :]
    query_seg, query_pos = seg[:, :, None], pos[:, :, None]
    allowed = (key_seg >= 0) & ((key_seg == 0) | (key_seg == query_seg)) & (key_pos <= query_pos)
    if window:
        allowed &= query_pos - key_pos < window
    return allowed[:, None]


def attention_masks(config: Any, seg: Any, pos: Any, prefix_len: int, dtype: Any) -> Any:
    """The mask argument for this model: one 4D mask, or one per layer type (Gemma 2/3 style).

    Bool for SDPA (True = attend), additive float for eager; anything else is not packable.
    """
    import torch

    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation not in {"sdpa", "eager"}:
        raise NotPackable(f"attention implementation {implementation!r} takes no custom 4D mask")

    def formatted(window: int | None) -> Any:
        mask = segment_mask(seg, pos, prefix_len, window)
        if implementation == "eager":
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
        return mask

    window = getattr(config, "sliding_window", None)
    kinds = set(getattr(config, "layer_types", None) or [])
    if kinds:
        if not kinds <= MASK_KINDS:
            raise NotPackable(f"layer types {sorted(kinds - MASK_KINDS)} are not full or sliding attention")
        return {kind: formatted(window if kind == "sliding_attention" else None) for kind in kinds}
    return formatted(window if getattr(config, "use_sliding_window", True) else None)


class PackedScorer(SharedPrefixScorer):
    """Scores (context ids, continuation ids) pairs: shared prefix once per cluster (as the
    three-level scorer does), then one packed row per context with all its continuations."""

    def __init__(
        self,
        model: Any,
        pad_id: int,
        device: Any,
        budget: tuple[int, int],
        min_prefix: int = 16,
        min_saving: int = MIN_SAVING,
        head: ArgmaxHead | None = None,
    ) -> None:
        """``budget``: (tokens, head positions) per batch; ``head``: the model's verified LM head, to score in
        vocabulary chunks (argmax_head.py) instead of materialising every kept position's logits."""
        super().__init__(model, pad_id, device, budget[0], budget[1], min_prefix, min_saving)
        self.config = model.config
        self.dtype = next(model.parameters()).dtype
        self.head = head

    def _decoder(self, **kwargs: Any) -> Any:
        """The decoder's last hidden states [rows, width, hidden], timed and counted as ``_model`` is."""
        assert self.head is not None
        return self._timed(self.head.decoder, **kwargs).last_hidden_state

    def _score_group(
        self, group: PrefixGroup, unique: list[Tokens], requests_of: list[list[int]], pairs: Sequence[tuple[list[int], list[int]]], results: list[Scored | None]
    ) -> None:
        p = group.prefix_len
        shared = prefix_kv(self._forward_cache, unique[group.members[0]][:p], self.device)
        rests = {c: unique[c][p:] for c in group.members}  # the last context token stays: it predicts every first token
        length = {c: len(rests[c]) + sum(len(pairs[r][1]) - 1 for r in requests_of[c]) for c in group.members}
        heads = {c: length[c] - len(rests[c]) + 1 for c in group.members}
        order = sorted(group.members, key=lambda c: (-length[c], c))
        for batch in budget_batches(order, length, heads, self.max_batch_tokens, self.max_logit_rows):
            self._score_batch(batch, shared, p, rests, requests_of, pairs, results)

    def _score_batch(
        self,
        batch: list[int],
        shared: list[tuple[Any, Any]],
        p: int,
        rests: dict[int, Tokens],
        requests_of: list[list[int]],
        pairs: Sequence[tuple[list[int], list[int]]],
        results: list[Scored | None],
    ) -> None:
        torch = self.torch
        started = time.perf_counter()
        rows: list[tuple[list[int], list[int], list[int]]] = []  # (ids, segment, positions) per context
        targets: list[int] = []  # continuation token ids, in request order
        heads: list[int] = []  # index into the kept (head) positions that predicts each target
        owner: list[int] = []  # which request each target belongs to
        requests: list[int] = []
        kept = 0  # head positions of the rows before this one
        for c in batch:
            context = list(rests[c])
            ids, seg, pos = context[:], [0] * len(context), list(range(p, p + len(context)))
            end = p + len(context)  # position of the first continuation token
            for j, r in enumerate(requests_of[c]):
                cont = pairs[r][1]
                start = len(ids)  # row index of this choice's first input token (cont[0])
                ids += cont[:-1]
                seg += [j + 1] * (len(cont) - 1)
                pos += range(end, end + len(cont) - 1)
                # cont[0] comes from the last context token (kept index 0 of this row);
                # cont[t + 1] from this choice's token t, at row index start + t
                heads += [kept] + [kept + start + t + 1 - len(context) for t in range(len(cont) - 1)]
                targets += cont
                owner += [len(requests)] * len(cont)
                requests.append(r)
            rows.append((ids, seg, pos))
            kept += len(ids) - len(context) + 1
        width = max(len(ids) for ids, _, _ in rows)
        ids_t = torch.tensor([ids + [self.pad_id] * (width - len(ids)) for ids, _, _ in rows], device=self.device)
        seg_t = torch.tensor([seg + [-1] * (width - len(seg)) for _, seg, _ in rows], device=self.device)
        # pads sit at the last context position: they see the context, nobody sees them
        pos_t = torch.tensor([pos + [pos[len(rests[c]) - 1]] * (width - len(pos)) for c, (_, _, pos) in zip(batch, rows)], device=self.device)
        keep = torch.zeros_like(seg_t, dtype=torch.bool)
        for b, c in enumerate(batch):
            keep[b, len(rests[c]) - 1 : len(rows[b][0])] = True
        masks = attention_masks(self.config, seg_t, pos_t, p, self.dtype)
        # subclasses a transformers class, so imported where transformers is (tests/test_architecture.py: OPTIONAL_HARNESS)
        from harness.backends.hf.shared_cache import prefix_only_cache

        cache = prefix_only_cache(shared, len(batch)) if shared else None
        inputs = {"input_ids": ids_t, "attention_mask": masks, "position_ids": pos_t, "past_key_values": cache, "use_cache": cache is not None}
        head_index = torch.tensor(heads, device=self.device)
        target_t = torch.tensor(targets, device=self.device)
        if self.head is not None:  # the LM head in vocabulary chunks: no [kept, vocab] logits at all (argmax_head.py)
            hidden = self._decoder(**inputs)
            started_head = time.perf_counter()
            picked, hits = self.head.target_logprobs(hidden[keep], head_index, target_t)
            missed = (~hits).float()
        else:
            logits = self._model(**inputs, logits_to_keep=keep).logits
            started_head = time.perf_counter()
            logits = logits.reshape(-1, logits.shape[-1])
            if logits.shape[0] != kept:
                raise NotPackable(f"the model returned {logits.shape[0]} head positions for a {kept}-position boolean logits_to_keep")
            # log_softmax, not logsumexp: on CPU torch.logsumexp over 262k logits is ~1e-4 off (measured),
            # log_softmax matches a plain forward pass to ~1e-5; a head position shared by several
            # targets (the last context token) is indexed, not copied
            picked, missed = head_logprobs(torch, logits, head_index, target_t)
        owner_t = torch.tensor(owner, device=picked.device)
        sums = torch.zeros(len(requests), device=picked.device).index_add_(0, owner_t, picked).tolist()
        misses = torch.zeros(len(requests), device=picked.device).index_add_(0, owner_t, missed).tolist()
        self.forward_s += time.perf_counter() - started_head  # the head's log-softmax is part of the floor
        elapsed = (time.perf_counter() - started) / len(requests)
        for r, total, miss in zip(requests, sums, misses):
            results[r] = Scored(total, miss == 0, elapsed)


def head_logprobs(torch: Any, logits: Any, head_index: Any, targets: Any) -> tuple[Any, Any]:
    """The log-prob of each target at its head position and whether it was the argmax, log-softmax taken
    ``SOFTMAX_ROWS`` rows at a time (peak memory: the logits plus one chunk, not twice the logits)."""
    picked = torch.empty(len(targets), device=logits.device)
    missed = torch.empty(len(targets), device=logits.device)
    for start in range(0, logits.shape[0], SOFTMAX_ROWS):
        logprobs = torch.log_softmax(logits[start : start + SOFTMAX_ROWS].float(), -1)
        here = ((head_index >= start) & (head_index < start + SOFTMAX_ROWS)).nonzero().squeeze(-1)
        rows, wanted = head_index[here] - start, targets[here]
        picked[here] = logprobs[rows, wanted]
        missed[here] = (logprobs.argmax(-1)[rows] != wanted).float()
    return picked, missed


def packing_verified(model: Any, pad_id: int, device: Any, vocab_size: int, head: ArgmaxHead | None = None) -> bool:
    """Score a small probe (a shared prefix, two contexts, continuations of 1-3 tokens, one
    context without the prefix) packed and with the three-level scorer; True if they agree.
    With ``head``, packed scoring reads log-probs through it, so the probe checks that path too."""
    probe_ids = [(7 * i + 11) % max(vocab_size - 1, 2) + 1 for i in range(64)]
    prefix = probe_ids[:20]
    contexts = [prefix + probe_ids[20:26], prefix + probe_ids[26:29], probe_ids[40:45]]
    continuations = [probe_ids[50:51], probe_ids[51:53], probe_ids[53:56]]
    pairs = [(ctx, cont) for ctx in contexts for cont in continuations]
    reference = SharedPrefixScorer(model, pad_id, device, 4096, 256, min_prefix=4).score(pairs)
    packed = PackedScorer(model, pad_id, device, (4096, 256), min_prefix=4, min_saving=0, head=head)  # the probe must exercise the cached prefix too
    try:
        scored = packed.score(pairs)
    except Exception as exc:  # noqa: BLE001 - whatever an architecture raises on a dict/4D mask or a boolean head mask means "not packable"
        if isinstance(exc, packed.torch.OutOfMemoryError):
            raise
        return False
    half = next(model.parameters()).dtype.itemsize < 4
    tolerance = (0.1, 0.02) if half else (1e-3, 1e-4)
    return all(
        abs(a.logprob - b.logprob) <= tolerance[0] + tolerance[1] * abs(b.logprob) and (half or a.is_greedy == b.is_greedy)
        for a, b in zip(scored, reference)
    )
