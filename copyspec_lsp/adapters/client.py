"""The port to the editor that a refine talks through: `copyspec/chunk` notifications,
work-done progress bars and buffer writers (`buffer_edits.py`).

A progress bar gets a fresh uuid token each time (pygls refuses reused tokens), is
cancellable, and is silently absent for clients that do not support it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from copyspec_lsp.adapters.buffer_edits import BufferWriter, common_prefix
from copyspec_lsp.adapters.documents import Document, Documents
from copyspec_lsp.adapters.line_index import count_units
from copyspec_lsp.adapters.requests import Request
from engine.stats import TurnStats

log = logging.getLogger(__name__)
MIN_INTERVAL = 0.1
"""Seconds between two reports, so a fast model does not flood the client."""
CHUNK = "copyspec/chunk"


class Client:
    """The editor as a refine sees it: what it can be sent, and nothing of the server."""

    def __init__(self, server: LanguageServer, documents: Documents) -> None:
        self.server = server
        self.documents = documents

    def chunk(self, session: str, uri: str, change: Change, stats: TurnStats,
              trimmed_turns: int, final_text: str | None = None) -> None:
        """`copyspec/chunk`: what changed in the replacement so far, for clients that preview;
        the last one of a turn (`final_text` given) also carries the whole text, to verify."""
        figures = {**stats.to_dict(), "trimmed_turns": trimmed_turns}
        params = {"session": session, "uri": uri, "seq": change.seq, "start": change.start,
                  "insert": change.insert, "length": change.length, "stats": figures}
        if final_text is not None:
            params.update(final=True, text=final_text)
        self.server.protocol.notify(CHUNK, params)

    def progress(self, title: str, on_cancel: Callable[[], None] | None = None) -> Progress:
        return Progress(self.server, title, on_cancel)

    def writer(self, document: Document, request: Request, apply: str) -> BufferWriter:
        """What puts a request's answer into `document` (streamed, at the end, or never)."""
        return BufferWriter(self.server, self.documents.encoding, document, request, apply)

    def show(self, kind: types.MessageType, message: str) -> None:
        """A `window/showMessage` popup, prefixed with the product's name."""
        self.server.window_show_message(types.ShowMessageParams(kind, f"CopySpec: {message}"))


class Progress:
    """One progress bar; `on_cancel` (if any) runs when the user presses its cancel button."""

    registry: ClassVar[dict[str, Callable[[], None]]] = {}
    """Open tokens → their cancel callbacks, for `window/workDoneProgress/cancel`."""

    def __init__(
        self, server: LanguageServer, title: str, on_cancel: Callable[[], None] | None = None
    ) -> None:
        self.server = server
        self.title = title
        self.token = str(uuid.uuid4())
        self.on_cancel = on_cancel
        self.active = False
        self.ended = False
        self.message = ""
        """The latest message, which a bar the client grants late begins with."""
        self._last = 0.0
        self._opening: asyncio.Task[None] | None = None

    def start(self, message: str) -> None:
        """Ask for the bar without waiting for the client's answer, so the work it shows
        starts at once; reports until the bar exists update the message it begins with."""
        self.message = message
        self._opening = asyncio.ensure_future(self._open())

    async def opened(self) -> None:
        """Wait until the client has answered `start`'s request (at once once it has)."""
        if self._opening is not None:
            await self._opening

    async def begin(self, message: str) -> None:
        """Ask the client for a progress bar and wait for it; carries on without one if it
        says no."""
        self.message = message
        await self._open()

    async def _open(self) -> None:
        capabilities = self.server.client_capabilities.window
        if capabilities is None or not capabilities.work_done_progress:
            return
        try:
            await asyncio.wait_for(self.server.work_done_progress.create_async(self.token), 5)
        except Exception as error:  # a client that refuses progress still gets its edit
            log.info("no progress bar: %s", error)
            self._forget()
            return
        if self.ended:  # the work ended before the client answered: no bar to show
            self._forget()
            return
        if self.on_cancel is not None:
            Progress.registry[self.token] = self.on_cancel
        self.active = True
        self.server.work_done_progress.begin(
            self.token,
            types.WorkDoneProgressBegin(
                self.title, cancellable=self.on_cancel is not None, message=self.message
            ),
        )

    def report(self, message: str, percentage: int | None = None, force: bool = False) -> None:
        if not self.active:
            self.message = message
        now = time.monotonic()
        if self.active and (force or now - self._last >= MIN_INTERVAL):
            self._last = now
            value = types.WorkDoneProgressReport(message=message, percentage=percentage)
            self.server.work_done_progress.report(self.token, value)

    def end(self, message: str) -> None:
        self.ended = True
        if self.active:
            self.active = False
            Progress.registry.pop(self.token, None)
            with contextlib.suppress(Exception):
                self.server.work_done_progress.end(
                    self.token, types.WorkDoneProgressEnd(message=message)
                )
            self._forget()

    def _forget(self) -> None:
        """pygls keeps every token it ever saw; an ended one is dropped so none piles up."""
        self.server.work_done_progress.tokens.pop(self.token, None)

    @classmethod
    def cancel(cls, token: str) -> bool:
        """Handle `window/workDoneProgress/cancel`; False for an unknown token."""
        callback = cls.registry.get(str(token))
        if callback is not None:
            callback()
        return callback is not None


@dataclass
class ChunkStream:
    """The replacement as the client has been sent it, so each `copyspec/chunk` carries only
    the change: the text from `start` on (UTF-16 code units, as JavaScript and LSP count)
    becomes `insert`, and the result is `length` units long. Streamed text almost always
    only grows, so a step costs what it added."""

    shown: str = ""
    units: int = 0
    """len(shown) in UTF-16 code units."""
    seq: int = 0

    def change(self, text: str) -> Change:
        """The change that turns what was sent into `text`."""
        if text.startswith(self.shown):
            start, kept = len(self.shown), self.units
        else:
            start = common_prefix(self.shown, text)
            kept = count_units(text[:start], "utf-16")
        insert = text[start:]
        self.shown, self.units, self.seq = text, kept + count_units(insert, "utf-16"), self.seq + 1
        return Change(self.seq, kept, insert, self.units)


@dataclass(frozen=True)
class Change:
    """One `copyspec/chunk`'s edit of the replacement: `text[:start] + insert`."""

    seq: int
    start: int
    insert: str
    length: int


def live_figures(stats: TurnStats, max_new_tokens: int, started: float) -> tuple[str, int]:
    """Progress text and percentage while decoding: speed, copied share, share of the budget."""
    tokens = stats.new_tokens
    seconds = time.perf_counter() - started - stats.prefill_seconds
    copied = stats.copied_tokens / tokens if tokens else 0.0
    speed = f"{tokens / seconds:.0f} tok/s · " if seconds > 0 else ""
    return f"{speed}{copied:.0%} copied", min(100, round(100 * tokens / max_new_tokens))
