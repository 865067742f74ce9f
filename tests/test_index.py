"""The γ-gram index agrees with a brute-force search, before and after truncation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.index import LONGEST_SCAN, NgramIndex

tokens_strategy = st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=60)


def brute_force(tokens: list[int], gamma: int, policy: str, k: int) -> list[int]:
    """The continuation the policy should pick, found by scanning every earlier position."""
    end = len(tokens)
    if end < gamma or k <= 0:
        return []
    key = tokens[end - gamma :]
    starts = [s for s in range(gamma, end) if tokens[s - gamma : s] == key]
    if not starts:
        return []
    if policy == "recent":
        start = starts[-1]
    elif policy == "oldest":
        start = starts[0]
    else:
        def agreement(s: int) -> int:
            n = 0
            while n < s and tokens[s - 1 - n] == tokens[end - 1 - n]:
                n += 1
            return n
        candidates = starts[-LONGEST_SCAN:]
        best = max(agreement(s) for s in candidates)
        start = max(s for s in candidates if agreement(s) == best)
    extended = list(tokens)
    while len(extended) < start + k:
        extended.append(extended[len(extended) - (end - start)])
    return extended[start : start + k]


@settings(max_examples=300, deadline=None)
@given(
    tokens=tokens_strategy,
    gamma=st.integers(1, 5),
    policy=st.sampled_from(["recent", "oldest", "longest"]),
    k=st.integers(0, 12),
)
def test_lookup_matches_brute_force(tokens: list[int], gamma: int, policy: str, k: int) -> None:
    index = NgramIndex(gamma, policy)
    index.extend(tokens)
    assert index.lookup(k) == brute_force(tokens, gamma, policy, k)


@settings(max_examples=200, deadline=None)
@given(
    tokens=tokens_strategy, cut=st.integers(0, 60), tail=tokens_strategy, gamma=st.integers(1, 4)
)
def test_truncate_then_extend_equals_fresh_index(
    tokens: list[int], cut: int, tail: list[int], gamma: int
) -> None:
    index = NgramIndex(gamma)
    index.extend(tokens)
    index.truncate(min(cut, len(tokens)))
    index.extend(tail)
    fresh = NgramIndex(gamma)
    fresh.extend(tokens[: min(cut, len(tokens))] + tail)
    assert index.tokens == fresh.tokens
    assert index._follows == fresh._follows
    for k in (1, 5):
        assert index.lookup(k) == fresh.lookup(k)


def test_recent_policy_copies_the_newest_version() -> None:
    index = NgramIndex(gamma=2, policy="recent")
    index.extend([1, 2, 10, 11, 1, 2, 20, 21, 1, 2])
    assert index.lookup(2) == [20, 21]
    index.policy = "oldest"
    assert index.lookup(2) == [10, 11]


def test_self_overlapping_match_continues_periodically() -> None:
    index = NgramIndex(gamma=3)
    index.extend([7, 8, 9, 7, 8, 9])
    assert index.lookup(7) == [7, 8, 9, 7, 8, 9, 7]


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="gamma"):
        NgramIndex(gamma=0)
    with pytest.raises(ValueError, match="policy"):
        NgramIndex(policy="newest")
