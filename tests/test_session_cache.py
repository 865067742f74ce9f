"""The one LRU of chat sessions (language server and `copyspec serve`): eviction by estimated
bytes, least recently used first, with a count cap, never the most recent session; and the
estimate of a real session grows with its KV cache and history."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from copyspec_lsp.adapters.conversations import Conversations
from engine.config import SpecConfig
from engine.session import Session
from engine.session_cache import HISTORY_BYTES_PER_TOKEN, SessionCache, state_bytes

from tiny_models import loaded

pytestmark = pytest.mark.timeout(60)


@dataclass
class Held:
    """A session that holds a given number of bytes (the cache reads only `nbytes`)."""

    size: int

    def nbytes(self) -> int:
        return self.size


def test_evicts_least_recently_used_until_the_bytes_fit() -> None:
    cache: SessionCache[str, Held] = SessionCache(budget_bytes=100)
    for name, size in (("a", 40), ("b", 40), ("c", 40)):
        cache.put(name, Held(size))
    assert cache.get("a") is not None  # now the most recent: b is the least recently used
    cache.trim()
    assert [key for key in ("a", "b", "c") if cache.peek(key)] == ["a", "c"]
    assert cache.evicted == 1 and cache.nbytes() == 80
    cache.put("d", Held(70))
    cache.trim()  # 150 > 100: c goes, then a (least recently used first), d stays
    assert [key for key in ("a", "c", "d") if cache.peek(key)] == ["d"]
    assert cache.evicted == 3


def test_keeps_the_most_recent_session_even_alone_over_budget() -> None:
    cache: SessionCache[str, Held] = SessionCache(budget_bytes=10)
    cache.put("small", Held(5))
    cache.put("big", Held(1000))
    cache.trim()
    assert cache.peek("small") is None and cache.peek("big") is not None and len(cache) == 1


def test_the_count_cap_bounds_sessions_that_hold_nothing() -> None:
    cache: SessionCache[int, Held] = SessionCache(budget_bytes=1 << 30, max_sessions=2)
    for key in range(4):
        cache.put(key, Held(0))
        cache.trim()
    assert [held for held in range(4) if cache.peek(held)] == [2, 3]


def test_a_sessions_estimate_counts_its_kv_cache_and_history() -> None:
    session = Session(loaded("llama", mixing=0.1), SpecConfig("copy"), system="Be brief.")
    empty = state_bytes(session.state)
    session.send("def add(a, b):\n    return a + b\nRename add", 16)
    tokens = len(session.state.tokens)
    grown = state_bytes(session.state)
    assert tokens > 0 and grown - empty > tokens * HISTORY_BYTES_PER_TOKEN, (
        "the KV cache's tensors count as well as the history"
    )


def test_the_language_servers_conversations_are_bounded_by_bytes() -> None:
    """A conversation whose in-process session holds more than the budget goes once another
    is used; under the default budget it stays."""
    lm = loaded("llama", mixing=0.1)
    for budget, kept in ((1, False), (1 << 30, True)):
        conversations = Conversations(budget_bytes=budget)
        first = conversations.get_or_create(None, "file:///a.py")
        first.chat = Session(lm, SpecConfig("copy"), system="Be brief.")
        first.chat.send("def add(a, b):\n    return a + b\nRename add", 16)
        conversations.get_or_create(None, "file:///a.py")
        ids = {described["session"] for described in conversations.describe()}
        assert (first.id in ids) is kept and len(ids) == (2 if kept else 1)
