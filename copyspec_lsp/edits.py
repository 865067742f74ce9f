"""Putting the shaped answer into the client's buffer with `workspace/applyEdit`.

Each edit replaces exactly [region start, current end of the replacement) as the server sees
the document now. Only one edit is in flight, and the next waits until the client has reported
the previous one back through `didChange`, so the server's view never lags behind its own
edits; a stop wakes every wait at once, so no edit goes out after a cancel was answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from copyspec_lsp import pending
from copyspec_lsp.documents import Document
from copyspec_lsp.positions import to_range
from copyspec_lsp.requests import Request

if TYPE_CHECKING:
    from copyspec_lsp.service import Service

EDIT_INTERVAL = 0.05
"""Seconds between two streamed edits at least (and at most one per engine step)."""
ECHO_TIMEOUT = 5.0
"""Seconds to wait for the client to report an applied edit back through didChange."""


class BufferWriter:
    """Puts the shaped text into the buffer: streamed, once at the end, or never."""

    def __init__(self, service: Service, document: Document, request: Request, apply: str):
        self.service = service
        self.document = document
        self.request = request
        self.apply = apply
        self.in_buffer: str | None = None
        self.streamed: str | None = None
        self.last = 0.0
        region = request.region
        self.original = document.text[region.start : region.end]
        self.newline = "\r\n" if "\r\n" in document.text else "\n"

    def due(self, text: str) -> float | None:
        """Seconds until held-back text may go out as a streamed edit (None: none held)."""
        if self.apply != "stream" or not text or text == self.streamed:
            return None
        return max(0.001, EDIT_INTERVAL - (time.monotonic() - self.last))

    async def write(self, text: str) -> None:
        """Stream `text` unless the last edit went out less than EDIT_INTERVAL ago."""
        waited = time.monotonic() - self.last >= EDIT_INTERVAL
        if self.apply == "stream" and text and text != self.streamed and waited:
            shown = pending.while_streaming(self.original, text, self.newline)
            await self._edit(shown.text, shown.pending)
            self.streamed = text

    async def finish(self, text: str) -> None:
        if self.apply != "none" and text != self.in_buffer:
            await self._edit(text)

    async def _edit(self, text: str, pending_at: int | None = None) -> None:
        """Replace [region start, current end) with `text`; wait until the client echoes it.
        `text[pending_at:]` is the original's pending rest, announced before the edit."""
        request, region = self.request, self.request.region
        if request.stopped:
            raise request.cancelled()
        self.last = time.monotonic()
        encoding = self.service.documents.encoding
        where = to_range(self.document.text, region.start, region.end, encoding)
        pending.announce(self.service.server, request, self.document.text, text, pending_at,
                         encoding)
        edit = types.WorkspaceEdit(changes={request.uri: [types.TextEdit(where, text)]})
        region.expected = text
        echoed = region.echoed = asyncio.Event()
        try:
            answer = await self._until_halted(
                self.service.server.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit))
            )
            refused = "" if answer.applied else answer.failure_reason or "no reason given"
        except JsonRpcException as error:
            refused = str(error)
        if refused:
            region.expected = None
            request.cancel(f"the editor did not apply the edit: {refused}", by_server=True)
            raise request.cancelled()
        try:
            await asyncio.wait_for(echoed.wait(), ECHO_TIMEOUT)
        except asyncio.TimeoutError:
            request.cancel(
                "the editor did not report the applied edit back (didChange)", by_server=True
            )
            raise request.cancelled() from None
        if request.stopped:
            raise request.cancelled()
        self.in_buffer = text


    async def _until_halted(self, waiting: Awaitable[Any]) -> Any:
        """`waiting`'s result, unless the request stops first (then JobCancelled)."""
        answer = asyncio.ensure_future(waiting)
        halted = asyncio.ensure_future(self.request.halted.wait())
        try:
            await asyncio.wait({answer, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halted.cancel()
        if not answer.done():
            raise self.request.cancelled()
        return answer.result()
