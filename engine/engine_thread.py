"""The one thread that owns the model, bridged to asyncio: the language server's model host
and every `copyspec serve` replica run their turns on one of these.

Jobs run one at a time in arrival order. Each job talks back to the event loop only by
posting typed events (`JobEvent`: queue position, streamed text, trimmed history, its result,
error or cancel) with `call_soon_threadsafe`, so every LSP message is still sent from the
event loop thread.
Stopping a job sets its `threading.Event`, which the engine checks once per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.stats import TurnStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuePosition:
    """How many jobs are ahead of this one; 0: it is running now."""

    ahead: int


@dataclass(frozen=True)
class TextDelta:
    """What one engine step added to the raw answer, with the turn's figures at that step
    where the consumer shows them live (a copy: the engine thread goes on updating its own);
    None where nobody reads them."""

    text: str
    stats: TurnStats | None = None


@dataclass(frozen=True)
class HistoryTrimmed:
    """The turn only fit the context window once its oldest `turns` turns were dropped."""

    turns: int


@dataclass(frozen=True)
class JobDone:
    """The job's last event: what its `run` returned."""

    result: Any


@dataclass(frozen=True)
class JobFailed:
    """The job's last event: what its `run` raised."""

    error: Exception


@dataclass(frozen=True)
class JobCancelled:
    """The job was stopped (by its request, on the event loop thread), and why."""

    reason: str


JobEvent = QueuePosition | TextDelta | HistoryTrimmed | JobDone | JobFailed | JobCancelled


@dataclass(eq=False)
class Job:
    """A unit of model work; `run` executes on the worker thread with the job itself."""

    run: Callable[[Job], Any]
    uri: str = ""
    session: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    events: asyncio.Queue[JobEvent] = field(default_factory=asyncio.Queue)
    loop: asyncio.AbstractEventLoop | None = None
    on_result: Callable[[Any], None] | None = None
    """Called on the event loop thread with what `run` returned, even after a cancel."""
    on_end: Callable[[], None] | None = None
    """Called on the event loop thread once the job is over: run, failed or skipped because
    it was cancelled while it waited."""

    def post(self, event: JobEvent) -> None:
        """Hand an event to the event loop; safe from any thread, a no-op once it closed."""
        self.call_soon(self.events.put_nowait, event)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args)` on the event loop thread; a no-op once the loop closed."""
        assert self.loop is not None
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback, *args)

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the model within one step and wake whoever awaits this job (loop thread)."""
        if not self.stop.is_set():
            self.stop.set()
            self.events.put_nowait(JobCancelled(reason))

    @property
    def cancelled(self) -> bool:
        return self.stop.is_set()


class EngineThread:
    """A FIFO of jobs served by one dedicated daemon thread."""

    def __init__(self) -> None:
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="copyspec-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> int:
        """Queue a job (on the event loop thread that awaits it); returns its place in the
        queue (0: it runs next)."""
        job.loop = asyncio.get_running_loop()
        with self._wake:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            self._waiting.append(job)
            place = len(self._waiting) - (0 if self._running else 1)
            self._wake.notify()
        return place

    def jobs(self) -> list[Job]:
        """The running job (if any) and the waiting ones, in order."""
        with self._wake:
            return [job for job in (self._running, *self._waiting) if job is not None]

    def close(self) -> None:
        """Stop every job and let the thread end on its own (never waits on the event loop:
        the running job stops within one engine step)."""
        with self._wake:
            self._closing = True
            pending = [job for job in (self._running, *self._waiting) if job is not None]
            self._waiting.clear()
            self._wake.notify()
        for job in pending:
            job.stop.set()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                job = self._waiting.popleft()
                self._running = job
                waiting = list(self._waiting)
            for place, other in enumerate(waiting, start=1):
                other.post(QueuePosition(place))
            if not job.cancelled:
                job.post(QueuePosition(0))
                try:
                    result = job.run(job)
                    if job.on_result is not None:
                        job.call_soon(job.on_result, result)
                    job.post(JobDone(result))
                except Exception as error:  # reported to the request, never kills the thread
                    log.debug("job failed", exc_info=True)
                    job.post(JobFailed(error))
            if job.on_end is not None:
                job.call_soon(job.on_end)
            with self._wake:
                self._running = None
            job = result = None  # drop references (the model's outputs) before waiting again
