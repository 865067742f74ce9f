"""Conversations: one chat session (`chat.ChatSession`: history + KV cache) per document and
id, LRU-capped.

The chat session is opened lazily on the engine thread, the only thread that touches it;
the loop side only reads the bookkeeping (uri, range, turns) for `copyspec/status`.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from lsprotocol import types

from copyspec_lsp.adapters.chat import ChatSession

DEFAULT_CAPACITY = 8


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
    the least recently used one goes when the cap is reached."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], Conversation] = OrderedDict()

    def get_or_create(self, session_id: str | None, uri: str) -> Conversation:
        """The named conversation, or a new one (with that id when the old one expired)."""
        conversation = self._items.get((uri, session_id)) if session_id else None
        if conversation is None:
            conversation = Conversation(session_id or uuid.uuid4().hex, uri)
            self._items[uri, conversation.id] = conversation
        self._items.move_to_end((uri, conversation.id))
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return conversation

    def describe(self) -> list[dict[str, Any]]:
        return [conversation.describe() for conversation in self._items.values()]

    def clear(self) -> None:
        """Forget every conversation (after a model reload or at shutdown)."""
        self._items.clear()
