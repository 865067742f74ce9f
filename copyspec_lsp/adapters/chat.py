"""The one chat-session interface every turn of the server goes through.

A conversation's turns are sent to a `ChatSession`: the engine's in-process
`engine.session.Session`, a `RemoteSession` on an OpenAI-compatible server (`copyspec serve`,
vLLM), or, in tests, a scripted answer (`scripted.ScriptedTurn`). All three hold the history
as `messages` and answer with `send`, streaming through `on_text` and stopping on
`stop_event`, so the engine thread runs each the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from copyspec_lsp.adapters.remote import RemoteModel, RemoteSession
from engine.config import SpecConfig
from engine.loading import LoadedModel
from engine.session import Session, TurnResult
from engine.stats import TurnStats


class ChatSession(Protocol):
    """A conversation with a model: its history and one turn at a time."""

    messages: list[dict[str, str]]

    @property
    def lm(self) -> LoadedModel | RemoteModel:
        """The model it talks to: a session outlives no reload."""
        ...

    def send(
        self,
        message: str,
        max_new_tokens: int = 256,
        *,
        stop_event: threading.Event | None = None,
        on_text: Callable[[str, TurnStats], None] | None = None,
    ) -> TurnResult: ...


def open_session(
    lm: LoadedModel | RemoteModel,
    spec: SpecConfig,
    system: str | None,
    draft: LoadedModel | None,
    session_id: str,
) -> Session | RemoteSession:
    """The chat session a conversation sends its turns to: remote when `lm` is a
    `RemoteModel`, else in process."""
    if isinstance(lm, RemoteModel):
        return RemoteSession(lm, session_id, system)
    return Session(lm, spec, system=system, draft=draft)
