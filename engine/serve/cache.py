"""Sessions by id, least recently used first out once their caches pass a memory budget.

Sessions differ wildly in size (a 40-line refine vs a 2,000-line file), so the budget is bytes
of KV cache, not a count. Dropping a session costs only a re-prefill: the client sends the
whole conversation every turn.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from engine.serve.history import ServedSession


class SessionCache:
    """Used only from the engine thread, so it needs no lock."""

    def __init__(self, budget_bytes: int, create: Callable[[], ServedSession]) -> None:
        self.budget_bytes = budget_bytes
        self.create = create
        self._items: OrderedDict[str, ServedSession] = OrderedDict()
        self.evicted = 0

    def get(self, session_id: str) -> ServedSession:
        """The session's state, made afresh when it is new or was evicted."""
        session = self._items.get(session_id)
        if session is None:
            session = self._items[session_id] = self.create()
        self._items.move_to_end(session_id)
        return session

    def peek(self, session_id: str) -> ServedSession | None:
        return self._items.get(session_id)

    def drop(self, session_id: str) -> None:
        self._items.pop(session_id, None)

    def trim(self) -> None:
        """Evict the least recently used sessions until the rest fit the budget; the most
        recent one always stays, even alone over budget, so a long turn is never wasted."""
        sizes = {key: session.nbytes() for key, session in self._items.items()}
        total = sum(sizes.values())
        while total > self.budget_bytes and len(self._items) > 1:
            key, _ = self._items.popitem(last=False)
            total -= sizes[key]
            self.evicted += 1

    def __len__(self) -> int:
        return len(self._items)

    def nbytes(self) -> int:
        return sum(session.nbytes() for session in self._items.values())
