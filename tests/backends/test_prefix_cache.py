"""Grouping of contexts by shared token prefix (pure logic; the model side is in test_hf.py)."""

from __future__ import annotations

from harness.backends.prefix_cache import PrefixGroup, common_prefix_len, prefix_groups


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
    demos = tuple(range(100, 130))
    stray = demos[:17] + (0,) * 23  # shares 17 tokens, sorts first
    groups = prefix_groups([demos + (1,), demos + (2,), stray], min_prefix=16)
    assert PrefixGroup(30, (0, 1)) in groups and PrefixGroup(0, (2,)) in groups


def test_a_cluster_that_saves_too_few_tokens_is_pooled() -> None:
    """Two items sharing a 30-token context (HellaSwag-like) save 30 tokens: not worth their own batches."""
    pair = tuple(range(100, 130))
    demos = tuple(range(200, 240))
    contexts = [pair + (1,), pair + (2,), demos + (3,), demos + (4,), demos + (5,), demos + (6,)]
    groups = prefix_groups(contexts, min_prefix=16, min_saving=100)
    assert PrefixGroup(40, (2, 3, 4, 5)) in groups  # 3 x 40 = 120 tokens saved
    assert PrefixGroup(0, (0, 1)) in groups
    assert PrefixGroup(30, (0, 1)) in prefix_groups(contexts, min_prefix=16)
