"""Chat sessions by key, least recently used first out once they pass a memory budget.

Sessions differ wildly in size (a 40-line refine vs a 2,000-line file), so the budget is an
estimate of the bytes each holds (`state_bytes`: its KV caches and token history), not a
count; an optional count cap also bounds sessions that hold next to nothing (a remote one).
Dropping a session costs only a re-prefill: its next turn starts from the text again. The
language server's conversations and `copyspec serve`'s sessions both keep theirs here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:  # torch-heavy: `copyspec serve` reads the default budget before loading
    from engine.sequence import SequenceState

DEFAULT_BUDGET_BYTES = 1 << 30
"""Memory of the sessions kept, per language server or `copyspec serve` replica."""
HISTORY_BYTES_PER_TOKEN = 128
"""Rough cost of one token of history outside the KV cache: its id in the token list and
its entries in the copy proposer's n-gram index (Python objects)."""


class Sized(Protocol):
    def nbytes(self) -> int:
        """The memory the session holds (an estimate)."""
        ...


K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Sized)


class SessionCache(Generic[K, V]):
    """Not thread-safe: each owner uses it from one thread only."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 max_sessions: int | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.max_sessions = max_sessions
        self._items: OrderedDict[K, V] = OrderedDict()
        self.evicted = 0

    def get(self, key: K) -> V | None:
        """The session, now the most recently used; None when it is new or was evicted."""
        session = self._items.get(key)
        if session is not None:
            self._items.move_to_end(key)
        return session

    def put(self, key: K, session: V) -> None:
        """Keep `session` as the most recently used."""
        self._items[key] = session
        self._items.move_to_end(key)

    def peek(self, key: K) -> V | None:
        """The session without touching its place in the order."""
        return self._items.get(key)

    def drop(self, key: K) -> None:
        self._items.pop(key, None)

    def trim(self) -> None:
        """Evict the least recently used sessions until the rest fit the budget (and the count
        cap); the most recent one always stays, even alone over budget, so a long turn is
        never wasted."""
        sizes = {key: session.nbytes() for key, session in self._items.items()}
        total = sum(sizes.values())
        while len(self._items) > 1 and (
            total > self.budget_bytes
            or (self.max_sessions is not None and len(self._items) > self.max_sessions)
        ):
            key, _ = self._items.popitem(last=False)
            total -= sizes[key]
            self.evicted += 1

    def clear(self) -> None:
        self._items.clear()

    def values(self) -> Iterator[V]:
        """Least recently used first."""
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def nbytes(self) -> int:
        return sum(session.nbytes() for session in self._items.values())


def state_bytes(*states: SequenceState | None) -> int:
    """Estimated memory of sequence states: every key/value tensor of their caches plus
    their token history."""
    return sum(cache_bytes(state) + HISTORY_BYTES_PER_TOKEN * len(state.tokens)
               for state in states if state is not None)


def cache_bytes(state: SequenceState) -> int:
    """Bytes of every key/value tensor in the state's cache."""
    total = 0
    for layer in getattr(state.cache, "layers", ()):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if tensor is not None:
                total += tensor.numel() * tensor.element_size()
    return total
