"""Grouping of contexts by shared token prefix (pure logic; the model side is in test_hf.py)."""

from __future__ import annotations

from harness.backends.hf.prefix_cache import (
    MAX_GROUP_SPAN,
    PrefixGroup,
    common_prefix_len,
    prefix_groups,
)


def test_common_prefix_len() -> None:
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2
    assert common_prefix_len([], [1]) == 0


def test_same_demonstrations_share_one_prefix_and_strays_are_pooled() -> None:
    demos = tuple(range(100, 140))
    contexts = [demos + (1, 2), demos + (3,), demos + (4, 5, 6), (7, 8, 9), (7, 8, 10)]
    groups = prefix_groups(contexts, min_prefix=16)
    assert any(g.prefix_len == 40 and sorted(g.members) == [0, 1, 2] for g in groups)
    assert PrefixGroup(0, (3, 4)) in groups  # a 2-token overlap is not worth a cache of its own
    assert sorted(m for g in groups for m in g.members) == [0, 1, 2, 3, 4]


def test_prefix_leaves_the_last_context_token() -> None:
    demos = tuple(range(100, 130))
    [group] = prefix_groups([demos, demos + (1,)], min_prefix=16)
    assert group.prefix_len == 29 and sorted(group.members) == [0, 1]


def test_one_stray_context_does_not_shrink_a_long_shared_prefix() -> None:
    demos = tuple(range(100, 160))
    stray = demos[:17] + (0,) * 23  # shares 17 tokens, sorts first
    groups = prefix_groups([demos + (1,), demos + (2,), demos + (3,), stray], min_prefix=16)
    assert PrefixGroup(60, (0, 1, 2)) in groups and PrefixGroup(0, (3,)) in groups


def test_first_k_items_that_are_each_others_demonstrations_stay_out_of_the_big_cluster() -> None:
    """first_k few-shot: most items share demonstrations D0-D3; the first items of the pool
    replace one demonstration by another item and share only part of that prefix. Joining
    them to the big cluster would shrink its prefix (the greedy rule used to: GSM8K 8-shot,
    96 items at 487 tokens instead of 92 at ~1,450)."""
    d = [tuple(range(100 * k, 100 * k + 25)) for k in range(1, 6)]
    block = [d[0] + d[1] + d[2] + d[3] + (q,) for q in range(1, 7)]
    odd_a = d[0] + d[1] + d[2] + d[4] + (7,)  # shares 75 tokens with the block
    odd_b = d[0] + d[1] + d[3] + d[4] + (8,)  # shares 50 with the block and with odd_a
    groups = prefix_groups([odd_b, *block, odd_a], min_prefix=16)
    assert groups == [PrefixGroup(100, (1, 2, 3, 4, 5, 6)), PrefixGroup(50, (7, 0))]
    # the most tokens saved: 5 x 100 + 1 x 50 (block + odd_a at 75 would save only 6 x 75)


def test_a_block_longer_than_the_span_is_cut_into_clusters_that_cover_it() -> None:
    demos = tuple(range(1000, 1040))
    contexts = [demos + (i,) for i in range(MAX_GROUP_SPAN + 40)]
    groups = prefix_groups(contexts, min_prefix=16)
    assert all(g.prefix_len == 40 for g in groups) and len(groups) == 2
    assert sorted(m for g in groups for m in g.members) == list(range(len(contexts)))


def test_a_cluster_that_saves_too_few_tokens_is_pooled() -> None:
    """Two items sharing a 30-token context (HellaSwag-like) save 30 tokens: not worth their own batches."""
    pair = tuple(range(100, 130))
    demos = tuple(range(200, 240))
    contexts = [pair + (1,), pair + (2,), demos + (3,), demos + (4,), demos + (5,), demos + (6,)]
    groups = prefix_groups(contexts, min_prefix=16, min_saving=100)
    assert PrefixGroup(40, (2, 3, 4, 5)) in groups  # 3 x 40 = 120 tokens saved
    assert PrefixGroup(0, (0, 1)) in groups
    assert PrefixGroup(30, (0, 1)) in prefix_groups(contexts, min_prefix=16)
