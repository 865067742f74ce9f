"""Conversations: one chat session (`engine.session.ChatSession`: history + KV cache) per
document and id, kept in the engine's memory-bounded LRU (`engine.session_cache`, as
`copyspec serve` keeps its sessions), with a count cap too.

The chat session is opened lazily on the engine thread, the only thread that touches it;
the loop side only reads the bookkeeping (uri, range, turns) for `copyspec/status`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from lsprotocol import types

from engine.session import ChatSession, Session
from engine.session_cache import DEFAULT_BUDGET_BYTES, SessionCache, state_bytes

DEFAULT_CAPACITY = 8
"""Conversations kept at most, however little memory they hold (a remote one holds none)."""


@dataclass(eq=False)
class Conversation:
    """A chain of turns about one region of one document."""

    id: str
    uri: str
    chat: ChatSession | None = None
    """The chat session: only the engine thread reads or writes it."""
    history: bool = False
    """Whether the chat session holds earlier turns (kept on the event loop thread)."""
    turns: int = 0
    trimmed_turns: int = 0
    """Oldest turns dropped so the history fits the model's context window."""
    last_code: str | None = None
    """The dedented code of the last answer, to tell whether the buffer still shows it."""
    range: types.Range | None = None

    def nbytes(self) -> int:
        """Estimated memory of an in-process chat session's caches and history (read on the
        event loop thread while the engine thread may be growing them: an estimate)."""
        chat = self.chat
        if isinstance(chat, Session):
            return state_bytes(chat.state, chat.draft_state)
        return 0

    def describe(self) -> dict[str, Any]:
        where = None
        if self.range is not None:
            where = {
                "start": {"line": self.range.start.line, "character": self.range.start.character},
                "end": {"line": self.range.end.line, "character": self.range.end.character},
            }
        return {"session": self.id, "uri": self.uri, "range": where, "turns": self.turns,
                "trimmedTurns": self.trimmed_turns}


class Conversations:
    """Conversations by document and id (an id names a session within its document only);
    the least recently used ones go once they pass the memory budget or the count cap."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self._items: SessionCache[tuple[str, str], Conversation] = SessionCache(
            budget_bytes, capacity
        )

    def get_or_create(self, session_id: str | None, uri: str) -> Conversation:
        """The named conversation, or a new one (with that id when the old one expired)."""
        conversation = self._items.get((uri, session_id)) if session_id else None
        if conversation is None:
            conversation = Conversation(session_id or uuid.uuid4().hex, uri)
            self._items.put((uri, conversation.id), conversation)
        self._items.trim()
        return conversation

    def describe(self) -> list[dict[str, Any]]:
        return [conversation.describe() for conversation in self._items.values()]

    def clear(self) -> None:
        """Forget every conversation (after a model reload or at shutdown)."""
        self._items.clear()
