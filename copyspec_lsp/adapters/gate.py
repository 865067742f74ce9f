"""A test-only gate that holds a streaming answer open, whatever the machine's speed.

Tests that act "mid-stream" (cancel, type inside the region, send a second request, refuse an
edit) need the stream to still be running when they act; on an idle machine the tiny test
model copies thousands of tokens a second and would finish first. So the server honours a gate:
started with COPYSPEC_TEST_GATE=<path> in its environment, then while that file exists

- a request holds after each streamed edit that left the buffer up to date (and after its
  final edit, before it answers), until the file is gone or the request is stopped;
- the engine thread goes at most one step ahead of what the request has handled, so a held
  request holds the model too (a cancel still stops it within one step).

A test creates the file, starts a request, acts once the first edit has landed, then removes
the file. Without the variable (always, outside tests) no gate exists and nothing here runs.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from copyspec_lsp.adapters.requests import Request
from engine.gate import POLL_SECONDS, gate_path


class StreamGate:
    """Closed while its file exists; one per server."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_environment(cls) -> StreamGate | None:
        path = gate_path()
        return cls(path) if path is not None else None

    @property
    def closed(self) -> bool:
        return self.path.exists()

    def pacer(self) -> Pacer:
        return Pacer(self)


class Pacer:
    """One engine turn's steps against what its request has handled of them."""

    def __init__(self, gate: StreamGate) -> None:
        self.gate = gate
        self.posted = 0
        self.handled = 0

    def after_step(self, stop: threading.Event) -> None:
        """Engine thread, after posting a step: wait while the gate is closed and the
        request has not handled every step yet (a stop ends the wait)."""
        self.posted += 1
        while self.gate.closed and self.handled < self.posted and not stop.wait(POLL_SECONDS):
            pass

    async def hold(self, request: Request) -> None:
        """Loop thread: wait while the gate is closed, unless the request stops."""
        while self.gate.closed and not request.stopped:
            await asyncio.sleep(POLL_SECONDS)

    def step_handled(self) -> None:
        self.handled += 1
