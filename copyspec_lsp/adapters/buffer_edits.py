"""Putting the shaped answer into the client's buffer with `workspace/applyEdit`.

Each edit is the smallest change that turns the region, as the client last reported it, into
the text so far (usually an insertion at its end), so even a client that applies it naively
never has its own text overwritten by a stale copy; it is a `TextDocumentEdit` stamped with
that version when the client takes `documentChanges`, so a spec-following client refuses it
once the user has typed since, and it is computed again against the newer text.

No edit goes out within USER_PAUSE of the user's own typing. Only one edit is in flight, and
the next waits until the client has reported the previous one back through `didChange`, so the
server's view never lags behind its own edits; a stop wakes every wait at once, so no edit goes
out after a cancel was answered.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from copyspec_lsp import pending
from copyspec_lsp.documents import Document, line_break
from copyspec_lsp.requests import Request

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

EDIT_INTERVAL = 0.05
"""Seconds between two streamed edits at least (and at most one per engine step)."""
ECHO_TIMEOUT = 5.0
"""Seconds to wait for the client to report an applied edit back through didChange."""
VERSIONED_ECHO_TIMEOUT = 1.0
"""The same for a versioned edit: a client may skip a stale one yet answer applied=true
(Neovim does), so the edit is computed again after this long."""
USER_PAUSE = 0.3
"""Seconds since the user's last own change before the next edit goes out."""
MAX_REFUSALS = 5
"""Refused edits computed again before the request gives up; a refusal after the user typed
(a stale version) does not count, since it is the user, not the editor, that moved on."""


class BufferWriter:
    """Puts the shaped text into the buffer: streamed, once at the end, or never."""

    def __init__(
        self, client: LanguageServer, encoding: str, document: Document, request: Request,
        apply: str,
    ) -> None:
        self.client = client
        """The server's side of the connection: sends applyEdit, knows the capabilities."""
        self.encoding = encoding
        self.document = document
        self.request = request
        self.apply = apply
        self.in_buffer: str | None = None
        self.streamed: str | None = None
        self.last = 0.0
        region = request.region
        self.original = document.text[region.start : region.end]
        self.newline = line_break(document.text)

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
        """Make the region read `text` with the smallest change to what the client last
        reported, once the user has paused; wait until the client echoes it. An edit the
        client refuses as stale is computed again against the newer text (the region
        followed the user's changes), and so is one a client applied at its stale range,
        once the text it overwrote is put back; only typing inside the region stops the
        request. `text[pending_at:]` is the original's pending rest, announced first."""
        request, region = self.request, self.request.region
        refusals: list[str] = []
        while len(refusals) < MAX_REFUSALS:
            await request.unless_stopped(self._user_paused())
            self.last = time.monotonic()
            if self.document.text[region.start : region.end] == text:
                self.in_buffer = text  # e.g. two streamed texts that show the same lines
                return
            version = self.document.version
            region.expected = text
            pending.announce(self.client, request, self.document.lines, text, pending_at,
                             self.encoding)
            try:
                refused = await self._send(self._change(text))
            finally:
                region.expected = None
            if region.misplaced:
                await self._put_back()
                refusals.append("the editor applied an edit where it no longer fitted")
                continue
            if not refused and self.document.text[region.start : region.end] == text:
                self.in_buffer = text
                return
            if not refused:  # e.g. applied at a stale range where it changed nothing: again
                refusals.append("the edit did not leave the region as sent")
                continue
            if not self.versioned:
                break  # an unversioned edit cannot be told apart from a stale one: stop
            if self.document.version == version:  # refused though nobody typed: counts
                refusals.append(refused)
        reason = refusals[-1] if refusals else refused
        request.cancel(f"the editor did not apply the edit: {reason}", by_server=True)
        raise request.cancelled()

    async def _send(self, change: types.TextEdit) -> str:
        """Send one edit and wait for its echo: "" once it came back, else why not. While it
        is in flight the region knows it as sent, to recognise it applied at a stale range."""
        request, region = self.request, self.request.region
        echoed = region.echoed = asyncio.Event()
        region.sent = (change.range, change.new_text)
        try:
            answer = await request.unless_stopped(
                self.client.workspace_apply_edit_async(
                    types.ApplyWorkspaceEditParams(self._workspace_edit(change))
                )
            )
            refused = "" if answer.applied else answer.failure_reason or "no reason given"
            if not refused:
                timeout = VERSIONED_ECHO_TIMEOUT if self.versioned else ECHO_TIMEOUT
                await asyncio.wait_for(echoed.wait(), timeout)
        except JsonRpcException as error:
            refused = str(error)
        except asyncio.TimeoutError:
            refused = "the editor did not report the applied edit back (didChange)"
        finally:
            region.sent = None
        if request.stopped:
            raise request.cancelled()
        return refused

    async def _put_back(self) -> None:
        """Undo the edits the client applied at stale ranges, newest first, each at once (no
        announcement: they only go to a client that applied a stale edit). A put-back the
        user's typing beats lands misplaced too and is put back in turn; the request stops if
        that does not settle."""
        request, region = self.request, self.request.region
        refused = ""
        for _ in range(MAX_REFUSALS):
            if not region.misplaced or refused:
                break
            start, end, overwritten = region.misplaced[-1]
            where = self.document.lines.range(start, end, self.encoding)
            refused = await self._send(types.TextEdit(where, overwritten))
        if region.misplaced:
            request.cancel("the editor applied an edit where it no longer fitted, and it "
                           f"could not be undone: {refused or 'the user kept typing'}",
                           by_server=True)
            raise request.cancelled()

    @property
    def versioned(self) -> bool:
        """Whether the client takes `documentChanges`, so each edit names its version."""
        workspace = self.client.client_capabilities.workspace
        edit = workspace.workspace_edit if workspace else None
        return bool(edit and edit.document_changes)

    def _change(self, text: str) -> types.TextEdit:
        """The smallest change that makes the region read `text`, as the server sees the
        document now: the common beginning and end of old and new text stay untouched."""
        document, region = self.document, self.request.region
        old = document.text[region.start : region.end]
        head = _common_prefix(old, text)
        tail = _common_prefix(old[head:][::-1], text[head:][::-1])
        where = document.lines.range(region.start + head, region.end - tail, self.encoding)
        return types.TextEdit(where, text[head : len(text) - tail])

    def _workspace_edit(self, change: types.TextEdit) -> types.WorkspaceEdit:
        """`change` to the document, stamped with its version where the client takes that."""
        document = self.document
        if not self.versioned:
            return types.WorkspaceEdit(changes={document.uri: [change]})
        target = types.OptionalVersionedTextDocumentIdentifier(document.uri, document.version)
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(target, [change])])

    async def _user_paused(self) -> None:
        """Return once the user's last own change to the document is USER_PAUSE seconds old,
        so no edit is computed against text the user is still changing."""
        while (wait := self.document.last_user_change + USER_PAUSE - time.monotonic()) > 0:
            await asyncio.sleep(wait)


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common beginning of `a` and `b`."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # slices compare in C: O(n log n) in C beats a character loop in Python
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
