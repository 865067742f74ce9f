"""The service's model, its sessions (`engine.session_cache`) and the engine thread that runs
their turns (`engine.engine_thread`, the one the language server uses too).

A turn streams its text as the job's events. Whatever stops the consumer (a client
disconnect cancels it at its `await`) cancels the job on the way out, which sets the stop
event the decode loop checks before every step: a dropped stream stops the model within one
step.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from engine.config import SpecConfig
from engine.engine_thread import EngineThread, Job, JobDone, JobFailed, TextDelta
from engine.gate import gate_path, hold_while_closed
from engine.loading import LoadedModel
from engine.schedule import Acceptance
from engine.serve.history import ServedSession
from engine.serve.protocol import ChatRequest
from engine.session import TurnResult
from engine.session_cache import DEFAULT_BUDGET_BYTES, SessionCache
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
        cache_bytes: int = DEFAULT_BUDGET_BYTES,
        replica: str = "",
    ) -> None:
        self.lm, self.spec, self.draft = lm, spec, draft
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self.acceptance = Acceptance()
        """How drafts fared over every session: a new session starts from it, not from scratch
        (its own estimate then goes on from there and feeds this one)."""
        self.cache: SessionCache[str, ServedSession] = SessionCache(cache_bytes)
        self.thread = EngineThread()
        self.passes_after_stop: dict[str, int] = {}
        """Per session: target forward passes its last cancelled turn made after the stop."""
        self.gate = gate_path()
        """Set only by tests that act mid-stream (engine/gate.py)."""

    @property
    def model_name(self) -> str:
        return os.path.basename(os.path.normpath(self.lm.path)) or self.lm.path

    async def turn(self, session_id: str, chat: ChatRequest) -> AsyncIterator[str | TurnEnd]:
        """Text deltas of the answer, then a `TurnEnd`; closing the iterator stops the turn."""
        stats = TurnStats()  # live: the decode loop counts into it
        stopped_at: list[int] = []
        job = Job(lambda job: self._run(session_id, chat, job, stats), session=session_id,
                  on_end=lambda: self._record_stop(session_id, stats, stopped_at))
        ended = False
        self.thread.submit(job)
        try:
            while True:
                match await job.events.get():
                    case TextDelta(text=delta):
                        yield delta
                    case JobDone(result=(result, carried)):
                        ended = True
                        yield TurnEnd(result, carried, self.replica)
                        return
                    case JobFailed(error=error):
                        ended = True
                        raise error
        finally:
            if not ended:
                stopped_at.append(stats.forward_passes)
                job.cancel()

    def _record_stop(self, session_id: str, stats: TurnStats, stopped_at: list[int]) -> None:
        """Once a job is over: if its stream was dropped, how many passes ran after that."""
        if stopped_at:
            self.passes_after_stop[session_id] = stats.forward_passes - stopped_at[0]

    def _run(self, session_id: str, chat: ChatRequest, job: Job,
             stats: TurnStats) -> tuple[TurnResult, int]:
        """On the engine thread: one turn of the session; a failed turn drops the session,
        whose cache may be half-updated, so the next turn starts afresh."""
        session = self.session(session_id)
        prediction = session.predicted(chat.prediction)  # refused before the session changes
        session.messages = list(chat.messages[:-1])  # the client holds the conversation
        try:
            result = session.send(
                chat.messages[-1]["content"], chat.max_tokens, chat.sampling, chat.stop,
                job.stop, self._streamer(job), prediction, stats,
            )
        except Exception:
            self.cache.drop(session_id)
            raise
        self.cache.trim()
        return result, session.carried

    def session(self, session_id: str) -> ServedSession:
        """The session's state (engine thread), made afresh when it is new or was evicted:
        seeded from the running acceptance estimate."""
        session = self.cache.get(session_id)
        if session is None:
            session = ServedSession(self.lm, self.spec, self.draft, self.acceptance.session())
            self.cache.put(session_id, session)
        return session

    def _streamer(self, job: Job) -> Callable[[str, TurnStats], None]:
        """What the session calls with each text delta (on the engine thread)."""

        def on_text(delta: str, _stats: TurnStats) -> None:
            job.post(TextDelta(delta))
            hold_while_closed(self.gate, job.stop)  # tests only: see engine/gate.py

        return on_text

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
        """Stop every turn (the running one within one step) and let the thread end."""
        self.thread.close()
