"""The service's model, session cache and the one thread that runs turns, bridged to asyncio.

A turn streams its text through an asyncio queue. Whatever stops the consumer (a client
disconnect cancels it at its `await`) sets the turn's stop event on the way out, which the
decode loop checks before every step: a dropped stream stops the model within one step.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from engine.config import SpecConfig
from engine.gate import gate_path, hold_while_closed
from engine.loading import LoadedModel
from engine.schedule import Acceptance
from engine.serve.cache import SessionCache
from engine.serve.history import ServedSession
from engine.serve.protocol import ChatRequest
from engine.session import TurnResult
from engine.stats import TurnStats


@dataclass
class TurnEnd:
    """The last event of a turn: its result and what the service adds to the stats."""

    result: TurnResult
    carried_tokens: int
    replica: str


class ServeEngine:
    """Serves turns of many sessions, one at a time, on a dedicated thread."""

    def __init__(
        self,
        lm: LoadedModel,
        spec: SpecConfig,
        draft: LoadedModel | None = None,
        cache_bytes: int = 1 << 30,
        replica: str = "",
    ) -> None:
        self.lm, self.spec, self.draft = lm, spec, draft
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self.acceptance = Acceptance()
        """How drafts fared over every session: a new session starts from it, not from scratch
        (its own estimate then goes on from there and feeds this one)."""
        self.cache = SessionCache(
            cache_bytes, lambda: ServedSession(lm, spec, draft, self.acceptance.session())
        )
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="copyspec-serve")
        self.passes_after_stop: dict[str, int] = {}
        """Per session: target forward passes its last cancelled turn made after the stop."""
        self.gate = gate_path()
        """Set only by tests that act mid-stream (engine/gate.py)."""

    @property
    def model_name(self) -> str:
        return os.path.basename(os.path.normpath(self.lm.path)) or self.lm.path

    async def turn(self, session_id: str, chat: ChatRequest) -> AsyncIterator[str | TurnEnd]:
        """Text deltas of the answer, then a `TurnEnd`; closing the iterator stops the turn."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        stats = TurnStats()  # live: the decode loop counts into it
        stopped_at: list[int] = []

        def on_text(delta: str, _stats: TurnStats) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("text", delta))
            hold_while_closed(self.gate, stop)  # tests only: see engine/gate.py

        future = loop.run_in_executor(
            self.executor, self._run, session_id, chat, stop, on_text, stats
        )
        future.add_done_callback(lambda done: queue.put_nowait(("end", done)))
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield value
                    continue
                result, carried = value.result()
                yield TurnEnd(result, carried, self.replica)
                return
        finally:
            if not future.done():
                stopped_at.append(stats.forward_passes)
                stop.set()
                future.add_done_callback(
                    lambda _: self._record_stop(session_id, stats, stopped_at[0])
                )

    def _record_stop(self, session_id: str, stats: TurnStats, passes_at_stop: int) -> None:
        self.passes_after_stop[session_id] = stats.forward_passes - passes_at_stop

    def _run(
        self,
        session_id: str,
        chat: ChatRequest,
        stop: threading.Event,
        on_text: Any,
        stats: TurnStats,
    ) -> tuple[TurnResult, int]:
        """On the engine thread: one turn of the session; a failed turn drops the session,
        whose cache may be half-updated, so the next turn starts afresh."""
        if stop.is_set():  # the client left while the turn waited for the thread
            stats.cancelled, stats.stop_reason = True, "cancelled"
            return TurnResult("", [], stats), 0
        session = self.cache.get(session_id)
        prediction = session.predicted(chat.prediction)  # refused before the session changes
        try:
            answered = session.answer(
                chat.messages, chat.max_tokens, chat.sampling, chat.stop, stop, on_text, stats,
                prediction,
            )
        except Exception:
            self.cache.drop(session_id)
            raise
        self.cache.trim()
        return answered

    def describe(self, session_id: str) -> dict[str, Any]:
        """What this replica holds for a session (for health checks and tests)."""
        session = self.cache.peek(session_id)
        return {
            "session": session_id,
            "replica": self.replica,
            "pid": os.getpid(),
            "cached": session is not None,
            "turns": session.turns if session else 0,
            "cached_tokens": len(session.ids) if session else 0,
            "last_stats": session.last_stats.to_dict() if session and session.last_stats else None,
            "acceptance": session.acceptance.summary() if session else None,
            "passes_after_stop": self.passes_after_stop.get(session_id),
        }

    def health(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "pid": os.getpid(),
            "model": self.lm.path,
            "method": self.spec.method,
            "sessions": len(self.cache),
            "cache_bytes": self.cache.nbytes(),
            "budget_bytes": self.cache.budget_bytes,
            "evicted": self.cache.evicted,
            "acceptance": self.acceptance.summary(),
        }

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
